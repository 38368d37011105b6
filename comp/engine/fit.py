"""Training on a competition: `fit(cfg, out_dir)` opens the competition, splits it and calls
`fit_split`, which k-fold training reuses per fold; both hand the split to the training loop
(`comp.engine.loop.train_run`), and once it is done write val_probs.csv of best.pt and fit the
task's post-processing on it (a temperature for log loss, per-tag thresholds for a multi-label F
metric). Per epoch the loop validates, writes metrics.csv + curves.png, best.pt on a better val
score in the competition metric (ties: lower val loss; `comp.engine.state.update_best`), last.pt
always (atomic; also mid-epoch on Ctrl-C and every `train.checkpoint_minutes`), and stops early
after `train.patience` epochs without a new best.pt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import torch

from comp.config import Config, split_seed
from comp.data.competition import Competition, Split, open_configured
from comp.data.folds import merged_labelled, train_val_split
from comp.data.loaders import make_loaders
from comp.engine import distributed as dist
from comp.engine.infer import write_val_probs
from comp.engine.loop import EpochHook, TrainingData, train_run
from comp.engine.tracking import Tracking
from comp.errors import Log

Teach = Callable[[Split, Split, Path, bool], Any]  # (train, val, run folder, resume) -> Teaching (comp.teach.plan.Planner)


def fit(
    cfg: Config, out_dir: Path, *, resume: bool = False, overwrite: bool = False, log: Log = print, resume_command: Optional[str] = None,
    on_epoch: Optional[EpochHook] = None, teach: Optional[Teach] = None, on_accept: Optional[Callable[[], None]] = None,
) -> dict[str, Any]:
    """Train `cfg` on the competition in `cfg.data.dir`, writing the run directory `out_dir`.

    Args:
        cfg: validated config; `cfg.data.dir` must be set.
        out_dir: run directory (config.yaml, best.pt, last.pt, metrics.csv, ...; docs/training.md).
        resume: continue from `out_dir/last.pt`; a finished run is left as it is.
        overwrite: replace the run in `out_dir`: every file of it is removed first.
        log: where progress lines go.
        resume_command: the command a Ctrl-C prints to continue (default `comp train CONFIG --resume --out OUT`).
        on_epoch: called after every epoch is recorded (e.g. `comp tune`'s pruner); True ends the run
            there, as early stopping does (`summary.json` says `stopped_by`).
        teach: a second round's planner (`comp.teach.plan.Planner`): `teach(train, val, out_dir, resume)`
            gives the run's `Teaching` (its packed targets and extra images).
        on_accept: runs once every check has passed, before the run writes its first file (`fit_split`).

    Returns:
        The summary dict also written to summary.json.
    """
    competition = open_configured(cfg.data)
    if cfg.data.train_on_val:
        train, val = merged_labelled(competition), Split([], [])
    else:
        train, val = train_val_split(competition, cfg.data.val_fraction, split_seed(cfg))
    return fit_split(cfg, competition, train, val, Path(out_dir), resume=resume, overwrite=overwrite, log=log,
                     resume_command=resume_command, on_epoch=on_epoch, teach=teach, on_accept=on_accept)


def fit_split(
    cfg: Config,
    competition: Competition,
    train: Split,
    val: Split,
    out_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Log = print,
    on_accept: Optional[Callable[[], None]] = None,
    resume_command: Optional[str] = None,
    on_epoch: Optional[EpochHook] = None,
    tracking_parent: Optional[Tracking] = None,
    teach: Optional[Teach] = None,
) -> dict[str, Any]:
    """Train on `train`, select on `val` (splits of `competition`), write the run directory. See `fit`.

    `on_accept()` runs once every check has passed, just before the run writes its first file
    (k-fold training writes the folder's config.yaml there). `tracking_parent`: the k-fold run's
    tracking, under which a fold's tracked run is nested.
    """
    check_submission(cfg, competition)
    pool = merged_labelled(competition).paths  # every labelled image: the cache training and val_probs.csv share
    teaching = teach(train, val, out_dir, resume) if teach is not None else None
    data = TrainingData(
        classes=competition.classes,
        n_train=len(train),
        n_val=len(val),
        train_split=train,
        task=competition.task,
        make_loaders=lambda c, dcfg, device, progress: make_loaders(
            c, dcfg, train, val, device, pool=pool, progress=progress, rank=dist.rank(),
            world=dist.world_size(), task=competition.task, teaching=teaching,
        ),
        skipped=list(competition.skipped),
        source=str(competition.root),
        after=(lambda run, device, c: _held_out_outputs(run, val, competition, device, c, pool)) if len(val) else None,
        teaching=teaching,
    )
    return train_run(cfg, data, out_dir, resume=resume, overwrite=overwrite, log=log, on_accept=on_accept, resume_command=resume_command,
                     on_epoch=on_epoch, tracking_parent=tracking_parent)


def check_submission(cfg: Config, competition: Competition) -> None:
    """Refuse now, before training, a metric the competition's sample submission cannot hold.

    `comp predict` resolves the prediction's shape from the sample and the metric; a metric that
    cannot fill it (log loss with one label column on ten classes, map@3 with a class named
    `Ankle boot`) would otherwise be found only after the last epoch. Without a sample (or with
    a broken one, which predict reports) there is nothing to check yet.
    """
    if competition.submission.sample is not None:
        competition.task.resolve_shape(competition.submission, competition.classes, cfg.metric, cfg.data.submission)


def _held_out_outputs(
    run: Path, val: Split, competition: Competition, device: torch.device, cfg: Config, pool: list[Path],
) -> dict[str, Any]:
    """After training: val_probs.csv of best.pt (its images from `pool`'s cache), then `fit_held_out` on
    it; returns the summary's `best_val_score_calibrated` / `_thresholded` (the score of what `comp
    predict` writes, recorded beside the raw one that chose the best epoch) and what was fitted."""
    write_val_probs(run, val, competition, device, cfg, pool=pool)
    fits = competition.task.fit_held_out(run, "val_probs.csv", cfg.metric, competition.classes)
    return {("best_val_" + k if k.startswith("score_") else k): v for k, v in fits.items()}
