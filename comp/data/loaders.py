"""Training and validation batches: the decode-once cache or the albumentations file path.

`make_loaders` picks the path (`data.cache`: auto / on / off; auto caches when the cache fits
`data.cache_max_gb`, see `comp.data.cache.choose_cache`). Both yield `(x, y, bad_paths)` with x
normalized float (B, 3, S, S), so the engine does not care which one it got; the train batches'
`describe` says which it is and why.

- cache (comp/data/cache.py, batches.py): every labelled image of the competition is decoded once
  into a memory-mapped file of uint8 squares (the same file serves every fold and later runs);
  training batches are gathered by index, cropped from the whole square and augmented as whole
  batches (on the GPU when there is one); validation uses the squares' centres, which are the eval
  preprocessing's pixels (`transforms.eval_resize_crop`), the pixels `comp predict` sees.
- file path: DataLoader workers decode each image every epoch and run the albumentations presets;
  used when the cache would not fit the disk budget, or with data.cache: off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from comp.config import Config
from comp.data.augment import BatchAugment
from comp.data.batches import PhasedBatches, TensorBatches
from comp.data.cache import cache_rows, choose_cache, eval_crops, load_or_build
from comp.data.competition import Split
from comp.data.images import ImageFileDataset, collate_skip_bad
from comp.data.sampling import EpochBatchSampler
from comp.errors import UserError
from comp.tasks import Task
from comp.tasks.single import SingleLabel
from comp.data.transforms import eval_preset, eval_resize, train_preset


def make_loaders(
    cfg: Config, dcfg: dict, train: Split, val: Split, device: torch.device, pool: Optional[Sequence[Path]] = None, progress=None,
    rank: int = 0, world: int = 1, task: Optional[Task] = None, teaching=None,
) -> tuple[object, object, list[Path]]:
    """Train and val batch iterables for `cfg`, and the images found unreadable up front.

    Args:
        dcfg: resolved preprocessing (`models.factory.data_config`).
        pool: every labelled image of the competition (superset of train and val): the cache is
            built over it so that all folds and runs share one cache file.
        rank, world: this process's share under DistributedDataParallel (`data.batch_size` per
            process; see `comp.data.sampling.rank_batches`).
        task: the competition's task, whose targets the batches carry (default single-label).
        teaching: a second round's rows (`comp.tasks.soft_targets.Teaching`): the training batches carry
            its packed targets, over `train` followed by its extra (test) images; with `final_epochs`,
            the last epochs use the labelled images alone (`PhasedBatches`).

    Returns:
        (train batches, val batches, unreadable paths). The file path reports unreadable images
        per batch instead, so its list is empty.
    """
    task = task or SingleLabel()
    pool = list(pool) if pool is not None else list(train.paths) + list(val.paths)
    targets = None
    if teaching is not None:
        pool = pool + list(teaching.extra_paths)  # one cache holds the labelled and the pseudo-labelled images
        labelled, train = train, Split(list(train.paths) + list(teaching.extra_paths), [])
        targets = teaching.rows
    choice = choose_cache(cfg.data.cache, pool, dcfg["image_size"], dcfg["crop_pct"], cfg.data.cache_max_gb)

    def build(train: Split, targets) -> tuple:
        if choice.use:
            return _cached_loaders(cfg, dcfg, train, val, device, pool, progress, rank, world, task, targets)
        return (*_file_loaders(cfg, dcfg, train, val, device, rank, world, task, targets), [])

    train_batches, val_batches, bad = build(train, targets)
    if teaching is not None and teaching.final_epochs and teaching.extra_paths:
        n = len(labelled)
        train_batches = PhasedBatches(train_batches, build(labelled, targets[:n])[0], cfg.train.epochs - teaching.final_epochs,
                                      cfg.train.epochs)
    train_batches.describe = choice.reason
    return train_batches, val_batches, bad


def _cached_loaders(cfg, dcfg, train: Split, val: Split, device, pool, progress, rank: int, world: int, task: Task, train_targets=None):
    size, crop, mean, std = dcfg["image_size"], dcfg["crop_pct"], dcfg["mean"], dcfg["std"]
    squares, ok = load_or_build(pool, size, crop, cfg.data.cache_dir, threads=max(1, cfg.data.workers), progress=progress)

    def rows(split: Split, targets=None) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
        idx = cache_rows(pool, split.paths)
        good = ok[idx]
        bad = [split.paths[i] for i in (~good).nonzero().flatten().tolist()]
        return idx[good], (task.split_targets(split) if targets is None else targets)[good], bad

    tr_rows, tr_y, tr_bad = rows(train, train_targets)
    va_rows, va_y, va_bad = rows(val)
    bs = cfg.data.batch_size
    common = dict(mean=mean, std=std, device=device, rank=rank, world=world)
    # Training crops come from the whole square; validation sees its centre, the eval crop.
    train_batches = TensorBatches(
        squares, tr_y, rows=tr_rows, out_size=size, batch_size=bs, shuffle=True, drop_last=len(tr_rows) > bs,
        augment=BatchAugment.from_config(cfg.aug), seed=cfg.train.seed, balanced=cfg.data.sampler == "balanced", **common,
    )
    val_batches = TensorBatches(eval_crops(squares, size, crop), va_y, rows=va_rows, batch_size=bs * 2, **common)
    return train_batches, val_batches, tr_bad + va_bad


class FileBatches:
    """The file path's training/val batches: a DataLoader over `EpochBatchSampler`.

    Same interface as `TensorBatches` (`set_epoch(epoch, start_batch)`, `len()` = full epoch,
    yields `(x, y, bad_paths)`).
    """

    def __init__(
        self, dataset: ImageFileDataset, batch_size: int, *, seed: int, shuffle: bool, drop_last: bool, rank: int = 0, world: int = 1,
        balanced: bool = False, **loader_kw,
    ):
        self.dataset, self.seed, self.augmenting = dataset, seed, shuffle
        self.sampler = EpochBatchSampler(
            len(dataset), batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last, rank=rank, world=world,
            balance=dataset.labels if balanced else None,
        )
        # Its own generator: iter() draws the workers' base seed, which must not advance the global
        # RNG that dropout and mixup use (a resumed epoch would then drift from the original).
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, generator=torch.Generator().manual_seed(seed), **loader_kw)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.sampler.set_epoch(epoch, start_batch)
        if self.augmenting:
            self.dataset.set_epoch(self.seed, epoch)  # workers get a fresh copy of it at each iter()

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        return iter(self.loader)


def _file_loaders(
    cfg: Config, dcfg: dict, train: Split, val: Split, device: torch.device, rank: int, world: int, task: Task, train_targets=None,
) -> tuple[FileBatches, FileBatches]:
    """File-path loaders: albumentations train/eval presets, bad files skipped via the collate fn."""
    size, mean, std = dcfg["image_size"], dcfg["mean"], dcfg["std"]
    a = cfg.aug
    if a.trivial_augment:
        raise UserError("aug.trivial_augment works on the cached path only; set data.cache: on (or turn it off)")
    train_tf = train_preset(
        size=size, mean=mean, std=std, scale=a.scale, ratio=a.ratio, hflip=a.hflip, vflip=a.vflip,
        color_jitter=a.color_jitter, rotate=a.rotate, translate=a.translate, erase=a.erase,
    )
    eval_tf = eval_preset(size=size, mean=mean, std=std, crop_pct=dcfg["crop_pct"])
    # JPEGs decode at a reduced DCT scale no smaller than what the transforms need.
    draft = eval_resize(size, dcfg["crop_pct"])
    common = dict(num_workers=cfg.data.workers, collate_fn=collate_skip_bad, pin_memory=device.type == "cuda", rank=rank, world=world)
    bs, seed = cfg.data.batch_size, cfg.train.seed
    train_batches = FileBatches(
        ImageFileDataset(train.paths, list((task.split_targets(train) if train_targets is None else train_targets).numpy()), train_tf, draft),
        bs, seed=seed, shuffle=True,
        drop_last=len(train) > bs, balanced=cfg.data.sampler == "balanced", **common,
    )
    val_batches = FileBatches(ImageFileDataset(val.paths, list(task.split_targets(val).numpy()), eval_tf, draft), bs * 2, seed=seed, shuffle=False, drop_last=False, **common)
    return train_batches, val_batches
