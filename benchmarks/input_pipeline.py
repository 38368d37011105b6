"""Input pipeline img/s: comp's decode-once tensor path vs torchvision ImageFolder + PIL, 2 workers.

    .venv/bin/python benchmarks/input_pipeline.py [--data DIR] [--sizes 32,64,224] [--batches 60]

Both produce training batches (B, 3, S, S) normalized and augmented (random resized crop +
horizontal flip) from the same train/ folder; nothing else runs, so this is the loader's ceiling.
The comp cache is built first (its one-off decode time is reported separately), as it is on every
epoch after the first and in every later run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from comp.config import Config
from comp.data.competition import open_competition
from comp.data.cache import load_or_build
from comp.data.loaders import make_loaders
from comp.demo import build_fashion_competition


def rate(batches, n_batches: int) -> float:
    it = iter(batches)
    next(it)  # start-up (worker spawn) is not throughput
    t, seen = time.perf_counter(), 0
    for _ in range(n_batches):
        try:
            x, *_ = next(it)
        except StopIteration:
            it = iter(batches)
            x, *_ = next(it)
        seen += x.shape[0]
    return seen / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path)
    ap.add_argument("--sizes", default="32,64,224")
    ap.add_argument("--batches", type=int, default=60)
    a = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        data = a.data or build_fashion_competition(Path(tmp) / "demo" / "fashion-mnist", train_per_class=400, val_per_class=10, test_images=10)
        comp = open_competition(data)
        print(f"{len(comp.train)} train images from {data}")
        for size in [int(s) for s in a.sizes.split(",")]:
            tf = T.Compose([T.RandomResizedCrop(size, scale=(0.35, 1)), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
            ref = DataLoader(ImageFolder(str(data / "train"), transform=tf), batch_size=64, shuffle=True, num_workers=2, drop_last=True)
            ref_rate = rate(ref, a.batches)
            cfg = Config.model_validate({"data": {"cache": "on", "cache_dir": str(Path(tmp) / f"cache{size}"), "batch_size": 64},
                                         "aug": {"scale": [0.35, 1.0], "color_jitter": None, "rotate": 0, "translate": 0}})
            dcfg = {"image_size": size, "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0}
            t = time.perf_counter()
            load_or_build(comp.train.paths, size, 1.0, cfg.data.cache_dir)
            build = time.perf_counter() - t
            batches, _, _ = make_loaders(cfg, dcfg, comp.train, comp.train.subset([]), torch.device("cpu"), pool=comp.train.paths)
            ours = rate(batches, a.batches)
            print(f"{size:>4} px  reference {ref_rate:7.0f} img/s   comp cached {ours:7.0f} img/s   "
                  f"ratio {ours / ref_rate:5.1f}x   (one-off decode {build:.1f} s)")


if __name__ == "__main__":
    main()
