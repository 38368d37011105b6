"""`comp train` as a plain function: config + overrides -> run directory."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

from comp.config import load_config
from comp.engine.fit import Log, fit
from comp.engine.kfold import fit_folds
from comp.errors import UserError


def default_run_dir(config_path: Path) -> Path:
    """runs/<config name>-<local time>, e.g. runs/demo-20261124-101500."""
    return Path("runs") / f"{Path(config_path).stem}-{datetime.now():%Y%m%d-%H%M%S}"


def train(
    config_path: Path,
    *,
    data: Optional[Path] = None,
    out: Optional[Path] = None,
    epochs: Optional[int] = None,
    folds: Optional[int] = None,
    fold: Optional[int] = None,
    resume: bool = False,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    log: Log = print,
) -> dict[str, Any]:
    """Load the config, apply `--data`, `--epochs` and `--set` overrides, and train.

    With `resume`, the run in `out` continues with the config it saved (its config.yaml), so the
    run stays what it was; `--epochs` and `--set` still apply on top, e.g. to extend a run.

    With `folds` >= 2 (or `train.folds`), trains stratified K-fold (only fold `fold` if given).

    Returns:
        The run's summary (summary.json, or cv.json for k-fold); `summary["run_dir"]` is where it went.
    """
    overrides: list = list(overrides)
    if data is not None:
        overrides.append(("data.dir", str(data)))
    if epochs is not None:
        overrides.append(("train.epochs", epochs))
    if folds is not None:
        overrides.append(("train.folds", folds))
    if resume:
        if out is None:
            raise UserError("--resume needs --out RUN, the run directory to continue")
        saved = Path(out) / "config.yaml"
        if not saved.is_file():
            raise UserError(f"--resume: {saved} not found; is {out} a comp run directory?")
        cfg = load_config(saved, overrides)
    else:
        cfg = load_config(config_path, overrides)
    out = Path(out) if out is not None else default_run_dir(config_path)
    if cfg.train.folds > 1:
        summary = fit_folds(cfg, out, fold=fold, resume=resume, overwrite=overwrite, log=log)
    elif fold is not None:
        raise UserError("--fold I needs --folds K (or train.folds in the config)")
    else:
        summary = fit(cfg, out, resume=resume, overwrite=overwrite, log=log)
    summary["run_dir"] = str(out)
    return summary
