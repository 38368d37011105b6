"""Graded and numeric competitions: comp's ordinal and regression tasks against hand-written fine-tunes.

    .venv/bin/python benchmarks/graded.py OUT [--train 2000] [--test 2000] [--epochs 5] [--seeds 42]
        [--grades-config ordinal.yaml] [--numbers-config regression.yaml]

Each image is a 2x2 mosaic of Fashion-MNIST garments (56 px). Two competitions share the images:

- grades (APTOS-like, `id_code,diagnosis`, scored by quadratic weighted kappa): how many of the four
  cells hold a top (T-shirt/top, pullover or shirt), 0-4; 10% of the training grades are moved one
  grade up or down, as graders disagree (the test answers are clean);
- numbers (Pawpularity-like, `Id,Pawpularity`, scored by RMSE): the sum of a fixed value per
  garment class over the four cells, plus Gaussian noise (sd 5), with two decimals.

The test answers are kept aside. Runs, each timed from `comp train` to the written file:

- comp ordinal: `comp train configs/ordinal.yaml` (the demo recipe on whole images: no random
  crops, no label smoothing), then `comp predict --tta` (smooth-L1 regression on the grade,
  cut-points fitted on the held-out tenth, flip TTA); also with `train.loss=corn`;
- comp classification of the grades: the same recipe with `data.task=single` (softmax, argmax, TTA);
- comp regression: `comp train configs/regression.yaml` (standardized target, MSE), `predict --tta`;
  also with `train.loss=bce`;
- hand-written loops: the same backbone and ImageNet weights (`build_model` of the same config),
  64 px, AdamW at the demo's lr and weight decay, cosine schedule, batch 32, the same epochs, PIL
  decode with torchvision transforms, no TTA: softmax cross-entropy with argmax for the grades,
  MSE on the standardized target for the numbers.

For the grades it prints where comp's gain comes from: kappa of the ordinal run at plain rounding
and at the fitted cut-points, each without and with TTA. Run nothing else on the machine meanwhile.
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
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comp.data.sources import FASHION_CLASSES, fashion_mnist  # noqa: E402

TOPS = ("tshirt_top", "pullover", "shirt")
VALUE = np.array([15.0, 40.0, 35.0, 60.0, 80.0, 45.0, 30.0, 70.0, 25.0, 55.0])  # per garment class, in FASHION_CLASSES order
NOISE = 5.0
GRADE_NOISE = 0.1


def mosaics(x: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """`n` 2x2 mosaics (56x56 grey), their grades (tops shown) and their numbers (summed values + noise)."""
    pick = rng.integers(0, len(y), size=(n, 4))
    tops = np.isin(np.array(FASHION_CLASSES)[y], TOPS)
    images = [np.block([[x[r[0]], x[r[1]]], [x[r[2]], x[r[3]]]]) for r in pick]
    grades = tops[pick].sum(1)
    numbers = VALUE[y[pick]].sum(1) + rng.normal(0, NOISE, n)
    return images, grades, numbers


def build(out: Path, n_train: int, n_test: int) -> tuple[Path, Path, pd.DataFrame]:
    """The two competitions on the same images, and the clean test answers (id, grade, number)."""
    rng = np.random.default_rng(0)
    xtr, ytr = fashion_mnist("train")
    xte, yte = fashion_mnist("test")
    train_images, train_grades, train_numbers = mosaics(xtr, ytr, n_train, rng)
    test_images, test_grades, test_numbers = mosaics(xte, yte, n_test, rng)
    noisy = train_grades.copy()
    moved = rng.random(n_train) < GRADE_NOISE
    noisy[moved] = np.clip(noisy[moved] + rng.choice([-1, 1], moved.sum()), 0, 4)
    images = out / "images"
    ids = [f"train_{i:05d}" for i in range(n_train)]
    test_ids = [f"test_{i:05d}" for i in range(n_test)]
    answers = pd.DataFrame({"id": test_ids, "grade": test_grades, "number": test_numbers})
    if not (out / "answers.csv").is_file():
        for split, ims in (("train", train_images), ("test", test_images)):
            (images / split).mkdir(parents=True, exist_ok=True)
            for i, im in enumerate(ims):
                Image.fromarray(im).save(images / split / f"{split}_{i:05d}.png")
        answers.to_csv(out / "answers.csv", index=False)
    comps = {}
    for name, header, train_values, placeholder in (("grades", ("id_code", "diagnosis"), [str(g) for g in noisy], "0"),
                                                    ("numbers", ("Id", "Pawpularity"), [f"{v:.2f}" for v in train_numbers], "100.0")):
        root = out / name
        root.mkdir(exist_ok=True)
        for split in ("train", "test"):
            if not (root / split).exists():
                (root / split).symlink_to(images / split)
        pd.DataFrame({header[0]: ids, header[1]: train_values}).to_csv(root / "train.csv", index=False)
        pd.DataFrame({header[0]: test_ids, header[1]: placeholder}).to_csv(root / "sample_submission.csv", index=False)
        comps[name] = root
    return comps["grades"], comps["numbers"], answers


def _comp(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "comp", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"comp {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def comp_run(config: str, data: Path, out: Path, epochs: int, seed: int, sets: list[str]) -> dict:
    """comp train + predict --tta (timed), then predict without TTA (for the decomposition); returns what was written."""
    t = time.perf_counter()
    _comp("train", str(ROOT / "configs" / config), "--data", str(data), "--out", str(out / "run"), "--overwrite",
          "--epochs", str(epochs), "--set", f"train.seed={seed}", *[a for s in sets for a in ("--set", s)])
    _comp("predict", str(out / "run"), "--tta", "--out", str(out / "tta.csv"))
    seconds = time.perf_counter() - t
    _comp("predict", str(out / "run"), "--no-tta", "--out", str(out / "plain.csv"))
    read = lambda name: pd.read_csv(out / name, dtype=str).iloc[:, 1]  # noqa: E731
    values = lambda name: pd.read_csv(out / name.replace(".csv", "_probs.csv")).iloc[:, 1:].to_numpy()  # noqa: E731
    summary = json.loads((out / "run" / "summary.json").read_text())
    return {"seconds": seconds, "tta": read("tta.csv"), "plain": read("plain.csv"), "tta_values": values("tta.csv"),
            "plain_values": values("plain.csv"), "summary": summary, "run": out / "run"}


def hand_run(data: Path, epochs: int, seed: int, kind: str) -> tuple[np.ndarray, float]:
    """The hand-written loop: (test predictions: grades by argmax, or numbers, seconds)."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    from comp.config import load_config
    from comp.models.factory import build_model

    t0 = time.perf_counter()
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    torch.manual_seed(seed)
    table = pd.read_csv(data / "train.csv")
    ids, target = table.iloc[:, 0], table.iloc[:, 1].to_numpy()
    if kind == "grades":
        model = build_model(cfg.model, 5, pretrained=True)
        y = torch.tensor(target, dtype=torch.long)
        loss_fn = torch.nn.CrossEntropyLoss()
    else:
        model = build_model(cfg.model, 1, pretrained=True)
        mean, std = target.mean(), target.std()
        y = torch.tensor((target - mean) / std, dtype=torch.float32)[:, None]
        loss_fn = torch.nn.MSELoss()
    norm_mean, norm_std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    tf = T.Compose([T.Resize(64), T.ToTensor(), T.Normalize(norm_mean, norm_std)])

    class Images(Dataset):
        def __init__(self, paths, targets=None):
            self.paths, self.targets = paths, targets

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            x = tf(Image.open(self.paths[i]).convert("RGB"))
            return (x, self.targets[i]) if self.targets is not None else x

    train = DataLoader(Images([data / "train" / f"{i}.png" for i in ids], y), batch_size=32, shuffle=True, num_workers=2, drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(train))
    for _ in range(epochs):
        model.train()
        for x, t in train:
            opt.zero_grad()
            loss_fn(model(x), t).backward()
            opt.step()
            sched.step()
    model.eval()
    test_ids = pd.read_csv(data / "sample_submission.csv").iloc[:, 0]
    outs = []
    with torch.inference_mode():
        for x in DataLoader(Images([data / "test" / f"{i}.png" for i in test_ids]), batch_size=64, num_workers=2):
            outs.append(model(x))
    z = torch.cat(outs)
    pred = z.argmax(1).numpy() if kind == "grades" else z[:, 0].numpy() * std + mean
    return pred, time.perf_counter() - t0


