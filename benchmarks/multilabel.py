"""Multi-label: comp against a hand-written BCE fine-tune, on Fashion-MNIST mosaics, in both shapes.

    .venv/bin/python benchmarks/multilabel.py OUT [--train 2000] [--test 1000] [--epochs 3]

Each image is a 2x2 mosaic of Fashion-MNIST garments (56 px); its tags are the garment classes
shown. Tiles are drawn with `bag` ten times rarer than each other class. Two competitions share
the images:

- tags: `image_name,tags`, scored by mean per-image F2 (`f2_samples`, Planet's metric);
- one-hot: `image_id,<one 0/1 column per class>`, scored by mean column-wise ROC AUC (`roc_auc`).

The test answers are kept aside. `comp train configs/demo.yaml --set metric=...` (and the same with
`configs/multilabel.yaml`, the demo recipe without random crops) is followed by
`comp predict --tta`: per-tag thresholds fitted on the held-out tenth, flip TTA. The hand-written
loop is beside it: the same backbone and ImageNet weights (`comp.models.factory.build_model` of
the same config), 64 px, AdamW at the demo's lr and weight decay with a cosine schedule, batch 32,
the same epochs, plain `BCEWithLogitsLoss`, PIL decode with torchvision transforms, threshold 0.5,
no TTA. It prints each score on the test answers (sklearn) and each wall time. Run nothing else
on the machine meanwhile.
"""

from __future__ import annotations

import argparse
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

RARE = "bag"


def mosaics(x: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[list[str]]]:
    """`n` 2x2 mosaics (56x56 grey) and their tags; `bag` tiles drawn 10x less often."""
    weight = np.where(np.array(FASHION_CLASSES)[y] == RARE, 0.1, 1.0)
    pick = rng.choice(len(y), size=(n, 4), p=weight / weight.sum())
    images, tags = [], []
    for row in pick:
        tiles = x[row]
        images.append(np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]]))
        tags.append(sorted({FASHION_CLASSES[c] for c in y[row]}))
    return images, tags


def build(out: Path, n_train: int, n_test: int) -> tuple[Path, Path, Path]:
    """The two competitions (tags, one-hot) on the same images, and the answers file."""
    rng = np.random.default_rng(0)
    xtr, ytr = fashion_mnist("train")
    xte, yte = fashion_mnist("test")
    train_images, train_tags = mosaics(xtr, ytr, n_train, rng)
    test_images, test_tags = mosaics(xte, yte, n_test, rng)
    images = out / "images"
    if not (out / "answers.csv").is_file():
        for split, ims in (("train", train_images), ("test", test_images)):
            (images / split).mkdir(parents=True, exist_ok=True)
            for i, im in enumerate(ims):
                Image.fromarray(im).save(images / split / f"{split}_{i:05d}.png")
        pd.DataFrame({"id": [f"test_{i:05d}" for i in range(n_test)], "tags": [" ".join(t) for t in test_tags]}).to_csv(
            out / "answers.csv", index=False)
    comps = []
    for shape in ("tags", "onehot"):
        root = out / shape
        root.mkdir(exist_ok=True)
        for split in ("train", "test"):
            if not (root / split).exists():
                (root / split).symlink_to(images / split)
        ids = [f"train_{i:05d}" for i in range(n_train)]
        test_ids = [f"test_{i:05d}" for i in range(n_test)]
        if shape == "tags":
            pd.DataFrame({"image_name": ids, "tags": [" ".join(t) for t in train_tags]}).to_csv(root / "train.csv", index=False)
            pd.DataFrame({"image_name": test_ids, "tags": FASHION_CLASSES[0]}).to_csv(root / "sample_submission.csv", index=False)
        else:
            pd.DataFrame({"image_id": ids, **{c: [int(c in t) for t in train_tags] for c in FASHION_CLASSES}}).to_csv(
                root / "train.csv", index=False)
            pd.DataFrame({"image_id": test_ids, **{c: 0.5 for c in FASHION_CLASSES}}).to_csv(root / "sample_submission.csv", index=False)
        comps.append(root)
    return comps[0], comps[1], out / "answers.csv"


def answers_matrix(answers: Path, classes: list[str]) -> np.ndarray:
    tags = pd.read_csv(answers, dtype=str)["tags"].str.split()
    return np.array([[int(c in t) for c in classes] for t in tags])


