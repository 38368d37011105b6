"""`TensorBatches`: training and validation batches gathered from decoded uint8 images.

The images are the decode-once cache's squares (a memory-mapped file, `comp.data.cache`) or any
uint8 tensor (the factor suite's in-memory data sets). Batches are gathered by index, moved to the
device, augmented there as whole batches (`comp.data.augment`) and normalised: on a GPU the
augmentation runs on the GPU, and a data set that fits `GPU_RESIDENT_BYTES` is copied there once.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch

from comp.data.augment import BatchAugment, per_channel_
from comp.data.sampling import epoch_order, epoch_seed, num_batches, rank_batches

GPU_RESIDENT_BYTES = 4 * 2**30  # up to this much uint8 data is kept on the GPU; more is copied per batch


class TensorBatches:
    """A DataLoader stand-in over uint8 images: yields `(x (B, 3, S, S) float, y (B,), [])`.

    `x` is augmented (if `augment`; its crops come from the whole stored image and are resized to
    `out_size`), normalized with mean/std and channels_last; the empty list keeps the file path's
    `(x, y, bad_paths)` batch shape. The order and each batch's augmentation are functions of
    (seed, epoch, batch) (`comp.data.sampling`): `set_epoch(epoch, start_batch)` replays any epoch
    from any batch exactly. `balanced` draws class-balanced epochs.

    Args:
        images: uint8 (M, 3, R, R), possibly memory-mapped; not copied as a whole on the CPU.
        labels: (N,) labels of the samples.
        rows: (N,) the row of `images` of each sample (default: sample i is row i, N = M).
        out_size: S, the size of the augmented crops (default R); without `augment` the stored
            images are used as they are (pass the eval crops' view for validation).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Optional[BatchAugment] = None,
        seed: int = 0,
        device: torch.device = torch.device("cpu"),
        rank: int = 0,
        world: int = 1,
        balanced: bool = False,
        rows: Optional[torch.Tensor] = None,
        out_size: Optional[int] = None,
    ):
        self.rows = torch.arange(len(labels)) if rows is None else torch.as_tensor(rows, dtype=torch.long)
        self.images = images
        if device.type == "cuda" and len(self.rows) * images[0].numel() <= GPU_RESIDENT_BYTES:
            # The used images live in GPU memory: no host-to-device copy per batch.
            self.images, self.rows = images[self.rows].to(device), torch.arange(len(self.rows))
        self.labels = labels.to(device)
        self.rank, self.world = rank, world
        self.batch_size, self.shuffle, self.drop_last, self.augment = batch_size, shuffle, drop_last, augment
        self.out_size = out_size
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.inv_std = 1.0 / torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.seed, self.epoch, self.start_batch = seed, 0, 0
        self.device = device
        self.balance = labels.cpu() if balanced else None  # class-balanced epochs (data.sampler: balanced)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _gathered(self, rows: torch.Tensor) -> torch.Tensor:
        """The images of `rows` on this batches' device: (B, 3, R, R) uint8."""
        x = self.images[rows.to(self.images.device)]
        if x.device != self.device:
            x = x.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else x.to(self.device)
        return x

    def __len__(self) -> int:
        return num_batches(len(self.rows), self.batch_size * self.world, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
        order = epoch_order(len(self.rows), self.seed, self.epoch, self.shuffle, self.balance)
        g = torch.Generator()
        batches = rank_batches(order, self.batch_size, self.drop_last, self.rank, self.world, self.start_batch, pad=self.shuffle)
        for k, idx in batches:
            rows = self.rows[idx]
            if self.augment:
                # Each rank draws its own augmentations (rank 0's equal a single process's).
                g.manual_seed(epoch_seed(self.seed, self.epoch, k, *([self.rank] if self.rank else [])))
                if self.images.device == self.device:  # the augmentation gathers what it needs: on the CPU only the crops
                    x = self.augment(self.images, g, self.out_size, normalize=(self.mean, self.inv_std), rows=rows.to(self.device))
                else:
                    x = self.augment(self._gathered(rows), g, self.out_size, normalize=(self.mean, self.inv_std))
            else:
                x = self._gathered(rows)
                x = x.float().mul_(1 / 255.0)  # EvalPreset's arithmetic, in its order: the same floats
                x = per_channel_(per_channel_(x, "sub", self.mean), "mul", self.inv_std)
            x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx.to(self.labels.device)], []


class PhasedBatches:
    """Training batches that change at an epoch: `first` before epoch `switch`, `then` from it on
    (`pseudo.final_epochs`: the last epochs on the labelled images alone). Same interface as
    `TensorBatches`; `len()` is the current epoch's, `updates_per_epoch` the mean over `epochs`,
    which the lr schedule is planned with (so it still ends at the last update)."""

    def __init__(self, first, then, switch: int, epochs: int):
        self.first, self.then, self.switch = first, then, switch
        self.current = first
        self.updates_per_epoch = round((len(first) * switch + len(then) * (epochs - switch)) / epochs)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.current = self.first if epoch < self.switch else self.then
        self.current.set_epoch(epoch, start_batch)

    def __len__(self) -> int:
        return len(self.current)

    def __iter__(self):
        return iter(self.current)
