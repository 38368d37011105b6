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


def tune_cpu_allocator() -> bool:
    """Keep large CPU tensors' memory in the process instead of returning it to the OS after each use.

    glibc serves allocations above 32 MB (a float batch of 64 x 3 x 224 x 224 is 38 MB) with a
    fresh mmap each time, and touching the new pages costs more than the work on them: normalising
    such a batch took 25 ms, 15 ms with this (the effect PyTorch's CPU tuning guide gets from
    jemalloc or tcmalloc). The price is that freed memory up to 1 GB stays with the process.
    Returns whether it applied (glibc on Linux only).
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 256 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**30))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