def comp_run(data: Path, metric: str, out: Path, epochs: int, config: str) -> tuple[np.ndarray, float]:
    """comp train + predict --tta; returns (test tag matrix or probabilities in class order, seconds)."""
    t = time.perf_counter()
    for args in (["train", str(ROOT / "configs" / config), "--data", str(data), "--out", str(out / "run"), "--overwrite",
                  "--epochs", str(epochs), "--set", f"metric={metric}"],
                 ["predict", str(out / "run"), "--tta", "--out", str(out / "prediction.csv")]):
        done = subprocess.run([sys.executable, "-m", "comp", *args], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"comp {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    seconds = time.perf_counter() - t
    written = pd.read_csv(out / "prediction.csv", dtype=str, keep_default_na=False)
    if metric == "f2_samples":
        return np.array([[int(c in row.split()) for c in FASHION_CLASSES] for row in written.iloc[:, 1]]), seconds
    return written[list(FASHION_CLASSES)].astype(float).to_numpy(), seconds


def hand_run(data: Path, epochs: int) -> tuple[np.ndarray, float]:
    """The hand-written loop: (test probabilities in class order, seconds)."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    from comp.config import load_config
    from comp.models.factory import build_model

    t0 = time.perf_counter()
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    torch.manual_seed(0)
    model = build_model(cfg.model, len(FASHION_CLASSES), pretrained=True)
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    table = pd.read_csv(data / "train.csv")
    y = torch.tensor(table[list(FASHION_CLASSES)].to_numpy(), dtype=torch.float32)
    tf = T.Compose([T.Resize(64), T.ToTensor(), T.Normalize(mean, std)])

    class Images(Dataset):
        def __init__(self, paths, targets=None):
            self.paths, self.targets = paths, targets

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            x = tf(Image.open(self.paths[i]).convert("RGB"))
            return (x, self.targets[i]) if self.targets is not None else x

    train = DataLoader(Images([data / "train" / f"{i}.png" for i in table["image_id"]], y), batch_size=32, shuffle=True,
                       num_workers=2, drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(train))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        model.train()
        for x, target in train:
            opt.zero_grad()
            loss_fn(model(x), target).backward()
            opt.step()
            sched.step()
    model.eval()
    test_ids = pd.read_csv(data / "sample_submission.csv")["image_id"]
    probs = []
    with torch.inference_mode():
        for x in DataLoader(Images([data / "test" / f"{i}.png" for i in test_ids]), batch_size=64, num_workers=2):
            probs.append(model(x).sigmoid())
    return torch.cat(probs).numpy(), time.perf_counter() - t0


def main() -> None:
    from sklearn.metrics import fbeta_score, roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--configs", nargs="+", default=["demo.yaml", "multilabel.yaml"], help="comp configs under configs/")
    a = ap.parse_args()
    out = a.out.resolve()
    tags, onehot, answers = build(out, a.train, a.test)
    truth = answers_matrix(answers, list(FASHION_CLASSES))
    print(f"{a.train} train / {a.test} test mosaics, {a.epochs} epochs; tags per image {truth.sum(1).mean():.2f}; "
          f"'{RARE}' in {truth[:, FASHION_CLASSES.index(RARE)].mean():.1%} of test images", flush=True)

    hand_probs, hand_s = hand_run(onehot, a.epochs)
    hand_tags = (hand_probs >= 0.5).astype(int)
    f2_hand = fbeta_score(truth, hand_tags, beta=2, average="samples", zero_division=0)
    auc_hand = roc_auc_score(truth, hand_probs, average="macro")
    rare = FASHION_CLASSES.index(RARE)
    print(f"hand-written (BCE, threshold 0.5, no TTA) in {hand_s:.0f} s: F2 {f2_hand:.4f}, AUC {auc_hand:.4f}, "
          f"F2 of '{RARE}' {fbeta_score(truth[:, rare], hand_tags[:, rare], beta=2, zero_division=0):.4f}", flush=True)
    for config in a.configs:
        comp_tags, comp_s = comp_run(tags, "f2_samples", out / f"comp-tags-{config}", a.epochs, config)
        f2_comp = fbeta_score(truth, comp_tags, beta=2, average="samples", zero_division=0)
        print(f"{config}, tags, mean per-image F2: comp {f2_comp:.4f} in {comp_s:.0f} s ({comp_s / hand_s:.2f}x the hand-written "
              f"time); {100 * (f2_comp - f2_hand):+.2f} points; F2 of '{RARE}' "
              f"{fbeta_score(truth[:, rare], comp_tags[:, rare], beta=2, zero_division=0):.4f}", flush=True)
        comp_probs, comp_s2 = comp_run(onehot, "roc_auc", out / f"comp-onehot-{config}", a.epochs, config)
        auc_comp = roc_auc_score(truth, comp_probs, average="macro")
        print(f"{config}, one-hot, mean column-wise AUC: comp {auc_comp:.4f} in {comp_s2:.0f} s; {auc_comp - auc_hand:+.4f}", flush=True)


if __name__ == "__main__":
    main()
