"""Competition metrics: the top-level config key `metric`, computed with `sklearn.metrics`.

Each metric scores (N, C) class probabilities against (N,) class indices and knows whether higher
is better. The metric chooses the best epoch and early stopping, is logged per epoch
(`val_score`), summarises a run (`best_val_score`) and a k-fold run (`cv_score`), is what
`comp evaluate` reports and what `comp evaluate --fit` optimises, and decides calibration
(`log_loss`) and the top-k submission shape (`map@k`).

| name | what | sklearn |
|---|---|---|
| `accuracy` | share of top-1 hits | `accuracy_score` |
| `balanced_accuracy` | mean recall over classes | `balanced_accuracy_score` |
| `macro_f1` | unweighted mean of per-class F1 | `f1_score(average="macro")` |
| `log_loss` | cross-entropy of the probabilities (lower is better) | `log_loss` |
| `roc_auc` | binary: the positive class's probability; multiclass: macro one-vs-rest | `roc_auc_score` |
| `qwk` | quadratic weighted kappa of the top-1 class; classes in their (numeric) order | `cohen_kappa_score(weights="quadratic")` |
| `map@K` | mean average precision of the top K names (one true class per image: 1/rank if rank <= K) | none: computed from the ranks (sklearn has no MAP@K; its `label_ranking_average_precision_score` is the K = C case, used as a check in the tests) |
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from comp.errors import UserError

_MAP = re.compile(r"map@(\d+)")


class Direction:
    """Comparing scores of a metric whose `higher_is_better` says which way is up (single- and multi-label)."""

    higher_is_better: bool
    thresholded = False  # scored on a cut of the probabilities, whose thresholds are fitted (multi-label F metrics)
    name: str

    @property
    def post_suffix(self) -> str | None:
        """What a finished run fits on its held-out predictions for this metric, as the suffix of its
        score key (`comp.tasks.base.POST_SUFFIXES`): thresholds for a thresholded metric, a
        temperature for log loss, else None. The one place that says which metric gets which."""
        if self.thresholded:
            return "_thresholded"
        return "_calibrated" if self.name == "log_loss" else None

    def better(self, a: float, b: float) -> bool:
        """Whether score `a` beats score `b` (NaN never beats anything; anything beats NaN)."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a > b if self.higher_is_better else a < b

    @property
    def worst(self) -> float:
        return -math.inf if self.higher_is_better else math.inf


@dataclass(frozen=True)
class Metric(Direction):
    """A competition metric: `score(probs (N, C), labels (N,)) -> float` and its direction."""

    name: str
    higher_is_better: bool
    fn: Callable[[np.ndarray, np.ndarray, int, int], float]  # (probs, labels, num_classes, positive index)
    probabilistic: bool = False  # scored on probabilities (log loss, AUC), not on the top-1 label


def _accuracy(p, y, c, pos):
    from sklearn.metrics import accuracy_score

    return accuracy_score(y, p.argmax(1))


def _balanced(p, y, c, pos):
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        return balanced_accuracy_score(y, p.argmax(1))


def _macro_f1(p, y, c, pos):
    from sklearn.metrics import f1_score

    return f1_score(y, p.argmax(1), labels=list(range(c)), average="macro", zero_division=0)


def _log_loss(p, y, c, pos):
    from sklearn.metrics import log_loss

    return log_loss(y, p, labels=list(range(c)))


def _roc_auc(p, y, c, pos):
    from sklearn.metrics import roc_auc_score

    if c == 2:
        return roc_auc_score(y == pos, p[:, pos])
    present = np.unique(y)
    if len(present) < c:  # a class without held-out images has no one-vs-rest AUC
        return float("nan")
    return roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(c)))


def _qwk(p, y, c, pos):
    from sklearn.metrics import cohen_kappa_score

    return cohen_kappa_score(y, p.argmax(1), labels=list(range(c)), weights="quadratic")


def _map_at(k: int):
    def fn(p, y, c, pos):
        # rank of the true class = 1 + number of classes scored strictly higher (ties go to the true class)
        true = p[np.arange(len(y)), y]
        rank = 1 + (p > true[:, None]).sum(1)
        return float(np.where(rank <= k, 1.0 / rank, 0.0).mean())

    return fn


