"""Tiny generated competitions (coloured shapes) for tests, benchmarks and the quick demo.

Each class is a shape (circle, square, triangle, ...) in a random colour, size and position on a
noisy background, so a pretrained backbone learns it in one short epoch while chance stays at
1 / classes. Both layouts (folders, CSV; docs/contract.md) can be written; the test answers go to `answers.csv`, which
no layout reads.

    python -m comp.data.synthetic DIR [--classes 4] [--per-class 60] [--size 48] [--layout folders|csv]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "hbar", "vbar")


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image (size x size) of `shape` with random colour, scale, position and noise."""
    noise = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    im = Image.fromarray(noise + rng.integers(0, 120, 3, dtype=np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    r = size * rng.uniform(0.22, 0.38)
    cx, cy = rng.uniform(r, size - r, 2)
    color = tuple(int(v) for v in rng.integers(130, 256, 3))
    box = (cx - r, cy - r, cx + r, cy + r)
    w = max(2, int(r / 2.5))
    if shape == "circle":
        d.ellipse(box, fill=color)
    elif shape == "square":
        d.rectangle(box, fill=color)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    elif shape == "cross":
        d.line([(cx - r, cy), (cx + r, cy)], fill=color, width=w)
        d.line([(cx, cy - r), (cx, cy + r)], fill=color, width=w)
    elif shape == "ring":
        d.ellipse(box, outline=color, width=w)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=color)
    elif shape == "hbar":
        d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=color)
    elif shape == "vbar":
        d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=color)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return im


def make_competition(
    root: Path | str,
    *,
    classes: int = 4,
    per_class: int | Sequence[int] = 20,
    test_per_class: int = 5,
    val_per_class: int = 0,
    size: int = 32,
    layout: Literal["folders", "csv"] = "folders",
    class_names: Optional[Sequence[str]] = None,
    sample_submission: bool = True,
    id_style: Literal["stem", "name"] = "stem",
    ext: str = ".png",
    seed: int = 0,
) -> Path:
    """Write a shapes competition to `root` and return `root`.

    Args:
        classes: number of classes (at most len(SHAPES)).
        per_class, test_per_class, val_per_class: images per class in train, test and a val/ split
            (folders layout only; 0 = no val/ folder). `per_class` may list one count per class
            (an imbalanced competition).
        class_names: the label strings (default: the shape names).
        sample_submission: write sample_submission.csv (with `id_style` ids) for the test images.
    """
    if not 1 <= classes <= len(SHAPES):
        raise ValueError(f"classes must be 1..{len(SHAPES)}")
    names = list(class_names) if class_names else list(SHAPES[:classes])
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = [per_class] * len(names) if isinstance(per_class, int) else list(per_class)
    if len(counts) != len(names):
        raise ValueError(f"per_class lists {len(counts)} counts for {len(names)} classes")
    train_rows, test_rows = [], []
    for c, name in enumerate(names):
        shape = SHAPES[c]
        for i in range(counts[c]):
            sub = Path("train") / name if layout == "folders" else Path("train")
            file = f"{name}_{i:04d}{ext}" if layout == "folders" else f"tr_{c:02d}_{i:04d}{ext}"
            _save(draw_shape(shape, size, rng), root / sub / file)
            train_rows.append((file, name))
        for i in range(val_per_class if layout == "folders" else 0):
            _save(draw_shape(shape, size, rng), root / "val" / name / f"{name}_val_{i:04d}{ext}")
        for i in range(test_per_class):
            test_rows.append((draw_shape(shape, size, rng), name))
    order = rng.permutation(len(test_rows))
    answers = []
    for k, j in enumerate(order):
        im, name = test_rows[j]
        file = f"img_{k:05d}{ext}"
        _save(im, root / "test" / file)
        answers.append((file if id_style == "name" else Path(file).stem, name))
    if layout == "csv":
        _write_csv(root / "train.csv", ("image_id", "label"), [(Path(f).stem, n) for f, n in train_rows])
    if sample_submission:
        cols = ("id", "label") if layout == "csv" else ("image_name", "pred_label")
        _write_csv(root / "sample_submission.csv", cols, [(i, names[0]) for i, _ in answers])
    _write_csv(root / "answers.csv", ("id", "label"), answers)
    return root


