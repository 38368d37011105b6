"""Classifier heads described by a few numbers (like fastai's `create_head`), and freezing.

Presets (nf = pooled backbone features, C = classes):

| preset | layers |
|---|---|
| V0 | Dropout(0) - Linear(nf, C) |
| V1 | Linear(nf, 500) - ReLU - Dropout(.5) - Linear(500, C)          (the seeds' NYCU head) |
| V2 | Linear(nf, 512) - BN - ReLU - Dropout(.3) - Linear(512, C) |
| V3 | Linear(nf, 1024) - ReLU - Dropout(.5) - Linear(1024, 256) - ReLU - Dropout(.3) - Linear(256, C) |
| V4 | BN(nf) - Dropout(.25) - Linear(nf, 512) - ReLU - BN - Dropout(.5) - Linear(512, C)  (fastai-style) |

A free-form head is a `HeadConfig(hidden=[...], activation, dropout, bn)`. `model.dropout`, when set,
replaces every dropout probability of the head.
"""

from __future__ import annotations

from typing import Optional, Union

import torch.nn as nn
from timm.models import group_modules

from comp.config import HeadConfig

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def build_head(spec: Union[str, HeadConfig], num_features: int, num_classes: int, dropout: Optional[float] = None) -> nn.Sequential:
    """Build a head mapping pooled features (B, num_features) to logits (B, num_classes).

    Args:
        spec: a preset name "V0".."V4" or a free-form `HeadConfig`.
        dropout: if not None, overrides every dropout probability in the head.
    """

    def drop(p: float) -> nn.Dropout:
        return nn.Dropout(p if dropout is None else dropout)

    nf, c = num_features, num_classes
    if isinstance(spec, HeadConfig):
        layers: list[nn.Module] = []
        width = nf
        for h in spec.hidden:
            layers.append(nn.Linear(width, h))
            if spec.bn:
                layers.append(nn.BatchNorm1d(h))
            layers += [_ACTIVATIONS[spec.activation](), drop(spec.dropout)]
            width = h
        if not spec.hidden:
            layers.append(drop(spec.dropout))
        return nn.Sequential(*layers, nn.Linear(width, c))
    presets = {
        "V0": lambda: [drop(0.0), nn.Linear(nf, c)],
        "V1": lambda: [nn.Linear(nf, 500), nn.ReLU(), drop(0.5), nn.Linear(500, c)],
        "V2": lambda: [nn.Linear(nf, 512), nn.BatchNorm1d(512), nn.ReLU(), drop(0.3), nn.Linear(512, c)],
        "V3": lambda: [
            nn.Linear(nf, 1024), nn.ReLU(), drop(0.5), nn.Linear(1024, 256), nn.ReLU(), drop(0.3), nn.Linear(256, c)
        ],
        "V4": lambda: [
            nn.BatchNorm1d(nf), drop(0.25), nn.Linear(nf, 512), nn.ReLU(), nn.BatchNorm1d(512), drop(0.5), nn.Linear(512, c)
        ],
    }
    return nn.Sequential(*presets[spec.upper()]())


def backbone_stages(backbone: nn.Module) -> list[list[str]]:
    """The backbone's stages, first to last, as lists of module names.

    Stages are timm's coarse parameter groups (`group_matcher(coarse=True)`): the stem, then one group
    per stage (ResNet `layer1..4`, EfficientNet `blocks.0..6`, the final conv joining the last).
    A model without a group matcher counts as one stage.
    """
    if not hasattr(backbone, "group_matcher"):
        return [[name for name, m in backbone.named_children()]]
    groups = group_modules(backbone, backbone.group_matcher(coarse=True))
    return [groups[k] for k in sorted(groups)]


def freeze_backbone(backbone: nn.Module, trainable: Union[str, int]) -> int:
    """Freeze all but the last `trainable` stages of the backbone ("all" / "head" / N).

    Frozen BatchNorm layers also stop updating their running statistics (timm's `freeze` turns them
    into FrozenBatchNorm2d), so a frozen stage is exactly the pretrained function.

    Returns:
        The number of stages left trainable.
    """
    stages = backbone_stages(backbone)
    if trainable == "all":
        return len(stages)
    n_train = 0 if trainable == "head" else min(int(trainable), len(stages))
    frozen = [name for stage in stages[: len(stages) - n_train] for name in stage]
    if frozen:
        from timm.utils import freeze

        # timm's freeze wants top-level-most names; drop those inside another frozen module.
        frozen_set = set(frozen)
        roots = [n for n in frozen if not any(p in frozen_set for p in _parents(n))]
        freeze(backbone, roots)
    return n_train


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

