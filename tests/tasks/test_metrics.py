"""Competition metrics: values against sklearn, directions, and refusals for a metric that does not fit."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from comp.errors import UserError
from comp.tasks.metrics import check_metric, get_metric, score

RNG = np.random.default_rng(0)
LOGITS = torch.tensor(RNG.normal(size=(60, 4)) * 2)
PROBS = LOGITS.softmax(1).float()
LABELS = torch.tensor(RNG.integers(0, 4, 60))
CLASSES = ["0", "1", "2", "3"]


@pytest.mark.parametrize("name, expected, higher", [
    ("accuracy", lambda p, y: skm.accuracy_score(y, p.argmax(1)), True),
    ("balanced_accuracy", lambda p, y: skm.balanced_accuracy_score(y, p.argmax(1)), True),
    ("macro_f1", lambda p, y: skm.f1_score(y, p.argmax(1), average="macro"), True),
    ("log_loss", lambda p, y: skm.log_loss(y, p), False),
    ("roc_auc", lambda p, y: skm.roc_auc_score(y, p, multi_class="ovr", average="macro"), True),
    ("qwk", lambda p, y: skm.cohen_kappa_score(y, p.argmax(1), weights="quadratic"), True),
])
def test_metric_values_match_sklearn(name, expected, higher):
    p = PROBS.double().numpy()
    p = p / p.sum(1, keepdims=True)
    assert score(name, PROBS, LABELS, CLASSES) == pytest.approx(expected(p, LABELS.numpy()), abs=1e-9)
    assert get_metric(name).higher_is_better is higher


def test_map_at_k_is_the_mean_reciprocal_rank_within_k():
    p = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.1, 0.6, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    y = torch.tensor([0, 0, 1, 3])  # ranks 1, 3, 3, 4
    assert score("map@3", p, y, CLASSES) == pytest.approx((1 + 1 / 3 + 1 / 3 + 0) / 4)
    # with K = number of classes it is sklearn's label ranking average precision (single-label rows)
    onehot = np.eye(4)[LABELS.numpy()]
    assert score("map@4", PROBS, LABELS, CLASSES) == pytest.approx(skm.label_ranking_average_precision_score(onehot, PROBS.numpy()))


def test_binary_roc_auc_uses_the_positive_class():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = torch.tensor([0, 1, 1, 0])
    assert score("roc_auc", p, y, ["cat", "dog"]) == pytest.approx(skm.roc_auc_score([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.7]))
    assert score("roc_auc", p, y, ["cat", "dog"], positive_class="cat") == pytest.approx(
        skm.roc_auc_score([1, 0, 0, 1], [0.9, 0.2, 0.6, 0.3]))


@pytest.mark.parametrize("name, classes, positive, message", [
    ("f2", ["a", "b"], None, "unknown metric 'f2'"),
    ("qwk", ["cat", "dog", "fox"], None, "qwk needs ordinal classes"),
    ("map@3", ["a", "b"], None, "only 2 classes"),
    ("roc_auc", ["a", "b", "c"], "a", "positive_class is for binary"),
    ("roc_auc", ["a", "b"], "z", "'z' is not a class"),
])
def test_a_metric_that_does_not_fit_is_refused(name, classes, positive, message):
    with pytest.raises(UserError, match=message):
        check_metric(name, classes, positive)


def test_a_metric_that_does_not_fit_stops_training_before_it_writes(tmp_path, shapes):
    from typer.testing import CliRunner

    from comp.cli import app
    from tests.conftest import one_line_error, write_config

    config = write_config(tmp_path / "c.yaml", data={"dir": str(shapes)})
    run = tmp_path / "run"
    one_line_error(CliRunner().invoke(app, ["train", str(config), "--out", str(run), "--set", "metric=qwk"]), "qwk needs ordinal")
    one_line_error(CliRunner().invoke(app, ["train", str(config), "--out", str(run), "--set", "metric=auc"]), "unknown metric 'auc'")
    assert not run.exists()
