"""Per-tag thresholds for the multi-label F metrics, fitted on held-out predictions.

Sigmoid outputs are not calibrated to 0.5: a rare tag's probabilities sit low, and F2 rewards
recall, so the best cut differs by tag and by metric. `fit_thresholds` maximises the metric
itself on held-out predictions (a run's val_probs.csv, a k-fold run's oof.csv): first one global
threshold over a grid, then each tag with at least `min_positives` held-out positives in turn
(coordinate ascent, two passes, since the per-image F of one tag's cut depends on the others'); a
tag with fewer positives keeps the global threshold, which rests on every tag's images. A tie keeps
the current value, so a flat score never moves a threshold. The result is stored with the run
(`thresholds.json`) and applied by `comp.metrics_multilabel.predict_tags`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from comp.errors import UserError
from comp.metrics_multilabel import get_tag_metric

GRID = np.round(np.arange(0.02, 0.981, 0.02), 2)  # 0.02 .. 0.98
MIN_POSITIVES = 5


def fit_thresholds(probs: np.ndarray, targets: np.ndarray, metric: str, *, min_positives: int = MIN_POSITIVES,
                   ensure_one: bool = True, passes: int = 2) -> dict[str, Any]:
    """Thresholds maximising `metric` on (N, C) held-out `probs` against (N, C) 0/1 `targets`.

    Returns:
        {"metric", "global": float, "thresholds": (C,) list, "fitted": (C,) list of bool (own
        threshold, else the global one), "score_at_0.5", "score", "ensure_one", "min_positives"}.
    """
    m = get_tag_metric(metric)
    if not m.thresholded:
        raise UserError(f"metric {m.name} scores probabilities; thresholds are fitted for f1_samples, f2_samples, micro_f1 and macro_f1")
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets).astype(np.int64)
    if p.shape != y.shape or p.ndim != 2 or not len(p):
        raise UserError(f"thresholds: probabilities {p.shape} and targets {y.shape} must be the same (N, C) with N > 0")
    c = p.shape[1]

    def value(t: np.ndarray) -> float:
        return m.fn(p, y, t, ensure_one)

    at_half = value(np.full(c, 0.5))
    best_g, best = 0.5, at_half
    for g in GRID:
        s = value(np.full(c, g))
        if s > best:
            best_g, best = float(g), s
    t = np.full(c, best_g)
    fitted = y.sum(0) >= min_positives
    for _ in range(passes):
        moved = False
        for k in np.flatnonzero(fitted):
            current = t[k]
            for g in GRID:
                t[k] = g
                s = value(t)
                if s > best:
                    best, current, moved = s, float(g), True
            t[k] = current
        if not moved:
            break
    return {
        "metric": m.name, "global": best_g, "thresholds": [float(v) for v in t], "fitted": [bool(f) for f in fitted],
        "score_at_0.5": float(at_half), "score": float(best), "ensure_one": ensure_one, "min_positives": min_positives,
    }
