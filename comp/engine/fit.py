"""The training loop: one model on one train/val split, writing a run directory.

`fit(cfg, out_dir)` opens the competition, splits it and calls `fit_split`, which k-fold training
reuses per fold. The epoch itself is `comp.engine.epoch`. Per epoch: validation, metrics.csv +
curves.png, best.pt on a better val score in the competition metric (ties: lower val loss;
`comp.engine.state.update_best`), last.pt always (atomic; also mid-epoch on Ctrl-C and every
`train.checkpoint_minutes`), early stopping after `train.patience` epochs without a new best.pt.
After the last epoch: val_probs.csv of best.pt and, for log loss, the run's temperature.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn
from timm.data import Mixup
from timm.utils import ModelEmaV3

from comp.config import Config, save_config
from comp.data.competition import Competition, Split, open_configured
from comp.data.folds import merged_labelled, train_val_split
from comp.data.loaders import make_loaders
from comp.data.sampling import epoch_seed
from comp.engine.checkpoint import (
    load_checkpoint, restore_training, seed_everything, stop_on_sigint, training_payload, weights_payload,
)
from comp.engine import distributed as dist
from comp.device import amp_dtype, resolve_device, tune_cpu_allocator
from comp.engine.epoch import EpochProgress, EpochStats, NonFiniteLoss, evaluate, train_one_epoch
from comp.engine.infer import write_val_probs
from comp.engine.logbook import LiveProgress, MetricsLog, environment, plot_curves
from comp.engine.rundir import check_new_run_dir, clear_run_dir
from comp.engine.state import CheckpointPolicy, LoopState, update_best
from comp.engine.tracking import Tracking, experiment_name, tracked_params
from comp.engine.threads import TrainingRegistry, apply_threads, default_registry, usable_cores
from comp.files import read_json, save_atomic, write_json
from comp.engine.optim import create_optimizer, create_scheduler
from comp.errors import Interrupted, Log, UserError
from comp.tasks import Task
from comp.tasks.single import SingleLabel
from comp.models.factory import build_model, data_config
from comp.models.heads import count_params



# -- the run ---------------------------------------------------------------------------------


EpochHook = Callable[[int, EpochStats], bool]  # after each epoch's bookkeeping: (epoch, val stats) -> True to stop the run there


def fit(
    cfg: Config, out_dir: Path, *, resume: bool = False, overwrite: bool = False, log: Log = print, resume_command: Optional[str] = None,
    on_epoch: Optional[EpochHook] = None,
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

    Returns:
        The summary dict also written to summary.json.
    """
    competition = open_configured(cfg.data)
    if cfg.data.train_on_val:
        train, val = merged_labelled(competition), Split([], [])
    else:
        train, val = train_val_split(competition, cfg.data.val_fraction, cfg.train.seed)
    return fit_split(cfg, competition, train, val, Path(out_dir), resume=resume, overwrite=overwrite, log=log,
                     resume_command=resume_command, on_epoch=on_epoch)


