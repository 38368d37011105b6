"""The training loop over any data: `train_run(cfg, TrainingData, out_dir)` writes one run directory.

Four stages, each a function: `_prepare` (every check, the model, batches, optimizer, schedule,
loss and loop state, restored from last.pt on --resume; nothing is written yet), `_accept` (the
run folder claimed, config.yaml, the trackers started, the model wrapped for DDP / compile),
`_epochs` (the epoch loop: train, validate, score with the task, best.pt, last.pt, early stopping,
the pruner's hook, Ctrl-C) and `_finish` (skipped files, the held-out outputs, summary.json).
`comp.engine.fit` feeds it a competition's split; the factor suite its tensor datasets.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn
from timm.data import Mixup
from timm.utils import ModelEmaV3

from comp.config import Config, save_config
from comp.data.competition import Split
from comp.data.sampling import epoch_seed
from comp.device import amp_dtype, resolve_device, tune_cpu_allocator
from comp.engine import distributed as dist
from comp.engine.checkpoint import load_checkpoint, restore_training, seed_everything, stop_on_sigint, training_payload
from comp.engine.epoch import EpochProgress, EpochStats, NonFiniteLoss, evaluate, train_one_epoch
from comp.engine.logbook import LiveProgress, MetricsLog, log_imbalance, record_epoch, run_summary, write_skipped
from comp.engine.optim import create_optimizer, create_scheduler
from comp.engine.rundir import check_new_run_dir, clear_run_dir
from comp.engine.state import CheckpointPolicy, LoopState, update_best
from comp.engine.threads import TrainingRegistry, apply_threads, default_registry, usable_cores
from comp.engine.tracking import Tracking, experiment_name, tracked_params
from comp.errors import Interrupted, Log, UserError
from comp.files import read_json, save_atomic, write_json
from comp.models.factory import build_model, data_config
from comp.models.heads import count_params
from comp.tasks import Task
from comp.tasks.single import SingleLabel
from comp.tasks.soft_targets import Teaching, teaching_loss

EpochHook = Callable[[int, EpochStats], bool]  # after each epoch's bookkeeping: (epoch, val stats) -> True to stop the run there


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
    teaching: Optional[Teaching] = None  # a second round's packed targets (comp.teach); the batches carry them


@dataclass
class _Run:
    """Everything `_prepare` built for one run, shared by the later stages."""

    cfg: Config
    data: TrainingData
    out_dir: Path
    metric: Any
    weight: Optional[torch.Tensor]
    device: torch.device
    distributed: bool
    dtype: Optional[torch.dtype]
    model: nn.Module
    dcfg: dict
    train_loader: Any
    val_loader: Any
    unreadable: list
    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: nn.Module
    mixup: Optional[Mixup]
    scaler: Optional[torch.amp.GradScaler]
    ema: Optional[ModelEmaV3]
    state: LoopState
    log: Log
    net: Optional[nn.Module] = None  # what the loop calls: the model, wrapped for DDP and compiled when asked
    metrics: Optional[MetricsLog] = None

    @property
    def main(self) -> bool:
        return dist.is_main()

    def save_last(self) -> None:
        if self.main:
            payload = training_payload(self.model, self.optimizer, self.scheduler, self.scaler, self.ema, self.cfg, self.data.classes,
                                       self.state.to_dict())
            save_atomic(payload, self.out_dir / "last.pt")


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
    `on_accept()` runs once every check has passed, just before the run writes its first file.
    """
    previous = torch.get_num_threads()
    tune_cpu_allocator()
    registry = default_registry()
    tracking = Tracking(cfg.track if dist.launched_rank() == 0 else [], log)
    resume_command = resume_command or f"comp train CONFIG --resume --out {out_dir}"
    try:
        with registry.registered():
            run = _prepare(cfg, data, out_dir, resume, overwrite, log)
            if isinstance(run, dict):  # finished earlier: its summary
                return run
            _accept(run, resume, on_accept, tracking, tracking_parent)
            started = time.time()
            stopped_early, by_hook, bad_files = _epochs(run, registry, tracking, on_epoch, resume_command)
            return _finish(run, tracking, stopped_early, by_hook, bad_files, time.time() - started)
    except BaseException as e:
        tracking.abort(e)
        raise
    finally:
        torch.set_num_threads(previous)


