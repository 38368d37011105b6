"""CV against the leaderboard on a competition with hidden answers: the README's `comp runs` table and picture.

    .venv/bin/python benchmarks/cv_vs_lb.py OUT [--per-class 150]

On a Fashion-MNIST competition (10 classes, --per-class train images each plus a tenth as val/,
1,000 test images whose answers are kept aside), five recipes around `configs/demo.yaml` (1, 2 and
3 epochs; a 6x lower lr; 32 px images) are trained with `track: [tensorboard, mlflow]` (MLflow in
OUT/mlflow.db), predicted with TTA and submitted with `comp submit`. Each submission is then scored
against the hidden answers the way Kaggle splits a test set: a fixed random half of the test ids is
the public leaderboard, the other half the private one, recorded with `comp lb FILE PUBLIC --private
PRIVATE`. Prints `comp runs` and `comp lb`, and leaves OUT/submissions/cv_vs_lb.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comp.demo import build_fashion_competition  # noqa: E402

OUT = Path.cwd()
RECIPES = {
    "lite0-1ep": ["--epochs", "1"],
    "lite0-2ep": ["--epochs", "2"],
    "lite0-3ep": ["--epochs", "3"],
    "lite0-2ep-lr5e-4": ["--epochs", "2", "--set", "optim.lr=0.0005"],
    "lite0-2ep-32px": ["--epochs", "2", "--set", "data.image_size=32"],
}


def comp(*args: str, env: dict | None = None) -> str:
    # cwd: MLflow puts its artifacts under the working directory (mlruns/), so they stay beside OUT/mlflow.db
    done = subprocess.run([sys.executable, "-m", "comp", *args], capture_output=True, text=True, env=env, cwd=OUT)
    if done.returncode != 0:
        raise SystemExit(f"comp {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def split_scores(prediction: Path, answers: Path, public_ids: set[str]) -> tuple[float, float]:
    """Accuracy on the public ids and on the rest (a missing prediction counts as wrong)."""
    p = pd.read_csv(prediction, dtype=str).iloc[:, :2].set_axis(["id", "predicted"], axis=1)
    a = pd.read_csv(answers, dtype=str).iloc[:, :2].set_axis(["id", "label"], axis=1).merge(p, on="id", how="left")
    hit = a["predicted"] == a["label"]
    public = a["id"].isin(public_ids)
    return float(hit[public].mean()), float(hit[~public].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-class", type=int, default=150)
    a = ap.parse_args()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    global OUT
    OUT = out
    data = build_fashion_competition(out / "data", train_per_class=a.per_class, val_per_class=a.per_class // 10, test_images=1000)
    answers = data.parent / "answers.csv"
    ids = pd.read_csv(answers, dtype=str).iloc[:, 0].tolist()
    public_ids = set(np.random.default_rng(0).permutation(ids)[: len(ids) // 2])
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{out / 'mlflow.db'}")
    subs = out / "submissions"
    shutil.rmtree(subs, ignore_errors=True)  # a new season: the ledger's names must be unique
    for name, args in RECIPES.items():
        run = out / "runs" / name
        comp("train", str(ROOT / "configs" / "demo.yaml"), "--data", str(data), "--out", str(run), "--overwrite",
             "--set", "track=[tensorboard,mlflow]", *args, env=env)
        prediction = out / "predictions" / f"{name}.csv"
        prediction.parent.mkdir(exist_ok=True)
        comp("predict", str(run), "--tta", "--out", str(prediction))
        comp("submit", str(prediction), "-m", name, "--dir", str(subs))
        public, private = split_scores(prediction, answers, public_ids)
        comp("lb", f"{name}.csv", f"{public:.4f}", "--private", f"{private:.4f}", "--dir", str(subs))
        print(f"{name}: public {public:.4f} private {private:.4f}", flush=True)
    print(comp("runs", str(out / "runs")))
    print(comp("lb", "--dir", str(subs)))


if __name__ == "__main__":
    main()
