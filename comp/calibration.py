"""Temperature scaling for probability metrics (log loss): fit on held-out predictions, apply at predict.

A run trained with label smoothing (on by default) or for few epochs gives probabilities that are
too soft or too sharp; one temperature T, fitted to minimise the log loss of the run's held-out
predictions (val, or each fold's out-of-fold part), rescales them: p' = softmax(log p / T). T > 1
softens, T < 1 sharpens; the ranking of the classes (and so accuracy, AUC, MAP@k) is unchanged.

The temperature is stored in the run directory as `calibration.json` and applied by
`comp predict` to every view of that run before views, folds and runs are merged
(`--no-calibrate` skips it). Training writes it when the metric is `log_loss`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch

from comp.ensemble import log_loss as nll
from comp.files import read_json

FILE = "calibration.json"
EPS = 1e-12


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


def calibrate_run(run_dir: Path) -> Optional[dict]:
    """Fit the temperature of a run on its val_probs.csv and write calibration.json; None without one."""
    from comp.files import write_json
    from comp.probs import label_indices, read_probs

    table = Path(run_dir) / "val_probs.csv"
    if not table.is_file():
        return None
    _, probs, classes, meta = read_probs(table)
    labels = label_indices(meta["label"], classes, table)
    t = fit_temperature(probs, labels)
    info = {
        "temperature": t,
        "fitted_on": "val_probs.csv",
        "images": len(labels),
        "val_log_loss": nll(probs, labels),
        "val_log_loss_calibrated": nll(apply_temperature(probs, t), labels),
    }
    write_json(info, Path(run_dir) / FILE)
    return info


def run_temperature(run_dir: Path) -> float:
    """The temperature stored with a run (1.0 when it has none)."""
    saved = read_json(Path(run_dir) / FILE) or {}
    try:
        return float(saved.get("temperature", 1.0))
    except (TypeError, ValueError):
        return 1.0
