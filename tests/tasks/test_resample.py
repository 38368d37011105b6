"""Vectorised metrics on bootstrap resamples equal sklearn's score of each resample, for every task."""

import numpy as np
import pytest
import torch

from comp.tasks import get_task
from comp.tasks.resample import scorer
from comp.tasks.tag_metrics import TAG_METRICS
from comp.tasks.value_metrics import GRADE_METRICS, NUMBER_METRICS


def _case(kind: str, n: int = 60, seed: int = 0):
    """(task, probs, targets, classes, metrics, cut) of a small random competition of `kind`."""
    g = torch.Generator().manual_seed(seed)
    if kind in ("single", "binary"):
        c = 2 if kind == "binary" else 4
        y = torch.arange(n) % c
        logits = torch.randn(n, c, generator=g) + 2.0 * torch.nn.functional.one_hot(y, c)
        p = logits.softmax(1)
        p[:3] = p[3:6]  # tied rows: AUC's ties count half
        names = ["accuracy", "log_loss", "roc_auc", "balanced_accuracy", "macro_f1", "map@2"] + (["qwk"] if c > 2 else [])
        classes = [str(i) for i in range(c)]
        return get_task("single"), p, y, classes, names, None
    if kind == "multilabel":
        y = (torch.rand(n, 3, generator=g) < 0.4).long()
        p = (torch.randn(n, 3, generator=g) + 1.5 * (2 * y - 1)).sigmoid().round(decimals=2)  # rounded: ties
        return get_task("multilabel"), p, y, ["a", "b", "c"], list(TAG_METRICS), [0.4, 0.5, 0.6]
    if kind == "ordinal":
        y = torch.arange(n) % 5
        p = (y.double() + torch.randn(n, generator=g, dtype=torch.float64) * 0.8)[:, None]
        classes = [str(i) for i in range(5)]
        return get_task("ordinal", classes=classes), p, y, classes, list(GRADE_METRICS), [0.4, 1.6, 2.5, 3.5]
    y = torch.randn(n, generator=g, dtype=torch.float64) * 10 + 40
    p = (y + torch.randn(n, generator=g, dtype=torch.float64) * 4)[:, None]
    return get_task("regression"), p, y, ["Pawpularity"], list(NUMBER_METRICS), None


@pytest.mark.parametrize("kind", ["single", "binary", "multilabel", "ordinal", "regression"])
def test_vectorised_scores_equal_sklearn_on_each_resample(kind):
    task, p, y, classes, names, cut = _case(kind)
    w = np.random.default_rng(1).multinomial(len(y), np.full(len(y), 1 / len(y)), size=6).astype(float)
    fast_seen = 0
    for name in names:
        fast = task.resampler(name, p, y, classes, cut)
        fn = scorer(task, name, p, y, classes, cut)
        expected = []
        for row in w:
            idx = torch.from_numpy(np.repeat(np.arange(len(y)), row.astype(int)))
            expected.append(task.score(name, p[idx], y[idx], classes, cut))
        np.testing.assert_allclose(fn(w), expected, rtol=1e-9, atol=1e-12, err_msg=f"{kind} {name}")
        if fast is not None:
            fast_seen += 1
            np.testing.assert_allclose(fast(w), expected, rtol=1e-9, atol=1e-12, err_msg=f"{kind} {name} (vectorised)")
    assert fast_seen >= len(names) - 1  # every metric but at most one (regression's pearson, multi-label AP) is vectorised


def test_a_resample_without_a_class_has_no_auc():
    task, p, y, classes, _, _ = _case("single")
    w = np.zeros((1, len(y)))
    w[0, y.numpy() != 3] = 1.0
    assert np.isnan(scorer(task, "roc_auc", p, y, classes)(w)[0])
