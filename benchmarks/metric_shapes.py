"""Held-out competitions of each submission shape, scored as Kaggle would score them.

    .venv/bin/python benchmarks/metric_shapes.py OUT [--shapes probs,topk,positive] [--seed 7] [--epochs N]

For each shape it writes a 10-class Fashion-MNIST competition (folders layout: 600 train and 100 val
images per class from Fashion-MNIST's training set, a seeded draw unlike the demo's; 2,000 test
images from its test set) whose sample_submission.csv has that shape, then runs the user's path

    comp train configs/demo.yaml --data DIR --set metric=M --out RUN
    comp predict RUN --data DIR --out RUN/prediction.csv
    comp submit RUN/prediction.csv

and scores the file against the held-back answers with sklearn, the way the competition's scorer
would read it:

- probs: sample `id, <the ten class names, shuffled>`, metric log_loss (Kaggle's multi-class log
  loss: rows renormalized, clipped at 1e-15);
- topk: sample `id, Category`, metric map@3 (three space-separated names per row);
- positive: binary "Shirt" against the rest at 1:9 (600 shirts among 6,000 train images, 100 among
  1,000 val), sample `id, Shirt`, metric roc_auc on the written Shirt probabilities.
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
NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
METRIC = {"probs": "log_loss", "topk": "map@3", "positive": "roc_auc"}


def build(root: Path, shape: str, seed: int) -> tuple[Path, pd.DataFrame]:
    """Write the competition (once) and root/../answers.csv; return the folder and the answers (id, label)."""
    from comp.data.sources import fashion_mnist

    answers_file = root.parent / "answers.csv"
    if (root / "sample_submission.csv").is_file() and answers_file.is_file():
        return root, pd.read_csv(answers_file, dtype=str)

    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    rng = np.random.default_rng(seed)
    binary = shape == "positive"

    def name(c: int) -> str:  # top-k names are space-separated, so those class names have none
        return ("Shirt" if c == 6 else "Rest") if binary else NAMES[c].replace(" ", "_") if shape == "topk" else NAMES[c]

    if binary:  # 1:9 - 600 shirts and 5,400 others in train, 100 and 900 in val
        shirts = rng.permutation(np.flatnonzero(y == 6))
        rest = rng.permutation(np.flatnonzero(y != 6))
        splits = {"train": np.concatenate([shirts[:600], rest[:5400]]), "val": np.concatenate([shirts[600:700], rest[5400:6300]])}
    else:
        per = {c: rng.permutation(np.flatnonzero(y == c)) for c in range(10)}
        splits = {"train": np.concatenate([per[c][:600] for c in range(10)]), "val": np.concatenate([per[c][600:700] for c in range(10)])}
    for split, idx in splits.items():
        for i in idx:
            folder = root / split / name(int(y[i]))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(folder / f"{i:05d}.png")
    test_idx = rng.permutation(len(xt))[:2000]
    (root / "test").mkdir(parents=True, exist_ok=True)
    ids = [f"img_{k:05d}" for k in range(len(test_idx))]
    for k, i in zip(ids, test_idx):
        Image.fromarray(xt[i]).save(root / "test" / f"{k}.png")
    answers = pd.DataFrame({"id": ids, "label": [name(int(yt[i])) for i in test_idx]})
    if shape == "probs":
        cols = list(rng.permutation(NAMES))
        sample = pd.DataFrame({"id": ids, **{c: 0.1 for c in cols}})
    elif shape == "topk":
        sample = pd.DataFrame({"id": ids, "Category": "T-shirt Trouser Pullover"})
    else:
        sample = pd.DataFrame({"id": ids, "Shirt": 0.5})
    answers.to_csv(answers_file, index=False)
    sample.to_csv(root / "sample_submission.csv", index=False)  # last: marks the competition complete
    return root, answers


def kaggle_score(shape: str, prediction: Path, answers: pd.DataFrame) -> float:
    """The competition's score of the prediction file, read as Kaggle's scorer would read it."""
    from sklearn.metrics import log_loss, roc_auc_score

    pred = pd.read_csv(prediction, dtype={"id": str}).set_index("id").loc[answers["id"]]
    if shape == "probs":
        order = sorted(pred.columns)  # sklearn reads probability columns in sorted label order
        p = pred[order].to_numpy(dtype=float)
        p = np.clip(p / p.sum(1, keepdims=True), 1e-15, 1 - 1e-15)
        return float(log_loss(answers["label"], p, labels=order))
    if shape == "topk":
        scores = []
        for names, truth in zip(pred.iloc[:, 0].astype(str), answers["label"]):
            top = names.split()[:3]
            scores.append(1.0 / (top.index(truth) + 1) if truth in top else 0.0)
        return float(np.mean(scores))
    return float(roc_auc_score(answers["label"] == "Shirt", pred["Shirt"].astype(float)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--shapes", default="probs,topk,positive")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], help="extra comp train --set key=value (repeatable)")
    ap.add_argument("--reuse", action="store_true", help="keep finished runs (summary.json) and only predict and score")
    a = ap.parse_args()
    comp = [sys.executable, "-m", "comp"]
    lines = []
    for shape in a.shapes.split(","):
        base = a.out / shape
        data, answers = build(base / "competition", shape, a.seed)
        run = base / "run"
        t0 = time.time()
        train = [*comp, "train", str(ROOT / "configs" / "demo.yaml"), "--data", str(data), "--out", str(run),
                 "--overwrite", "--set", f"metric={METRIC[shape]}"]
        if a.epochs:
            train += ["--epochs", str(a.epochs)]
        for item in a.set:
            train += ["--set", item]
        if not (a.reuse and (run / "summary.json").is_file()):
            subprocess.run(train, check=True)
        subprocess.run([*comp, "predict", str(run), "--data", str(data), "--out", str(run / "prediction.csv")], check=True)
        subprocess.run([*comp, "submit", str(run / "prediction.csv"), "--dir", str(base / "submissions")], check=True)
        value = kaggle_score(shape, run / "prediction.csv", answers)
        lines.append(f"{shape:<9} {METRIC[shape]:<9} test {value:.4f}  ({time.time() - t0:.0f} s train + predict + submit)")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
