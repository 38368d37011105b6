import math

import pytest
import torch

from comp.predict.ensemble import accuracy, greedy_weights, log_loss, merge


def test_mean_and_weights_on_known_probabilities():
    a = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    b = torch.tensor([[0.5, 0.5], [0.6, 0.4]])
    p = torch.stack([a, b])
    assert torch.allclose(merge(p), torch.tensor([[0.7, 0.3], [0.4, 0.6]]))
    assert torch.allclose(merge(p, [3, 1]), torch.tensor([[0.8, 0.2], [0.3, 0.7]]))
    assert torch.allclose(merge(p, [1, 0]), a)


def test_geometric_mean_equals_softmax_of_mean_logits():
    logits = torch.randn(3, 5, 4)
    p = logits.softmax(-1)
    g = merge(p, rule="geometric")
    assert torch.allclose(g, logits.mean(0).softmax(-1), atol=1e-6)
    assert torch.allclose(merge(p, rule="logit"), g)
    a = torch.tensor([[[0.8, 0.2]], [[0.2, 0.8]]])
    assert torch.allclose(merge(a, rule="geometric"), torch.tensor([[0.5, 0.5]]))
    s = math.sqrt(0.9 * 0.5)
    t = math.sqrt(0.1 * 0.5)
    b = torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]])
    assert torch.allclose(merge(b, rule="geometric"), torch.tensor([[s / (s + t), t / (s + t)]]))


@pytest.mark.parametrize("weights, message", [
    ([1.0], "has 1 values for 2 runs"), ([-1.0, 2.0], "must be finite, >= 0"), ([0.0, 0.0], "not all 0"),
    ([float("nan"), 1.0], "must be finite"), ([float("inf"), 1.0], "must be finite"),
])
def test_bad_weights_are_refused(weights, message):
    from comp.errors import UserError

    with pytest.raises(UserError, match=message):  # NaN and inf used to pass and make every probability NaN
        merge(torch.rand(2, 3, 4), weights)


def test_bad_rule():
    with pytest.raises(ValueError):
        merge(torch.rand(2, 3, 4), rule="median")


def test_accuracy_and_log_loss():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    y = torch.tensor([0, 1, 1])
    assert accuracy(p, y) == pytest.approx(2 / 3)
    assert log_loss(p, y) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3, rel=1e-5)


def test_greedy_weights_prefer_the_good_member_and_ignore_noise():
    torch.manual_seed(0)
    n, c = 200, 4
    y = torch.randint(0, c, (n,))
    good = torch.nn.functional.one_hot(y, c).float() * 0.6 + 0.1  # always right
    noise = torch.rand(n, c)
    noise = noise / noise.sum(1, keepdim=True)
    w = greedy_weights(torch.stack([noise, good, noise.flip(0)]), y)
    assert w[1] == pytest.approx(1.0) and sum(w) == pytest.approx(1.0)


def test_greedy_weights_combine_complementary_members():
    # member 0 is right on the first half, member 1 on the second; each alone 0.5, together 1.0
    y = torch.tensor([0, 0, 1, 1])
    m0 = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.55, 0.45], [0.55, 0.45]])
    m1 = torch.tensor([[0.45, 0.55], [0.45, 0.55], [0.1, 0.9], [0.1, 0.9]])
    w = greedy_weights(torch.stack([m0, m1]), y)
    assert accuracy(merge(torch.stack([m0, m1]), w), y) == 1.0
    assert all(x > 0 for x in w)


def _members(quality: float, n: int = 300, c: int = 10, m: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, n, c) probabilities whose logits carry `quality` x the true class, and (n,) labels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(m, n, c, generator=g) + quality * torch.nn.functional.one_hot(y, c)
    return logits.softmax(-1), y


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc", "qwk", "map@3"])
@pytest.mark.parametrize("quality", [0.0, 0.3, 3.0])  # chance level (every log loss above 2), poor, good
@pytest.mark.parametrize("rule", ["mean", "geometric"])
def test_greedy_weights_are_finite_and_no_worse_than_the_best_member_for_every_metric(metric, quality, rule):
    from comp.tasks.metrics import get_metric, score

    m = get_metric(metric)
    probs, y = _members(quality)
    classes = [str(i) for i in range(probs.shape[2])]
    value = lambda p: score(metric, p, y, classes)  # noqa: E731
    sign = 1.0 if m.higher_is_better else -1.0
    # Used to start from a best score of -1.0: a negated log loss below -1 never beat it and the weights were 0/0 = NaN.
    w = greedy_weights(probs, y, rule=rule, objective=lambda p: sign * value(p))
    assert all(math.isfinite(x) and x >= 0 for x in w) and sum(w) == pytest.approx(1.0)
    best_single = max(sign * value(probs[i]) for i in range(len(probs)))
    assert sign * value(merge(probs, w, rule)) >= best_single - 1e-12


def test_greedy_weights_rank_nan_scores_last():
    probs, y = _members(3.0, m=2)
    # The first member cannot be scored (e.g. AUC with a class missing from the held-out images): a
    # NaN used to win the comparison against a number and be picked first.
    w = greedy_weights(probs, y, max_steps=1, objective=lambda p: float("nan") if torch.equal(p, probs[0]) else 0.5)
    assert w == [0.0, 1.0]
