"""CSV layouts whose image folders have Kaggle's own names: found by where the ids resolve, or named."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from comp.cli import app
from comp.config import load_config
from comp.data.competition import open_competition, open_configured
from comp.errors import UserError
from tests.conftest import one_line_error, write_config

runner = CliRunner()
TAGS = ["a b", "a", "b c", "c", "a c", "a b c", "b", "a"]


def _images(folder: Path, names, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / f"{name}.jpg")


def _planet(root: Path, train="train-jpg", test="test-jpg") -> Path:
    """Planet's layout: train.csv and the sample beside train-jpg/ and test-jpg/."""
    ids = [f"train_{k}" for k in range(8)]
    _images(root / train, ids)
    _images(root / test, ["test_0", "test_1"], seed=1)
    pd.DataFrame({"image_name": ids, "tags": TAGS}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"image_name": ["test_0", "test_1"], "tags": ["a", "a"]}).to_csv(root / "sample_submission.csv", index=False)
    return root


def test_planets_own_layout_is_read_and_data_check_says_which_folders_and_why(tmp_path):
    # Used to stop with "train.csv found but no image folder; expected one of train, train_images, images/".
    root = _planet(tmp_path / "planet")
    comp = open_competition(root)
    assert {p.parent.name for p in comp.train.paths} == {"train-jpg"} and len(comp.train) == 8
    assert [p.parent.name for p in comp.test_paths] == ["test-jpg", "test-jpg"] and comp.test_ids == ["test_0", "test_1"]
    out = runner.invoke(app, ["data", "check", str(root)]).output
    assert "train images: train-jpg/ (the train.csv ids name 8 images there (8 rows))" in out
    assert "test images: test-jpg/ (the sample_submission.csv ids name 2 images there (2 rows))" in out


def test_one_folder_seen_at_two_depths_is_the_inner_one(tmp_path):
    # SIIM-ISIC keeps jpeg/train/ and jpeg/test/: jpeg/ names the same files, the inner folder is meant.
    root = _planet(tmp_path / "siim", train="jpeg/train", test="jpeg/test")
    comp = open_competition(root)
    assert {p.parent.relative_to(root).as_posix() for p in comp.train.paths} == {"jpeg/train"}
    assert "train images: jpeg/train/" in " ".join(comp.notes) and "test images: jpeg/test/" in " ".join(comp.notes)


def test_two_folders_that_could_each_be_meant_ask_and_the_keys_name_them(tmp_path):
    root = _planet(tmp_path / "two")
    _images(root / "train-resized", [f"train_{k}" for k in range(8)], seed=2)  # the same names, other files
    with pytest.raises(UserError, match=r"the train.csv ids name 8 images in each of train-jpg/, train-resized/; set data.train_images"):
        open_competition(root)
    one_line_error(runner.invoke(app, ["data", "check", str(root)]), "data.train_images")
    out = runner.invoke(app, ["data", "check", str(root), "--train-images", "train-resized"])
    assert out.exit_code == 0, out.output
    assert "train images: train-resized/ (data.train_images)" in out.output
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(root), "train_images": "train-resized"}))
    assert {p.parent.name for p in open_configured(cfg.data).train.paths} == {"train-resized"}
    one_line_error(runner.invoke(app, ["data", "check", str(root), "--train-images", "nowhere"]), "data.train_images=nowhere",
                   "no folder of images")


def test_a_test_folder_that_cannot_be_told_stops_predicting_not_training(tmp_path):
    root = _planet(tmp_path / "tests")
    _images(root / "test-resized", ["test_0", "test_1"], seed=3)
    comp = open_competition(root)  # training is not held up by the test set
    assert len(comp.train) == 8
    with pytest.raises(UserError, match="set data.test_images"):
        comp.require_test()
    named = open_competition(root, settings=type("S", (), {"test_images": "test-resized"})())
    assert {p.parent.name for p in named.test_paths} == {"test-resized"}


def test_test_files_named_like_training_files_stay_in_the_test_folder(tmp_path):
    # Numbering that restarts (train 0..7, test 0..1) names images in both folders: the training one
    # is the test folder only when no other holds the sample's ids.
    root = tmp_path / "restart"
    _images(root / "train", [str(k) for k in range(8)])
    _images(root / "test", ["0", "1"], seed=1)
    pd.DataFrame({"id": [str(k) for k in range(8)], "label": ["x", "y"] * 4}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ["0", "1"], "label": ["x", "x"]}).to_csv(root / "sample_submission.csv", index=False)
    comp = open_competition(root)
    assert [p.parent.name for p in comp.test_paths] == ["test", "test"] and comp.test_problem is None