def grade_runs(a, seed: int, grades: Path, out: Path, kappa) -> list[tuple]:
    """The grades' runs of one seed: the hand loop, comp's classification, comp's ordinal heads (printed as they finish)."""
    from comp.tasks.cutpoints import cut, rounding_cuts

    rows = []
    if "hand" not in a.skip:
        hand_g, hand_gs = hand_run(grades, a.epochs, seed, "grades")
        rows.append(("grades", "hand-written softmax + argmax, no TTA", kappa(hand_g), hand_gs))
        print(f"[seed {seed}] {rows[-1][1]}: kappa {rows[-1][2]:.4f} in {hand_gs:.0f} s", flush=True)
    single = comp_run(a.grades_config, grades, out / f"single-{seed}", a.epochs, seed, ["data.task=single", "metric=qwk", "train.loss=auto"])
    rows.append(("grades", "comp data.task=single, metric qwk, --tta", kappa(single["tta"]), single["seconds"]))
    print(f"[seed {seed}] {rows[-1][1]}: kappa {rows[-1][2]:.4f} (no TTA {kappa(single['plain']):.4f}) in {single['seconds']:.0f} s",
          flush=True)
    for loss in [x for x in ("smooth_l1", "corn") if x not in a.skip]:
        o = comp_run(a.grades_config, grades, out / f"ordinal-{loss}-{seed}", a.epochs, seed,
                     ["data.task=ordinal", "metric=qwk", f"train.loss={loss}"])
        cuts = json.loads((o["run"] / "cutpoints.json").read_text())["cuts"]
        plain_v, tta_v = o["plain_values"][:, 0], o["tta_values"][:, 0]
        parts = {"no TTA, rounding": kappa(cut(plain_v, rounding_cuts(5))), "no TTA, cut-points": kappa(cut(plain_v, cuts)),
                 "TTA, rounding": kappa(cut(tta_v, rounding_cuts(5))), "TTA, cut-points": kappa(o["tta"])}
        s = o["summary"]
        rows.append(("grades", f"comp data.task=ordinal, loss {loss}, --tta", kappa(o["tta"]), o["seconds"]))
        print(f"[seed {seed}] {rows[-1][1]}: kappa {rows[-1][2]:.4f} in {o['seconds']:.0f} s; held-out qwk {s['best_val_score']:.4f} "
              f"at rounding, {s['best_val_score_cut']:.4f} at the cut-points; test: " + ", ".join(f"{k} {v:.4f}" for k, v in parts.items()),
              flush=True)
    return rows


