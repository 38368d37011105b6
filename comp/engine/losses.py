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