@dataclass
class TrainingData:
    """What the training loop needs to know about its data, wherever it comes from.

    `make_loaders(cfg, dcfg, device, progress)` returns (train batches, val batches, unreadable paths); the
    batches follow `TensorBatches`' interface (`set_epoch`, `len`, `(x, y, bad_paths)` items).
    `after(out_dir, device, cfg)` runs once training is done (e.g. write val_probs.csv) and returns
    entries for summary.json (or None).
    """

    classes: list[str]
    n_train: int
    n_val: int
    make_loaders: Callable[[Config, dict, torch.device, LiveProgress], tuple[Any, Any, list]]
    train_split: Optional[Split] = None  # the training images' labels (class weights; paths unused)
    task: Task = field(default_factory=SingleLabel)  # the competition type (comp.tasks)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = "data"
    after: Optional[Callable[[Path, torch.device, Config], Optional[dict]]] = None


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
) -> dict[str, Any]:
    """Train on `train`, select on `val` (splits of `competition`), write the run directory. See `fit`.

    `on_accept()` runs once every check has passed, just before the run writes its first file
    (k-fold training writes the folder's config.yaml there). `tracking_parent`: the k-fold run's
    tracking, under which a fold's tracked run is nested.
    """
    check_submission(cfg, competition)
    pool = merged_labelled(competition).paths  # every labelled image: the cache training and val_probs.csv share
    data = TrainingData(
        classes=competition.classes,
        n_train=len(train),
        n_val=len(val),
        train_split=train,
        task=competition.task,
        make_loaders=lambda c, dcfg, device, progress: make_loaders(
            c, dcfg, train, val, device, pool=pool, progress=progress, rank=dist.rank(),
            world=dist.world_size(),
        ),
        skipped=list(competition.skipped),
        source=str(competition.root),
        after=(lambda run, device, c: _held_out_outputs(run, val, competition, device, c, pool)) if len(val) else None,
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
    fits = competition.task.fit_held_out(run, "val_probs.csv", cfg.metric)
    return {("best_val_" + k if k.startswith("score_") else k): v for k, v in fits.items()}


def train_run(
    cfg: Config, data: TrainingData, out_dir: Path, *, resume: bool = False, overwrite: bool = False, log: Log = print,
    on_accept: Optional[Callable[[], None]] = None, resume_command: Optional[str] = None, on_epoch: Optional[EpochHook] = None,
    tracking_parent: Optional[Tracking] = None,
) -> dict[str, Any]:
    """The training loop over `data`, writing the run directory `out_dir`; returns the summary.

    `train.threads` applies for the duration of the run (torch's thread count is process-wide); with
    "auto" the process counts as a live training (`comp.engine.threads`) and takes its share of the
    cores at every epoch start. `track` trackers are checked first (a missing library or a silent
    server stops here, before any write) and closed as KILLED or FAILED when the run ends early.
    """
    previous = torch.get_num_threads()
    tune_cpu_allocator()
    registry = default_registry()
    tracking = Tracking(cfg.track if dist.launched_rank() == 0 else [], log)
    try:
        with registry.registered():
            return _train_run(cfg, data, out_dir, resume=resume, overwrite=overwrite, log=log, on_accept=on_accept,
                              resume_command=resume_command or f"comp train CONFIG --resume --out {out_dir}", registry=registry,
                              on_epoch=on_epoch, tracking=tracking, tracking_parent=tracking_parent)
    except BaseException as e:
        tracking.abort(e)
        raise
    finally:
        torch.set_num_threads(previous)


def _train_run(
    cfg: Config, data: TrainingData, out_dir: Path, *, resume: bool, overwrite: bool, log: Log, on_accept: Optional[Callable[[], None]],
    resume_command: str, registry: TrainingRegistry, on_epoch: Optional[EpochHook], tracking: Tracking,
    tracking_parent: Optional[Tracking],
) -> dict[str, Any]:
    classes = data.classes
    if len(classes) < 2:
        raise UserError(f"{data.source}: only one class ({classes[0]!r}) has training images; a classifier needs two or more")
    task = data.task
    metric = task.check(cfg, classes)
    weight = task.loss_weights(cfg.train.class_weights, data.train_split, classes) if data.train_split is not None else None
    device = resolve_device(cfg.train.device)
    distributed = dist.setup(device.type)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank())
    main = dist.is_main()
    if not main:
        log = _quiet  # only rank 0 logs, shows progress and writes files
    seed_everything(cfg.train.seed)
    dtype = amp_dtype(cfg.train.amp, device)
    t = cfg.train
    # Every check comes before the first write: a refused or failing command leaves the folder as it was.
    ckpt = None
    if resume:
        ckpt = _resumable(out_dir, classes)
        if LoopState.from_dict(ckpt["state"]).finished(t) and (out_dir / "summary.json").is_file():
            log(f"{out_dir} has finished ({ckpt['state']['epoch'] + 1} epochs); nothing to do. Extend it with --resume --epochs N")
            dist.barrier()
            return read_json(out_dir / "summary.json") or {}
    elif main:
        check_new_run_dir(out_dir, overwrite)
    model = build_model(cfg.model, len(classes), pretrained=not resume)
    dcfg = data_config(cfg.data, model)
    cfg = cfg.model_copy(deep=True)
    for key in ("image_size", "mean", "std", "crop_pct"):
        setattr(cfg.data, key, dcfg[key])  # the resolved config records what was actually used
    cfg.data.task = task.name  # what predict and resume read the labels as

    channels_last = cfg.train.channels_last
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    with LiveProgress(enabled=None if main else False) as progress:  # the cache's one-off decode shows a bar
        train_loader, val_loader, unreadable = data.make_loaders(cfg, dcfg, device, progress)
    optimizer = create_optimizer(model, cfg.optim)
    # Planned for this command's train.epochs: extending a run with --resume --epochs N continues
    # on the schedule of an N-epoch run (for cosine: the curve stretched to the new end, so the lr
    # rises again to where an N-epoch run would be at this update, then decays to min_lr at N).
    scheduler = create_scheduler(optimizer, cfg.sched, t.epochs, len(train_loader))
    criterion, mixup = task.loss(t, len(classes), weight)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    ema = ModelEmaV3(model, decay=t.ema_decay) if t.ema else None
    state = LoopState.new(metric)
    if ckpt is not None:
        state = LoopState.from_dict(restore_training(ckpt, model, optimizer, scaler, ema))
        scheduler.step_update(num_updates=state.updates_done())
        p = state.partial
        log(f"resuming {out_dir} from " + (f"epoch {p['epoch'] + 1}, batch {p['batches']}" if p else f"the end of epoch {state.epoch + 1}"))
        del ckpt
    if main:
        if not resume:
            clear_run_dir(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    if on_accept is not None:
        on_accept()
    tracking.start(out_dir, tracked_params(cfg), experiment_name(data.source), resume=resume,
                   first_step=state.epoch + 1 if resume else None, parent=tracking_parent)
    dist.barrier()
    net = model  # what the loop calls: the model, wrapped for DDP and compiled when asked
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        net = torch.compile(net)

    metrics = MetricsLog(out_dir / "metrics.csv", keep_until_epoch=state.epoch if resume else None) if main else None
    n_params, n_train_params = count_params(model), count_params(model, trainable_only=True)
    log(
        f"{cfg.model.name} ({n_params / 1e6:.2f}M params, {n_train_params / 1e6:.2f}M trainable) on {device}"
        f"{f' {dtype}' if dtype else ''}: {len(classes)} classes, {data.n_train} train / {data.n_val} val images, "
        f"{dcfg['image_size']} px"
    )
    log(f"input: {getattr(train_loader, 'describe', 'given batches')}")
    _log_imbalance(cfg, weight, classes, log)
    for note in task.train_notes(cfg):
        log(note)
    if data.n_val == 0:
        log("no validation images: best.pt follows the last epoch")
    bad_files = {p: r for p, r in data.skipped}
    bad_files.update({str(p): "unreadable image" for p in unreadable})
    started = time.time()

    def save_last() -> None:
        if main:
            save_atomic(training_payload(model, optimizer, scheduler, scaler, ema, cfg, classes, state.to_dict()), out_dir / "last.pt")

    def interrupted(where: str) -> Interrupted:
        return Interrupted(f"interrupted: {out_dir}/last.pt holds {where}; continue with: {resume_command}")

    with LiveProgress(enabled=None if main else False) as progress, stop_on_sigint() as stop:
        log = progress.wrap(log)
        policy = CheckpointPolicy(save_last, state, t.checkpoint_minutes, stop, len(train_loader))
        first = t.epochs if state.finished(t) else state.epoch + 1  # finished: only the closing steps are due
        shown_threads = None
        stopped_by_hook = False
        stopped_early = first == t.epochs and bool(t.patience) and state.stale_epochs >= t.patience
        for epoch in range(first, t.epochs):
            start = None
            if state.partial is not None:  # last.pt was saved mid-epoch; RNG states came with it
                start = EpochProgress(**{k: v for k, v in state.partial.items() if k != "epoch"})
                state.partial = None
            else:
                seed_everything(epoch_seed(t.seed, epoch))  # dropout, mixup: fixed per epoch too
            threads = apply_threads(t.threads, registry)  # the share changes as other trainings start and end
            if threads != shown_threads:
                log(f"threads: {threads}" + (f" (train.threads auto: {usable_cores()} cores, {registry.live()} comp trainings)"
                                             if t.threads == "auto" else ""))
                shown_threads = threads
            train_loader.set_epoch(epoch, start.batches if start else 0)
            progress.begin(f"epoch {epoch + 1}/{t.epochs}", len(train_loader))
            try:
                tr, unfinished = train_one_epoch(
                    net, train_loader, optimizer, device=device, criterion=criterion, scheduler=scheduler,
                    start_update=state.updates, mixup=mixup, dtype=dtype, scaler=scaler, grad_clip=t.grad_clip,
                    ema=ema, channels_last=channels_last, progress=progress, start=start,
                    after_batch=functools.partial(policy.after_batch, epoch), task=task,
                )
            except NonFiniteLoss as e:
                kept = f"best.pt (epoch {state.best_epoch + 1}) and last.pt are kept" if state.best_epoch >= 0 else "no checkpoint was written"
                raise NonFiniteLoss(f"{e} (epoch {epoch + 1}; {kept} in {out_dir})") from e
            if unfinished is not None:
                raise interrupted(f"epoch {epoch + 1} up to batch {unfinished.batches}")
            if distributed:
                tr = _summed(tr)
            if tr.images == 0:
                _write_skipped(bad_files | {p: "unreadable image" for p in tr.bad_files}, out_dir / "skipped_files.txt", log)
                raise UserError(f"no training image could be decoded; the files are listed in {out_dir / 'skipped_files.txt'}")
            state.updates += len(train_loader)
            progress.begin("  validate", len(val_loader))
            eval_model = ema.module if ema is not None else model
            va = evaluate(eval_model, val_loader, device=device, dtype=dtype, channels_last=channels_last, progress=progress, task=task)
            if distributed:
                va = _summed(va)
            if data.n_val:
                # scored before any post-processing (thresholds at 0.5): those are fitted once training is done
                va.score = task.score(metric.name, va.probs, va.targets, classes) if va.images else float("nan")
            bad_files.update({p: "unreadable image" for p in tr.bad_files + va.bad_files})
            improved = update_best(state, epoch, va, metric, scored=data.n_val > 0)
            state.epoch = epoch
            row = None
            if main:
                row = _record_epoch(metrics, out_dir, cfg, classes, epoch, optimizer, tr, va, eval_model if improved else None, metric,
                                    data.n_val > 0, log)
            policy.epoch_end()
            if row is not None:  # after last.pt: a resume never logs an epoch twice
                tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)
            if t.patience and state.stale_epochs >= t.patience:
                log(f"early stop: no better best.pt (a better val {metric.name}, or an equal one with lower val loss) for {t.patience} epochs")
                stopped_early = True
                break
            if on_epoch is not None and epoch + 1 < t.epochs and on_epoch(epoch, va):
                log(f"stopped after epoch {epoch + 1} by comp tune's pruner")
                stopped_early = stopped_by_hook = True
                break
            if stop.requested and epoch + 1 < t.epochs:
                raise interrupted(f"epoch {epoch + 1}")

    # Every rank must end with the same weights; a mismatch means the processes drifted apart.
    digests = dist.gather_objects(weights_digest(model)) if distributed else ["single process"]
    held_out: dict[str, Any] = {}
    if main:
        _write_skipped(bad_files, out_dir / "skipped_files.txt", log)
        if data.after is not None:
            held_out = data.after(out_dir, device, cfg) or {}
    summary = _summary(state, metric, cfg, data, dcfg, n_params, stopped_early, len(set(digests)) == 1, time.time() - started, device,
                       weight)
    if stopped_by_hook:
        summary["stopped_by"] = "pruner"  # the only caller that stops runs: comp tune
    if summary["best_val_score"] is not None:
        summary.update(held_out)  # the calibrated or thresholded score, beside the raw one that chose the epoch
    if main:
        write_json(summary, out_dir / "summary.json")
        tracking.finish(summary, [out_dir / f for f in ("summary.json", "curves.png", "config.yaml")])
    dist.barrier()
    return summary


