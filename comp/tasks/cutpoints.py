"""Cut-points between grades, fitted on held-out predictions to maximise the metric (ordinal tasks).

An ordinal model predicts a continuous grade position (a regression on the grade index, or CORN's
expected grade); grade k is written for a value between cut-point k - 1 and cut-point k. Plain
rounding puts the cuts at 0.5, 1.5, ...; the APTOS 2019 kernels' "OptimizedRounder" moved them to
maximise kappa on out-of-fold predictions, because a regression on imbalanced grades is pulled
towards the common grade and kappa punishes that pull quadratically.

`fit_cutpoints` is a deterministic coordinate search (no Nelder-Mead: the metric is piecewise
constant in the cuts, where simplex steps stall): from two starts (rounding, and the midpoints of
the per-grade mean predictions) each cut in turn tries a grid between its neighbours and keeps the
best value (a tie keeps the current one, so a flat metric never moves a cut); passes repeat until
none moves, and the better start wins.

Fitted on a few hundred held-out images (a 10% hold-out, with graders' noise in its labels) those
cuts chase the noise: on `benchmarks/graded.py` they scored up to 0.013 kappa below rounding on
the test images. So the cuts are bagged: the search runs on `BOOTSTRAPS` resamples of the held-out
images (fixed seed) and each cut is the median of its resampled fits, which keeps a cut near
rounding unless most resamples agree it should move. Where the bagged cuts score below rounding on
the held-out images, rounding is kept: the result is never worse than rounding there. Stored with
the run as `cutpoints.json` and applied by `comp predict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from comp.errors import UserError
from comp.tasks.held_out import ensemble_post, read_fitted
from comp.tasks.value_metrics import get_grade_metric

CUTPOINTS_FILE = "cutpoints.json"
STEPS = 24  # grid points per cut and pass
PASSES = 3
BOOTSTRAPS = 16  # resamples whose fits are bagged (median per cut)


def rounding_cuts(grades: int) -> np.ndarray:
    """(K - 1,) cut-points of plain rounding: 0.5, 1.5, ..., K - 1.5."""
    return np.arange(grades - 1, dtype=np.float64) + 0.5


def cut(values: np.ndarray, cuts: Sequence[float]) -> np.ndarray:
    """(N,) continuous grade positions -> (N,) grade indices: how many cut-points are <= each value."""
    return np.searchsorted(np.asarray(cuts, dtype=np.float64), np.asarray(values, dtype=np.float64), side="right")


def grade_values(classes: Sequence[str]) -> np.ndarray:
    """(K,) the grades' numbers (the class names are integers)."""
    return np.array([int(c) for c in classes], dtype=np.float64)


def score_cut(metric: str, values: np.ndarray, targets: np.ndarray, classes: Sequence[str], cuts: Optional[Sequence[float]] = None) -> float:
    """`metric` of (N,) continuous predictions cut at `cuts` (default: rounding) against (N,) grade indices."""
    if len(targets) == 0:
        return float("nan")
    m = get_grade_metric(metric)
    cuts = rounding_cuts(len(classes)) if cuts is None else cuts
    return float(m.fn(cut(values, cuts), np.asarray(targets, dtype=np.int64), grade_values(classes)))


def fit_cutpoints(values: np.ndarray, targets: np.ndarray, metric: str, classes: Sequence[str]) -> dict[str, Any]:
    """Cut-points maximising (or, for mae, minimising) `metric` on (N,) held-out `values` against (N,) grade indices.

    Returns:
        {"metric", "cuts": (K - 1,) list, "bootstraps", "score_at_rounding", "score"} (scores on all of `values`).
    """
    m = get_grade_metric(metric)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    y = np.asarray(targets, dtype=np.int64)
    k = len(classes)
    if not len(v) or len(v) != len(y):
        raise UserError(f"cut-points: {len(v)} predictions for {len(y)} grades; fit them on held-out predictions")
    grades = grade_values(classes)

    def value(c: np.ndarray) -> float:  # sklearn's, for the scores reported
        return float(m.fn(cut(v, c), y, grades))

    rounding = rounding_cuts(k)
    rng = np.random.default_rng(0)
    fits = [_search(v[idx], y[idx], k, m, grades) for idx in (rng.integers(0, len(v), len(v)) for _ in range(BOOTSTRAPS))]
    bagged = np.maximum.accumulate(np.median(np.array(fits), axis=0))
    at_rounding, score = value(rounding), value(bagged)
    if m.better(at_rounding, score):  # never worse than rounding on the images it was fitted on
        bagged, score = rounding, at_rounding
    return {"metric": m.name, "cuts": [float(x) for x in bagged], "bootstraps": BOOTSTRAPS, "score_at_rounding": at_rounding,
            "score": score}


