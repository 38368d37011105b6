"""Training and validation batches: the decode-once tensor path or the albumentations file path.

`make_loaders` picks the path (`data.cache`: auto / on / off). Both yield `(x, y, bad_paths)` with
x normalized float (B, 3, S, S), so the engine does not care which one it got.

- tensor path (comp/data/cache.py): all labelled images of the competition are decoded once into
  one cached uint8 tensor (the same cache serves every fold and later runs); batches are
  gathered by index and augmented as whole batches. Validation uses the eval crop of that tensor.
- file path: DataLoader workers decode each image every epoch and run the albumentations presets;
  chosen for large images (RandomResizedCrop then zooms into full-resolution pixels) or big data.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from comp.config import Config
from comp.data.cache import BatchAugment, TensorBatches, cache_fits, load_or_build
from comp.data.competition import Split
from comp.data.images import ImageFileDataset, collate_skip_bad
from comp.data.transforms import eval_preset, train_preset
from comp.tta import center_zoom


def use_cache(cfg: Config, paths: Sequence[Path], size: int) -> bool:
    """The `data.cache` decision for these images at this training size."""
    return cfg.data.cache == "on" or (cfg.data.cache == "auto" and cache_fits(paths, size))


def make_loaders(
    cfg: Config, dcfg: dict, train: Split, val: Split, device: torch.device, pool: Optional[Sequence[Path]] = None, progress=None
) -> tuple[object, object, list[Path]]:
    """Train and val batch iterables for `cfg`, and the images found unreadable up front.

    Args:
        dcfg: resolved preprocessing (`models.factory.data_config`).
        pool: every labelled image of the competition (superset of train and val): the tensor cache
            is built over it so that all folds and runs share one cache file.

    Returns:
        (train batches, val batches, unreadable paths). The file path reports unreadable images
        per batch instead, so its list is empty.
    """
    size = dcfg["image_size"]
    pool = list(pool) if pool is not None else list(train.paths) + list(val.paths)
    if use_cache(cfg, pool, size):
        return _tensor_loaders(cfg, dcfg, train, val, device, pool, progress)
    return (*_file_loaders(cfg, dcfg, train, val, device), [])


def _tensor_loaders(cfg, dcfg, train: Split, val: Split, device, pool, progress):
    size, mean, std = dcfg["image_size"], dcfg["mean"], dcfg["std"]
    images, ok = load_or_build(pool, size, 1.0, cfg.data.cache_dir, threads=max(1, cfg.data.workers), progress=progress)
    where = {Path(p): i for i, p in enumerate(pool)}

    def gather(split: Split) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
        idx = torch.tensor([where[Path(p)] for p in split.paths], dtype=torch.long)
        good = ok[idx] if len(idx) else torch.zeros(0, dtype=torch.bool)
        bad = [split.paths[i] for i in (~good).nonzero().flatten().tolist()]
        return images[idx[good]], torch.tensor(split.labels, dtype=torch.long)[good], bad

    tr_x, tr_y, tr_bad = gather(train)
    va_x, va_y, va_bad = gather(val)
    if dcfg["crop_pct"] < 1:
        # The cache holds the whole (short-side) image; the eval crop is a center zoom of it.
        va_x = torch.cat([center_zoom(c.float(), dcfg["crop_pct"]).round().clamp(0, 255).to(torch.uint8) for c in va_x.split(512)]) if len(va_x) else va_x
    a = cfg.aug
    augment = BatchAugment(
        scale=a.scale, ratio=a.ratio, hflip=a.hflip, vflip=a.vflip, rotate=a.rotate, translate=a.translate,
        color_jitter=a.color_jitter,
    )
    bs = cfg.data.batch_size
    common = dict(mean=mean, std=std, device=device)
    train_batches = TensorBatches(
        tr_x, tr_y, batch_size=bs, shuffle=True, drop_last=len(tr_x) > bs, augment=augment, seed=cfg.train.seed, **common
    )
    val_batches = TensorBatches(va_x, va_y, batch_size=bs * 2, **common)
    return train_batches, val_batches, tr_bad + va_bad


def _seed_worker(worker_id: int) -> None:
    # albumentations 2 keeps its own RNG, copied into every worker: reseed it per worker from
    # torch's per-worker seed, or all workers would draw the same augmentations.
    info = torch.utils.data.get_worker_info()
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info.dataset.transform.set_random_seed(seed)


def _file_loaders(cfg: Config, dcfg: dict, train: Split, val: Split, device: torch.device) -> tuple[DataLoader, DataLoader]:
    """File-path loaders: albumentations train/eval presets, bad files skipped via the collate fn."""
    size, mean, std = dcfg["image_size"], dcfg["mean"], dcfg["std"]
    a = cfg.aug
    train_tf = train_preset(
        size=size, mean=mean, std=std, scale=a.scale, ratio=a.ratio, hflip=a.hflip, vflip=a.vflip,
        color_jitter=a.color_jitter, rotate=a.rotate, translate=a.translate,
    )
    train_tf.set_random_seed(cfg.train.seed)
    eval_tf = eval_preset(size=size, mean=mean, std=std, crop_pct=dcfg["crop_pct"])
    # JPEGs decode at a reduced DCT scale no smaller than what the transforms need.
    draft = int(round(size / dcfg["crop_pct"]))
    workers = cfg.data.workers
    common = dict(
        num_workers=workers,
        collate_fn=collate_skip_bad,
        pin_memory=device.type == "cuda",
        worker_init_fn=_seed_worker if workers else None,
        persistent_workers=False,
    )
    g = torch.Generator()
    g.manual_seed(cfg.train.seed)
    bs = cfg.data.batch_size
    train_loader = DataLoader(
        ImageFileDataset(train.paths, train.labels, train_tf, draft),
        batch_size=bs, shuffle=True, drop_last=len(train) > bs, generator=g, **common,
    )
    val_loader = DataLoader(ImageFileDataset(val.paths, val.labels, eval_tf, draft), batch_size=bs * 2, shuffle=False, **common)
    return train_loader, val_loader