def _record_epoch(
    metrics: MetricsLog, out_dir: Path, cfg: Config, classes: list[str], epoch: int, optimizer, tr: EpochStats, va: EpochStats,
    new_best: Optional[nn.Module], metric, scored: bool, log: Log,
) -> dict[str, float]:
    """The end-of-epoch bookkeeping of rank 0: metrics.csv, curves.png, best.pt (when `new_best`), the log line; returns the row."""
    lr = optimizer.param_groups[0]["lr"]
    row = dict(epoch=epoch, lr=lr, train_loss=tr.loss, train_acc=tr.acc, val_loss=va.loss, val_acc=va.acc, val_score=va.score,
               seconds=tr.seconds + va.seconds)
    metrics.append(row)
    plot_curves(metrics.rows, out_dir / "curves.png", title=f"{cfg.model.name} - {out_dir.name}")
    if new_best is not None:
        save_atomic(weights_payload(new_best, cfg, classes, epoch, va.acc), out_dir / "best.pt")
    val = f"val loss {va.loss:.4f} acc {va.acc:.4f}  " if scored else ""
    if scored and metric.name != "accuracy":
        val += f"{metric.name} {va.score:.4f}  "
    log(
        f"epoch {epoch + 1}/{cfg.train.epochs}  lr {lr:.2e}  train loss {tr.loss:.4f} acc {tr.acc:.4f}  "
        f"{val}{tr.images / max(tr.seconds, 1e-9):.0f} img/s  {row['seconds']:.1f}s{'  *best' if new_best is not None and scored else ''}"
    )
    return row


