"""The zoo: every odd or broken input gets its documented answer through the CLI.

Decoded correctly, skipped and listed in skipped_files.txt with a warning count, or a one-line
error naming the file or key and the fix (exit 2, no traceback).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from typer.testing import CliRunner

from comp.cli import app
from comp.config import ModelConfig
from comp.data.competition import open_competition
from comp.data.images import load_rgb
from comp.models.factory import build_model
from tests.conftest import write_config
from tests.zoo import bomb_png, salted_competition, write_odd_encodings

runner = CliRunner()


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def _one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return salted_competition(tmp_path_factory.mktemp("zoo") / "competition")


def test_every_odd_encoding_decodes_to_the_same_picture(tmp_path):
    files = write_odd_encodings(tmp_path, "triangle", 3)  # not symmetric: a wrong rotation shows
    plain = load_rgb(tmp_path / "plain.png")
    ref = np.asarray(plain).astype(int)
    gray = np.asarray(plain.convert("L").convert("RGB")).astype(int)
    for path in files:
        im = np.asarray(load_rgb(path)).astype(int)
        assert im.shape == ref.shape, path.name
        # Lossy, gray or 16-colour encodings of the same picture, upright: the typical pixel is
        # close to the colour or the gray version (the median ignores the palette's transparent
        # colour, which is composited onto white).
        err = min(np.median(np.abs(im - ref)), np.median(np.abs(im - gray)))
        assert err < 10, (path.name, err)


@pytest.mark.parametrize("layout, cache", [("folders", "on"), ("folders", "off"), ("csv", "auto")])
def test_train_and_predict_on_the_zoo(tmp_path, zoo, layout, cache):
    if layout == "csv":
        zoo = salted_competition(tmp_path / "zoo_csv", layout="csv")
    config = write_config(tmp_path / "c.yaml", data={"cache": cache}, train={"epochs": 1})
    run = tmp_path / "run"
    out = _ok(runner.invoke(app, ["train", str(config), "--data", str(zoo["root"]), "--out", str(run)]))
    listed = {line.split("\t")[0] for line in (run / "skipped_files.txt").read_text(encoding="utf-8").splitlines()}
    assert listed == {str(p) for p in zoo["skipped"]}
    assert not listed & {str(p) for p in zoo["ignored"]}
    assert f"warning: skipped {len(zoo['skipped'])} files" in out
    assert open_competition(zoo["root"]).classes == zoo["classes"]

    pred = tmp_path / "prediction.csv"
    _ok(runner.invoke(app, ["predict", str(run), "--data", str(zoo["root"]), "--tta", "--out", str(pred)]))
    df = pd.read_csv(pred, dtype=str, encoding="utf-8")
    assert df["image_name"].tolist() == zoo["test_ids"]
    assert set(df["pred_label"]) <= set(zoo["classes"])


def test_data_check_reports_the_zoo(zoo):
    out = _ok(runner.invoke(app, ["data", "check", str(zoo["root"])]))
    assert "unreadable images (skipped in training; an error in test): 4" in out
    assert "DecompressionBombError" in out and "notes.txt" in out and "Thumbs.db" not in out


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory, zoo):
    tmp = tmp_path_factory.mktemp("zoo_run")
    config = write_config(tmp / "c.yaml", train={"epochs": 1})
    _ok(runner.invoke(app, ["train", str(config), "--data", str(zoo["root"]), "--out", str(tmp / "run")]))
    return tmp / "run"


def _copy(zoo, tmp_path) -> Path:
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(zoo["root"], dst, symlinks=True)
    return dst


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (lambda d: (d / "test" / "gray.png").write_bytes(b""), ["cannot read image", "gray.png"]),
        (lambda d: bomb_png(d / "test" / "gray.png"), ["cannot read image", "gray.png"]),
        (lambda d: (d / "sample_submission.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n\x01"), ["sample_submission.csv"]),
        (lambda d: (d / "sample_submission.csv").write_text("only_one_column\nx\n"), ["sample_submission.csv", "id column and a label column"]),
        (lambda d: (d / "test" / "cmyk.jpg").unlink(), ["sample_submission.csv", "1 of 10 ids have no test image", "cmyk"]),
    ],
    ids=["zero-byte test image", "bomb test image", "binary sample", "one-column sample", "test files do not match sample"],
)
def test_unusable_test_sets_are_one_line_errors_at_predict(tmp_path, zoo, zoo_run, damage, fragments):
    data = _copy(zoo, tmp_path)
    damage(data)
    _one_line_error(runner.invoke(app, ["predict", str(zoo_run), "--data", str(data), "--out", str(tmp_path / "p.csv")]), *fragments)
    assert not (tmp_path / "p.csv").exists()


def test_missing_sample_submission_uses_the_default_format(tmp_path, zoo, zoo_run):
    data = _copy(zoo, tmp_path)
    (data / "sample_submission.csv").unlink()
    _ok(runner.invoke(app, ["predict", str(zoo_run), "--data", str(data), "--out", str(tmp_path / "p.csv")]))
    df = pd.read_csv(tmp_path / "p.csv", dtype=str)
    assert list(df.columns) == ["image_name", "pred_label"] and sorted(df["image_name"]) == sorted(zoo["test_ids"])


def test_csv_labels_that_do_not_match_images_are_listed(tmp_path, shapes_csv):
    df = pd.read_csv(shapes_csv / "train.csv", dtype=str)
    extra = pd.DataFrame({"image_id": ["ghost_1", "ghost_2"], "label": ["circle", "square"]})
    pd.concat([df, extra]).to_csv(shapes_csv / "train.csv", index=False)
    config = write_config(tmp_path / "c.yaml", train={"epochs": 1})
    out = _ok(runner.invoke(app, ["train", str(config), "--data", str(shapes_csv), "--out", str(tmp_path / "run")]))
    listed = (tmp_path / "run" / "skipped_files.txt").read_text()
    assert "ghost_1" in listed and "ghost_2" in listed and "warning: skipped 2" in out


def test_config_and_model_mistakes_are_one_line_errors(tmp_path, shapes, tiny_config):
    def train(*args):
        return runner.invoke(app, ["train", str(tiny_config), "--data", str(shapes), "--out", str(tmp_path / "r"), *args])

    _one_line_error(train("--set", "train.epohcs=2"), "unknown key 'train.epohcs'", "train.epochs")
    _one_line_error(train("--set", "data.batch_size=big"), "data.batch_size")
    _one_line_error(train("--set", "model.name=resnet5O"), "unknown model 'resnet5O'")
    _one_line_error(
        runner.invoke(app, ["train", str(tiny_config), "--data", str(tmp_path / "nowhere")]), "data folder not found", "nowhere"
    )
    wrong_arch = tmp_path / "effnet.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), wrong_arch)
    _one_line_error(train("--set", f"model.pretrained={wrong_arch}"), "do not fit test_resnet", "effnet.pth")


def test_weights_with_another_number_of_classes_load_the_backbone(tmp_path, zoo_run):
    # A comp checkpoint trained on 3 classes, and a timm state dict with a 10-class classifier,
    # both start a 5-class model: the backbone is copied, the head is new.
    src = torch.load(zoo_run / "best.pt", weights_only=True)["model"]
    model = build_model(ModelConfig(name="test_resnet", pretrained=str(zoo_run / "best.pt")), 5)
    assert torch.equal(model.backbone.conv1[0].weight, src["backbone.conv1.0.weight"])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    timm_sd = tmp_path / "ten.pth"
    torch.save(timm.create_model("test_resnet", num_classes=10).state_dict(), timm_sd)
    assert build_model(ModelConfig(name="test_resnet", pretrained=str(timm_sd)), 5)(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_unusable_training_sets_are_one_line_errors(tmp_path, shapes, tiny_config):
    import shutil

    def train(data):
        return runner.invoke(app, ["train", str(tiny_config), "--data", str(data), "--out", str(tmp_path / f"{data.name}-run")])

    one = tmp_path / "one"
    shutil.copytree(shapes, one)
    for d in sorted((one / "train").iterdir())[1:]:
        shutil.rmtree(d)
    _one_line_error(train(one), "only one class", "needs two or more")

    broken = tmp_path / "broken"
    shutil.copytree(shapes, broken)
    for p in (broken / "train").rglob("*.png"):
        p.write_bytes(b"")
    _one_line_error(train(broken), "no training image could be decoded", "skipped_files.txt")
    assert len((tmp_path / "broken-run" / "skipped_files.txt").read_text().splitlines()) > 0


def test_sample_submission_without_rows_is_named(tmp_path, zoo, zoo_run):
    data = _copy(zoo, tmp_path)
    (data / "sample_submission.csv").write_text("image_name,pred_label\n")
    _one_line_error(runner.invoke(app, ["predict", str(zoo_run), "--data", str(data)]), "sample_submission.csv: lists no test ids")
