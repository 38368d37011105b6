"""Imbalanced competitions: what class weights, the balanced sampler and focal loss are worth.

    .venv/bin/python benchmarks/imbalance.py OUT [--seeds 0,1] [--variants plain,weights,sampler,focal]
        [--ratio 20] [--largest 1000] [--epochs N] [--set key=value ...] [--reuse]

Builds a held-out imbalanced competition from Fashion-MNIST (folders layout, train/ and val/ with
class sizes falling geometrically from `--largest` to `--largest / --ratio`, in a shuffled class
order; a balanced test set of 200 images per class; answers outside the competition), then for
every training seed trains `configs/demo.yaml` once per variant, the same recipe otherwise:

    plain    nothing for the imbalance
    weights  train.class_weights=balanced (inverse frequency, sklearn)
    sampler  data.sampler=balanced
    focal    train.loss=focal (gamma 2)
    focal-weights  both (the class-balanced focal loss of RetinaNet)

Every run selects its best epoch on val balanced accuracy (`metric=balanced_accuracy`, the
val split is imbalanced like train), predicts the test images and is scored on the balanced test
set: balanced accuracy (= accuracy there) and macro F1. The last lines are a table, per variant,
of both seeds and their mean, with the gain over plain.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "plain": [],
    "weights": ["train.class_weights=balanced"],
    "sampler": ["data.sampler=balanced"],
    "focal": ["train.loss=focal"],
    "focal-weights": ["train.loss=focal", "train.class_weights=balanced"],
}


def class_sizes(largest: int, ratio: float, classes: int = 10) -> list[int]:
    """Geometric sizes from `largest` down to `largest / ratio`."""
    return [int(round(largest * ratio ** (-k / (classes - 1)))) for k in range(classes)]


def build(root: Path, largest: int, ratio: float, seed: int = 11) -> tuple[Path, pd.DataFrame, list[int]]:
    """Write the competition (skipped when complete); returns it, the test answers and the train sizes."""
    sys.path.insert(0, str(ROOT))
    from comp.data.sources import FASHION_CLASSES, fashion_mnist
    from comp.demo import write_test_set

    rng = np.random.default_rng(seed)
    order = rng.permutation(10)  # which class is rare is not the label order
    train_sizes = class_sizes(largest, ratio)
    val_sizes = class_sizes(max(2, largest // 5), ratio)
    marker, answers_file = root / ".complete", root.parent / "answers.csv"
    if marker.is_file() and answers_file.is_file():
        return root, pd.read_csv(answers_file, dtype=str), train_sizes
    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    for rank, c in enumerate(order):
        name = FASHION_CLASSES[c]
        idx = rng.permutation(np.flatnonzero(y == c))
        n, v = train_sizes[rank], val_sizes[rank]
        for split, chosen in (("train", idx[:n]), ("val", idx[n : n + v])):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(x[i]).save(folder / f"{i:05d}.png")
    test_idx = np.concatenate([rng.permutation(np.flatnonzero(yt == c))[:200] for c in range(10)])
    test_idx = rng.permutation(test_idx)
    write_test_set(root, xt[test_idx], [FASHION_CLASSES[y] for y in yt[test_idx]], id_prefix="t", columns=("id", "label"),
                   answers=answers_file)
    answers = pd.read_csv(answers_file, dtype=str)
    marker.write_text("ok")
    sizes = {FASHION_CLASSES[c]: (train_sizes[r], val_sizes[r]) for r, c in enumerate(order)}
    print("train / val sizes: " + ", ".join(f"{k} {a}/{b}" for k, (a, b) in sizes.items()), flush=True)
    return root, answers, train_sizes


def test_scores(prediction: Path, answers: pd.DataFrame) -> tuple[float, float]:
    """(balanced accuracy, macro F1) of a label prediction on the test answers."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    pred = pd.read_csv(prediction, dtype=str).set_index("id").loc[answers["id"]].iloc[:, 0]
    return float(balanced_accuracy_score(answers["label"], pred)), float(f1_score(answers["label"], pred, average="macro"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--variants", default="plain,weights,sampler,focal")
    ap.add_argument("--ratio", type=float, default=20.0)
    ap.add_argument("--largest", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], help="extra comp train --set key=value for every variant")
    ap.add_argument("--reuse", action="store_true", help="keep finished runs and only predict and score")
    a = ap.parse_args()
    data, answers, sizes = build(a.out / "competition", a.largest, a.ratio)
    print(f"{sum(sizes)} train images, largest/smallest class {sizes[0]}/{sizes[-1]}; test 2000 balanced", flush=True)
    comp = [sys.executable, "-m", "comp"]
    results: dict[str, dict[int, tuple[float, float, float]]] = {}
    for seed in [int(s) for s in a.seeds.split(",")]:
        for variant in a.variants.split(","):
            run = a.out / "runs" / f"{variant}-s{seed}"
            t0 = time.time()
            train = [*comp, "train", str(ROOT / "configs" / "demo.yaml"), "--data", str(data), "--out", str(run), "--overwrite",
                     "--set", "metric=balanced_accuracy", "--set", f"train.seed={seed}"]
            for item in VARIANTS[variant] + a.set:
                train += ["--set", item]
            if a.epochs:
                train += ["--epochs", str(a.epochs)]
            if not (a.reuse and (run / "summary.json").is_file()):
                subprocess.run(train, check=True)
            subprocess.run([*comp, "predict", str(run), "--data", str(data), "--out", str(run / "prediction.csv")], check=True)
            bal, f1 = test_scores(run / "prediction.csv", answers)
            results.setdefault(variant, {})[seed] = (bal, f1, time.time() - t0)
            print(f"{variant:<8} seed {seed}: test balanced accuracy {bal:.4f}  macro F1 {f1:.4f}  ({time.time() - t0:.0f} s)", flush=True)
    seeds = next(iter(results.values()))
    print("\nvariant        " + "  ".join(f"seed {s}" for s in seeds) + "   mean    vs plain")
    base = np.mean([r[0] for r in results["plain"].values()]) if "plain" in results else float("nan")
    for variant, by_seed in results.items():
        vals = [r[0] for r in by_seed.values()]
        print(f"{variant:<13}  " + "  ".join(f"{v:.4f}" for v in vals) + f"   {np.mean(vals):.4f}  {100 * (np.mean(vals) - base):+.2f} pts")


if __name__ == "__main__":
    main()