def _log_imbalance(cfg: Config, weight: Optional[torch.Tensor], classes: list[str], log: Log) -> None:
    """One line per imbalance remedy in use, so the log says how the classes were weighed."""
    t = cfg.train
    if weight is not None:
        shown = ", ".join(f"{c} {w:.3g}" for c, w in zip(classes[:10], weight.tolist()))
        log(f"class weights ({t.class_weights if isinstance(t.class_weights, str) else 'given'}): {shown}{', ...' if len(classes) > 10 else ''}")
    if t.loss == "focal":
        log(f"loss: focal, gamma {t.focal_gamma:g}")
    if cfg.data.sampler == "balanced":
        log("sampler: balanced (each class drawn equally often per epoch; rare images repeat, common ones are subsampled)")
        if weight is not None:
            log("note: class weights and the balanced sampler both correct the imbalance; together they over-weight rare classes")


def _summary(
    state: LoopState, metric, cfg: Config, data: "TrainingData", dcfg: dict, n_params: int, stopped_early: bool,
    ranks_agree: bool, seconds: float, device: torch.device, weight: Optional[torch.Tensor] = None,
) -> dict[str, Any]:
    """summary.json: what the run was, what it reached, and on what."""
    scored = data.n_val > 0
    return {
        "best_epoch": state.best_epoch,
        "metric": metric.name,
        "task": data.task.name,
        "best_val_score": state.best_val_score if scored and math.isfinite(state.best_val_score) else None,
        "best_val_acc": state.best_val_acc if scored else None,
        "classes": data.classes,
        "model": cfg.model.name,
        "epochs_run": state.epoch + 1,
        "stopped_early": stopped_early,
        "world_size": dist.world_size(),
        "ranks_agree": ranks_agree,
        "train_images": data.n_train,
        "class_weights": [round(w, 6) for w in weight.tolist()] if weight is not None else None,
        "sampler": cfg.data.sampler,
        "val_images": data.n_val,
        "image_size": dcfg["image_size"],
        "params": n_params,
        "seconds": round(seconds, 2),
        "seed": cfg.train.seed,
        "device": str(device),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
    }


