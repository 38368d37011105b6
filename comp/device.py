"""Where and in what precision a command runs: the device choice and the AMP dtype.

A leaf module: training, prediction, evaluation and the factor suite all choose devices the same way.
"""

from __future__ import annotations

from typing import Optional

import torch

from comp.errors import UserError


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if available, else cpu; anything else as given (validated)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"bad train.device {name!r}; use auto, cpu or cuda[:N]") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={name} but CUDA is not available here; use train.device=auto or cpu")
    return device


def amp_dtype(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype for train.amp on `device`; None = full precision.

    "auto" is bf16 (or fp16 on GPUs without bf16) on CUDA and off on CPU, where bf16 autocast is
    slower than fp32 on most CPUs without AMX.
    """
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16
