"""Checkpoints: atomic writes, `weights_only` loads, RNG state capture.

A checkpoint is written to a temp file in the same folder, flushed to disk and renamed over the
old one, so a run killed at any moment leaves either the previous or the new file, never half of
one. Everything is stored as tensors and plain Python containers, which `torch.load(...,
weights_only=True)` accepts: no pickled objects, so loading a checkpoint cannot run code.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn

from comp.errors import UserError


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint on CPU with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; train first, or pass the run directory that holds it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file raises pickle, zip or runtime errors
        raise UserError(f"cannot load checkpoint {path} ({type(e).__name__}); it is damaged or not a comp checkpoint") from e


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states, as weights_only-safe values."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    # weights_only round-trips tuples as tuples, but be lenient with lists from other writers
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def weights_payload(model: nn.Module, cfg, classes: list[str], epoch: int, val_acc: float) -> dict[str, Any]:
    """best.pt: weights, classes, resolved config (as plain data), epoch and val accuracy."""
    return {
        "model": model.state_dict(),
        "classes": list(classes),
        "config": cfg.model_dump(mode="json", by_alias=True),
        "epoch": epoch,
        "val_acc": float(val_acc),
    }


def training_payload(model, optimizer, scheduler, scaler, ema, cfg, classes, state) -> dict[str, Any]:
    """last.pt: `weights_payload` plus optimizer, scheduler, scaler, EMA, loop state and RNG states."""
    payload = weights_payload(model, cfg, classes, state["epoch"], state["best_val_acc"])
    payload.update(
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict() if scheduler is not None else None,
        scaler=scaler.state_dict() if scaler is not None else None,
        ema=ema.module.state_dict() if ema is not None else None,
        state=dict(state),
        rng=rng_state(),
    )
    return payload


def restore_training(ckpt: dict[str, Any], model, optimizer, scaler, ema) -> dict[str, Any]:
    """Load a last.pt payload into the given objects; return the loop state saved with it.

    The optimizer gets its saved state (momentum, Adam moments) but keeps the hyperparameters it
    was created with (lr, weight decay, ...: the config of this command, which `--resume --set`
    may have changed). The scheduler is not restored: timm's schedulers are a function of the
    update count, so the caller re-plans it for this command's epochs and steps it to the
    update count in the returned state (see `comp.engine.fit`).
    """
    model.load_state_dict(ckpt["model"])
    configured = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(ckpt["optimizer"])
    for group, values in zip(optimizer.param_groups, configured):
        group.update(values)
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.module.load_state_dict(ckpt["ema"])
    set_rng_state(ckpt["rng"])
    return dict(ckpt["state"])


class _StopFlag:
    requested = False


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[_StopFlag]:
    """Turn the first Ctrl-C into `flag.requested = True`; a second one interrupts at once.

    The training loop checks the flag between batches, saves last.pt and stops, so Ctrl-C never
    lands in the middle of an optimizer step. Outside the main thread (where signal handlers
    cannot be set) Ctrl-C keeps its default behaviour.
    """
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
