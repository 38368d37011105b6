"""Two comp trainings on one machine: `train.threads: auto` against torch's default (every core in each).

    .venv/bin/python benchmarks/shared_machine.py OUT [--per-class 120] [--epochs 2] [--repeats 3]

Builds a Fashion-MNIST competition (10 classes, --per-class train images each, folders layout),
then trains `configs/demo.yaml` four ways, one after another, and reads the training img/s of
each run from its metrics.csv (epoch seconds, so imports and the one-off cache decode are not
counted):

1. one training alone, `train.threads=auto` (the default now), and
2. one training alone, `train.threads=<all cores>` (torch's default before "auto"), the reference,
   each --repeats times in alternating order after a warm-up run, their medians compared (single
   runs on this shared machine vary by up to 2x from one minute to the next);
3. two trainings at once, both `auto`;
4. two trainings at once, both `<all cores>` (what two side-by-side runs used to do).

It prints each, the pair's combined throughput against one alone (the target: at least 0.9x with
auto) and auto alone against the reference alone (the target: no slower).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comp.demo import build_fashion_competition  # noqa: E402
from comp.engine.threads import usable_cores  # noqa: E402


def train(data: Path, out: Path, threads: str, epochs: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "comp", "train", str(ROOT / "configs" / "demo.yaml"), "--data", str(data), "--out", str(out),
         "--overwrite", "--epochs", str(epochs), "--set", f"train.threads={threads}", "--set", "data.workers=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def img_per_s(run: Path, images: int) -> float:
    """Training images per second over the run's epochs (metrics.csv's seconds: training and its small validation)."""
    rows = pd.read_csv(run / "metrics.csv")
    return images * len(rows) / rows["seconds"].sum()


def run_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a training failed: {err[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-class", type=int, default=120)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="single runs of each kind, alternating")
    a = ap.parse_args()
    data = build_fashion_competition(a.out / "data", train_per_class=a.per_class, val_per_class=a.per_class // 10, test_images=10)
    n = sum(1 for _ in (data / "train").rglob("*.png"))
    n = n - n // 10 if not (data / "val").is_dir() else n
    cores = str(usable_cores())
    rates: dict[str, list[float]] = {}
    # A warm-up run first (the cache decode, the page cache), then the single runs twice each in
    # alternating order, keeping each one's faster run, then the pairs.
    run_all([train(data, a.out / "warmup", "auto", a.epochs)])
    plan = [(f"{cores} threads alone", cores, False), ("auto alone", "auto", False)] * a.repeats + [
        ("auto, two at once", "auto", True), (f"{cores} threads each, two at once", cores, True)]
    for k, (name, threads, pair) in enumerate(plan):
        outs = [a.out / f"{k}_{name.replace(' ', '_').replace(',', '')}_{i}" for i in range(2 if pair else 1)]
        run_all([train(data, o, threads, a.epochs) for o in outs])
        got = [img_per_s(o, n) for o in outs]
        rates.setdefault(name, []).extend(got)
        print(f"{name:<32} " + " + ".join(f"{r:.0f}" for r in got) + f" img/s (total {sum(got):.0f})", flush=True)
    alone, reference = statistics.median(rates["auto alone"]), statistics.median(rates[f"{cores} threads alone"])
    print(f"medians alone: auto {alone:.0f} img/s, {cores} threads {reference:.0f} img/s")
    print(f"two at once with auto: {sum(rates['auto, two at once']) / alone:.2f}x one alone (target >= 0.9x); "
          f"with {cores} threads each: {sum(rates[f'{cores} threads each, two at once']) / alone:.2f}x")
    print(f"one alone, auto against {cores} threads: {alone / reference:.2f}x (target: no slower)")


if __name__ == "__main__":
    main()
