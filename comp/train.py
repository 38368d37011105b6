"""`comp train` as a plain function: config + overrides -> run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from comp.config import Config, load_config, split_seed
from comp.engine import distributed as dist
from comp.device import resolve_device
from comp.engine.fit import fit
from comp.engine.kfold import fit_folds
from comp.engine.rundir import check_not_a_fold, check_resume_changes, claim_default_run_dir, remove_if_empty, saved_config
from comp.errors import Log, UserError
from comp.models.factory import PRETRAINED_WORDS
from comp.data.competition import open_configured
from comp.teach.plan import active, planner
from comp.seeds import fit_seeds


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
    pseudo: Sequence[str] = (),
    seeds: Optional[int] = None,
    log: Log = print,
) -> dict[str, Any]:
    """Load the config, apply `--data`, `--epochs`, `--pseudo` and `--set` overrides, and train.

    With `resume`, the run in `out` continues with the config it saved (its config.yaml), so the
    run stays what it was; `--epochs` and `--set` apply on top where a running run may change
    (`comp.engine.rundir.RESUME_MAY_CHANGE`, e.g. extending the epochs or lowering the lr); any
    other change is refused before anything is written.

    With `folds` >= 2 (or `train.folds`), trains stratified K-fold (only fold `fold` if given).
    With `seeds` >= 2 (or `train.seeds`), trains the recipe once per seed into RUN/seed_<s>/
    (`comp.seeds`); `--resume` then continues the unfinished seeds.
    `pseudo` (teacher runs) sets `pseudo.from`: a second round on the test images (`comp.teach`);
    `pseudo`, `distill` and `train.oof_targets` are checked before anything is written.
    Paths in the config (`data.dir`, `data.cache_dir`, a weights file) are stored absolute, so the
    run can be used from any working directory.

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
    if pseudo:
        overrides.append(("pseudo.from", [str(Path(p)) for p in pseudo]))
    if seeds is not None:
        overrides.append(("train.seeds", seeds))
    if out is not None:
        check_not_a_fold(Path(out), str(config_path))
    if resume:
        if out is None:
            raise UserError("--resume needs --out RUN, the run directory to continue")
        saved = saved_config(Path(out))
        if saved is None:
            raise UserError(f"--resume: {Path(out) / 'config.yaml'} not found; is {out} a comp run directory?")
        cfg = absolute_paths(load_config(Path(out) / "config.yaml", overrides))
        check_resume_changes(Path(out), saved, cfg)
    else:
        cfg = absolute_paths(load_config(config_path, overrides))
    if cfg.train.folds <= 1 and fold is not None:
        raise UserError("--fold I needs --folds K (or train.folds in the config)")
    if cfg.train.seeds > 1 and fold is not None:
        raise UserError("--fold I trains one fold of one run; with --seeds N train every fold (drop --fold), or set --seeds 1")
    teach = planner(cfg, open_configured(cfg.data), log) if active(cfg) else None  # the teachers checked before any folder is claimed
    # Under torchrun: join the process group first, so that only rank 0 claims a folder, and
    # every rank uses rank 0's default run directory.
    dist.setup(resolve_device(cfg.train.device).type)
    claimed = out is None
    if claimed:
        out = dist.broadcast_object(claim_default_run_dir(config_path) if dist.is_main() else None)
    out = Path(out)
    again = f"comp train {config_path} --resume --out {out}" + (f" --fold {fold}" if fold is not None else "")  # after a Ctrl-C
    def fit_one(c: Config, d: Path, resume: bool, overwrite: bool, on_accept=None) -> dict[str, Any]:
        if c.train.folds > 1:
            return fit_folds(c, d, fold=fold, resume=resume, overwrite=overwrite, log=log, resume_command=again, teach=teach, on_accept=on_accept)
        return fit(c, d, resume=resume, overwrite=overwrite, log=log, resume_command=again, teach=teach, on_accept=on_accept)

    try:
        if cfg.train.seeds > 1:
            summary = fit_seeds(cfg, out, fit_one, resume=resume, overwrite=overwrite, log=log)
        else:
            summary = fit_one(cfg, out, resume=resume, overwrite=overwrite)
    except BaseException:
        if claimed and dist.is_main():
            remove_if_empty(out, out.parent)  # a command that failed before its first write leaves no folder
        raise
    summary["run_dir"] = str(out)
    return summary


def absolute_paths(cfg: Config) -> Config:
    """`cfg` with `data.dir`, `data.cache_dir` and a weights-file `model.pretrained` made absolute."""
    def absolute(p: Optional[str]) -> Optional[str]:
        return str(Path(p).expanduser().resolve()) if p else p

    cfg = cfg.model_copy(deep=True)
    cfg.data.dir, cfg.data.cache_dir = absolute(cfg.data.dir), absolute(cfg.data.cache_dir)
    cfg.pseudo.from_ = [absolute(p) for p in cfg.pseudo.from_]  # teachers, too, are found from any working directory
    cfg.distill.from_ = [absolute(p) for p in cfg.distill.from_]
    if cfg.train.oof_targets is not None:
        cfg.train.oof_targets.from_ = absolute(cfg.train.oof_targets.from_)
    if cfg.model.pretrained not in PRETRAINED_WORDS:
        cfg.model.pretrained = absolute(cfg.model.pretrained)
    return cfg


def lr_find(
    config_path: Path, *, data: Optional[Path] = None, out: Path = Path("lr_find.png"), steps: int = 100,
    overrides: Sequence[str] = (), log: Log = print,
) -> float:
    """`comp lr-find`: the learning-rate range test on a competition's training split.

    Builds the model and training batches exactly as `comp train` would (same config, same input
    path), runs `comp.engine.finders.lr_range_test` on a copy of the model, saves the plot to `out`
    and returns the suggested learning rate (for `optim.lr`).
    """
    from comp.data.competition import open_configured
    from comp.data.folds import merged_labelled, train_val_split
    from comp.data.loaders import make_loaders
    from comp.engine.finders import lr_range_test, plot_lr_test
    from comp.engine.optim import create_optimizer
    from comp.models.factory import build_model, data_config

    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():  # found out before the test runs, not after
        raise UserError(f"--out {out}: pass a file name in an existing folder, e.g. lr_find.png")
    overrides = list(overrides) + ([("data.dir", str(data))] if data is not None else [])
    cfg = load_config(config_path, overrides)
    competition = open_configured(cfg.data)
    train_split, val_split = train_val_split(competition, cfg.data.val_fraction, split_seed(cfg))
    device = resolve_device(cfg.train.device)
    task = competition.task.for_run(cfg.train.loss, train_split)
    model = build_model(cfg.model, task.model_outputs(competition.classes))
    dcfg = data_config(cfg.data, model)
    batches, _, _ = make_loaders(cfg, dcfg, train_split, val_split, device, pool=merged_labelled(competition).paths, task=task)
    criterion = task.loss(cfg.train, len(competition.classes))[0]  # the run's own loss (no class weights, no mixup)
    lrs, losses, lr = lr_range_test(model, batches, lambda m: create_optimizer(m, cfg.optim), criterion, device=device, steps=steps)
    plot_lr_test(lrs, losses, lr, Path(out))
    log(f"suggested lr {lr:.2e} over {len(lrs)} steps (plot: {out}); use --set optim.lr={lr:.2e}")
    return lr