def number_runs(a, seed: int, numbers: Path, out: Path, truth: np.ndarray) -> list[tuple]:
    """The numbers' runs of one seed: the hand loop and comp's regression losses (printed as they finish)."""
    from sklearn.metrics import root_mean_squared_error

    rows = []
    if "hand" not in a.skip:
        hand_n, hand_ns = hand_run(numbers, a.epochs, seed, "numbers")
        rows.append(("numbers", "hand-written MSE on the standardized target, no TTA", root_mean_squared_error(truth, hand_n), hand_ns))
        print(f"[seed {seed}] {rows[-1][1]}: RMSE {rows[-1][2]:.4f} in {hand_ns:.0f} s", flush=True)
    for loss in [x for x in a.number_losses if x not in a.skip]:
        r = comp_run(a.numbers_config, numbers, out / f"regression-{loss}-{seed}", a.epochs, seed,
                     ["data.task=regression", "metric=rmse", f"train.loss={loss}"] + (["data.train_on_val=true"] if a.final_fit else []))
        rows.append(("numbers", f"comp regression, loss {loss}, --tta", root_mean_squared_error(truth, r["tta"].astype(float)), r["seconds"]))
        print(f"[seed {seed}] {rows[-1][1]}: RMSE {rows[-1][2]:.4f} (no TTA "
              f"{root_mean_squared_error(truth, r['plain'].astype(float)):.4f}) in {r['seconds']:.0f} s", flush=True)
    return rows


def main() -> None:
    from sklearn.metrics import cohen_kappa_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--skip", nargs="*", default=[], help="runs to leave out: corn bce hand grades numbers")
    ap.add_argument("--number-losses", nargs="+", default=["mse", "bce"], help="comp's regression losses to run")
    ap.add_argument("--grades-config", default="ordinal.yaml", help="comp's recipe for the grades (under configs/)")
    ap.add_argument("--numbers-config", default="regression.yaml", help="comp's recipe for the numbers (under configs/)")
    ap.add_argument("--final-fit", action="store_true",
                    help="train comp's regression runs on every labelled image (data.train_on_val=true), as the hand-written loop does; "
                         "nothing is fitted on held-out images for numbers")
    a = ap.parse_args()
    out = a.out.resolve()
    grades, numbers, answers = build(out, a.train, a.test)
    truth_g, truth_n = answers["grade"].to_numpy(), answers["number"].to_numpy()
    print(f"{a.train} train / {a.test} test mosaics, {a.epochs} epochs, seeds {a.seeds}; test grades "
          f"{np.bincount(truth_g, minlength=5).tolist()}, numbers mean {truth_n.mean():.1f} sd {truth_n.std():.1f}", flush=True)

    def kappa(pred) -> float:
        return cohen_kappa_score(truth_g, np.asarray(pred, dtype=int), labels=list(range(5)), weights="quadratic")

    for seed in a.seeds:
        rows = ([] if "grades" in a.skip else grade_runs(a, seed, grades, out, kappa))
        rows += [] if "numbers" in a.skip else number_runs(a, seed, numbers, out, truth_n)
        table = pd.DataFrame(rows, columns=["competition", "run", "score", "seconds"])
        for comp_name, base in (("grades", "hand-written softmax + argmax, no TTA"), ("numbers", "hand-written MSE on the standardized target, no TTA")):
            part = table[table.competition == comp_name]
            ref = part[part.run == base]
            if len(ref):
                table.loc[part.index, "time_vs_hand"] = part["seconds"] / float(ref["seconds"].iloc[0])
                table.loc[part.index, "score_vs_hand"] = part["score"] / float(ref["score"].iloc[0])
        print(f"\nseed {seed} (grades: quadratic weighted kappa, higher is better; numbers: RMSE, lower is better)")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"), flush=True)
        table.to_csv(out / f"results-{seed}.csv", index=False)


if __name__ == "__main__":
    main()
