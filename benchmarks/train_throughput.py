"""Training img/s: comp's epoch loop vs a timm-style training loop, same model, batch and data.

    .venv/bin/python benchmarks/train_throughput.py                          # CPU here; the GPU where there is one
    .venv/bin/python benchmarks/train_throughput.py --model resnet50 --size 224 --batch 128 --steps 50

Both train `--model` from scratch on the same random uint8 images held on the device. The
reference is the loop of timm's train.py reduced to its core: timm.create_model,
create_optimizer_v2 (AdamW), autocast (bf16 on CUDA), channels_last, a cross-entropy step per
batch, with the batch normalized on the device as timm's prefetching loader does. comp runs
`comp.engine.epoch.train_one_epoch` over `TensorBatches` (batched augmentation off, so both do the
same work) with its scheduler step. Each side warms up, then times `--steps` batches; the script
prints both rates and comp's share of the reference (issue target: at least 95%).
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2

from comp.config import ModelConfig, OptimConfig, SchedConfig
from comp.data.batches import TensorBatches
from comp.device import amp_dtype, resolve_device
from comp.engine.epoch import train_one_epoch
from comp.engine.optim import create_optimizer, create_scheduler
from comp.models.factory import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference(model_name: str, images: torch.Tensor, labels: torch.Tensor, batch: int, steps: int, device, dtype) -> float:
    """img/s of the timm-style loop."""
    model = timm.create_model(model_name, num_classes=int(labels.max()) + 1).to(device, memory_format=torch.channels_last)
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    loss_fn = nn.CrossEntropyLoss()
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
    model.train()

    def step(k: int) -> None:
        idx = torch.randint(0, len(images), (batch,), device=device)
        x = ((images[idx].float() - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for k in range(3):
        step(k)
    _sync(device)
    t = time.perf_counter()
    for k in range(steps):
        step(k)
    _sync(device)
    return steps * batch / (time.perf_counter() - t)


def with_comp(model_name: str, images: torch.Tensor, labels: torch.Tensor, batch: int, steps: int, device, dtype) -> float:
    """img/s of comp's train_one_epoch over TensorBatches."""
    n_classes = int(labels.max()) + 1
    model = build_model(ModelConfig(name=model_name, pretrained="none", head="V0"), n_classes).to(device, memory_format=torch.channels_last)
    optimizer = create_optimizer(model, OptimConfig(name="adamw", lr=1e-3, weight_decay=0.05))
    batches = TensorBatches(
        images[: batch * (steps + 3)], labels[: batch * (steps + 3)], batch_size=batch, shuffle=True, drop_last=True,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), device=device,
    )
    scheduler = create_scheduler(optimizer, SchedConfig(name="cosine"), 1, len(batches))
    crit = nn.CrossEntropyLoss()
    warm = TensorBatches(images[: batch * 3], labels[: batch * 3], batch_size=batch, mean=(0.5,) * 3, std=(0.5,) * 3, device=device)
    train_one_epoch(model, warm, optimizer, device=device, criterion=crit, dtype=dtype, channels_last=True)
    _sync(device)
    t = time.perf_counter()
    stats, _ = train_one_epoch(model, batches, optimizer, device=device, criterion=crit, scheduler=scheduler, dtype=dtype, channels_last=True)
    _sync(device)
    return stats.images / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    dtype = amp_dtype("auto", device)
    n = a.batch * (a.steps + 3)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, a.size, a.size), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, 10, (n,), generator=g).to(device)
    ref = reference(a.model, images, labels, a.batch, a.steps, device, dtype)
    ours = with_comp(a.model, images, labels, a.batch, a.steps, device, dtype)
    print(f"{a.model} {a.size}px batch {a.batch} on {device} ({dtype or 'fp32'})")
    print(f"reference (timm-style loop) {ref:8.1f} img/s")
    print(f"comp train_one_epoch        {ours:8.1f} img/s  = {100 * ours / ref:.1f}% of the reference")


if __name__ == "__main__":
    main()
