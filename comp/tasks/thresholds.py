"""Per-tag thresholds for the multi-label F metrics, fitted on held-out predictions.

Sigmoid outputs are not calibrated to 0.5: a rare tag's probabilities sit low, and F2 rewards
recall, so the best cut differs by tag and by metric. `fit_thresholds` maximises the metric
itself on held-out predictions (a run's val_probs.csv, a k-fold run's oof.csv): first one global
threshold over a grid, then each tag with at least `min_positives` held-out positives in turn
(coordinate ascent, two passes, since the per-image F of one tag's cut depends on the others'); a
tag with fewer positives keeps the global threshold, which rests on every tag's images. A tie keeps
the current value, so a flat score never moves a threshold. The result is stored with the run
(`thresholds.json`) and applied by `comp.tasks.tag_metrics.predict_tags`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from comp.errors import UserError
from comp.tasks.held_out import ensemble_post, read_fitted
from comp.tasks.tag_metrics import get_tag_metric

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


THRESHOLDS_FILE = "thresholds.json"


def fit_run_thresholds(run_dir: Path, metric: str, table: str = "val_probs.csv", ensure_one: bool = True) -> dict[str, Any]:
    """Fit the thresholds of a multi-label run on its held-out `table` (val_probs.csv, or a k-fold
    run's oof.csv) and write them to `run_dir/thresholds.json` with the classes; returns that record."""
    from comp.files import write_json
    from comp.probs import read_probs, tag_targets

    path = Path(run_dir) / table
    _, probs, classes, meta = read_probs(path)
    fit = fit_thresholds(probs.numpy(), tag_targets(meta["label"], classes, path).numpy(), metric, ensure_one=ensure_one)
    record = {"classes": classes, "fitted_on": table, "images": len(probs), **fit}
    write_json(record, Path(run_dir) / THRESHOLDS_FILE)
    return record


def read_thresholds(run_dir: Path, classes: list[str]) -> Optional[list[float]]:
    """The thresholds `run_dir` stores for `classes`, or None when it has none."""
    return read_fitted(run_dir, THRESHOLDS_FILE, classes, "thresholds", "tags")


def prediction_thresholds(run_dirs: list[Path], weights: list[float], metric: str, classes: list[str],
                          ensure_one: bool = True) -> tuple[list[float], str]:
    """The thresholds `comp predict` applies to the merged tag probabilities, and where they come from.

    One run: its own (thresholds.json). Several: fitted again on the runs' held-out predictions
    merged with the same weights, which needs every run to hold out the same images (k-fold runs of
    one split); otherwise refused rather than averaging thresholds that were fitted to other
    probabilities. A metric of probabilities fits none: 0.5 for every tag.
    """
    from comp.probs import tag_targets

    if not get_tag_metric(metric).thresholded:
        return [0.5] * len(classes), f"0.5 (metric {metric} fits no thresholds)"

    def refit(merged, labels):
        fit = fit_thresholds(merged.numpy(), tag_targets(labels, classes).numpy(), metric, ensure_one=ensure_one)
        return fit["thresholds"], fit["score"]

    return ensemble_post(run_dirs, weights, classes, lambda r: read_thresholds(r, classes), THRESHOLDS_FILE, "thresholds", metric, refit)