def _prepare(cfg: Config, data: TrainingData, out_dir: Path, resume: bool, overwrite: bool, log: Log) -> _Run | dict[str, Any]:
    """Every check, then the model, batches, optimizer, schedule, loss and loop state (last.pt's on
    --resume). Nothing is written: a refused or failing command leaves the folder as it was.
    Returns the summary of a run that has already finished."""
    classes = data.classes
    task = data.task.for_run(cfg.train.loss, data.train_split)  # the run's loss; a regression's target scale
    data = dataclasses.replace(data, task=task)
    if len(classes) < task.min_classes:
        raise UserError(f"{data.source}: only one class ({classes[0]!r}) has training images; a classifier needs two or more")
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
    ckpt = None
    if resume:
        ckpt = _resumable(out_dir, classes)
        if LoopState.from_dict(ckpt["state"]).finished(t) and (out_dir / "summary.json").is_file():
            log(f"{out_dir} has finished ({ckpt['state']['epoch'] + 1} epochs); nothing to do. Extend it with --resume --epochs N")
            dist.barrier()
            return read_json(out_dir / "summary.json") or {}
    elif main:
        check_new_run_dir(out_dir, overwrite)
    model = build_model(cfg.model, task.model_outputs(classes), pretrained=not resume)
    dcfg = data_config(cfg.data, model)
    cfg = cfg.model_copy(deep=True)
    for key in ("image_size", "mean", "std", "crop_pct"):
        setattr(cfg.data, key, dcfg[key])  # the resolved config records what was actually used
    cfg.data.task = task.name  # what predict and resume read the labels as
    task.record(cfg.data)  # and what the task fitted (a regression's target scale and range)
    model.to(device, memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
    with LiveProgress(enabled=None if main else False) as progress:  # the cache's one-off decode shows a bar
        train_loader, val_loader, unreadable = data.make_loaders(cfg, dcfg, device, progress)
    optimizer = create_optimizer(model, cfg.optim)
    # Planned for this command's train.epochs: extending a run with --resume --epochs N continues
    # on the schedule of an N-epoch run (for cosine: the curve stretched to the new end, so the lr
    # rises again to where an N-epoch run would be at this update, then decays to min_lr at N).
    scheduler = create_scheduler(optimizer, cfg.sched, t.epochs, getattr(train_loader, "updates_per_epoch", len(train_loader)))
    criterion, mixup = task.loss(t, len(classes), weight)
    if data.teaching is not None:
        criterion, mixup = teaching_loss(task, criterion, mixup, data.teaching.packing, data.teaching.temperature)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    ema = ModelEmaV3(model, decay=t.ema_decay) if t.ema else None
    state = LoopState.new(metric)
    if ckpt is not None:
        state = LoopState.from_dict(restore_training(ckpt, model, optimizer, scaler, ema))
        scheduler.step_update(num_updates=state.updates_done())
        p = state.partial
        log(f"resuming {out_dir} from " + (f"epoch {p['epoch'] + 1}, batch {p['batches']}" if p else f"the end of epoch {state.epoch + 1}"))
    return _Run(cfg, data, out_dir, metric, weight, device, distributed, dtype, model, dcfg, train_loader, val_loader, unreadable,
                optimizer, scheduler, criterion, mixup, scaler, ema, state, log)


def _accept(run: _Run, resume: bool, on_accept: Optional[Callable[[], None]], tracking: Tracking,
            tracking_parent: Optional[Tracking]) -> None:
    """Claim the folder (config.yaml first), start the trackers, wrap the model, and say what runs."""
    cfg, out_dir, data, log = run.cfg, run.out_dir, run.data, run.log
    if run.main:
        if not resume:
            clear_run_dir(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        if data.teaching is not None:
            data.teaching.write(out_dir)  # the teachers' predictions it learns from (read back by --resume)
    if on_accept is not None:
        on_accept()
    tracking.start(out_dir, tracked_params(cfg), experiment_name(data.source), resume=resume,
                   first_step=run.state.epoch + 1 if resume else None, parent=tracking_parent)
    dist.barrier()
    run.net = run.model
    if run.distributed:
        run.net = nn.parallel.DistributedDataParallel(run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    if cfg.train.compile:
        run.net = torch.compile(run.net)
    run.metrics = MetricsLog(out_dir / "metrics.csv", keep_until_epoch=run.state.epoch if resume else None) if run.main else None
    n_params, n_train_params = count_params(run.model), count_params(run.model, trainable_only=True)
    log(
        f"{cfg.model.name} ({n_params / 1e6:.2f}M params, {n_train_params / 1e6:.2f}M trainable) on {run.device}"
        f"{f' {run.dtype}' if run.dtype else ''}: {len(data.classes)} {data.task.what}, {data.n_train} train / {data.n_val} val images, "
        f"{run.dcfg['image_size']} px"
    )
    log(f"input: {getattr(run.train_loader, 'describe', 'given batches')}")
    log_imbalance(cfg, run.weight, data.classes, log)
    for note in data.task.train_notes(cfg) + (data.teaching.notes if data.teaching is not None else []):
        log(note)
    if data.teaching is not None and data.teaching.extra_paths:
        log(f"second round: {len(data.teaching.extra_paths)} test images join the {data.n_train} labelled ones"
            + (f" (the last {data.teaching.final_epochs} epochs: labelled only)" if data.teaching.final_epochs else ""))
    if data.n_val == 0:
        log("no validation images: best.pt follows the last epoch")


def _epochs(run: _Run, registry: TrainingRegistry, tracking: Tracking, on_epoch: Optional[EpochHook],
            resume_command: str) -> tuple[bool, bool, dict[str, str]]:
    """The epoch loop; returns (stopped early, stopped by the hook, every skipped file with its reason)."""
    cfg, data, state, out_dir, t = run.cfg, run.data, run.state, run.out_dir, run.cfg.train
    task, metric, classes = data.task, run.metric, data.classes
    bad_files = {p: r for p, r in data.skipped}
    bad_files.update({str(p): "unreadable image" for p in run.unreadable})

    def interrupted(where: str) -> Interrupted:
        return Interrupted(f"interrupted: {out_dir}/last.pt holds {where}; continue with: {resume_command}")

    with LiveProgress(enabled=None if run.main else False) as progress, stop_on_sigint() as stop:
        log = progress.wrap(run.log)
        policy = CheckpointPolicy(run.save_last, state, t.checkpoint_minutes, stop, len(run.train_loader))
        first = t.epochs if state.finished(t) else state.epoch + 1  # finished: only the closing steps are due
        shown_threads = None
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
            run.train_loader.set_epoch(epoch, start.batches if start else 0)
            policy.batches_per_epoch = len(run.train_loader)  # pseudo.final_epochs: the last epochs are shorter
            progress.begin(f"epoch {epoch + 1}/{t.epochs}", len(run.train_loader))
            try:
                tr, unfinished = train_one_epoch(
                    run.net, run.train_loader, run.optimizer, device=run.device, criterion=run.criterion, scheduler=run.scheduler,
                    start_update=state.updates, mixup=run.mixup, dtype=run.dtype, scaler=run.scaler, grad_clip=t.grad_clip,
                    ema=run.ema, channels_last=t.channels_last, progress=progress, start=start,
                    after_batch=functools.partial(policy.after_batch, epoch), task=task,
                )
            except NonFiniteLoss as e:
                kept = f"best.pt (epoch {state.best_epoch + 1}) and last.pt are kept" if state.best_epoch >= 0 else "no checkpoint was written"
                raise NonFiniteLoss(f"{e} (epoch {epoch + 1}; {kept} in {out_dir})") from e
            if unfinished is not None:
                raise interrupted(f"epoch {epoch + 1} up to batch {unfinished.batches}")
            if run.distributed:
                tr = dist.summed_stats(tr)
            if tr.images == 0:
                write_skipped(bad_files | {p: "unreadable image" for p in tr.bad_files}, out_dir / "skipped_files.txt", log)
                raise UserError(f"no training image could be decoded; the files are listed in {out_dir / 'skipped_files.txt'}")
            state.updates += len(run.train_loader)
            progress.begin("  validate", len(run.val_loader))
            eval_model = run.ema.module if run.ema is not None else run.model
            va = evaluate(eval_model, run.val_loader, device=run.device, dtype=run.dtype, channels_last=t.channels_last, progress=progress,
                          task=task)
            if run.distributed:
                va = dist.summed_stats(va)
            if data.n_val:
                # scored before any post-processing (thresholds at 0.5): those are fitted once training is done
                va.score = task.score(metric.name, va.probs, va.targets, classes) if va.images else float("nan")
            bad_files.update({p: "unreadable image" for p in tr.bad_files + va.bad_files})
            improved = update_best(state, epoch, va, metric, scored=data.n_val > 0)
            state.epoch = epoch
            row = None
            if run.main:
                row = record_epoch(run.metrics, out_dir, cfg, classes, epoch, run.optimizer, tr, va, eval_model if improved else None,
                                   metric, data.n_val > 0, log)
            policy.epoch_end()
            if row is not None:  # after last.pt: a resume never logs an epoch twice
                tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)
            if t.patience and state.stale_epochs >= t.patience:
                log(f"early stop: no better best.pt (a better val {metric.name}, or an equal one with lower val loss) for {t.patience} epochs")
                return True, False, bad_files
            if on_epoch is not None and epoch + 1 < t.epochs and on_epoch(epoch, va):
                log(f"stopped after epoch {epoch + 1} by comp tune's pruner")
                return True, True, bad_files
            if stop.requested and epoch + 1 < t.epochs:
                raise interrupted(f"epoch {epoch + 1}")
    return stopped_early, False, bad_files


def _finish(run: _Run, tracking: Tracking, stopped_early: bool, by_hook: bool, bad_files: dict[str, str], seconds: float) -> dict[str, Any]:
    """skipped_files.txt, the held-out outputs (val_probs.csv and what is fitted on it), summary.json."""
    out_dir, data = run.out_dir, run.data
    # Every rank must end with the same weights; a mismatch means the processes drifted apart.
    digests = dist.gather_objects(dist.weights_digest(run.model)) if run.distributed else ["single process"]
    held_out: dict[str, Any] = {}
    if run.main:
        write_skipped(bad_files, out_dir / "skipped_files.txt", run.log)
        if data.after is not None:
            held_out = data.after(out_dir, run.device, run.cfg) or {}
    summary = run_summary(run.state, run.metric, run.cfg, data, run.dcfg, count_params(run.model), stopped_early, len(set(digests)) == 1,
                          seconds, run.device, run.weight)
    if by_hook:
        summary["stopped_by"] = "pruner"  # the only caller that stops runs: comp tune
    if summary["best_val_score"] is not None:
        summary.update(held_out)
    if data.teaching is not None:
        summary["teachers"] = data.teaching.record  # what it learned from: teachers, their hashes, the targets table  # the calibrated or thresholded score, beside the raw one that chose the epoch
    if run.main:
        write_json(summary, out_dir / "summary.json")
        tracking.finish(summary, [out_dir / f for f in ("summary.json", "curves.png", "config.yaml")])
    dist.barrier()
    return summary


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
