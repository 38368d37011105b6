"""Model factory: a timm backbone by name + pretrained source + our head, behind timm's interface.

`build_model(cfg.model, num_classes)` is the one way `comp` makes a network. The result is a
`Classifier` with timm's model interface (`forward_features`, `forward_head(x, pre_logits)`,
`forward`, `get_classifier`, `reset_classifier`), and `data_config` reads the preprocessing (size,
mean, std, crop) from the backbone's pretrained config, so training and prediction agree.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Union

import timm
import torch
import torch.nn as nn
from timm.data import resolve_data_config

from comp.config import DataConfig, HeadConfig, ModelConfig
from comp.errors import UserError
from comp.models import scratch  # noqa: F401  (registers the scratch_* networks with timm)
from comp.models.heads import build_head, freeze_backbone
from comp.models.weights import bundled_state_dict, load_backbone_weights, read_state_dict


class Classifier(nn.Module):
    """A headless timm backbone (global-pooled features) followed by a `heads.build_head` head."""

    def __init__(self, backbone: nn.Module, head: Union[str, HeadConfig], num_classes: int, dropout=None):
        super().__init__()
        self.backbone = backbone
        # Width of what forward_head(pre_logits=True) returns: timm's head_hidden_size where the
        # backbone has a head layer after pooling (MobileNetV3: 288 channels pooled, 1024 out).
        self.num_features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.num_classes = num_classes
        self.pretrained_cfg = dict(getattr(backbone, "pretrained_cfg", {}))
        self._head_spec, self._dropout = head, dropout
        self.head = build_head(head, self.num_features, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> unpooled feature map (B, C, h, w) (or tokens, for transformers)."""
        return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> pooled features (B, num_features) if pre_logits, else logits (B, num_classes)."""
        pooled = self.backbone.forward_head(x, pre_logits=True)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head of the same spec for `num_classes` outputs."""
        self.num_classes = num_classes
        self.head = build_head(self._head_spec, self.num_features, num_classes, self._dropout)


# The words model.pretrained takes besides a weights file.
PRETRAINED_WORDS = ("hub", "none", "bundled")


def build_model(cfg: ModelConfig, num_classes: int, pretrained: bool = True) -> Classifier:
    """Create backbone `cfg.name` with weights from `cfg.pretrained`, add the head, apply freezing.

    Args:
        cfg: the `model` config section.
        num_classes: outputs of the head.
        pretrained: False skips loading weights (used when a checkpoint will overwrite them anyway).

    Returns:
        A `Classifier` mapping (B, 3, H, W) images to (B, num_classes) logits.

    Raises:
        UserError: unknown model name, weights that cannot be fetched or do not fit.
    """
    _check_name(cfg.name)
    source = cfg.pretrained if pretrained else "none"
    kwargs: dict[str, Any] = {"num_classes": 0}
    if cfg.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    arch = cfg.name.split(".")[0]
    if source == "hub":
        try:
            backbone = timm.create_model(cfg.name, pretrained=True, **kwargs)
        except Exception as e:  # network, hub and "no pretrained weights" errors come in many types
            raise UserError(
                f"could not get pretrained weights for {cfg.name!r} from the hub ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120] if str(e) else ''}); offline, set model.pretrained=/path/to/weights.pth "
                "(or =bundled for tf_efficientnet_lite0, =none to train from scratch)"
            ) from e
    elif source == "none":
        backbone = timm.create_model(cfg.name, pretrained=False, **kwargs)
    elif source == "bundled":
        full = timm.create_model(arch, pretrained=False, **{k: v for k, v in kwargs.items() if k != "num_classes"})
        full.load_state_dict(bundled_state_dict(arch, full))
        full.reset_classifier(0)
        backbone = full
    else:
        backbone = timm.create_model(cfg.name, pretrained=False, **kwargs)
        load_backbone_weights(backbone, read_state_dict(Path(source)), source, cfg.name)
    freeze_backbone(backbone, cfg.trainable)
    return Classifier(backbone, cfg.head, num_classes, cfg.dropout)


def _check_name(name: str) -> None:
    arch = name.split(".")[0]
    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
    raise UserError(f"unknown model {name!r} (model.name); {hint}")


def data_config(cfg: DataConfig, model: nn.Module) -> dict[str, Any]:
    """Preprocessing for `model`: the backbone's pretrained config, overridden by the `data` section.

    Returns:
        {"image_size": int, "mean": (3 floats), "std": (3 floats), "crop_pct": float}
    """
    backbone = getattr(model, "backbone", model)
    resolved = resolve_data_config(model=backbone)
    return {
        "image_size": int(cfg.image_size or resolved["input_size"][-1]),
        "mean": tuple(float(v) for v in (cfg.mean or resolved["mean"])),
        "std": tuple(float(v) for v in (cfg.std or resolved["std"])),
        "crop_pct": float(cfg.crop_pct or resolved.get("crop_pct", 1.0)),
    }
