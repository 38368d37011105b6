"""Multi-label metrics (the `metric` key of a multi-label competition), through `sklearn.metrics`.

Each scores (N, C) per-tag probabilities (sigmoid outputs) against (N, C) 0/1 targets. The F
metrics score tag *sets*: a tag is predicted when its probability reaches its threshold (one per
tag, `comp.tasks.thresholds`), and an image left with no tag gets its most probable one (Kaggle's tag
metrics score an empty row as 0), unless `ensure_one` is off.

| name | what | sklearn |
|---|---|---|
| `f1_samples` / `f2_samples` | mean per-image F1 / F2 of the predicted tag set (Planet: F2, iMet: F2) | `fbeta_score(average="samples")` |
| `micro_f1` | F1 over every (image, tag) decision pooled | `f1_score(average="micro")` |
| `macro_f1` | unweighted mean of per-tag F1 (Human Protein Atlas) | `f1_score(average="macro")` |
| `roc_auc` | mean column-wise ROC AUC (Plant Pathology 2020, ChestX-ray14) | `roc_auc_score(average=None)`, mean over tags with both outcomes |
| `average_precision` | mean column-wise average precision (mAP) | `average_precision_score(average=None)`, mean over tags with a positive |
| `log_loss` | mean column-wise binary log loss (lower is better) | `log_loss` per tag |

A tag whose held-out images are all positive or all negative has no AUC (and without a positive no
AP); the mean is over the tags that have one, and NaN when none does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from comp.errors import UserError
from comp.tasks.metrics import Direction


@dataclass(frozen=True)
class TagMetric(Direction):
    """A multi-label metric: `fn(probs (N, C), targets (N, C), thresholds (C,), ensure_one) -> float`."""

    name: str
    higher_is_better: bool
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray, bool], float]
    thresholded: bool  # scored on tag sets (F metrics), so thresholds matter; else on probabilities

    @property
    def probabilistic(self) -> bool:
        """Scored on the probabilities themselves (AUC, AP, log loss), as a single-label Metric says it."""
        return not self.thresholded


def predict_tags(probs: np.ndarray, thresholds, ensure_one: bool = True) -> np.ndarray:
    """(N, C) 0/1 tag sets: probability >= the tag's threshold; with `ensure_one`, a row left
    empty gets its most probable tag."""
    pred = (probs >= np.asarray(thresholds, dtype=probs.dtype)).astype(np.uint8)
    if ensure_one and len(pred):
        empty = pred.sum(1) == 0
        pred[np.flatnonzero(empty), probs[empty].argmax(1)] = 1
    return pred


def tag_accuracy(probs, targets) -> float:
    """Multi-label accuracy: the share of (image, tag) decisions right at probability 0.5, i.e.
    1 - the Hamming loss, of (N, C) probabilities against (N, C) 0/1 targets."""
    return ((probs >= 0.5) == (targets > 0)).float().mean().item() if len(targets) else float("nan")


def _fbeta(beta: float, average: str):
    def fn(p, y, t, ensure_one):
        from sklearn.metrics import fbeta_score

        return fbeta_score(y, predict_tags(p, t, ensure_one), beta=beta, average=average, zero_division=0)

    return fn


def _column_mean(score_fn, need_negative: bool):
    """The mean over tags of `score_fn(y_c, p_c)`, over tags that can be scored."""
    def fn(p, y, t, ensure_one):
        usable = [c for c in range(y.shape[1]) if y[:, c].any() and (not need_negative or not y[:, c].all())]
        if not usable:
            return float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(np.mean([score_fn(y[:, c], p[:, c]) for c in usable]))

    return fn


def _auc(y, p):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, p)


def _ap(y, p):
    from sklearn.metrics import average_precision_score

    return average_precision_score(y, p)


def _log_loss(p, y, t, ensure_one):
    from sklearn.metrics import log_loss

    return float(np.mean([log_loss(y[:, c], p[:, c], labels=[0, 1]) for c in range(y.shape[1])]))


TAG_METRICS = {
    "f1_samples": TagMetric("f1_samples", True, _fbeta(1.0, "samples"), True),
    "f2_samples": TagMetric("f2_samples", True, _fbeta(2.0, "samples"), True),
    "micro_f1": TagMetric("micro_f1", True, _fbeta(1.0, "micro"), True),
    "macro_f1": TagMetric("macro_f1", True, _fbeta(1.0, "macro"), True),
    "roc_auc": TagMetric("roc_auc", True, _column_mean(_auc, need_negative=True), False),
    "average_precision": TagMetric("average_precision", True, _column_mean(_ap, need_negative=False), False),
    "log_loss": TagMetric("log_loss", False, _log_loss, False),
}


def get_tag_metric(name: str) -> TagMetric:
    """The multi-label metric `name`; a single-label-only name (accuracy, qwk, map@K) is a UserError."""
    key = name.strip().lower()
    if key not in TAG_METRICS:
        raise UserError(f"metric {name!r} does not score tags; a multi-label competition is scored by {', '.join(TAG_METRICS)}")
    return TAG_METRICS[key]


def tag_score(name: str, probs, targets, thresholds=0.5, ensure_one: bool = True) -> float:
    """`name` of (N, C) probabilities against (N, C) 0/1 targets; `thresholds` a number or (C,);
    NaN without images. Tensors or arrays."""
    metric = get_tag_metric(name)
    p = np.asarray(probs.detach().cpu().double() if hasattr(probs, "detach") else probs, dtype=np.float64)
    y = np.asarray(targets.detach().cpu() if hasattr(targets, "detach") else targets).astype(np.int64)
    if len(y) == 0:
        return float("nan")
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (p.shape[1],))
    return float(metric.fn(p, y, t, ensure_one))

