"""Training order and augmentation randomness as pure functions of (seed, epoch, position).

Every random draw of a training epoch is derived from `epoch_seed(seed, epoch, ...)` instead of
a generator that runs on from epoch to epoch. So an epoch can be replayed from any batch: a run
resumed from a checkpoint taken at an epoch end or in the middle of an epoch sees exactly the
batches and augmentations the uninterrupted run saw, whatever happened before (the same idea as
`DistributedSampler.set_epoch`, taken down to the batch). It also makes the file path's
augmentation independent of the number of DataLoader workers.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int, *position: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch[, batch or sample index ...])."""
    words = [int(v) % 2**32 for v in (seed, epoch, *position)]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True, balance: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Indices (n,) of the samples in the order epoch `epoch` visits them.

    With `balance` (the (n,) class labels) the epoch is `balanced_order`'s class-balanced draw.
    """
    if balance is not None:
        return balanced_order(balance, seed, epoch)
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator()
    g.manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g)


def balanced_order(labels: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """A class-balanced epoch: (n,) indices in which every present class fills n / K slots.

    The epoch keeps its length n (so schedules and checkpoints count the same batches); the K
    classes present share its slots equally (the n mod K spare slots go to classes drawn at
    random). A class fills its slots by walking fresh permutations of its images, so a rare class
    repeats each image about equally often and a common one shows a different subset each epoch,
    never one image twice before all were shown. The draw is a function of (seed, epoch) only,
    like `epoch_order`: exact resume and identical orders on every DDP rank.
    """
    labels = torch.as_tensor(labels).cpu()
    n = len(labels)
    g = torch.Generator()
    g.manual_seed(epoch_seed(seed, epoch, 1))  # another stream than the uniform order of this epoch
    present = torch.unique(labels)
    k = len(present)
    slots = torch.full((k,), n // k, dtype=torch.long)
    slots[torch.randperm(k, generator=g)[: n % k]] += 1
    parts = []
    for c, s in zip(present.tolist(), slots.tolist()):
        members = (labels == c).nonzero().flatten()
        rounds = -(-s // len(members))
        walk = torch.cat([members[torch.randperm(len(members), generator=g)] for _ in range(rounds)])
        parts.append(walk[:s])
    order = torch.cat(parts)
    return order[torch.randperm(n, generator=g)]


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch; `drop_last` only applies when there is more than one batch of data."""
    if drop_last and n >= batch_size:
        return n // batch_size
    return -(-n // batch_size)


def rank_batches(
    order: torch.Tensor, batch_size: int, drop_last: bool, rank: int = 0, world: int = 1, start: int = 0, pad: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """(k, indices) of this rank's part of each batch k >= start of `order`.

    With `world` processes a global batch holds batch_size x world samples and rank r takes the
    r-th contiguous slice of it, so the ranks together see exactly the batches of one process
    with a `world`-times larger batch. A short last batch is shared out evenly instead of in
    `batch_size` slices, so no rank is left empty while others train (DDP's gradient all-reduce
    would wait for it forever); with `pad` (training), a batch of fewer than `world` samples is
    filled up with samples from the start of the epoch, as `DistributedSampler` pads.
    """
    g = batch_size * world
    for k in range(start, num_batches(len(order), g, drop_last)):
        batch = order[k * g : (k + 1) * g]
        if pad and len(batch) < world:
            batch = torch.cat([batch, order[torch.arange(world - len(batch)) % len(order)]])
        yield k, batch.tensor_split(world)[rank]  # = the contiguous batch_size slices of a full batch


class EpochBatchSampler(Sampler[list[int]]):
    """A DataLoader `batch_sampler` over `epoch_order`, restartable at any batch, sharded by rank.

    `balance` (the (n,) class labels) switches to class-balanced epochs (`balanced_order`).

    `set_epoch(epoch, start_batch)` picks the epoch and where iteration begins; `len()` stays the
    full epoch so schedulers count the same steps after a resume.
    """

    def __init__(
        self, n: int, batch_size: int, *, seed: int, shuffle: bool = True, drop_last: bool = False, rank: int = 0, world: int = 1,
        balance: Optional[Sequence[int]] = None,
    ):
        self.n, self.batch_size, self.seed, self.shuffle, self.drop_last = n, batch_size, seed, shuffle, drop_last
        self.balance = torch.as_tensor(balance, dtype=torch.long) if balance is not None else None
        self.rank, self.world = rank, world
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size * self.world, self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_order(self.n, self.seed, self.epoch, self.shuffle, self.balance)
        for _, idx in rank_batches(order, self.batch_size, self.drop_last, self.rank, self.world, self.start_batch, pad=self.shuffle):
            yield idx.tolist()
