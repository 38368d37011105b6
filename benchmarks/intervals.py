"""Do comp's intervals hold on real runs? Val intervals against hidden-test differences, and seed ensembles.

    .venv/bin/python benchmarks/intervals.py pairs OUT     # >= 20 run pairs: does the val interval cover the test difference?
    .venv/bin/python benchmarks/intervals.py seeds OUT     # 3 seeds of configs/demo.yaml on the demo competition

`pairs`: a Fashion-MNIST competition with 3,000 training images, a val/ split of 1,000 and 8,000
test images whose answers are kept aside. Ten cheap variants of `configs/demo.yaml` (epochs,
learning rate, image size, head, label smoothing, trainable stages, seed) share the val split, so
every pair of them (45) is compared by `comp compare`'s paired bootstrap on the 1,000 val images
(accuracy and log loss, as predict scores them) and by the same metric on the 8,000 test images
(`comp predict`, no TTA, as the val predictions). A 95% interval should cover the test difference
in about 95% of the pairs; slightly less, since the test difference is itself measured on a finite
set (its noise is ~1/8 of the val noise's variance: ~93.5% expected). The pairs share runs, so
they are not independent draws.

`seeds`: the demo competition (`comp demo`'s: 8,000 train, 1,000 val, 2,000 test images),
`comp train configs/demo.yaml --seeds 3` and `comp predict --tta` of each seed and of the run
(the seeds' ensemble), scored on the hidden answers.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comp.demo import build_fashion_competition, score  # noqa: E402

CONFIG = ROOT / "configs" / "demo.yaml"
VARIANTS = {  # name -> --set overrides of configs/demo.yaml
    "e1": ["train.epochs=1"],
    "e2": ["train.epochs=2"],
    "e3": ["train.epochs=3"],
    "e2-seed7": ["train.epochs=2", "train.seed=7"],
    "e2-lr1e-3": ["train.epochs=2", "optim.lr=0.001"],
    "e2-lr1e-2": ["train.epochs=2", "optim.lr=0.01"],
    "e2-32px": ["train.epochs=2", "data.image_size=32"],
    "e2-headV1": ["train.epochs=2", "model.head=V1"],
    "e2-ls0": ["train.epochs=2", "train.label_smoothing=0"],
    "e2-trainable2": ["train.epochs=2", "model.trainable=2"],
}


def comp(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "comp", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"comp {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def test_scores(probs_csv: Path, answers: Path, task, classes: list[str]) -> dict[str, float]:
    """Accuracy and log loss of a prediction's probabilities on the hidden answers."""
    import torch

    from comp.probs import read_probs

    ids, p, columns, _ = read_probs(probs_csv)
    truth = pd.read_csv(answers, dtype=str).set_index(pd.read_csv(answers, dtype=str).columns[0])["label"]
    y = torch.tensor([columns.index(truth[i]) for i in ids])
    return {m: task.score(m, p, y, columns) for m in ("accuracy", "log_loss")}


def pairs(out: Path) -> None:
    from comp.evaluate.intervals import difference, held_out

    data = build_fashion_competition(out / "fm", train_per_class=300, val_per_class=100, test_images=8000)
    answers = out / "answers.csv"
    runs = {}
    for name, sets in VARIANTS.items():
        run = out / "runs" / name
        if not (run / "summary.json").is_file():
            comp("train", str(CONFIG), "--data", str(data), "--out", str(run), "--overwrite", *[a for s in sets for a in ("--set", s)])
        if not (out / f"{name}_probs.csv").is_file():
            comp("predict", str(run), "--no-tta", "--out", str(out / f"{name}.csv"))
        runs[name] = run
        h = held_out(run)
        t = test_scores(out / f"{name}_probs.csv", answers, h.task, h.classes)
        print(f"{name:<14} val acc {h.score('accuracy'):.4f}  test acc {t['accuracy']:.4f}  test log loss {t['log_loss']:.4f}", flush=True)
    rows = []
    for metric in ("accuracy", "log_loss"):
        scored = {n: held_out(r, metric) for n, r in runs.items()}
        test = {n: test_scores(out / f"{n}_probs.csv", answers, scored[n].task, scored[n].classes)[metric] for n in runs}
        for a, b in itertools.combinations(runs, 2):
            d = difference(scored[a], scored[b], resamples=2000)
            truth = test[b] - test[a]
            rows.append({"metric": metric, "a": a, "b": b, "val_diff": d.interval.value, "low": d.interval.low, "high": d.interval.high,
                         "test_diff": truth, "covered": d.interval.low <= truth <= d.interval.high, "outside_noise": d.real,
                         "sign_held": (np.sign(truth) == np.sign(d.interval.value)) if d.real else None})
    table = pd.DataFrame(rows)
    table.to_csv(out / "pairs.csv", index=False)
    for metric, t in table.groupby("metric", sort=False):
        real = t[t["outside_noise"]]
        print(f"{metric}: {len(t)} pairs; the 95% val interval covers the test difference in {t['covered'].mean():.1%} "
              f"({t['covered'].sum()}/{len(t)}); mean width {(t['high'] - t['low']).mean():.4f}; {len(real)} pairs outside the noise, "
              f"the test difference has the same sign in {real['sign_held'].astype(bool).mean():.0%} of them", flush=True)


def seeds(out: Path) -> None:
    data = build_fashion_competition(out / "fashion-mnist")
    answers = out / "answers.csv"
    run = out / "demo-3s"
    if not (run / "seeds.json").is_file():
        comp("train", str(CONFIG), "--data", str(data), "--out", str(run), "--seeds", "3", "--overwrite")
    accs = []
    for s in (42, 43, 44):
        comp("predict", str(run / f"seed_{s}"), "--tta", "--out", str(out / f"seed_{s}.csv"))
        accs.append(score(out / f"seed_{s}.csv", answers))
        print(f"seed {s}: test accuracy {accs[-1]:.4f}", flush=True)
    comp("predict", str(run), "--tta", "--out", str(out / "ensemble.csv"))
    ens = score(out / "ensemble.csv", answers)
    from comp.stats import t_interval

    iv, sd = t_interval(accs)
    print(f"3 seeds: test accuracy {iv.text()} (mean, 95% t-interval), sd {sd * 100:.2f} points, range {min(accs):.4f}-{max(accs):.4f}; "
          f"the 3-seed ensemble {ens:.4f} ({(ens - iv.value) * 100:+.2f} points over the mean seed)", flush=True)
    print((run / "seeds.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["pairs", "seeds"])
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    {"pairs": pairs, "seeds": seeds}[a.part](out)


if __name__ == "__main__":
    main()
