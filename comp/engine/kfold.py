"""K-fold training: one `fit_split` run per stratified fold, then out-of-fold scores.

A k-fold run directory holds `fold_0/ ... fold_{K-1}/` (each a complete run directory),
`config.yaml`, `oof.csv` (every labelled image predicted by the fold that did not train on it),
`cv.json` (`metric`, `cv_score`, `cv_acc`, per-fold scores; for log loss also `cv_score_calibrated`
and `temperature`) and, for log loss, `calibration.json`: the run's one temperature, fitted on
oof.csv (`comp.tasks.calibration`). `--fold I` trains one fold into the same folder, so folds can run on
different machines; oof.csv, cv.json and calibration.json cover the folds finished so far, and
`--resume` of a finished run (every fold skipped) writes them again, e.g. after copying in folds
trained elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from comp.config import Config, save_config, split_seed
from comp.data.competition import open_configured
from comp.data.folds import merged_labelled, split_kfold
from comp.engine import distributed as dist
from comp.engine.fit import check_submission, fit_split
from comp.engine.logbook import acc_text
from comp.engine.tracking import Tracking, experiment_name, tracked_params
from comp.engine.rundir import check_fold_folder, check_new_run_dir, clear_run_dir, saved_config
from comp.files import write_json
from comp.errors import Log, UserError
from comp.probs import read_probs, write_probs
from comp.tasks import Task, tracked_keys


def fit_folds(
    cfg: Config, out_dir: Path, *, fold: Optional[int] = None, resume: bool = False, overwrite: bool = False, log: Log = print,
    resume_command: Optional[str] = None, after_fold: Optional[Callable[[int, dict[str, Any]], bool]] = None, teach=None,
    on_accept: Optional[Callable[[], None]] = None,
) -> dict[str, Any]:
    """Train `cfg.train.folds` folds (or only `fold`) and write oof.csv and cv.json.

    `teach`: a second round's planner (see `comp.engine.fit.fit`); every fold's split is checked
    against it (a teacher leaking into a fold's validation images) before the first fold trains.

    `after_fold(i, fold summary)` runs after each fold trains; True stops before the next fold
    (`comp tune`'s pruner: cv.json then covers the folds done, as with `--fold I`).
    `on_accept()` runs once the first fold's checks have passed, before the k-fold run writes its first file.

    `resume_command` is what a Ctrl-C tells the user to run: the k-fold run's folder (with
    `--fold I` when only one fold was asked for), never a fold's own folder.

    Returns:
        The cv.json content: {"cv_acc", "fold_acc", "folds", "folds_done", "images"}.
    """
    k = cfg.train.folds
    if fold is not None and not 0 <= fold < k:
        raise UserError(f"--fold {fold} is outside 0..{k - 1} for --folds {k}")
    competition = open_configured(cfg.data)
    check_submission(cfg, competition)
    data = merged_labelled(competition)
    counts = competition.task.counts(data, competition.classes)
    small = [f"{competition.classes[c]} ({n})" for c, n in enumerate(counts) if n < k]
    if small:
        log(f"note: {len(small)} {competition.task.what} have fewer images than {k} folds and are validated in fewer folds: "
            f"{', '.join(small[:5])}")
    splits = split_kfold(competition, data, k, split_seed(cfg))
    if teach is not None:
        for i in [fold] if fold is not None else range(k):
            teach.check(data.subset(splits[i][0]), data.subset(splits[i][1]))
    cfg = cfg.model_copy(deep=True)
    cfg.data.task = competition.task.name  # the k-fold run's config.yaml records the task its folds resolved
    out_dir = Path(out_dir)
    resume_command = resume_command or f"comp train CONFIG --resume --out {out_dir}" + (f" --fold {fold}" if fold is not None else "")
    whole = fold is None and not resume  # a new k-fold run over the whole folder
    if dist.is_main():
        if whole:
            check_new_run_dir(out_dir, overwrite)
        else:
            check_fold_folder(out_dir, cfg)
    written = saved_config(out_dir) is not None and not (whole and overwrite)
    # The k-fold run is one tracked run, its folds nested in it; it opens with the first fold that starts.
    tracking = Tracking(cfg.track if dist.is_main() else [], log)
    tracking.defer(out_dir, tracked_params(cfg), experiment_name(competition.root), resume=not whole)
    try:
        cv = _train_folds(cfg, competition, data, splits, out_dir, fold, resume, overwrite, whole, written, log, resume_command,
                          after_fold, tracking, teach, on_accept)
    except BaseException as e:
        tracking.abort(e)
        raise
    if cv:
        tracking.start_once()
        tracking.log_metrics({k: cv.get(k) for k in tracked_keys(["cv_score", "cv_acc"]) if k in cv}, cv["folds_done"])
        tracking.finish(cv, [out_dir / "cv.json", out_dir / "config.yaml"])
    return cv


def _train_folds(cfg: Config, competition, data, splits, out_dir: Path, fold: Optional[int], resume: bool, overwrite: bool, whole: bool,
                 written: bool, log: Log, resume_command: str, after_fold, tracking: Tracking, teach=None, on_accept=None) -> dict[str, Any]:
    """The folds of `fit_folds`, then oof.csv and cv.json (an empty dict on ranks other than 0)."""
    k = cfg.train.folds

    def accepted() -> None:
        # Called by the first fold once its own checks have passed, before it writes anything.
        nonlocal written, on_accept
        if on_accept is not None:
            on_accept()
            on_accept = None
        if written or not dist.is_main():
            return
        if whole:
            clear_run_dir(out_dir, keep="fold_0")  # fold 0, the caller, has just cleared and started its own folder
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        written = True

    for i in [fold] if fold is not None else range(k):
        fold_dir = out_dir / f"fold_{i}"
        if resume and _finished(fold_dir, cfg):
            log(f"fold {i}: finished earlier, skipped")
            continue
        train_idx, val_idx = splits[i]
        log(f"fold {i + 1}/{k}: {len(train_idx)} train / {len(val_idx)} val images")
        started = (fold_dir / "last.pt").is_file()
        summary = fit_split(  # a fold killed before its first checkpoint has nothing to lose: start it again
            cfg, competition, data.subset(train_idx), data.subset(val_idx), fold_dir,
            resume=resume and started, overwrite=overwrite or (resume and not started),
            log=log, on_accept=accepted, resume_command=resume_command, tracking_parent=tracking, teach=teach,
        )
        tracking.log_metrics({"fold_score": summary.get("best_val_score"), "fold_acc": summary.get("best_val_acc")}, i)
        if after_fold is not None and after_fold(i, summary):
            break
    if not dist.is_main():
        return {}
    cv = collect_oof(out_dir, competition.classes, k, cfg.metric, competition.task)
    _print_table(cv, log)
    return cv


def _finished(fold_dir: Path, cfg: Config) -> bool:
    """A fold whose summary says it ran all epochs or stopped early."""
    summary = fold_dir / "summary.json"
    if not summary.is_file():
        return False
    s = json.loads(summary.read_text())
    return s.get("epochs_run", 0) >= cfg.train.epochs or bool(s.get("stopped_early"))


def collect_oof(out_dir: Path, classes: list[str], k: int, metric: str, task: Task) -> dict[str, Any]:
    """Gather fold_*/val_probs.csv into oof.csv and score it (accuracy and `metric`, as `task` scores
    them: before any post-processing) into cv.json; then the task's post-processing is fitted on
    oof.csv (a temperature for log loss, `cv_score_calibrated`; per-tag thresholds for a multi-label
    F metric, `thresholds.json` and `cv_score_thresholded`).
    """
    def targets_of(labels, source=None):
        return task.targets(labels, classes, source)

    ids, probs, labels, folds, fold_acc, fold_score = [], [], [], [], {}, {}
    for i in range(k):
        path = out_dir / f"fold_{i}" / "val_probs.csv"
        if not path.is_file():
            continue
        fids, fprobs, fclasses, meta = read_probs(path)
        if fclasses != task.columns(classes):
            raise UserError(f"{path}: classes differ from the competition's; retrain this fold")
        y = targets_of(meta["label"], path)
        fold_acc[i] = task.accuracy(fprobs, y)
        fold_score[i] = task.score(metric, fprobs, y, classes)
        ids += fids
        probs.append(fprobs)
        labels += meta["label"]
        folds += [i] * len(fids)
    if not probs:
        raise UserError(f"{out_dir}: no finished fold (fold_*/val_probs.csv)")
    p = torch.cat(probs)
    write_probs(out_dir / "oof.csv", ids, p, task.columns(classes), unit=task.unit_rows, label=labels, fold=folds)
    y = targets_of(labels)
    cv = {
        "metric": metric,
        "cv_score": task.score(metric, p, y, classes),
        "cv_acc": task.accuracy(p, y),
        "fold_score": {str(i): a for i, a in fold_score.items()},
        "fold_acc": {str(i): a for i, a in fold_acc.items()},
        "folds": k,
        "folds_done": len(fold_acc),
        "images": len(ids),
    }
    # one temperature (log loss) or one set of thresholds (multi-label F metric) for the run, fitted on what its folds hold out
    fits = task.fit_held_out(out_dir, "oof.csv", metric, classes)
    cv.update({("cv_" + k if k.startswith("score_") else k): v for k, v in fits.items()})
    write_json(cv, out_dir / "cv.json")
    return cv


def _print_table(cv: dict[str, Any], log: Log) -> None:
    def acc(a: float) -> str:  # a regression has no accuracy (NaN): its column is left out
        return acc_text(a, "", "   ")

    log(f"fold  {'val_acc  ' if acc(cv['cv_acc']) else ''}val_{cv['metric']}")
    for i, a in cv["fold_acc"].items():
        log(f"{int(i):>4}  {acc(a)}{cv['fold_score'][i]:.4f}")
    done = f" ({cv['folds_done']}/{cv['folds']} folds)" if cv["folds_done"] < cv["folds"] else ""
    log(f"  cv  {acc(cv['cv_acc'])}{cv['cv_score']:.4f}  out-of-fold over {cv['images']} images{done}")
    if "cv_score_thresholded" in cv:
        log(f"  per-tag thresholds fitted on oof.csv (global {cv['thresholds_global']:.2f}): {cv['metric']} {cv['cv_score_thresholded']:.4f}, "
            "what comp predict writes")
    if "cv_score_cut" in cv:
        log(f"  cut-points fitted on oof.csv ({', '.join(f'{c:.3g}' for c in cv['cutpoints'])}): {cv['metric']} {cv['cv_score_cut']:.4f} "
            f"({cv['cv_score']:.4f} at rounding), what comp predict writes")
    if "cv_score_calibrated" in cv:
        log(f"  calibrated (temperature {cv['temperature']:.3f} on oof.csv): {cv['metric']} {cv['cv_score_calibrated']:.4f}, what comp predict writes")
