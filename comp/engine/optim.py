"""Optimizer and schedule from config, through timm's factories (one small adapter each)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2, list_optimizers, param_groups_weight_decay
from timm.scheduler import create_scheduler_v2

from comp.config import OptimConfig, SchedConfig
from comp.errors import UserError


def optimizer_kwargs(cfg: OptimConfig) -> dict[str, Any]:
    """Map our `optim` section to `timm.optim.create_optimizer_v2` keyword arguments.

    timm's "sgd" means Nesterov SGD; ours is plain momentum SGD unless `nesterov: true`.
    """
    name = cfg.name.lower()
    if name == "sgd":
        name = "nesterov" if cfg.nesterov else "momentum"
    if name not in list_optimizers():
        raise UserError(f"unknown optimizer {cfg.name!r} (optim.name); use adamw, sgd, adam or a timm optimizer name")
    kwargs: dict[str, Any] = {"opt": name, "lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if name in ("momentum", "nesterov"):
        kwargs["momentum"] = cfg.momentum
    return kwargs


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Trainable parameters in groups: no weight decay on biases and norms; backbone lr scaled.

    The backbone groups carry `lr_scale = optim.backbone_lr_mult`, which timm's schedulers apply on
    every update (as for layer-wise lr decay), so the ratio holds exactly through warmup, decay and
    min_lr; a constant lr uses timm's "constant" schedule for the same reason.
    """
    backbone = getattr(model, "backbone", None)
    if backbone is None or cfg.backbone_lr_mult == 1.0:
        return param_groups_weight_decay(model, cfg.weight_decay)
    groups = [g for g in param_groups_weight_decay(model.head, cfg.weight_decay) if g["params"]]
    for g in param_groups_weight_decay(backbone, cfg.weight_decay):
        if g["params"]:
            groups.append({**g, "lr_scale": cfg.backbone_lr_mult})
    return groups


def create_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer over `model`'s trainable parameters."""
    groups = param_groups(model, cfg)
    if not any(g["params"] for g in groups):
        raise UserError("no trainable parameters; check model.trainable")
    return create_optimizer_v2(groups, **optimizer_kwargs(cfg))


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedConfig, epochs: int, updates_per_epoch: int) -> Any:
    """A timm scheduler, stepped per iteration with `step_update(num_updates)`.

    sched.name "none" is timm's "constant" schedule (still applying warmup and `lr_scale`).
    """
    try:
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched="constant" if cfg.name == "none" else cfg.name,
            num_epochs=cfg.cycle_epochs or epochs,
            warmup_epochs=cfg.warmup_epochs,
            warmup_lr=cfg.warmup_lr,
            min_lr=cfg.min_lr,
            step_on_epochs=False,
            updates_per_epoch=max(1, updates_per_epoch),
        )
    except (ValueError, AssertionError, KeyError) as e:
        raise UserError(f"bad schedule sched.name={cfg.name!r} ({e}); use cosine, step, multistep, poly, constant or none") from e
    if scheduler is None:
        raise UserError(f"unknown schedule sched.name={cfg.name!r}; use cosine, step, multistep, poly, constant or none")
    return scheduler
