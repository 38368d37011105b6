"""Temperature scaling for probability metrics (log loss): fit on held-out predictions, apply at predict.

A run trained with label smoothing (on by default) or for few epochs gives probabilities that are
too soft or too sharp; one temperature T, fitted to minimise the log loss of the run's held-out
predictions, rescales them: p' = softmax(log p / T). T > 1 softens, T < 1 sharpens.

One temperature per run, applied to what the run predicts: `comp predict` merges a run's TTA
views and folds first (by `tta.merge`) and then applies the run's T to that one row of
probabilities per image. Rescaling one row never changes its order, so calibration never changes
which class a run predicts, its accuracy, AUC or MAP@k. (An ensemble of several runs merges the
calibrated runs; with the arithmetic mean that can move a close call between runs, as any
per-run rescaling would.)

Where T is fitted (training writes `calibration.json` when the metric is `log_loss`):
- a single run: on its validation predictions, `val_probs.csv`;
- a k-fold run: on its out-of-fold predictions, `oof.csv` (every labelled image, each predicted by
  the fold that did not train on it), written at the k-fold run's top; each `fold_i/` also has the
  T of its own validation images, used when that fold is predicted alone.
Earlier comp versions gave each fold its own T and applied it before the folds were merged, which
moved the merged argmax (test accuracy 0.29 calibrated against 0.25 raw on one run); such a run is
refused until `comp train CONFIG --resume --out RUN` (which skips the finished folds) has fitted
the run's T. The held-out predictions are of the identity view; T fitted on merged TTA views
would be more exact for a TTA submission (not done: views are chosen at predict time).
`--no-calibrate` skips it everywhere.

A multi-label run (per-tag sigmoid probabilities, metric `log_loss`: the mean column-wise binary log
loss) gets one temperature on the logits of every tag, p' = sigmoid(logit(p) / T), fitted the same
way; calibration.json then says `"kind": "sigmoid"`. It never changes a tag's ranking, so AUC and AP
are unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch

from comp.errors import UserError
from comp.files import read_json

FILE = "calibration.json"
EPS = 1e-12


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true class: (N, C) probabilities, (N,) labels (float64 sums)."""
    return -probs.double().gather(1, labels.view(-1, 1)).clamp_min(EPS).log().mean().item()


def apply_temperature(probs: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """(..., C) probabilities rescaled by `temperature` (1 = unchanged; a tensor broadcasts, e.g. (1, N, 1))."""
    if not isinstance(temperature, torch.Tensor) and temperature == 1.0:
        return probs
    return torch.softmax(probs.double().clamp_min(EPS).log() / temperature, dim=-1).to(probs.dtype)


def fit_temperature(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature in [0.05, 20] that minimises the log loss of (N, C) `probs` against (N,) `labels`.

    A bounded 1-D search on log T (scipy's Brent method): the log loss is smooth in T and has one
    minimum, so this is exact to ~1e-5 in a few dozen evaluations.
    """
    from scipy.optimize import minimize_scalar

    logp = probs.double().clamp_min(EPS).log()

    def loss(log_t: float) -> float:
        return nll(torch.softmax(logp / math.exp(log_t), dim=1), labels)

    result = minimize_scalar(loss, bounds=(math.log(0.05), math.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(result.x))


def apply_tag_temperature(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """(..., C) per-tag probabilities rescaled on their logits: sigmoid(logit(p) / T) (1 = unchanged)."""
    if temperature == 1.0:
        return probs
    p = probs.double().clamp(EPS, 1 - EPS)
    return torch.sigmoid(torch.log(p / (1 - p)) / temperature).to(probs.dtype)


def fit_tag_temperature(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature in [0.05, 20] that minimises the mean per-tag binary log loss of (N, C) `probs`
    against (N, C) 0/1 `targets` (bounded Brent search on log T, as `fit_temperature`)."""
    from scipy.optimize import minimize_scalar

    y = targets.double()

    def loss(log_t: float) -> float:
        q = apply_tag_temperature(probs.double(), math.exp(log_t)).clamp(EPS, 1 - EPS)
        return float(-(y * q.log() + (1 - y) * (1 - q).log()).mean())

    result = minimize_scalar(loss, bounds=(math.log(0.05), math.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(result.x))


def calibrate_run(run_dir: Path, table: str, task) -> Optional[dict]:
    """Fit the temperature of a run on its held-out `table` (val_probs.csv, or oof.csv of a k-fold run)
    and write calibration.json; None when the table is missing. `task` (`comp.tasks.Task`) reads the
    labels and says which temperature: a softmax one, or a sigmoid one (`"kind": "sigmoid"`).

    Returns:
        What calibration.json holds, {"temperature", "fitted_on", "images", "val_log_loss" (before),
        "val_log_loss_calibrated"}, and "score_calibrated": the task's log loss of the calibrated
        table, as it scores every metric (the run's calibrated score in summary.json and cv.json).
    """
    from comp.files import write_json
    from comp.probs import read_probs

    path = Path(run_dir) / table
    if not path.is_file():
        return None
    _, probs, classes, meta = read_probs(path)
    y = task.targets(meta["label"], classes, path)
    t = task.fit_temperature(probs, y)
    calibrated = task.apply_temperature(probs, t)
    kind = {"kind": task.temperature_kind} if task.temperature_kind else {}
    info = {**kind, "temperature": t, "fitted_on": table, "images": len(y), "val_log_loss": task.log_loss(probs, y),
            "val_log_loss_calibrated": task.log_loss(calibrated, y)}
    write_json(info, Path(run_dir) / FILE)
    return {**info, "score_calibrated": task.score("log_loss", calibrated, y, classes)}


def run_temperature(run: Path) -> float:
    """The temperature of what `run` predicts (1.0 when it has none): a run's or a k-fold run's calibration.json.

    Raises:
        UserError: a k-fold run whose folds carry temperatures of an older comp but which has no
            temperature of its own (its folds were calibrated one by one; see the module docstring).
    """
    run = Path(run)
    saved = read_json(run / FILE)
    if saved is None:
        if any((fold / FILE).is_file() for fold in run.glob("fold_*")):
            raise UserError(
                f"{run}: its folds were calibrated one by one (an older comp), which moves the merged prediction; fit the run's "
                f"temperature on oof.csv with comp train CONFIG --resume --out {run} (finished folds are skipped), or pass --no-calibrate"
            )
        return 1.0
    try:
        return float(saved.get("temperature", 1.0))
    except (TypeError, ValueError):
        return 1.0
