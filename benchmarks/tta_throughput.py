"""TTA throughput: N views from one decode vs one view, and vs decoding once per view.

    .venv/bin/python benchmarks/tta_throughput.py [--images 512] [--size 64] [--views identity,hflip,rot10,crop0.9]

Builds a generated competition and an untrained tf_efficientnet_lite0 run (weights do not change
the cost), then times `comp.engine.infer.predict_views` over the test images:
  1. one view (identity),
  2. N views in one call (decode once, N tensor views),
  3. the naive way: one call per view (decode N times).
Prints img/s and the ratios; the target is (2) <= about N x (1), and (2) faster than (3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from comp.config import load_config
from comp.data.competition import open_competition
from comp.data.synthetic import make_competition
from comp.engine.fit import fit
from comp.engine.infer import find_model_dirs, load_member, predict_views

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--views", default="identity,hflip,rot10,crop0.9")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    views = a.views.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_competition(Path(tmp) / "c", classes=4, per_class=8, test_per_class=a.images // 4, size=96, ext=".jpg")
        cfg = load_config(ROOT / "configs" / "demo.yaml", [
            ("data.dir", str(data)), ("train.epochs", 1), ("model.pretrained", "none"), ("data.image_size", a.size),
        ])
        fit(cfg, Path(tmp) / "run", log=lambda s: None)
        member = load_member(find_model_dirs(Path(tmp) / "run")[0], torch.device("cpu"))
        paths = open_competition(data).test_paths
        run = lambda vs: predict_views([member], [vs], paths, device=torch.device("cpu"), workers=a.workers)  # noqa: E731
        run(["identity"])  # warm-up
        t1 = timed(lambda: run(["identity"]))
        tn = timed(lambda: run(views))
        naive = timed(lambda: [run([v]) for v in views])
    n, k = len(paths), len(views)
    print(f"{n} images at {a.size} px, {k} views: {', '.join(views)}")
    print(f"1 view                 {t1:7.2f} s  {n / t1:7.0f} img/s")
    print(f"{k} views, one decode    {tn:7.2f} s  {n * k / tn:7.0f} view-img/s  ratio to 1 view {tn / t1:.2f} (limit {k})")
    print(f"{k} views, decode each   {naive:7.2f} s  {n * k / naive:7.0f} view-img/s  ratio to 1 view {naive / t1:.2f}")
    print(f"decode-once speed-up over decoding per view: {naive / tn:.2f}x")


if __name__ == "__main__":
    main()
