"""`comp demo`: a real competition built from Fashion-MNIST, then train -> predict --tta -> submit.

The competition is written in the folders layout (PNG files, 10 named classes, a val/ split, a
test/ folder and sample_submission.csv); the test answers go to `answers.csv` beside the
competition folder, where no layout reads them, and score the submission at the end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from PIL import Image

import comp
from comp.data.sources import FASHION_CLASSES, fashion_mnist
from comp.errors import Log, UserError

DEMO_CONFIG = Path(comp.__file__).resolve().parents[1] / "configs" / "demo.yaml"


def build_fashion_competition(
    root: Path, *, train_per_class: int = 800, val_per_class: int = 100, test_images: int = 2000, seed: int = 0,
    source: Optional[Path] = None,
) -> Path:
    """Write the demo competition to `root` (skipped when a complete one is there) and return it.

    Train and val images come from Fashion-MNIST's training set, test images from its test set.
    """
    root = Path(root)
    marker = root / ".complete"
    spec = f"{train_per_class} {val_per_class} {test_images} {seed}"
    if marker.is_file() and marker.read_text() == spec:
        return root
    x_train, y_train = fashion_mnist("train", root=source, download_root=root.parent / ".downloads")
    x_test, y_test = fashion_mnist("test", root=source, download_root=root.parent / ".downloads")
    rng = np.random.default_rng(seed)
    for c, name in enumerate(FASHION_CLASSES):
        idx = rng.permutation(np.flatnonzero(y_train == c))
        for split, chosen in (("train", idx[:train_per_class]), ("val", idx[train_per_class : train_per_class + val_per_class])):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(x_train[i]).save(folder / f"{i:05d}.png")
    test_idx = rng.permutation(len(x_test))[:test_images]
    write_test_set(root, x_test[test_idx], [FASHION_CLASSES[y] for y in y_test[test_idx]], id_prefix="test_",
                   columns=("image_name", "pred_label"), answers=root.parent / "answers.csv")
    marker.write_text(spec)
    return root


def write_test_set(root: Path, images: np.ndarray, labels: list[str], *, id_prefix: str, columns: tuple[str, str], answers: Path) -> None:
    """test/<id>.png for each (H, W) uint8 image, sample_submission.csv with `columns` (every row
    the first class name), and the true labels in `answers` (id, label), outside the competition."""
    (root / "test").mkdir(parents=True, exist_ok=True)
    ids = [f"{id_prefix}{k:05d}" for k in range(len(images))]
    for k, im in zip(ids, images):
        Image.fromarray(im).save(root / "test" / f"{k}.png")
    pd.DataFrame({columns[0]: ids, columns[1]: FASHION_CLASSES[0]}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({columns[0]: ids, "label": labels}).to_csv(answers, index=False)


def score(prediction: Path, answers: Path) -> float:
    """Accuracy of a prediction CSV (id, label) against an answers CSV (id, label)."""
    p = pd.read_csv(prediction, dtype=str).iloc[:, :2].set_axis(["id", "predicted"], axis=1)
    a = pd.read_csv(answers, dtype=str).iloc[:, :2].set_axis(["id", "label"], axis=1)
    merged = a.merge(p, on="id", how="left")  # a missing prediction counts as wrong
    return float((merged["predicted"] == merged["label"]).mean())


def run_demo(out: Path = Path("demo"), *, epochs: Optional[int] = None, config: Optional[Path] = None, log: Log = print) -> dict[str, Any]:
    """Build the demo competition, train `configs/demo.yaml` (final fit on train + val), predict with TTA, submit, score.

    Returns:
        {"test_acc", "seconds": {stage: s}, "prediction", "run_dir"}.
    """
    from comp.predict import predict
    from comp.submission.submit import submit
    from comp.train import train

    config = Path(config) if config else DEMO_CONFIG
    if not config.is_file():
        raise UserError(f"demo config not found: {config}; pass --config configs/demo.yaml from the comp repository")
    out = Path(out)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    data = build_fashion_competition(out / "fashion-mnist")
    seconds["data"] = time.perf_counter() - t
    log(f"demo competition: {data} ({seconds['data']:.0f} s)")

    t = time.perf_counter()
    # The demo ends in a submission, so it trains the final fit on train + val (the config as
    # shipped holds out val; this is the one switch between the two).
    summary = train(config, data=data, out=out / "run", epochs=epochs, overwrite=True, overrides=["data.train_on_val=true"], log=log)
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    prediction = out / "prediction.csv"
    predict([out / "run"], data=data, tta=True, out=prediction, log=log)
    seconds["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    row = submit(prediction, data=data, message="comp demo", directory=out / "submissions")
    seconds["submit"] = time.perf_counter() - t
    log(f"submission valid, archived {row['path']}")

    acc = score(prediction, out / "answers.csv")
    stages = "  ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
    log(f"test accuracy {acc:.4f} on {len(pd.read_csv(out / 'answers.csv'))} held-back images; {stages}; total {sum(seconds.values()):.0f}s")
    return {"test_acc": acc, "seconds": seconds, "prediction": str(prediction), "run_dir": summary["run_dir"]}
