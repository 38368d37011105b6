"""One epoch: `train_one_epoch` and `evaluate`, plus the device and precision they run in.

Importable on their own, like the loops of torchvision's reference scripts: `fit.py` drives them
over epochs, checkpoints and logs. Per iteration: AMP autocast (where the device supports it),
optional mixup/cutmix (timm.data.Mixup), label smoothing, grad clipping, timm scheduler
`step_update`, optional EMA (timm.utils.ModelEmaV3).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader

from comp.engine import distributed as dist
from comp.engine.logbook import LiveProgress
from comp.errors import UserError
from comp.tasks import Task
from comp.tasks.single import SingleLabel


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


class NonFiniteLoss(UserError):
    """The training loss became NaN or inf."""


@dataclass
class EpochStats:
    """An epoch's mean loss and accuracy over `images`; evaluation also keeps its predictions.

    `probs` (N, C) and `targets` are the held-out probabilities and the task's targets (None for
    training), from which the competition metric `score` is computed (NaN until then).
    """

    loss: float
    acc: float
    images: int
    seconds: float
    bad_files: list[str] = field(default_factory=list)
    probs: Optional[torch.Tensor] = None
    targets: Optional[torch.Tensor] = None
    score: float = float("nan")


# -- devices and precision --------------------------------------------------------------------


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


# -- one epoch -------------------------------------------------------------------------------


@dataclass
class EpochProgress:
    """Running totals of a partly trained epoch: what a mid-epoch checkpoint must carry."""

    batches: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    bad_files: list[str] = field(default_factory=list)


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    criterion: nn.Module,
    scheduler=None,
    start_update: int = 0,
    mixup: Optional[Mixup] = None,
    dtype: Optional[torch.dtype] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    grad_clip: Optional[float] = None,
    ema: Optional[ModelEmaV3] = None,
    channels_last: bool = False,
    progress: Optional[LiveProgress] = None,
    start: Optional[EpochProgress] = None,
    after_batch: Optional[Callable[[EpochProgress], bool]] = None,
    task: Optional[Task] = None,
) -> tuple[EpochStats, Optional[EpochProgress]]:
    """One pass over `loader` (or the rest of one), stepping the scheduler per iteration.

    Batches are `(images (B,3,H,W), labels (B,), bad_paths)` from `collate_skip_bad`. Accuracy is
    against the un-mixed labels. `start` continues an epoch begun earlier (the loader must already
    start at batch `start.batches`); `after_batch(progress)` runs after every update and returns
    True to stop there. `task` (default single-label) counts the hits.

    Returns:
        (mean loss and accuracy over the epoch's images, None) at the epoch end, or
        (those so far, the progress to resume from) when stopped early.
    """
    task = task or SingleLabel()
    model.train()
    t0 = time.perf_counter()
    p = EpochProgress(**vars(start)) if start is not None else EpochProgress()
    p.bad_files = list(p.bad_files)
    batches = iter(loader)
    while True:
        try:
            x, y, bad_paths = next(batches)
        except StopIteration:
            break
        except Exception:
            # A Ctrl-C in a terminal also reaches DataLoader workers, which then die: that is the
            # interruption already being handled, not a data error.
            if after_batch is not None and after_batch(p):
                return _epoch_stats(p, t0), p
            raise
        p.bad_files += bad_paths
        if len(y) > 0:
            _train_step(model, x, y, optimizer, device, criterion, mixup, dtype, scaler, grad_clip, channels_last, p, task)
        p.batches += 1
        update = start_update + p.batches
        if scheduler is not None:
            scheduler.step_update(num_updates=update)
        if ema is not None:
            ema.update(unwrap(model), step=update)
        if progress is not None and p.seen:
            progress.step(p.seen, loss=p.loss_sum / p.seen, acc=p.correct / p.seen)
        if after_batch is not None and after_batch(p):
            return _epoch_stats(p, t0), p
    return _epoch_stats(p, t0), None


def _train_step(model, x, y, optimizer, device, criterion, mixup, dtype, scaler, grad_clip, channels_last, p: EpochProgress,
                task: Task) -> None:
    """Forward, backward and optimizer step on one batch; adds its loss and hits to `p`."""
    x = x.to(device, non_blocking=True)
    y = y.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = y
    if mixup is not None and len(y) % 2 == 0:  # timm's Mixup needs an even batch
        x, target = mixup(x, y)  # (B, C) blends, from the task's Mixup
    with _autocast(device, dtype):
        logits = model(x)
        loss = criterion(logits, target)
    value = loss.item()  # one device sync per step
    bad = not math.isfinite(value)
    if dist.is_distributed():
        bad = dist.any_across(bad)  # all ranks stop together; one alone would leave the others waiting in backward
    if bad:
        raise NonFiniteLoss(f"training loss became {value}; lower optim.lr or set train.grad_clip=1.0")
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
    p.loss_sum += value * len(y)
    # against the un-mixed targets (a second round's packed rows: their labels, or the teachers' decisions)
    p.correct += task.hits(logits, criterion.hard_targets(y) if hasattr(criterion, "hard_targets") else y)
    p.seen += len(y)


def _epoch_stats(p: EpochProgress, t0: float) -> EpochStats:
    return EpochStats(p.loss_sum / max(1, p.seen), p.correct / max(1, p.seen), p.seen, time.perf_counter() - t0, p.bad_files)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    dtype: Optional[torch.dtype] = None,
    channels_last: bool = False,
    progress: Optional[LiveProgress] = None,
    task: Optional[Task] = None,
) -> EpochStats:
    """The task's validation loss (no smoothing, no weights), accuracy, and the (N, C) probabilities
    (the task's activation) of `model` over `loader`, with the targets they are scored against.
    `task` defaults to single-label: cross-entropy, top-1 accuracy, softmax.
    """
    task = task or SingleLabel()
    model.eval()
    t0 = time.perf_counter()
    total_loss, correct, seen, bad = 0.0, 0, 0, []
    probs, targets = [], []
    for x, y, bad_paths in loader:
        bad += bad_paths
        if len(y) == 0:
            continue
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, dtype):
            logits = model(x)
        total_loss += task.eval_loss(logits, y)
        probs.append(task.activation(logits).cpu())
        correct += task.hits(logits, y)
        seen += len(y)
        targets.append(y.cpu())
        if progress is not None:
            progress.step(seen, acc=correct / seen)
    nan = float("nan")
    loss = total_loss / seen if seen else nan
    return EpochStats(
        loss, correct / seen if seen else nan, seen, time.perf_counter() - t0, bad,
        probs=torch.cat(probs) if probs else None, targets=torch.cat(targets) if targets else None,
    )
