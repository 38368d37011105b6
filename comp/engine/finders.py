"""Learning-rate range test and batch-size finder.

`lr_range_test` is Leslie Smith's test (as in fastai's `lr_find`): train a throwaway copy of the
model for up to `steps` batches while the learning rate grows exponentially from `start` to `end`,
record the smoothed loss, stop when it exceeds 4x its minimum, and suggest the rate where the
smoothed loss falls fastest (steepest negative slope in log-lr), a rate still safely below the
blow-up. `find_batch_size` times a few training steps at doubling batch sizes and returns the one
with the best images per second that fits in memory.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn


def lr_range_test(
    model: nn.Module,
    batches: Iterable,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    criterion: nn.Module,
    *,
    device: torch.device,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
) -> tuple[list[float], list[float], float]:
    """Run the range test on a copy of `model` (the model itself is left untouched).

    Args:
        batches: yields `(x (B,C,H,W), y (B,), ...)`; cycled if shorter than `steps`.
        make_optimizer: builds the optimizer for the copy (its lr is overwritten per step).

    Returns:
        (learning rates, smoothed losses, suggested learning rate).
    """
    probe = copy.deepcopy(model).to(device).train()
    opt = make_optimizer(probe)
    factor = (end / start) ** (1 / max(1, steps - 1))
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    it = iter(batches)
    for step in range(steps):
        try:
            x, y, *_ = next(it)
        except StopIteration:
            it = iter(batches)
            x, y, *_ = next(it)
        if len(y) == 0:
            continue
        lr = start * factor**step
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        loss = criterion(probe(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()
        avg = beta * avg + (1 - beta) * value
        smoothed = avg / (1 - beta ** (step + 1))  # bias-corrected, as an Adam moment
        if not math.isfinite(smoothed) or (step > 10 and smoothed > 4 * best):
            break
        best = min(best, smoothed)
        lrs.append(lr)
        losses.append(smoothed)
    return lrs, losses, suggest_lr(lrs, losses)


def suggest_lr(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The rate of steepest descent of the loss against log(lr), skipping the noisy ends."""
    if len(lrs) < 5:
        return float(lrs[len(lrs) // 2]) if lrs else 1e-3
    lo, hi = len(lrs) // 10, len(lrs) - max(1, len(lrs) // 20)
    slopes = np.gradient(np.asarray(losses[lo:hi]), np.log(np.asarray(lrs[lo:hi])))
    return float(lrs[lo + int(np.argmin(slopes))])


def plot_lr_test(lrs: Sequence[float], losses: Sequence[float], suggestion: float, path: Path) -> None:
    """Save the loss-vs-lr curve with the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="r", linestyle="--", label=f"suggested {suggestion:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed training loss", title="learning-rate range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def find_batch_size(
    model: nn.Module,
    sample: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    criterion: nn.Module,
    *,
    device: torch.device,
    candidates: Sequence[int] = (16, 32, 64, 128, 256, 512, 1024),
    steps: int = 3,
    log: Optional[Callable[[str], None]] = None,
) -> int:
    """The candidate batch size with the best training images/s that fits in memory.

    `sample(b)` returns a batch `(x (b,C,H,W), y (b,))`. Doubling stops at the first out-of-memory
    error or when throughput drops below 95% of the best so far (larger batches would only cost
    updates per epoch).
    """
    probe = copy.deepcopy(model).to(device).train()
    opt = make_optimizer(probe)
    best_bs, best_rate = candidates[0], 0.0
    for bs in candidates:
        try:
            x, y = (t.to(device) for t in sample(bs))
            rate = 0.0
            for step in range(steps + 1):  # the first step warms up allocators and kernels
                t0 = time.perf_counter()
                loss = criterion(probe(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if step:
                    rate += bs / (time.perf_counter() - t0) / steps
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            break
        if log:
            log(f"batch {bs}: {rate:.0f} img/s")
        if rate > best_rate:
            best_bs, best_rate = bs, rate
        elif rate < 0.95 * best_rate:
            break
    return best_bs
