"""A metric on many bootstrap resamples at once (`comp.stats.bootstrap`, `comp compare`).

A resample is given as counts (B, N): how often each held-out image is drawn into each of B
resamples. Scoring it is scoring the images repeated that often, which is what the generic path
does, through the task's own `score` (sklearn) once per resample: exact for every metric, but a
few thousand sklearn calls per interval. Where a metric is a function of weighted sums over images
the task gives a vectorised form (`Task.resampler`): per-image terms whose weighted mean is the
score (accuracy, log loss, MAP@K, per-image F, absolute error), a confusion matrix per resample
(kappa), or the weighted Mann-Whitney count (ROC AUC, ties counted half as sklearn does). The
vectorised form is used only when it reproduces the task's score on the images as they are
(`scorer`), and the tests hold it equal to sklearn on random resamples.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch

Resampler = Callable[[np.ndarray], np.ndarray]  # (B, N) counts -> (B,) scores


def scorer(task, metric: str, probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
           cut: Optional[Sequence[float]] = None) -> Resampler:
    """The task's `metric` of (N, D) `probs` against its (N, ...) `targets` (at `cut` where it
    cuts) on resamples: (B, N) counts -> (B,) scores. Vectorised where the task has a form that
    agrees with its score on the images as they are; otherwise one `task.score` per resample."""
    def generic(w: np.ndarray) -> np.ndarray:
        out = np.empty(len(w))
        for b, row in enumerate(np.asarray(w)):
            idx = torch.from_numpy(np.repeat(np.arange(len(row)), row.astype(np.int64)))
            out[b] = task.score(metric, probs[idx], targets[idx], classes, cut)
        return out

    fast = task.resampler(metric, probs, targets, classes, cut)
    if fast is None:
        return generic
    whole = task.score(metric, probs, targets, classes, cut)
    mine = float(fast(np.ones((1, len(targets))))[0])
    if not (math.isclose(mine, whole, rel_tol=1e-7, abs_tol=1e-9) or (math.isnan(mine) and math.isnan(whole))):
        return generic  # a form that disagrees with sklearn is never used
    return fast


def weighted_mean(terms: np.ndarray, finish: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Resampler:
    """Scores that are `finish` (default none) of the weighted mean of per-image `terms` (N,) or (N, K)."""
    t = np.asarray(terms, dtype=np.float64)

    def fn(w: np.ndarray) -> np.ndarray:
        total = w.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (w @ t) / (total[:, None] if t.ndim > 1 else total)
            return finish(mean) if finish is not None else mean

    return fn


def weighted_auc(scores: np.ndarray, positive: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC of (N,) `scores` for (N,) bool `positive` under (B, N) weights: the weighted share of
    (positive, negative) pairs ordered right, tied scores counting half; NaN without both."""
    order = np.argsort(scores, kind="stable")
    s = np.asarray(scores)[order]
    pos = np.asarray(positive, dtype=bool)[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of tied scores
    ws = w[:, order]
    p = np.add.reduceat(ws * pos, starts, axis=1)  # (B, G) positive weight per score group
    n = np.add.reduceat(ws * ~pos, starts, axis=1)
    below = np.cumsum(n, axis=1) - n
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (p * (below + 0.5 * n)).sum(1) / (p.sum(1) * n.sum(1))
    return np.where((p.sum(1) > 0) & (n.sum(1) > 0), auc, np.nan)


def column_aucs(scores: np.ndarray, truth: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B, C) AUC of each column of (N, C) `scores` for the (N, C) 0/1 `truth`."""
    return np.stack([weighted_auc(scores[:, c], truth[:, c] > 0, w) for c in range(scores.shape[1])], axis=1)


def nan_mean(values: np.ndarray) -> np.ndarray:
    """(B, C) -> (B,) mean over the finite columns of each row; NaN where none is."""
    ok = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        return np.where(ok.any(1), np.where(ok, values, 0).sum(1) / ok.sum(1), np.nan)


def confusions(true: np.ndarray, predicted: np.ndarray, k: int, w: np.ndarray) -> np.ndarray:
    """(B, K, K) weighted confusion matrices (rows true, columns predicted) of (N,) class indices."""
    onehot = np.zeros((len(true), k * k))
    onehot[np.arange(len(true)), np.asarray(true) * k + np.asarray(predicted)] = 1.0
    return (w @ onehot).reshape(len(w), k, k)


# -- each task's vectorised metrics (None: the generic path) -------------------------------------


def _f_beta(tp, fp, fn, beta: float):
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * fn + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (1 + b2) * tp / np.where(denominator > 0, denominator, 1), 0.0)  # zero_division=0


def _from_confusion(k: int, true: np.ndarray, predicted: np.ndarray, fn) -> Resampler:
    return lambda w: np.array([fn(o) for o in confusions(true, predicted, k, w)])


def _balanced(o: np.ndarray) -> float:
    support = o.sum(1)
    return float((np.diag(o)[support > 0] / support[support > 0]).mean())


def _macro_f1(o: np.ndarray) -> float:
    tp = np.diag(o)
    return float(_f_beta(tp, o.sum(0) - tp, o.sum(1) - tp, 1.0).mean())


def single_resampler(name: str, p: np.ndarray, y: np.ndarray, positive: int, k: Optional[int]) -> Optional[Resampler]:
    """Single-label metrics of (N, C) probabilities (rows summing to 1) against (N,) class indices
    (`positive`: a binary competition's positive class; `k`: MAP@K's K)."""
    from comp.tasks.value_metrics import _qwk_confusion

    n, c = p.shape
    top = p.argmax(1)
    if name == "accuracy":
        return weighted_mean(top == y)
    if name == "log_loss":
        eps = np.finfo(p.dtype).eps
        return weighted_mean(-np.log(np.clip(p[np.arange(n), y], eps, 1 - eps)))
    if k is not None:
        rank = 1 + (p > p[np.arange(n), y][:, None]).sum(1)
        return weighted_mean(np.where(rank <= k, 1.0 / rank, 0.0))
    if name == "roc_auc":
        if c == 2:
            return lambda w: weighted_auc(p[:, positive], y == positive, w)
        return lambda w: column_aucs(p, np.eye(c)[y], w).mean(1)  # a class missing from a resample: NaN, as the metric
    if name == "balanced_accuracy":
        return _from_confusion(c, y, top, _balanced)
    if name == "macro_f1":
        return _from_confusion(c, y, top, _macro_f1)
    if name == "qwk":
        return _from_confusion(c, y, top, lambda o: _qwk_confusion(o, None))
    return None


def tag_resampler(name: str, p: np.ndarray, y: np.ndarray, predicted: Optional[np.ndarray]) -> Optional[Resampler]:
    """Multi-label metrics of (N, C) tag probabilities against (N, C) 0/1 targets; `predicted`:
    the (N, C) 0/1 tag sets at the thresholds (F metrics)."""
    if name in ("f1_samples", "f2_samples"):
        tp, fp, fn = ((predicted == 1) & (y == 1)).sum(1), ((predicted == 1) & (y == 0)).sum(1), ((predicted == 0) & (y == 1)).sum(1)
        return weighted_mean(_f_beta(tp, fp, fn, 2.0 if name == "f2_samples" else 1.0))
    if name in ("micro_f1", "macro_f1"):
        parts = np.concatenate([(predicted == 1) & (y == 1), (predicted == 1) & (y == 0), (predicted == 0) & (y == 1)], axis=1)
        c = y.shape[1]
        if name == "micro_f1":
            return weighted_mean(parts, lambda m: _f_beta(m[:, :c].sum(1), m[:, c:2 * c].sum(1), m[:, 2 * c:].sum(1), 1.0))
        return weighted_mean(parts, lambda m: _f_beta(m[:, :c], m[:, c:2 * c], m[:, 2 * c:], 1.0).mean(1))
    if name == "roc_auc":
        return lambda w: nan_mean(column_aucs(p, y, w))
    if name == "log_loss":
        eps = np.finfo(p.dtype).eps
        q = np.clip(p, eps, 1 - eps)
        return weighted_mean(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean(1))
    return None


def grade_resampler(metric, true: np.ndarray, predicted: np.ndarray, grades: np.ndarray) -> Resampler:
    """An ordinal metric (`GradeMetric`) of (N,) cut grade indices against (N,) true ones, from each resample's confusion."""
    return _from_confusion(len(grades), true, predicted, lambda o: metric.from_confusion(o, grades))


def number_resampler(name: str, p: np.ndarray, y: np.ndarray) -> Optional[Resampler]:
    """Regression metrics of (N,) predictions against (N,) true numbers."""
    e = p - y
    if name == "rmse":
        return weighted_mean(e * e, np.sqrt)
    if name == "mae":
        return weighted_mean(np.abs(e))
    if name == "r2":  # 1 - SSE / SST, both weighted (sklearn's r2_score with sample_weight)
        return weighted_mean(np.stack([e * e, y, y * y], 1), lambda m: 1 - m[:, 0] / (m[:, 2] - m[:, 1] ** 2))
    return None
