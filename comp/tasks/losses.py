"""The training loss: cross-entropy or focal loss, with per-class weights, on hard or soft targets.

One criterion for every batch of a run: class-index targets (B,) with label smoothing, and the
soft targets (B, C) that timm's Mixup/CutMix produce (already smoothed) for the same loss. torch's
`CrossEntropyLoss(weight=...)` cannot be used for both: it averages hard targets over the summed
weights of the batch but soft targets over the batch size, so a weighted run would change its
scale whenever mixup is drawn. Here both average over the targets' weight, sum_i sum_c t_ic w_c:
with all weights 1 and no focal term it is exactly the mean cross-entropy (tests check it against
torch's and timm's losses).

Class weights come from `class_weights`: sklearn's `compute_class_weight("balanced")`, i.e.
n / (C * n_c), or the user's own list or mapping.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from comp.errors import UserError


class ClassWeightedLoss(nn.Module):
    """Mean cross-entropy (gamma = 0) or focal loss (gamma > 0) with optional per-class weights.

    Args:
        num_classes: C.
        weight: (C,) class weights, or None for all 1.
        label_smoothing: applied to class-index targets (soft targets come smoothed by the Mixup).
        gamma: focal loss exponent (Lin et al. 2017): each class term is scaled by (1 - p_c)^gamma,
            so confidently right images add little and the hard ones dominate.
    """

    def __init__(self, num_classes: int, weight: Optional[torch.Tensor] = None, label_smoothing: float = 0.0, gamma: float = 0.0):
        super().__init__()
        self.num_classes, self.label_smoothing, self.gamma = num_classes, label_smoothing, gamma
        w = torch.ones(num_classes) if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", w.float(), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, C), target (B,) class indices or (B, C) probabilities -> scalar loss."""
        logp = logits.float().log_softmax(1)
        if target.ndim == 1:
            t = F.one_hot(target, self.num_classes).float()
            if self.label_smoothing:
                t = t * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
        else:
            t = target.float()
        per_class = -t * logp
        if self.gamma:
            per_class = per_class * (1 - logp.exp()).clamp(min=0).pow(self.gamma)
        w = self.weight.to(logp.device)
        return (per_class * w).sum() / (t * w).sum().clamp(min=1e-12)


def class_weights(
    spec: Union[str, Sequence[float], dict], labels: Sequence[int], classes: Sequence[str]
) -> Optional[torch.Tensor]:
    """The (C,) loss weights of `train.class_weights`, or None for "none".

    Args:
        spec: "none"; "balanced" (sklearn's inverse frequency n / (C * n_c) over the training
            labels; a class without training images gets 1); a list of C weights in class order;
            or a mapping class name -> weight (classes not named get 1).
        labels: the training images' class indices.
        classes: the C class names, in index order.

    Raises:
        UserError: a list of the wrong length or a mapping naming an unknown class.
    """
    if isinstance(spec, str):
        if spec == "none":
            return None
        from sklearn.utils.class_weight import compute_class_weight

        y = np.asarray(labels, dtype=int)
        present = np.unique(y)
        w = np.ones(len(classes))
        w[present] = compute_class_weight("balanced", classes=present, y=y)
        return torch.tensor(w, dtype=torch.float32)
    if isinstance(spec, dict):
        unknown = sorted(set(map(str, spec)) - set(classes))
        if unknown:
            raise UserError(f"train.class_weights names unknown classes {unknown[:5]}; the classes are {list(classes)[:10]}")
        return torch.tensor([float(spec.get(c, 1.0)) for c in classes], dtype=torch.float32)
    if len(spec) != len(classes):
        raise UserError(
            f"train.class_weights has {len(spec)} weights for {len(classes)} classes; give one per class in this order: "
            f"{', '.join(list(classes)[:10])}{', ...' if len(classes) > 10 else ''} (or a mapping class: weight)"
        )
    return torch.tensor([float(v) for v in spec], dtype=torch.float32)


class TagLoss(nn.Module):
    """The multi-label loss: per-tag binary cross-entropy (`train.loss: ce`), sigmoid focal loss
    (`focal`), both with each tag's positive weight, or timm's asymmetric loss (`asl`, Ridnik et al.
    2021, for many rare tags; it takes no weights), on (B, C) 0/1 targets or the blends timm's Mixup makes of them (`multi_label=True`, smoothed by it).

    Args:
        pos_weight: (C,) weight of each tag's positive term (`tag_pos_weights`), or None.
        label_smoothing: eps; targets become y (1 - eps) + eps / 2, each tag's two outcomes smoothed
            as a two-class label would be.
        kind: "ce", "focal" or "asl"; gamma: the focal exponent.

    The value is the mean over images and tags, so it stays on the scale of single-label losses.
    """

    def __init__(self, num_classes: int, pos_weight: Optional[torch.Tensor] = None, label_smoothing: float = 0.0,
                 kind: str = "ce", gamma: float = 2.0):
        super().__init__()
        self.num_classes, self.label_smoothing, self.kind, self.gamma = num_classes, label_smoothing, kind, gamma
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32),
                             persistent=False)
        if kind == "asl":
            if pos_weight is not None:  # a bug, not a user error: the task refuses train.class_weights with asl first
                raise ValueError("timm's asymmetric loss takes no positive weights")
            from timm.loss import AsymmetricLossMultiLabel

            self.asl = AsymmetricLossMultiLabel()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, C), target (B, C) in [0, 1] -> scalar loss."""
        logits, t = logits.float(), target.float()
        if self.label_smoothing and ((t == 0) | (t == 1)).all():  # mixup's blends come smoothed by timm already
            t = t * (1 - self.label_smoothing) + self.label_smoothing / 2
        if self.kind == "asl":  # timm's sums over the batch; per image and tag here
            return self.asl(logits, t) / t.numel()
        ce = F.binary_cross_entropy_with_logits(logits, t, pos_weight=self.pos_weight, reduction="none")
        if self.kind == "focal":  # torchvision's sigmoid_focal_loss (alpha=-1), with the tags' positive weights in its BCE
            p = torch.sigmoid(logits)
            p_t = p * t + (1 - p) * (1 - t)
            ce = ce * (1 - p_t).pow(self.gamma)
        return ce.mean()


def tag_pos_weights(spec: Union[str, Sequence[float], dict], targets: np.ndarray, classes: Sequence[str]) -> Optional[torch.Tensor]:
    """The (C,) positive-term weights of `train.class_weights` for a multi-label run, or None.

    "balanced": n_negative / n_positive per tag over the training images (what balances a tag's
    positives against its negatives in BCE; a tag with no positive gets 1); a list or mapping is
    taken as given, as for single-label runs (`class_weights`).
    """
    if isinstance(spec, str):
        if spec == "none":
            return None
        y = np.asarray(targets)
        pos = y.sum(0).astype(float)
        w = np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
        return torch.tensor(w, dtype=torch.float32)
    return class_weights(spec, [], classes)

