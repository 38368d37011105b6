"""Run directories: where a run goes, what may be written into one, and in what state it is.

Rules, so that every file a run leaves describes that run:
- a new run goes into an empty or new folder; the default `runs/<config>-<time>` is claimed
  atomically (two runs started in the same second get `-2`, `-3`, ... instead of colliding);
- `--overwrite` removes everything of the old run (single or k-fold) before the new one writes,
  and refuses a folder holding files comp did not write, rather than delete them;
- `--resume` may change only the keys in `RESUME_MAY_CHANGE` (they then take effect); a k-fold
  folder's folds must share one recipe, so there only `ENVIRONMENT_KEYS` may differ;
- nothing is written before these checks pass.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from comp.config import Config, config_from_dict
from comp.tasks import TASKS
from comp.errors import UserError

# Everything a run or a k-fold run writes into its folder (fold_*/ hold runs of their own).
RUN_FILES = frozenset({
    "config.yaml", "seeds.json", "best.pt", "last.pt", "metrics.csv", "curves.png", "summary.json", "val_probs.csv",
    "skipped_files.txt", "oof.csv", "cv.json", ".best.pt.tmp", ".last.pt.tmp", "lr_find.png", "calibration.json", "thresholds.json", "cutpoints.json", "teacher_targets.csv",
    "tracking.json", "wandb",  # experiment tracking (comp.engine.tracking); TensorBoard's event files: is_run_file
})


def is_run_file(name: str) -> bool:
    """Whether a file or folder named `name` in a run directory is one comp writes."""
    return name in RUN_FILES or name.startswith("events.out.tfevents.")

# A packaged model (comp package): weights as safetensors, classes and config in its metadata.
WEIGHTS_FILE = "model.safetensors"

# Keys that describe the machine, not the recipe: they may differ between folds and on resume
# (`data.dir`: where the same competition lies on this machine; folds can train on several).
ENVIRONMENT_KEYS = ("data.dir", "data.workers", "data.cache", "data.cache_dir", "data.cache_max_gb", "train.threads", "train.device",
                    "train.checkpoint_minutes", "tune.", "track")  # tune.*: how a search is run, no part of the trained recipe

# What `--resume` of a single run may change; each takes effect from the resume point. Extending
# `train.epochs` re-plans the schedule for the new length (see `comp.engine.fit`). Everything else
# (model, data split, batch size, seed, optimizer type, EMA on/off, ...) would make the run a
# different run and is refused.
RESUME_MAY_CHANGE = ENVIRONMENT_KEYS + (
    "data.submission",  # the prediction CSV's shape: nothing of training (training checks it fits the sample)
    "train.epochs", "train.patience", "train.label_smoothing", "train.mixup", "train.cutmix",
    "train.mix_prob", "train.grad_clip", "train.ema_decay", "train.amp", "train.channels_last", "train.compile",
    "optim.lr", "optim.weight_decay", "optim.momentum", "sched.", "aug.", "tta.",
)


def claim_default_run_dir(config_path: Path, root: Path = Path("runs")) -> Path:
    """Create and return a new empty `runs/<config name>-<local time>[-N]` folder.

    `os.mkdir` is atomic, so two runs started in the same second never share a folder.
    """
    root.mkdir(parents=True, exist_ok=True)
    base = root / f"{Path(config_path).stem}-{datetime.now():%Y%m%d-%H%M%S}"
    for n in range(1, 1000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
    raise UserError(f"could not create a new run folder next to {base}; pass --out")


def remove_if_empty(*paths: Path) -> None:
    """Remove each of `paths` that is an empty folder (a claimed run folder whose command failed)."""
    for path in paths:
        try:
            Path(path).rmdir()
        except OSError:
            pass


def foreign_files(out_dir: Path) -> list[str]:
    """Files and folders in `out_dir` that no comp run writes (relative names)."""
    found = []
    for p in sorted(Path(out_dir).iterdir()):
        if p.name.startswith(("fold_", "seed_")) and p.is_dir():
            found += [f"{p.name}/{q}" for q in foreign_files(p)]
        elif not is_run_file(p.name):
            found.append(p.name)
    return found


def check_new_run_dir(out_dir: Path, overwrite: bool) -> None:
    """Accept `out_dir` for a new run: empty or new, or (with `overwrite`) holding only a comp run."""
    out_dir = Path(out_dir)
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise UserError(f"run directory {out_dir} already holds a run; use --resume, --overwrite or a new --out")
    if not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; pass a folder")
    foreign = foreign_files(out_dir)
    if foreign:
        raise UserError(
            f"--overwrite: {out_dir} holds files comp did not write ({', '.join(foreign[:3])}); move them away or use a new --out"
        )


def clear_run_dir(out_dir: Path, keep: str = "") -> None:
    """Remove every file of an old run in `out_dir` but `keep` (checked by `check_new_run_dir` first)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    for p in out_dir.iterdir():
        if p.name == keep:
            continue
        if p.is_dir() and p.name.startswith(("fold_", "seed_")):
            shutil.rmtree(p)
        elif p.name == "wandb" and p.is_dir():
            shutil.rmtree(p)
        elif is_run_file(p.name):
            p.unlink()