METRICS = {
    "accuracy": Metric("accuracy", True, _accuracy),
    "balanced_accuracy": Metric("balanced_accuracy", True, _balanced),
    "macro_f1": Metric("macro_f1", True, _macro_f1),
    "log_loss": Metric("log_loss", False, _log_loss, probabilistic=True),
    "roc_auc": Metric("roc_auc", True, _roc_auc, probabilistic=True),
    "qwk": Metric("qwk", True, _qwk),
}
NAMES = (*METRICS, "map@3")


def get_metric(name: str) -> Metric:
    """The metric called `name` (any `map@K` with K >= 1 too); an unknown name is a UserError."""
    name = name.strip().lower()
    if name in METRICS:
        return METRICS[name]
    m = _MAP.fullmatch(name)
    if m and int(m.group(1)) >= 1:
        return Metric(name, True, _map_at(int(m.group(1))))
    # another task's registry: name it rather than call it unknown
    from comp.tasks.tag_metrics import TAG_METRICS
    from comp.tasks.value_metrics import GRADE_METRICS, NUMBER_METRICS

    if name in TAG_METRICS:
        raise UserError(f"metric {name} scores multi-label competitions (several tags per image); this one has one class "
                        f"per image: use {', '.join(NAMES[:-1])} or map@K")
    if name in NUMBER_METRICS:
        raise UserError(f"metric {name} scores numbers (data.task=regression); this one has one class per image: use "
                        f"{', '.join(NAMES[:-1])} or map@K")
    raise UserError(f"unknown metric {name!r}; use one of {', '.join(NAMES)} (or map@K); with several tags per image: {', '.join(TAG_METRICS)}; "
                    f"grades (ordinal): {', '.join(GRADE_METRICS)}; numbers (regression): {', '.join(NUMBER_METRICS)}")


def top_k(name: str) -> Optional[int]:
    """K of a `map@K` metric, else None."""
    m = _MAP.fullmatch(name.strip().lower())
    return int(m.group(1)) if m else None


def positive_index(classes: Sequence[str], positive_class: Optional[str]) -> int:
    """Index of the positive class of a binary competition: `data.positive_class`, else the second class."""
    if positive_class is None:
        return len(classes) - 1
    if positive_class not in classes:
        raise UserError(f"data.positive_class={positive_class!r} is not a class; the classes are {list(classes)}")
    return list(classes).index(positive_class)


def check_metric(name: str, classes: Sequence[str], positive_class: Optional[str] = None) -> Metric:
    """The metric, refused when it does not fit these classes (one line naming the fix)."""
    metric = get_metric(name)
    if metric.name == "qwk":
        try:
            values = [float(c) for c in classes]
        except ValueError:
            raise UserError(
                f"metric qwk needs ordinal classes whose names are numbers (0, 1, 2, ...); these are {list(classes)[:5]}; "
                "use accuracy or macro_f1"
            ) from None
        if values != sorted(values):
            raise UserError(f"metric qwk: classes {list(classes)} are not in numeric order")
    k = top_k(metric.name)
    if k is not None and k > len(classes):
        raise UserError(f"metric {metric.name}: only {len(classes)} classes; use map@{len(classes)} or less")
    if positive_class is not None:
        if len(classes) != 2:
            raise UserError(f"data.positive_class is for binary competitions; this one has {len(classes)} classes")
        positive_index(classes, positive_class)
    return metric


def score(name: str, probs: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], positive_class: Optional[str] = None) -> float:
    """`name` of (N, C) probabilities against (N,) class indices; NaN without images."""
    metric = get_metric(name)
    if len(labels) == 0:
        return float("nan")
    p = probs.detach().double().cpu().numpy()
    p = p / p.sum(1, keepdims=True)  # float32 rows sum to 1 only up to rounding; sklearn checks
    y = labels.detach().cpu().numpy().astype(np.int64)
    return float(metric.fn(p, y, p.shape[1], positive_index(classes, positive_class)))
