"""torchrun / DistributedDataParallel helpers: the process group, who writes, sums across ranks.

`torchrun --nproc_per_node N -m comp train ...` sets RANK, WORLD_SIZE, LOCAL_RANK (and the
rendezvous address) in each process's environment; `setup()` reads them and starts the process
group: NCCL when the processes have GPUs, gloo on CPU. Without those variables everything here is
a no-op and comp runs as one process.

Conventions (those of torchvision's reference scripts): `data.batch_size` is per process, so the
global batch is batch_size x world size; each global batch of the shared epoch order is cut into
one contiguous slice per rank, so N processes see exactly the batches one process with an N-times
larger batch would see. Only rank 0 writes files, logs and shows progress bars.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
from typing import Any, Optional

import torch
import torch.distributed as dist


def env_world_size() -> int:
    """WORLD_SIZE from the launcher's environment (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device_type: str = "cpu") -> bool:
    """Start the process group if torchrun launched us (idempotent); True when distributed."""
    if env_world_size() <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend=backend)
        # A rank that exits with the group still up can die in C++ teardown ("terminate called
        # without an active exception", SIGABRT) while torchrun then kills the others: close it.
        atexit.register(teardown)
    return True


def teardown() -> None:
    """Destroy the process group if this process started one (runs at exit; idempotent)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched_rank() -> int:
    """This process's rank as the launcher (torchrun) set it, known before the process group starts."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes checkpoints, logs and progress."""
    return rank() == 0


def sum_across(values: list[float], device: Optional[torch.device] = None) -> list[float]:
    """Element-wise sum of `values` over all ranks (the values themselves when not distributed)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device or _device())
    dist.all_reduce(t)
    return t.tolist()


def any_across(flag: bool) -> bool:
    """True on every rank if `flag` is True on any rank."""
    return sum_across([1.0 if flag else 0.0])[0] > 0


def gather_objects(obj: Any) -> list[Any]:
    """`obj` from every rank, in rank order (a one-element list when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def summed_stats(stats):
    """Epoch statistics over all ranks: images, loss and hits summed, then averaged."""
    mine = [stats.loss * stats.images, stats.acc * stats.images] if stats.images else [0.0, 0.0]  # no nan from an empty shard
    loss_sum, hits, n = sum_across([*mine, float(stats.images)])
    bad = [p for part in gather_objects(stats.bad_files) for p in part]
    # a copy of `stats` (an engine.epoch.EpochStats) with the sums: no import of the epoch module here
    summed = dataclasses.replace(stats, loss=loss_sum / max(n, 1), acc=hits / max(n, 1), images=int(n), bad_files=bad, probs=None, targets=None)
    if stats.targets is not None or stats.probs is not None:  # evaluation: the metric needs every rank's predictions
        parts = [p for p in gather_objects((stats.probs, stats.targets)) if p[0] is not None]
        if parts:
            summed.probs, summed.targets = torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts])
    return summed


def weights_digest(model) -> str:
    """sha1 of every parameter and buffer, in state-dict order: equal weights, equal digest."""
    import hashlib

    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()
