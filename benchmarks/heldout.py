"""Held-out competitions for the time-to-accuracy benchmark: same kind as the demo, other draws.

    .venv/bin/python benchmarks/heldout.py OUT [--seed 1] [--layout csv|folders] [--source fashion|digits]

Writes OUT/competition (the competition) and OUT/answers.csv, then
`benchmarks/time_to_accuracy.py --data OUT/competition --answers OUT/answers.csv` compares comp
with the reference on it. What changes from the demo competition, so that a recipe tuned on the
demo is not simply remembered:
- other images: a seeded draw of Fashion-MNIST disjoint from the demo's seed, or sklearn's bundled
  8x8 handwritten digits (`--source digits`, upscaled to 28 px), a different domain entirely;
- other class names (with spaces and capitals) and a different number of images per class;
- mixed files: grayscale PNG, RGB JPEG (quality 90) and opaque RGBA PNG, by a seeded draw;
- either layout: folders (train/<class>/, no val/) or CSV (train.csv + train_images/, ids
  without extension, a sample_submission.csv with its own column names).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

FASHION_NAMES = ["Top", "Trousers", "Jumper", "Dress", "Coat", "Sandal", "Shirt", "Trainer", "Bag", "Ankle Boot"]
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def load_source(source: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 [N, H, W], labels int [N], class names) of the chosen source."""
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images * (255 / 16)).clip(0, 255).astype(np.uint8)
        x = np.stack([np.asarray(Image.fromarray(im).resize((28, 28), Image.BILINEAR)) for im in x])
        return x, d.target.astype(int), DIGIT_NAMES
    from comp.data.sources import fashion_mnist

    x1, y1 = fashion_mnist("train")
    x2, y2 = fashion_mnist("test")
    return np.concatenate([x1, x2]), np.concatenate([y1, y2]).astype(int), FASHION_NAMES


def _save_mixed(gray: np.ndarray, path_stem: Path, rng: np.random.Generator) -> str:
    """Save one image as gray PNG, RGB JPEG or RGBA PNG; returns the file name."""
    kind = rng.choice(3, p=[0.4, 0.4, 0.2])
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(gray)
    if kind == 0:
        path = path_stem.with_suffix(".png")
        im.save(path)
    elif kind == 1:
        path = path_stem.with_suffix(".jpg")
        im.convert("RGB").save(path, quality=90)
    else:
        path = path_stem.with_suffix(".png")
        im.convert("RGBA").save(path)
    return path.name


def build(out: Path, *, seed: int = 1, layout: str = "csv", source: str = "fashion",
          train_per_class: int = 700, test_images: int = 2000) -> Path:
    """Write the competition to out/competition and the answers to out/answers.csv; returns the former."""
    x, y, names = load_source(source)
    rng = np.random.default_rng(1000 + seed)  # the demo draws with seed 0
    root = out / "competition"
    train_rows = []
    test_pool = []
    for c, name in enumerate(names):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = min(train_per_class, int(len(idx) * 0.75))
        for k, i in enumerate(idx[:n]):
            stem = f"{name.lower().replace(' ', '_')}_{k:04d}"
            folder = root / "train_images" if layout == "csv" else root / "train" / name
            file = _save_mixed(x[i], folder / stem, rng)
            train_rows.append((Path(file).stem, name))
        test_pool += list(idx[n:])
    test_idx = rng.permutation(np.array(test_pool))[:test_images]
    test_dir = root / ("test_images" if layout == "csv" else "test")
    ids, labels = [], []
    for k, i in enumerate(test_idx):
        file = _save_mixed(x[i], test_dir / f"im{k:05d}", rng)
        ids.append(Path(file).stem)
        labels.append(names[y[i]])
    if layout == "csv":
        pd.DataFrame(train_rows, columns=["image_id", "category"]).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"ID": ids, "Category": names[0]}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"ID": ids, "Category": labels}).to_csv(out / "answers.csv", index=False)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--layout", choices=("csv", "folders"), default="csv")
    ap.add_argument("--source", choices=("fashion", "digits"), default="fashion")
    ap.add_argument("--train-per-class", type=int, default=700)
    ap.add_argument("--test-images", type=int, default=2000)
    a = ap.parse_args()
    root = build(a.out, seed=a.seed, layout=a.layout, source=a.source,
                 train_per_class=a.train_per_class, test_images=a.test_images)
    print(f"wrote {root} and {a.out / 'answers.csv'}")


if __name__ == "__main__":
    main()
