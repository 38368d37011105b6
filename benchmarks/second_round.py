"""Second rounds on a few-label competition: pseudo-labels, OOF soft targets and distillation against their first round.

    .venv/bin/python benchmarks/second_round.py OUT [--train 2000] [--test 8000] [--seeds 42 7] [--folds 3] [--leaky-seeds 1]

The competition: 2,000 labelled Fashion-MNIST images (200 per class, folders layout, no val/) and
8,000 test images whose answers are kept aside. Every run uses `configs/demo.yaml` (lite0 at 64 px,
5 epochs, a stratified 10% hold-out for single runs) with the seed as its only change; every
prediction is `comp predict --tta` (identity + hflip), scored on the hidden answers. Per seed:

- recipe alone: one model on 90% of the labels;
- 3-fold teacher: `--folds 3`, predicted as the ensemble of its folds;
- per-fold soft pseudo-labels: `--folds 3 --pseudo TEACHER` (fold i learns the test images from the
  teacher's fold i, which never saw fold i's validation images; `pseudo.weight` 0.5, the default);
- leaky pseudo-labels (the first `--leaky-seeds` seeds): the same student learning the teacher
  ensemble's submitted probabilities (`TEACHER_probs.csv`, every fold's knowledge) in every fold,
  accepted with `pseudo.leak_ok=true`, to show how far its CV drifts above its test score;
- OOF soft targets: `--folds 3 --set train.oof_targets={from: TEACHER, mix: 0.3}`;
- distilled single model: `comp distill TEACHER --student configs/demo.yaml` (alpha 0.5, T 1, the
  labelled and the test images).

Training is timed from the command's start to its end (teacher predictions included); inference
is timed in-process over the 8,000 test images with TTA after a warm-up (so the decode is cached
for all). Run nothing else on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comp.data.sources import FASHION_CLASSES, fashion_mnist  # noqa: E402
from comp.demo import score, write_test_set  # noqa: E402
from comp.files import read_json  # noqa: E402

CONFIG = ROOT / "configs" / "demo.yaml"


def build(out: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    """The competition folder and its answers (id, label), built once."""
    root, answers = out / "fm", out / "answers.csv"
    marker = root / ".complete"
    spec = f"{n_train} {n_test}"
    if marker.is_file() and marker.read_text() == spec:
        return root, answers
    x_train, y_train = fashion_mnist("train", download_root=out / ".downloads")
    x_test, y_test = fashion_mnist("test", download_root=out / ".downloads")
    rng = np.random.default_rng(0)
    for c, name in enumerate(FASHION_CLASSES):
        folder = root / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in rng.permutation(np.flatnonzero(y_train == c))[: n_train // len(FASHION_CLASSES)]:
            Image.fromarray(x_train[i]).save(folder / f"{i:05d}.png")
    idx = rng.permutation(len(x_test))[:n_test]
    write_test_set(root, x_test[idx], [FASHION_CLASSES[y] for y in y_test[idx]], id_prefix="test_",
                   columns=("image_name", "pred_label"), answers=answers)
    marker.write_text(spec)
    return root, answers


def comp(*args: str) -> float:
    """Run one comp command; its wall time in seconds."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "comp", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"comp {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - t


def predicted(run: Path, out: Path, answers: Path) -> tuple[float, float]:
    """(test accuracy, seconds) of `comp predict RUN --tta`, in-process, timed after the decode cache is warm."""
    from comp.predict import predict

    predict([run], tta=True, out=out, log=lambda _: None)  # warm-up: the test images' cache, the models' first steps
    t = time.perf_counter()
    predict([run], tta=True, out=out, log=lambda _: None)
    return score(out, answers), time.perf_counter() - t


def held_out(run: Path) -> float:
    """The run's held-out accuracy: cv_acc of a k-fold run, best_val_acc of a single one."""
    cv = read_json(run / "cv.json")
    return float(cv["cv_acc"]) if cv else float(read_json(run / "summary.json")["best_val_acc"])


def seed_runs(data: Path, answers: Path, out: Path, seed: int, folds: int, leaky: bool) -> list[dict]:
    """Every run of one seed: name, held-out accuracy, test accuracy, training and inference seconds."""
    s = ["--set", f"train.seed={seed}"]
    rows = []

    def record(name: str, run: Path, train_s: float) -> None:
        test, infer_s = predicted(run, out / f"{run.name}.csv", answers)
        rows.append({"seed": seed, "run": name, "held_out": held_out(run), "test": test, "train_s": train_s, "infer_s": infer_s})
        print(f"  {name:<40} held-out {rows[-1]['held_out']:.4f}  test {test:.4f}  train {train_s:6.0f} s  infer {infer_s:5.1f} s",
              flush=True)

    d = ["--data", str(data), "--overwrite"]
    teacher = out / "teacher"
    record("recipe alone (one model, 90% labels)", out / "recipe",
           comp("train", str(CONFIG), *d, "--out", str(out / "recipe"), *s))
    record(f"{folds}-fold teacher", teacher, comp("train", str(CONFIG), *d, "--out", str(teacher), "--folds", str(folds), *s))
    record(f"{folds}-fold + per-fold soft pseudo-labels", out / "pseudo",
           comp("train", str(CONFIG), *d, "--out", str(out / "pseudo"), "--folds", str(folds), "--pseudo", str(teacher), *s))
    if leaky:
        record(f"{folds}-fold + leaky pseudo-labels (ensemble)", out / "leaky",
               comp("train", str(CONFIG), *d, "--out", str(out / "leaky"), "--folds", str(folds), "--pseudo",
                    str(out / "teacher_probs.csv"), "--set", "pseudo.leak_ok=true", *s))
    record(f"{folds}-fold + OOF soft targets (mix 0.3)", out / "oof",
           comp("train", str(CONFIG), *d, "--out", str(out / "oof"), "--folds", str(folds),
                "--set", f"train.oof_targets={{from: {teacher}, mix: 0.3}}", *s))
    record(f"distilled from the {folds}-fold teacher", out / "distilled",
           comp("distill", str(teacher), "--student", str(CONFIG), *d, "--out", str(out / "distilled"), *s))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=8000)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    ap.add_argument("--leaky-seeds", type=int, default=1, help="how many of the seeds also train the leaky construction")
    a = ap.parse_args()
    out = a.out.resolve()
    data, answers = build(out, a.train, a.test)
    print(f"{a.train} labelled / {a.test} test Fashion-MNIST images, {CONFIG.name}, seeds {a.seeds}", flush=True)
    rows = []
    for k, seed in enumerate(a.seeds):
        print(f"seed {seed}", flush=True)
        rows += seed_runs(data, answers, out / f"seed_{seed}", seed, a.folds, k < a.leaky_seeds)
        pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    table = pd.DataFrame(rows)
    mean = table.groupby("run", sort=False)[["held_out", "test", "train_s", "infer_s"]].mean()
    mean["cv_gap"] = mean["held_out"] - mean["test"]
    mean["seeds"] = table.groupby("run", sort=False).size()
    print("\nmean over seeds (accuracy; cv_gap = held-out minus test)")
    print(mean.to_string(float_format=lambda v: f"{v:.4f}"))
    names = list(mean.index)
    teacher, recipe, pseudo, distilled = (next(n for n in names if key in n) for key in ("teacher", "recipe", "per-fold", "distilled"))
    print(f"\npseudo-labels over their teacher: {100 * (mean.test[pseudo] - mean.test[teacher]):+.2f} points (target >= +1.0)")
    print(f"distilled over the recipe alone: {100 * (mean.test[distilled] - mean.test[recipe]):+.2f} points (target >= +0.5); "
          f"vs the teacher ensemble: {100 * (mean.test[distilled] - mean.test[teacher]):+.2f} (target >= -0.3); "
          f"inference {mean.infer_s[distilled] / mean.infer_s[teacher]:.2f}x the ensemble's (target <= 0.33)")
    (out / "summary.json").write_text(json.dumps(mean.reset_index().to_dict(orient="records"), indent=1))


if __name__ == "__main__":
    main()
