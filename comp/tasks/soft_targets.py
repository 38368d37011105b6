"""Second-round targets: each training image carries its label, a teacher's soft target, and a weight for each.

A second round (pseudo-labels, out-of-fold soft targets, distillation; `comp.teach`) trains on rows
that mix three kinds of target: a labelled image's label (`hard`), a teacher's prediction
(`soft`: probabilities, tag probabilities or a value, the teacher's `Task.columns`), or both. Each
row is packed into one float vector, `[hard (H) | soft (D) | w_hard | w_soft]`, so the batches of
either input path (`TensorBatches`, the DataLoader's collate) carry it as they carry any target.

`TeachingLoss` unpacks a batch and adds the task's own criterion on the hard targets (label
smoothing, class weights, focal, CORN: everything a plain run trains with) to the task's
`soft_loss` on the soft ones (T^2-scaled KL, per-tag KL, or the value loss), each weighted per
row: loss = sum_i (w_hard_i * l_task_i + w_soft_i * l_soft_i) / B. Rows sharing a weight are
scored together by the mean criteria, so a plain run's criterion is reused exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
from timm.data import Mixup

from comp.tasks.base import Task


@dataclass(frozen=True)
class Packing:
    """Where the parts of a packed row lie: the hard target's width and type, and the soft width D."""

    hard_width: int  # 1 for (N,) targets (class or grade indices, numbers), C for (N, C) tag rows
    hard_dtype: torch.dtype
    flat: bool  # the hard targets are (N,), not (N, C)
    soft_width: int

    @classmethod
    def of(cls, targets: torch.Tensor, soft_width: int) -> "Packing":
        """The packing of hard `targets` (N,) or (N, C), as `Task.split_targets` gives them, with D soft columns."""
        flat = targets.ndim == 1
        return cls(1 if flat else targets.shape[1], targets.dtype, flat, soft_width)

    def pack(self, hard: torch.Tensor, soft: torch.Tensor, w_hard: torch.Tensor, w_soft: torch.Tensor) -> torch.Tensor:
        """(N, H + D + 2) float rows of hard (N,) or (N, C), soft (N, D) and the two (N,) weights."""
        h = hard.float().view(len(hard), -1)
        return torch.cat([h, soft.float().view(len(soft), -1), w_hard.float().view(-1, 1), w_soft.float().view(-1, 1)], 1)

    def unpack(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(hard as the task's targets, soft (B, D), w_hard (B,), w_soft (B,)) of packed (B, H + D + 2) rows."""
        h = self.hard_width
        hard = rows[:, :h]
        hard = (hard[:, 0] if self.flat else hard)
        hard = hard.round().to(self.hard_dtype) if not self.hard_dtype.is_floating_point else hard.to(self.hard_dtype)
        return hard, rows[:, h : h + self.soft_width], rows[:, -2], rows[:, -1]


@dataclass
class Mixed:
    """A Mixup batch's targets: the rows and their flipped partners, blended by `lam`."""

    rows: torch.Tensor
    lam: float

    def __len__(self) -> int:
        return len(self.rows)


class TeachingMixup:
    """timm's Mixup/CutMix on the images of packed rows (mode "batch"); the loss blends the two targets' losses
    by the same lambda, lam * L(y) + (1 - lam) * L(y.flip(0)), which for every loss here has the gradient of a
    loss on blended targets."""

    def __init__(self, mixup: Mixup):
        self.mixup = mixup

    def __call__(self, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, Mixed]:
        """x (B, 3, H, W) with B even, packed rows (B, W) -> (mixed x, `Mixed`)."""
        lam = self.mixup._mix_batch(x)
        return x, Mixed(rows, float(lam))


class TeachingLoss(nn.Module):
    """The second round's criterion on packed rows (see the module docstring).

    Args:
        task: the run's task (its `soft_loss`).
        criterion: the task's own criterion for the hard targets (`Task.loss`).
        packing: how the rows are packed.
        temperature: the soft targets' temperature (distillation; 1 for pseudo-labels and OOF targets).
    """

    def __init__(self, task: Task, criterion: nn.Module, packing: Packing, temperature: float = 1.0):
        super().__init__()
        self.task, self.criterion, self.packing, self.temperature = task, criterion, packing, float(temperature)

    def hard_targets(self, rows) -> torch.Tensor:
        """The hard targets of packed rows (what the training accuracy counts against)."""
        rows = rows.rows if isinstance(rows, Mixed) else rows
        return self.packing.unpack(rows)[0]

    def forward(self, logits: torch.Tensor, target) -> torch.Tensor:
        """logits (B, C), packed rows (B, W) or a `Mixed` of them -> scalar loss."""
        if isinstance(target, Mixed):
            lam = target.lam
            return lam * self._loss(logits, target.rows) + (1 - lam) * self._loss(logits, target.rows.flip(0))
        return self._loss(logits, target)

    def _loss(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        hard, soft, w_hard, w_soft = self.packing.unpack(rows)
        total = logits.new_zeros((), dtype=torch.float32)
        for weights, loss in ((w_hard, lambda s: self.criterion(logits[s], hard[s])),
                              (w_soft, lambda s: self.task.soft_loss(logits[s], soft[s], self.temperature))):
            for w in weights.unique().tolist():
                if w > 0:
                    rows_w = weights == w
                    total = total + w * int(rows_w.sum()) * loss(rows_w)
        return total / len(rows)


def teaching_loss(task: Task, criterion: nn.Module, mixup: Optional[Mixup], packing: Packing,
                  temperature: float = 1.0) -> tuple[TeachingLoss, Optional[TeachingMixup]]:
    """The run's criterion and Mixup (`Task.loss`) wrapped for packed rows."""
    return TeachingLoss(task, criterion, packing, temperature), TeachingMixup(mixup) if mixup is not None else None


@dataclass
class Teaching:
    """A second round's training rows for one run (or fold), built by `comp.teach.plan` and consumed by the engine.

    `rows` (N + M, W) are the packed targets of the N labelled training images (in the split's
    order) followed by the M `extra_paths` (test images); the last `final_epochs` epochs train on
    the first N rows only. `tables` are written into the run folder once it is accepted
    ({file name: (ids, (K, D) values, columns)}); `record` goes into summary.json.
    """

    rows: torch.Tensor
    packing: Packing
    extra_paths: list = field(default_factory=list)
    temperature: float = 1.0
    final_epochs: int = 0
    tables: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # lines the training log shows (e.g. a leak accepted with pseudo.leak_ok)

    def write(self, out_dir) -> None:
        """Write the tables into the accepted run folder (the values are as stored already: rewriting changes no digit)."""
        from comp.probs import write_probs

        for name, (ids, values, columns) in self.tables.items():
            write_probs(Path(out_dir) / name, ids, values, columns, unit=False)
