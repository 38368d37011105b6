"""Intervals: the paired bootstrap covers a known difference 95% of the time; the seeds' t-intervals by hand."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from comp.stats import bootstrap, paired_t, t_interval
from comp.tasks import get_task
from comp.tasks.resample import scorer


def _draw(metric: str, n: int, rng: np.random.Generator):
    """Two models' predictions of n images and their targets: B sees the class more clearly than A,
    and both share part of their noise (hard images are hard for both), as real runs do."""
    if metric == "f2_samples":
        y = (rng.random((n, 4)) < 0.35).astype(np.int64)
        shared = rng.normal(size=(n, 4))
        za = 1.2 * (2 * y - 1) + shared + rng.normal(size=(n, 4))
        zb = 1.5 * (2 * y - 1) + shared + rng.normal(size=(n, 4))
        return torch.from_numpy(1 / (1 + np.exp(-za))), torch.from_numpy(1 / (1 + np.exp(-zb))), torch.from_numpy(y)
    c = 2 if metric == "roc_auc" else 3
    y = rng.integers(0, c, n)
    shared = rng.normal(size=(n, c))
    za = 1.0 * np.eye(c)[y] + shared + rng.normal(size=(n, c))
    zb = 1.3 * np.eye(c)[y] + shared + rng.normal(size=(n, c))
    return (torch.from_numpy(za).softmax(1), torch.from_numpy(zb).softmax(1), torch.from_numpy(y))


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc", "log_loss", "f2_samples"])
def test_paired_bootstrap_covers_the_true_difference_95_percent_of_the_time(metric):
    """500 draws of 300 held-out images; the truth is the difference on 400,000 images of the same
    process. A 95% interval must cover it in 93-97% of the draws."""
    task = get_task("multilabel" if metric == "f2_samples" else "single")
    classes = [str(i) for i in range(4 if metric == "f2_samples" else 2 if metric == "roc_auc" else 3)]
    cut = [0.5] * 4 if metric == "f2_samples" else None
    rng = np.random.default_rng(123)
    a, b, y = _draw(metric, 400_000, rng)
    truth = task.score(metric, b, y, classes, cut) - task.score(metric, a, y, classes, cut)
    covered = 0
    for d in range(500):
        a, b, y = _draw(metric, 300, rng)
        fa, fb = scorer(task, metric, a, y, classes, cut), scorer(task, metric, b, y, classes, cut)
        result = bootstrap(lambda w: fb(w) - fa(w), len(y), resamples=999, seed=d)
        covered += result.interval.low <= truth <= result.interval.high
    assert 0.93 <= covered / 500 <= 0.97, (metric, truth, covered / 500)


def test_bootstrap_of_a_constant_difference_and_its_share():
    result = bootstrap(lambda w: np.full(len(w), 0.25), 50, resamples=200)
    assert result.interval.value == result.interval.low == result.interval.high == 0.25
    assert result.share_above(0.0) == 1.0 and result.share_above(0.25) == 0.5


def test_bootstrap_refuses_an_undefined_score():
    with pytest.raises(ValueError, match="undefined on the images themselves"):
        bootstrap(lambda w: np.full(len(w), np.nan), 10, resamples=50)


def test_t_interval_and_the_paired_difference_by_hand():
    values = [0.90, 0.92, 0.91]
    interval, sd = t_interval(values)
    half = scipy_stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert interval.value == pytest.approx(0.91) and sd == pytest.approx(0.01)
    assert (interval.low, interval.high) == pytest.approx((0.91 - half, 0.91 + half))
    diff = paired_t([0.90, 0.92, 0.91], [0.93, 0.94, 0.95])
    d = np.array([0.03, 0.02, 0.04])
    half = scipy_stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert (diff.value, diff.low, diff.high) == pytest.approx((0.03, 0.03 - half, 0.03 + half))
    assert diff.excludes(0.0)
    one, sd = t_interval([0.5])
    assert math.isnan(one.low) and math.isnan(sd) and not one.excludes(0.0) and one.text() == "0.5000"
