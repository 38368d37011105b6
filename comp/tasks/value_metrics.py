"""Metrics of graded (ordinal) and numeric (regression) competitions, computed with sklearn and scipy.

Grades are scored after the continuous prediction is cut into grades (at plain rounding, or at
the cut-points fitted on held-out predictions, `comp.tasks.cutpoints`); numbers are scored as
they are. Both registries hold `Direction`s, so best epochs, early stopping, `comp tune`,
`comp runs` and `comp lb` sort each metric the right way.

| task | name | what | library |
|---|---|---|---|
| ordinal | `qwk` | quadratic weighted kappa of the cut grades | `cohen_kappa_score(weights="quadratic")` |
| ordinal | `accuracy` | share of images given their grade | `accuracy_score` |
| ordinal | `mae` | mean absolute error in grades (lower is better) | `mean_absolute_error` |
| regression | `rmse` | root mean squared error (lower) | `root_mean_squared_error` |
| regression | `mae` | mean absolute error (lower) | `mean_absolute_error` |
| regression | `r2` | coefficient of determination | `r2_score` |
| regression | `pearson` | Pearson correlation | `scipy.stats.pearsonr` |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from comp.errors import UserError
from comp.tasks.metrics import Direction


@dataclass(frozen=True)
class GradeMetric(Direction):
    """A metric of grades: `fn(predicted (N,) grade indices, true (N,) grade indices, grade values (K,))`
    (sklearn), and the same value from the (K, K) confusion matrix (rows true, columns predicted),
    `from_confusion(confusion, grade values)`: what the cut-point search evaluates thousands of
    times, at a bincount's cost instead of sklearn's input checks (tests hold the two equal)."""

    name: str
    higher_is_better: bool
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], float]
    from_confusion: Callable[[np.ndarray, np.ndarray], float]
    probabilistic: bool = False
    thresholded: bool = True  # always scored on a cut of the continuous prediction

    @property
    def post_suffix(self) -> str:
        return "_cut"  # a finished run fits its cut-points on the held-out predictions


@dataclass(frozen=True)
class NumberMetric(Direction):
    """A metric of numbers: `fn(predicted (N,), true (N,))`."""

    name: str
    higher_is_better: bool
    fn: Callable[[np.ndarray, np.ndarray], float]
    probabilistic: bool = False


def _qwk(p, y, values):
    from sklearn.metrics import cohen_kappa_score

    return cohen_kappa_score(y, p, labels=list(range(len(values))), weights="quadratic")


def _grade_accuracy(p, y, values):
    from sklearn.metrics import accuracy_score

    return accuracy_score(y, p)


def _grade_mae(p, y, values):
    from sklearn.metrics import mean_absolute_error

    return mean_absolute_error(values[y], values[p])


def _qwk_confusion(o, values):
    # sklearn's cohen_kappa_score: 1 - sum(w * observed) / sum(w * expected), w = (i - j)^2 over grade indices
    k = len(o)
    w = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2
    expected = np.outer(o.sum(1), o.sum(0)) / max(o.sum(), 1)
    denominator = (w * expected).sum()
    return 1 - (w * o).sum() / denominator if denominator else float("nan")


def _accuracy_confusion(o, values):
    return np.trace(o) / max(o.sum(), 1)


def _mae_confusion(o, values):
    return (o * np.abs(values[:, None] - values[None, :])).sum() / max(o.sum(), 1)


def _rmse(p, y):
    from sklearn.metrics import root_mean_squared_error

    return root_mean_squared_error(y, p)


def _mae(p, y):
    from sklearn.metrics import mean_absolute_error

    return mean_absolute_error(y, p)


def _r2(p, y):
    from sklearn.metrics import r2_score

    return r2_score(y, p) if len(y) > 1 else float("nan")


def _pearson(p, y):
    from scipy.stats import pearsonr

    if len(y) < 2 or np.ptp(p) == 0 or np.ptp(y) == 0:
        return float("nan")  # undefined for a constant prediction (an untrained head's first epochs)
    return float(pearsonr(p, y).statistic)


GRADE_METRICS = {
    "qwk": GradeMetric("qwk", True, _qwk, _qwk_confusion),
    "accuracy": GradeMetric("accuracy", True, _grade_accuracy, _accuracy_confusion),
    "mae": GradeMetric("mae", False, _grade_mae, _mae_confusion),
}
NUMBER_METRICS = {
    "rmse": NumberMetric("rmse", False, _rmse),
    "mae": NumberMetric("mae", False, _mae),
    "r2": NumberMetric("r2", True, _r2),
    "pearson": NumberMetric("pearson", True, _pearson),
}


def get_grade_metric(name: str) -> GradeMetric:
    """The ordinal metric `name`; another task's metric is one line naming what grades are scored by."""
    key = name.strip().lower()
    if key in GRADE_METRICS:
        return GRADE_METRICS[key]
    raise UserError(f"metric {name} does not score grades; an ordinal competition is scored by {', '.join(GRADE_METRICS)}")


def get_number_metric(name: str) -> NumberMetric:
    """The regression metric `name`; another task's metric is one line naming what numbers are scored by."""
    key = name.strip().lower()
    if key in NUMBER_METRICS:
        return NUMBER_METRICS[key]
    raise UserError(f"metric {name} does not score numbers; a regression competition is scored by {', '.join(NUMBER_METRICS)}")