def _resumable(out_dir: Path, classes: list[str]) -> dict[str, Any]:
    """last.pt of `out_dir`, refused when missing or trained on other classes than `classes`."""
    if not (out_dir / "last.pt").is_file():
        raise UserError(f"--resume: no last.pt in {out_dir} (no epoch was saved); start it again with --overwrite instead of --resume")
    ckpt = load_checkpoint(out_dir / "last.pt")
    if list(ckpt["classes"]) != list(classes):
        raise UserError(
            f"--resume: {out_dir} was trained on {len(ckpt['classes'])} classes ({', '.join(ckpt['classes'][:4])}, ...), "
            f"the data now has {len(classes)} ({', '.join(classes[:4])}, ...); resume with the run's own --data"
        )
    return ckpt


def _quiet(line: str) -> None:
    """The log of ranks other than 0."""


def _summed(stats: EpochStats) -> EpochStats:
    """Epoch statistics over all ranks: images, loss and hits summed, then averaged."""
    mine = [stats.loss * stats.images, stats.acc * stats.images] if stats.images else [0.0, 0.0]  # no nan from an empty shard
    loss_sum, hits, n = dist.sum_across([*mine, float(stats.images)])
    bad = [p for part in dist.gather_objects(stats.bad_files) for p in part]
    summed = EpochStats(loss_sum / max(n, 1), hits / max(n, 1), int(n), stats.seconds, bad)
    if stats.targets is not None or stats.probs is not None:  # evaluation: the metric needs every rank's predictions
        parts = [p for p in dist.gather_objects((stats.probs, stats.targets)) if p[0] is not None]
        if parts:
            summed.probs, summed.targets = torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts])
    return summed


def weights_digest(model: nn.Module) -> str:
    """sha1 of every parameter and buffer, in state-dict order: equal weights, equal digest."""
    import hashlib

    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def _write_skipped(bad: dict[str, str], path: Path, log: Log) -> None:
    if not bad:
        return
    path.write_text("".join(f"{p}\t{r}\n" for p, r in sorted(bad.items())))
    log(f"warning: skipped {len(bad)} files or rows, listed in {path}")