def _search(v: np.ndarray, y: np.ndarray, k: int, m, grades: np.ndarray) -> np.ndarray:
    """The better of the coordinate searches from rounding and from the grades' mean predictions, on (v, y)."""

    def value(c: np.ndarray) -> float:  # the metric from the confusion matrix: the search's thousands of evaluations
        confusion = np.bincount(y * k + cut(v, c), minlength=k * k).reshape(k, k)
        return float(m.from_confusion(confusion, grades))

    best_cuts, best = rounding_cuts(k), None
    for init in (rounding_cuts(k), _mean_cuts(v, y, k)):
        c, s = _coordinate_search(init, v, value, m)
        if best is None or m.better(s, best):
            best_cuts, best = c, s
    return best_cuts


def _mean_cuts(v: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Midpoints between the mean predictions of consecutive grades (rounding's cut where a grade has no image)."""
    means = np.array([v[y == g].mean() if (y == g).any() else g for g in range(k)])
    mids = (means[:-1] + means[1:]) / 2
    return np.maximum.accumulate(np.where(np.isfinite(mids), mids, rounding_cuts(k)))


def _coordinate_search(cuts: np.ndarray, v: np.ndarray, value, m) -> tuple[np.ndarray, float]:
    c = np.array(cuts, dtype=np.float64)
    best = value(c)
    lo_all, hi_all = min(v.min(), c[0]) - 1.0, max(v.max(), c[-1]) + 1.0
    for _ in range(PASSES):
        moved = False
        for j in range(len(c)):
            lo = c[j - 1] if j > 0 else lo_all
            hi = c[j + 1] if j + 1 < len(c) else hi_all
            current = c[j]
            for g in np.linspace(lo, hi, STEPS + 2)[1:-1]:
                c[j] = g
                s = value(c)
                if m.better(s, best):
                    best, current, moved = s, float(g), True
            c[j] = current
        if not moved:
            break
    return c, best


def fit_run_cutpoints(run_dir: Path, metric: str, classes: Sequence[str], table: str = "val_probs.csv") -> dict[str, Any]:
    """Fit the cut-points of an ordinal run on its held-out `table` (val_probs.csv, or a k-fold run's
    oof.csv) and write them to `run_dir/cutpoints.json` with the grades; returns that record."""
    from comp.files import write_json
    from comp.probs import label_indices, read_probs

    path = Path(run_dir) / table
    _, values, _, meta = read_probs(path)
    fit = fit_cutpoints(values[:, 0].numpy(), label_indices(meta["label"], classes, path).numpy(), metric, classes)
    record = {"classes": list(classes), "fitted_on": table, "images": len(values), **fit}
    write_json(record, Path(run_dir) / CUTPOINTS_FILE)
    return record


def read_cutpoints(run_dir: Path, classes: Sequence[str]) -> Optional[list[float]]:
    """The cut-points `run_dir` stores for `classes`, or None when it has none."""
    return read_fitted(run_dir, CUTPOINTS_FILE, classes, "cuts", "grades")


def prediction_cutpoints(run_dirs: Sequence[Path], weights: Sequence[float], metric: str, classes: Sequence[str]) -> tuple[list[float], str]:
    """The cut-points `comp predict` applies to the merged continuous prediction, and where they come from:
    one run's own (cutpoints.json); several runs' fitted again on their merged held-out predictions."""
    from comp.probs import label_indices


    def refit(merged, labels):
        fit = fit_cutpoints(merged[:, 0].numpy(), label_indices(labels, classes).numpy(), metric, classes)
        return fit["cuts"], fit["score"]

    return ensemble_post(run_dirs, weights, ["grade"], lambda r: read_cutpoints(r, classes), CUTPOINTS_FILE, "cut-points", metric, refit)
