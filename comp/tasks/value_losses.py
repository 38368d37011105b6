"""Losses for one continuous output (grades, numbers), CORN for grades, and a Mixup that blends values.

A regression head is trained on a standardized target, `(y - offset) / scale`, so its single
output starts near the target's spread whatever the target's units (Pawpularity 1-100, bone age
in months); the task's activation maps it back (`comp.tasks.regression`). `bce` is the trick many
PetFinder Pawpularity solutions used: the target scaled into [0, 1] by its range and a sigmoid
output trained with binary cross-entropy, which bounds every prediction to the range.

CORN (Shi et al. 2021, `coral-pytorch`) trains K - 1 conditional binary outputs for K grades;
its activation (`corn_expected_grade`) is the expected grade, a continuous value that TTA and
ensembles average and the fitted cut-points cut, as for the regression head.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup

from comp.errors import UserError


class ValueLoss(nn.Module):
    """mse, smooth_l1 (Huber, beta 1), l1 on `(target - offset) / scale`, or bce on it (a [0, 1] target).

    Args:
        kind: "mse", "smooth_l1", "l1" or "bce".
        offset, scale: the target's standardization (regression: mean and std of the training rows;
            bce: the range's low end and width; grades: 0 and 1).
    """

    def __init__(self, kind: str, offset: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.kind, self.offset, self.scale = kind, float(offset), float(scale)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, 1), target (B,) values (or their Mixup blends) -> scalar mean loss."""
        z = logits.float()[:, 0]
        t = (target.float() - self.offset) / self.scale
        if self.kind == "bce":
            return F.binary_cross_entropy_with_logits(z, t.clamp(0, 1))
        if self.kind == "smooth_l1":
            return F.smooth_l1_loss(z, t)
        if self.kind == "l1":
            return F.l1_loss(z, t)
        return F.mse_loss(z, t)


class CornLoss(nn.Module):
    """coral-pytorch's CORN loss for `grades` grades on (B, K - 1) logits and (B,) grade indices."""

    def __init__(self, grades: int):
        super().__init__()
        self.grades = grades
        try:
            from coral_pytorch.losses import corn_loss
        except ImportError:
            raise UserError("train.loss=corn needs coral-pytorch: pip install 'comp[ordinal]' (make install does)") from None
        self.fn = corn_loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(logits.float(), target.long(), self.grades)


def corn_expected_grade(logits: torch.Tensor) -> torch.Tensor:
    """(B, K - 1) CORN logits -> (B, 1) expected grade index: sum_k P(y > k), P(y > k) = prod_{j<=k} sigmoid(z_j)."""
    # exp(cumsum(log sigmoid)) rather than cumprod: the same product, and ONNX exports it (cumprod it cannot)
    return torch.exp(torch.cumsum(F.logsigmoid(logits.float()), dim=1)).sum(1, keepdim=True)


class LinearMixup(Mixup):
    """timm's Mixup/CutMix on the images, with the value targets blended linearly by the same lambda
    (grades and numbers have no one-hot rows to mix): y = lam * y + (1 - lam) * y.flip(0)."""

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, H, W) with B even, target (B,) -> (mixed x, (B,) float blended targets)."""
        lam = self._mix_batch(x)  # mode "batch": one lambda (mixup or cutmix) for the whole batch
        t = target.float()
        return x, t * lam + t.flip(0) * (1 - lam)
