"""The training loop's state and its two policies: which epoch is best, and when last.pt is written.

`LoopState` is what last.pt carries besides weights and optimizer (saved as a plain dict, which
`torch.load(weights_only=True)` accepts). `update_best` is the best-epoch and early-stopping rule;
`CheckpointPolicy` decides when last.pt is written: every epoch end, every
`train.checkpoint_minutes` inside an epoch, and on Ctrl-C (all ranks together under DDP).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Optional

from comp.config import TrainConfig
from comp.engine import distributed as dist
from comp.engine.epoch import EpochProgress, EpochStats
from comp.tasks.metrics import METRICS, Metric


@dataclass
class LoopState:
    """Where a run stands: the last finished epoch, the best one so far, and the update count."""

    epoch: int = -1  # last finished epoch (0-based); -1 before the first
    best_val_score: float = -math.inf  # the metric's best (set to `metric.worst` for a new run)
    best_val_acc: float = -1.0
    best_val_loss: float = math.inf
    best_epoch: int = -1
    stale_epochs: int = 0  # epochs since the last new best, for early stopping
    updates: int = 0  # optimizer steps at the end of `epoch`
    partial: Optional[dict[str, Any]] = None  # a mid-epoch checkpoint: {"epoch", **EpochProgress}

    @classmethod
    def new(cls, metric: Metric) -> "LoopState":
        return cls(best_val_score=metric.worst)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "LoopState":
        """From last.pt's `state`; last.pt of older versions has no metric score: theirs was accuracy."""
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in saved.items() if k in known})
        if "best_val_score" not in saved:
            state.best_val_score = state.best_val_acc
        return state

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "partial" or v is not None}

    def finished(self, t: TrainConfig) -> bool:
        """Nothing left to train: every epoch ran, or early stopping ended the run."""
        if self.partial:
            return False
        return self.epoch + 1 >= t.epochs or bool(t.patience and self.stale_epochs >= t.patience)

    def updates_done(self) -> int:
        """Optimizer steps taken so far, a mid-epoch checkpoint's included (where the scheduler resumes)."""
        return self.updates + (self.partial["batches"] if self.partial else 0)


def update_best(state: LoopState, epoch: int, va: EpochStats, metric: Metric = METRICS["accuracy"], scored: bool = True) -> bool:
    """Record epoch `epoch` as the new best in `state` if it is one; returns whether it was.

    Better = a better `va.score` in the competition metric (higher, or lower for log loss); a tie
    goes to the lower val loss (on a small val set ties are common, and keeping the earlier epoch
    then throws away the end of the schedule on noise). An epoch the metric cannot score (NaN,
    e.g. AUC with a class missing from val) is judged by val loss alone against other such epochs.
    Without val images (`scored=False`) every epoch is the best: best.pt follows the last one.
    Otherwise `state.stale_epochs` counts the epochs since the last best, for early stopping.
    """
    best = state.best_val_score
    lower_loss = va.loss < state.best_val_loss
    if not scored:
        improved = True
    elif math.isnan(va.score):
        improved = (math.isnan(best) or best == metric.worst) and lower_loss
    else:
        improved = metric.better(va.score, best) or (va.score == best and lower_loss)
    if improved:
        nan = float("nan")
        state.best_val_score = va.score if scored else nan
        state.best_val_acc = va.acc if scored else nan
        state.best_val_loss, state.best_epoch, state.stale_epochs = va.loss, epoch, 0
    else:
        state.stale_epochs += 1
    return improved


class CheckpointPolicy:
    """When last.pt is written: at every epoch end, every `minutes` inside an epoch, and on Ctrl-C.

    With the order and augmentation of every batch fixed by (seed, epoch, batch), a mid-epoch
    last.pt resumes exactly. Under DDP every rank must stop at the same batch (or collectives would
    hang), so the stop request and rank 0's clock are agreed across ranks.
    """

    def __init__(self, save: Callable[[], None], state: LoopState, minutes: float, stop, batches_per_epoch: int):
        self.save, self.state, self.minutes, self.stop = save, state, minutes, stop
        self.batches_per_epoch = batches_per_epoch
        self.last = time.monotonic()

    def epoch_end(self) -> None:
        self.save()
        self.last = time.monotonic()

    def after_batch(self, epoch: int, p: EpochProgress) -> bool:
        """Called after every update of `epoch`; saves when due or asked; returns True to stop there.

        A stop asked for during the epoch's last batch does not stop there: the epoch is finished
        (validated, saved whole at its end) and the loop stops after it (`stop.requested` stays set).
        A mid-epoch last.pt is never written at the last batch, so stopping there would claim a
        checkpoint that does not exist and lose the epoch.
        """
        due = bool(self.minutes) and time.monotonic() - self.last > 60 * self.minutes
        requested = self.stop.requested
        if dist.is_distributed():
            requested, due = (v > 0 for v in dist.sum_across([float(requested), float(due and dist.is_main())]))
            self.stop.requested = requested
        if p.batches >= self.batches_per_epoch:
            return False
        if requested or due:
            self.state.partial = {"epoch": epoch, **asdict(p)}
            self.save()
            self.state.partial = None
            self.last = time.monotonic()
        return requested
