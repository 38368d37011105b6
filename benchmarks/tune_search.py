"""`comp tune` against the demo recipe for the same number of epochs, and 2 workers against 1.

    .venv/bin/python benchmarks/tune_search.py OUT [--trials 12] [--epochs 2] [--per-class 200] [--final 5] [--workers]

On a Fashion-MNIST competition (10 classes, --per-class train images each plus a tenth as val/,
1,000 test images with hidden answers):

1. `comp tune configs/tune-demo.yaml --trials N` (N trials of --epochs epochs each, median pruning);
   the best trial's held-out value, then its test accuracy (`comp predict` of that trial, no TTA);
2. `configs/demo.yaml` trained once for N x epochs epochs (the same epoch budget, as a pruned search
   spends at most that), and its test accuracy;
3. with --final E, best.yaml and configs/demo.yaml each trained for E epochs (what the search is
   for: the winner's recipe trained properly), and their test accuracies;
4. with --workers, the same search again with `--jobs 2` into another study, and the wall times of both.

Prints each figure; the README's "Searching recipes" section quotes them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comp.demo import build_fashion_competition, score  # noqa: E402


def comp(*args: str) -> float:
    """Run one comp command; returns its wall time."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "comp", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"comp {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - t


def test_accuracy(run: Path, data: Path, out: Path) -> float:
    comp("predict", str(run), "--data", str(data), "--no-tta", "--out", str(out))
    return score(out, data.parent / "answers.csv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--workers", action="store_true", help="also time the search with --jobs 2")
    ap.add_argument("--final", type=int, default=0, help="also train best.yaml and demo.yaml for this many epochs each")
    a = ap.parse_args()
    data = build_fashion_competition(a.out / "data", train_per_class=a.per_class, val_per_class=a.per_class // 10, test_images=1000)
    common = ["--data", str(data), "--trials", str(a.trials), "--set", f"train.epochs={a.epochs}"]
    seconds = comp("tune", str(ROOT / "configs" / "tune-demo.yaml"), "--out", str(a.out / "study"), *common)
    import pandas as pd

    trials = pd.read_csv(a.out / "study" / "trials.csv")
    best = trials[trials["state"] == "complete"].iloc[0]
    epochs_spent = int(trials["epochs"].fillna(0).sum())
    tuned = test_accuracy(a.out / "study" / best["run_dir"], data, a.out / "tuned.csv")
    print(f"comp tune: {a.trials} trials x {a.epochs} epochs in {seconds:.0f} s, {epochs_spent} epochs trained "
          f"({(trials['state'] == 'pruned').sum()} pruned); best trial {int(best['number'])} val accuracy {best['value']:.4f}, "
          f"test accuracy {tuned:.4f}", flush=True)
    budget = a.trials * a.epochs
    t_demo = comp("train", str(ROOT / "configs" / "demo.yaml"), "--data", str(data), "--out", str(a.out / "demo"), "--overwrite",
                  "--epochs", str(budget))
    demo = test_accuracy(a.out / "demo", data, a.out / "demo.csv")
    print(f"configs/demo.yaml for {budget} epochs in {t_demo:.0f} s: test accuracy {demo:.4f} "
          f"(tuned {tuned - demo:+.4f})", flush=True)
    if a.final:  # what the search is for: the winner's recipe against the demo's, both trained for the same final epochs
        comp("train", str(a.out / "study" / "best.yaml"), "--data", str(data), "--out", str(a.out / "best-final"), "--overwrite",
             "--epochs", str(a.final))
        comp("train", str(ROOT / "configs" / "demo.yaml"), "--data", str(data), "--out", str(a.out / "demo-final"), "--overwrite",
             "--epochs", str(a.final))
        won = test_accuracy(a.out / "best-final", data, a.out / "best-final.csv")
        base = test_accuracy(a.out / "demo-final", data, a.out / "demo-final.csv")
        print(f"{a.final} epochs each: best.yaml test accuracy {won:.4f}, configs/demo.yaml {base:.4f} ({won - base:+.4f})", flush=True)
    if a.workers:
        two = comp("tune", str(ROOT / "configs" / "tune-demo.yaml"), "--out", str(a.out / "study2"), "--jobs", "2", *common)
        print(f"the same search with --jobs 2: {two:.0f} s against {seconds:.0f} s with one worker ({seconds / two:.2f}x)")


if __name__ == "__main__":
    main()