def make_tagged_competition(
    root: Path | str, *, tags: int = 3, images: int = 80, test_images: int = 12, size: int = 32,
    shape: Literal["tags", "onehot"] = "tags", rare: Optional[float] = None, seed: int = 0,
) -> Path:
    """A multi-label competition: each image shows 1..`tags` shapes (each present with p 0.5, or
    `rare` for the last one), its tags the shapes shown; train.csv and sample_submission.csv in
    `shape` (space-separated `tags`, or one 0/1 / probability column per tag), answers.csv the
    test images' tags (space-separated).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = list(SHAPES[:tags])
    p = np.full(tags, 0.5)
    if rare is not None:
        p[-1] = rare
    rows = []
    for i in range(images + test_images):
        present = [n for n, q in zip(names, p) if rng.random() < q] or [names[int(rng.integers(tags - (rare is not None)))]]
        canvas = np.zeros((size, size, 3), dtype=np.uint16)
        for n in present:  # each shape on its own noisy tile, added up: overlapping shapes stay visible
            canvas += np.asarray(draw_shape(n, size, rng), dtype=np.uint16)
        im = Image.fromarray((canvas // len(present)).astype(np.uint8), "RGB")
        split = "train" if i < images else "test"
        _save(im, root / split / f"img_{i:05d}.png")
        rows.append((f"img_{i:05d}", present))
    train, test = rows[:images], rows[images:]
    if shape == "tags":
        _write_csv(root / "train.csv", ("image_name", "tags"), [(i, " ".join(t)) for i, t in train])
        _write_csv(root / "sample_submission.csv", ("image_name", "tags"), [(i, names[0]) for i, _ in test])
    else:
        _write_csv(root / "train.csv", ("image_id", *names), [(i, *(int(n in t) for n in names)) for i, t in train])
        _write_csv(root / "sample_submission.csv", ("image_id", *names), [(i, *([0.5] * tags)) for i, _ in test])
    _write_csv(root / "answers.csv", ("id", "tags"), [(i, " ".join(t)) for i, t in test])
    return root


def make_graded_competition(
    root: Path | str, *, kind: Literal["ordinal", "regression"] = "ordinal", grades: int = 4, images: int = 80, test_images: int = 12,
    size: int = 32, seed: int = 0,
) -> Path:
    """A graded or numeric competition: each image shows 0..`grades`-1 squares on noise.

    ordinal: the label is the count (`id_code,diagnosis`, APTOS's columns; the sample's placeholder
    grade is 0); regression: the label is 20 x the count plus a uniform fraction (`Id,Pawpularity`,
    numbers with two decimals; the sample's placeholder 50.0). answers.csv holds the test labels.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(images + test_images):
        count = int(rng.integers(grades))
        im = Image.fromarray(rng.integers(0, 60, (size, size, 3), dtype=np.uint8), "RGB")
        d = ImageDraw.Draw(im)
        cell = size // 2
        for k in rng.permutation(4)[:count]:  # one square per quadrant
            x, y = (k % 2) * cell, (k // 2) * cell
            d.rectangle((x + 3, y + 3, x + cell - 4, y + cell - 4), fill=tuple(int(v) for v in rng.integers(150, 256, 3)))
        label = str(count) if kind == "ordinal" else f"{20 * count + rng.uniform(0, 10):.2f}"
        split = "train" if i < images else "test"
        _save(im, root / split / f"img_{i:05d}.png")
        rows.append((f"img_{i:05d}", label))
    header = ("id_code", "diagnosis") if kind == "ordinal" else ("Id", "Pawpularity")
    placeholder = "0" if kind == "ordinal" else "50.0"
    _write_csv(root / "train.csv", header, rows[:images])
    _write_csv(root / "sample_submission.csv", header, [(i, placeholder) for i, _ in rows[images:]])
    _write_csv(root / "answers.csv", ("id", "label"), rows[images:])
    return root


def _save(im: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def _write_csv(path: Path, header: Sequence[str], rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description="Write a generated shapes competition.")
    p.add_argument("root")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--test-per-class", type=int, default=10)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--layout", choices=("folders", "csv"), default="folders")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    make_competition(
        a.root, classes=a.classes, per_class=a.per_class, test_per_class=a.test_per_class,
        size=a.size, layout=a.layout, seed=a.seed,
    )
    print(f"wrote {a.root}")


if __name__ == "__main__":
    main()
