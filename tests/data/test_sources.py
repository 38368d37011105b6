import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import comp.data.sources as sources
from comp.data.competition import open_competition
from comp.data.sources import FASHION_CLASSES, fashion_mnist, read_idx
from comp.demo import build_fashion_competition, run_demo, score
from comp.errors import UserError
from tests.conftest import write_config


def _idx(path: Path, arr: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def fashion_dir(tmp_path):
    """Fashion-MNIST in its real idx format: 6 images per class in train, 3 in test (gzipped like Debian's)."""
    folder = tmp_path / "fm"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, per in (("train", 6), ("t10k", 3)):
        labels = np.repeat(np.arange(10), per)
        images = rng.integers(0, 255, (len(labels), 28, 28))
        for c in range(10):  # class-dependent brightness so a model can learn something
            images[labels == c] = (images[labels == c] // 4 + c * 20).clip(0, 255)
        _idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        _idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def test_read_idx_plain_and_gzip(tmp_path):
    arr = np.arange(24).reshape(2, 3, 4)
    _idx(tmp_path / "a.gz", arr)
    _idx(tmp_path / "a", arr, gz=False)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), arr)
    assert np.array_equal(read_idx(tmp_path / "a"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02")
    with pytest.raises(UserError, match="not an idx file"):
        read_idx(tmp_path / "bad")


def test_fashion_mnist_from_a_folder_and_clear_message_without(fashion_dir, tmp_path, monkeypatch):
    x, y = fashion_mnist("train", root=fashion_dir)
    assert x.shape == (60, 28, 28) and x.dtype == np.uint8 and sorted(set(y.tolist())) == list(range(10))
    monkeypatch.setattr(sources, "FASHION_DIRS", ())
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist("train", root=tmp_path / "empty")


def test_demo_competition_layout_and_hidden_answers(fashion_dir, tmp_path):
    root = build_fashion_competition(tmp_path / "demo" / "fashion-mnist", train_per_class=4, val_per_class=1, test_images=12, source=fashion_dir)
    comp = open_competition(root)
    assert comp.layout == "folders" and comp.classes == sorted(FASHION_CLASSES)
    assert len(comp.train) == 40 and len(comp.val) == 10 and len(comp.test_ids) == 12
    answers = pd.read_csv(tmp_path / "demo" / "answers.csv", dtype=str)
    assert list(answers.columns) == ["image_name", "label"] and list(answers.image_name) == comp.test_ids
    assert not (root / "answers.csv").exists()  # kept outside the competition folder
    mtime = (root / "sample_submission.csv").stat().st_mtime_ns
    build_fashion_competition(root, train_per_class=4, val_per_class=1, test_images=12, source=fashion_dir)
    assert (root / "sample_submission.csv").stat().st_mtime_ns == mtime  # built once


def test_run_demo_end_to_end(fashion_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_DIRS", (fashion_dir,))
    cfg = write_config(tmp_path / "tiny.yaml")
    lines = []
    result = run_demo(tmp_path / "demo", config=cfg, log=lines.append)
    assert set(result["seconds"]) == {"data", "train", "predict", "submit"}
    assert result["test_acc"] == pytest.approx(score(Path(result["prediction"]), tmp_path / "demo" / "answers.csv"))
    assert lines[-1].startswith("test accuracy") and "total" in lines[-1]
    assert (tmp_path / "demo" / "submissions" / "history.csv").is_file()
    # The demo submits, so it trains the final fit on train + val; the config itself holds out val.
    assert yaml.safe_load((tmp_path / "demo" / "run" / "config.yaml").read_text())["data"]["train_on_val"] is True