def saved_config(run_dir: Path) -> Optional[Config]:
    """The config.yaml of `run_dir` as a `Config`, or None when there is none."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    return config_from_dict(yaml.safe_load(path.read_text()) or {}, str(path))


def seed_runs(run: Path) -> list[Path]:
    """The seed folders `RUN/seed_<s>` of a run of several seeds (`comp train --seeds N`), in seed
    order, started or not; [] for any other run."""
    cfg = saved_config(run)
    if cfg is None or cfg.train.seeds <= 1:
        return []
    return [Path(run) / f"seed_{cfg.train.seed + i}" for i in range(cfg.train.seeds)]


def resolved_config(run: Path) -> Optional[Config]:
    """The config a run trained with: a run of seeds' first seed's, a k-fold run's first fold's (the
    top one leaves the backbone's image size, mean, std and crop unresolved), else the run's own;
    None without one."""
    seeds = seed_runs(run)
    if seeds:
        return resolved_config(seeds[0])
    first = sorted(Path(run).glob("fold_*/config.yaml"))
    return saved_config(first[0].parent) if first else saved_config(run)


def flat(cfg: Config) -> dict[str, Any]:
    """The config as {"section.key": value} (JSON values)."""
    out: dict[str, Any] = {}
    for s, section in cfg.model_dump(mode="json", by_alias=True).items():
        if isinstance(section, dict):
            out.update({f"{s}.{k}": v for k, v in section.items()})
        else:  # a top-level key such as `metric`
            out[s] = section
    return out


def config_changes(old: Config, new: Config, allowed: tuple[str, ...] = ()) -> list[str]:
    """Keys whose value differs between `old` and `new` and that are not `allowed`, as 'key a -> b'.

    An allowed entry ending in "." allows a whole section (e.g. "aug."). Keys the run resolved
    from the backbone (image size, mean, std, crop) count as unchanged when `new` leaves them unset,
    and `data.task` (resolved from the data) when `new` leaves it at auto.
    """
    a, b = flat(old), flat(new)
    changed = []
    for key in a:
        if a[key] == b[key] or any(key == k or (k.endswith(".") and key.startswith(k)) for k in allowed):
            continue
        if key in ("data.image_size", "data.mean", "data.std", "data.crop_pct") and b[key] is None:
            continue
        if key == "data.task" and b[key] == "auto":  # the run resolved it from the data
            continue
        changed.append(f"{key} {a[key]!r} -> {b[key]!r}")
    return changed


def check_resume_changes(run_dir: Path, old: Config, new: Config) -> None:
    """Refuse a `--resume` that changes what `RESUME_MAY_CHANGE` does not allow."""
    changed = config_changes(old, new, RESUME_MAY_CHANGE)
    if changed:
        raise UserError(
            f"--resume {run_dir}: {'; '.join(changed[:3])} cannot change in a run that has started "
            "(epochs, lr, weight decay, schedule, augmentation and regularization can); start a new run with --out"
        )


def check_fold_folder(out_dir: Path, cfg: Config) -> None:
    """Folds written into one folder must share folds, seed and recipe: refuse any difference."""
    out_dir = Path(out_dir)
    old = saved_config(out_dir)
    if old is None:
        if out_dir.is_dir() and any(p.name in ("best.pt", "last.pt", "summary.json") for p in out_dir.iterdir()):
            raise UserError(f"{out_dir} holds a single run, not k folds; use a new --out for a k-fold run")
        return
    if old.train.folds <= 1:
        raise UserError(f"{out_dir} holds a single run, not k folds; use a new --out for a k-fold run")
    if old.data.task not in TASKS:  # auto: written by an older comp, before the k-fold run recorded the task its folds resolved
        old.data.task = cfg.data.task
    changed = config_changes(old, cfg, ENVIRONMENT_KEYS)
    if changed:
        raise UserError(
            f"{out_dir} holds folds of another recipe ({'; '.join(changed[:3])}); the folds of one folder must share "
            "folds, seed and recipe: use the same config and --set values, or a new --out"
        )


def fold_of(run_dir: Path) -> Optional[tuple[Path, int]]:
    """(the k-fold run, i) when `run_dir` is its `fold_i/`, else None.

    A fold is known by its name and by the k-fold config saved in it or above it (a fold's own
    config.yaml is the k-fold run's, with `train.folds` > 1).
    """
    run_dir = Path(run_dir)
    m = re.fullmatch(r"fold_(\d+)", run_dir.name)
    if m is None:
        return None
    for cfg in (saved_config(run_dir.parent), saved_config(run_dir)):
        if cfg is not None and cfg.train.folds > 1:
            return run_dir.parent, int(m.group(1))
    return None


def resume_command(run_dir: Path, config: str = "CONFIG") -> str:
    """The command that continues `run_dir`: for a fold, its k-fold run with `--fold I` (never the fold folder itself)."""
    fold = fold_of(run_dir)
    if fold is not None:
        return f"comp train {config} --resume --out {fold[0]} --fold {fold[1]}"
    return f"comp train {config} --resume --out {run_dir}"


def check_not_a_fold(out_dir: Path, config: str = "CONFIG") -> None:
    """Refuse `--out RUN/fold_i` for a command of its own: it would train a new run (or k folds) inside a fold."""
    fold = fold_of(out_dir)
    if fold is not None:
        run, i = fold
        raise UserError(
            f"{out_dir} is fold {i} of the k-fold run {run}; continue that run with comp train {config} --resume --out {run} "
            f"(add --fold {i} for this fold alone), or give a new --out"
        )


def run_state(run_dir: Path) -> tuple[bool, str]:
    """(finished, words) for a single run directory: finished once summary.json is written.

    The words say where an unfinished run stands, e.g. "interrupted after epoch 2 of 5".
    """
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file():
        return True, "finished"
    if not (run_dir / "last.pt").is_file():
        return False, "not started"
    from comp.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run_dir / "last.pt")
    epochs = ckpt.get("config", {}).get("train", {}).get("epochs", "?")
    return False, f"interrupted after epoch {int(ckpt['state']['epoch']) + 1} of {epochs}"


def seed_state(run: Path) -> tuple[bool, str]:
    """(finished, words) of one seed's run: a single run's `run_state`, or how many of a k-fold run's folds are finished."""
    run = Path(run)
    cfg = saved_config(run)
    if cfg is not None and cfg.train.folds > 1:
        done = sum(run_state(run / f"fold_{i}")[0] for i in range(cfg.train.folds))
        return done == cfg.train.folds and (run / "cv.json").is_file(), f"{done}/{cfg.train.folds} folds"
    return run_state(run)


def require_finished(run: Path) -> None:
    """Refuse to use an unfinished run, or a k-fold run with any unfinished or missing fold.

    The message gives the state of each fold and the two ways on: resume it, or pass the finished
    folds' directories explicitly.
    """
    run = Path(run)
    if (run / "best.pt").is_file() or (run / "last.pt").is_file() or (run / WEIGHTS_FILE).is_file():  # a run or one fold
        ok, words = run_state(run)
        if not ok:
            raise UserError(f"{run} is an unfinished run ({words}); finish it with {resume_command(run)}")
        return
    seeds = seed_runs(run)
    if seeds:
        states = [(d, *seed_state(d)) for d in seeds]
        if all(ok for _, ok, _ in states) and (run / "seeds.json").is_file():
            return
        listing = ", ".join(f"{d.name} {words}" for d, _, words in states)
        raise UserError(f"{run} is an unfinished {len(seeds)}-seed run ({listing}); finish it with comp train CONFIG --resume --out {run}")
    cfg = saved_config(run)
    if cfg is None or cfg.train.folds <= 1:
        return
    states = [(i, *run_state(run / f"fold_{i}")) for i in range(cfg.train.folds)]
    if all(ok for _, ok, _ in states):
        return
    listing = ", ".join(f"fold {i} {words}" for i, _, words in states)
    done = [str(run / f"fold_{i}") for i, ok, _ in states if ok]
    alt = f", or pass the finished folds alone ({' '.join(done)})" if done else ""
    raise UserError(
        f"{run} is an unfinished {cfg.train.folds}-fold run ({listing}); finish it with "
        f"comp train CONFIG --resume --out {run}{alt}"
    )
