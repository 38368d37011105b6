"""Does the decode-once photo cache cost accuracy? The same run from the cache and from the files.

    .venv/bin/python benchmarks/photo_accuracy.py OUT [--train 2000] [--test 1000] [--size 160] [--epochs 3] [--seeds 0]

Builds a photo competition in OUT/photos (`photo_pipeline.build_photos`: Fashion-MNIST items
upscaled and tinted on noisy gradients, 400-800 px JPEGs; a test/ folder with answers beside
it), then trains the same recipe twice per seed (efficientnet-lite0 with the bundled weights,
RandomResizedCrop (0.25, 1) + flip, no rotation or colour jitter), once with `data.cache=auto`
(the photo cache) and once with `data.cache=off` (albumentations from the files), predicts the
test images without TTA and prints test accuracy and training time of each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from photo_pipeline import build_photos  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", default="0")
    a = ap.parse_args()
    data = build_photos(a.out / "photos", a.train, test=a.test, seed=1)
    answers = pd.read_csv(a.out / "photos-answers.csv", dtype=str)
    config = a.out / "photo.yaml"
    config.write_text(
        f"data: {{image_size: {a.size}, crop_pct: 0.875, batch_size: 32, workers: 2, val_fraction: 0.1, cache_dir: {a.out / 'cache'}}}\n"
        "model: {name: tf_efficientnet_lite0, pretrained: bundled, head: V0, dropout: 0.1, trainable: 5}\n"
        "optim: {name: adamw, lr: 0.003, weight_decay: 0.01}\n"
        "sched: {name: cosine, warmup_epochs: 0.05, warmup_lr: 1.0e-05, min_lr: 1.0e-05}\n"
        f"train: {{epochs: {a.epochs}, label_smoothing: 0.1}}\n"
        "aug: {scale: [0.25, 1.0], hflip: 0.5, color_jitter: null, rotate: 0, translate: 0}\n"
    )
    comp = [sys.executable, "-m", "comp"]
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        for path, cache in (("photo cache", "auto"), ("files", "off")):
            run = a.out / "runs" / f"{cache}-s{seed}"
            t0 = time.perf_counter()
            subprocess.run([*comp, "train", str(config), "--data", str(data), "--out", str(run), "--overwrite",
                            "--set", f"data.cache={cache}", "--set", f"train.seed={seed}"], check=True)
            seconds = time.perf_counter() - t0
            subprocess.run([*comp, "predict", str(run), "--no-tta", "--data", str(data), "--out", str(run / "prediction.csv")],
                           check=True)
            pred = pd.read_csv(run / "prediction.csv", dtype=str).set_index("image_name").loc[answers["image_name"]]
            acc = float((pred["pred_label"].to_numpy() == answers["label"].to_numpy()).mean())
            rows.append((seed, path, acc, seconds))
            print(f"seed {seed} {path:<11}: test accuracy {acc:.4f}, training {seconds:.0f} s", flush=True)
    print("\nseed  path         test acc   train s")
    for seed, path, acc, seconds in rows:
        print(f"{seed:<5} {path:<12} {acc:.4f}     {seconds:.0f}")


if __name__ == "__main__":
    main()
