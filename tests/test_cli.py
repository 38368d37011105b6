"""The `comp` command line through Typer's CliRunner, and one real `python -m comp` process."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.data.synthetic import make_competition
from tests.conftest import one_line_error, write_config

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["data", "check", "--help"]])
def test_help(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "Usage" in result.output


def test_train_help_has_examples():
    assert "comp train configs/demo.yaml --data" in runner.invoke(app, ["train", "--help"]).output


def test_user_errors_are_one_line_exit_2(tmp_path, shapes, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run directory is ./runs/<config>-<time>
    bad = write_config(tmp_path / "bad.yaml", model={"nmae": "x"})
    one_line_error(runner.invoke(app, ["train", str(bad), "--data", str(shapes)]), "unknown key 'model.nmae'", "bad.yaml")
    one_line_error(runner.invoke(app, ["train", str(tiny_config), "--data", str(tmp_path / "missing")]), "data folder not found")
    one_line_error(
        runner.invoke(app, ["train", str(tiny_config), "--data", str(shapes), "--set", "model.name=resnet5O"]),
        "unknown model 'resnet5O'",
    )
    assert not (tmp_path / "runs").exists()  # a run that could not start leaves no empty run directory behind
    one_line_error(runner.invoke(app, ["train", str(tiny_config), "--set", "train.epochs=x"]), "--set train.epochs")
    one_line_error(runner.invoke(app, ["train", str(tiny_config)]), "no data folder")


def test_debug_shows_the_traceback(tmp_path, tiny_config):
    result = runner.invoke(app, ["--debug", "train", str(tiny_config), "--data", str(tmp_path / "missing")])
    assert result.exit_code != 0 and result.exception is not None and type(result.exception).__name__ == "UserError"


def test_missing_config_file_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.parametrize("layout", ["folders", "csv"])
def test_train_demo_config_end_to_end_beats_chance(tmp_path, layout):
    """The shipped demo config (bundled lite0) for one epoch on a generated competition.

    As shipped, it holds out validation: a competition with val/ (folders) scores on val/, one
    without (csv) on the stratified val_fraction of train.
    """
    val = {"val_per_class": 10} if layout == "folders" else {}
    data = make_competition(tmp_path / "c", classes=4, per_class=50, test_per_class=2, size=40, layout=layout, seed=1, **val)
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", str(ROOT / "configs" / "demo.yaml"), "--data", str(data), "--out", str(run), "--epochs", "1",
         "--set", "data.image_size=48", "--set", "data.workers=0"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "tf_efficientnet_lite0" and summary["epochs_run"] == 1
    assert summary["val_images"] == (40 if layout == "folders" else 20)
    assert summary["best_val_acc"] >= 0.6  # chance is 0.25
    assert "best val acc" in result.output
    assert {"config.yaml", "best.pt", "last.pt", "metrics.csv", "curves.png", "summary.json"} <= {p.name for p in run.iterdir()}


def test_resume_via_cli(tmp_path, shapes, tiny_config):
    run = tmp_path / "run"
    args = ["train", str(tiny_config), "--data", str(shapes), "--out", str(run)]
    assert runner.invoke(app, args).exit_code == 0
    one_line_error(runner.invoke(app, args), "already holds a run")
    result = runner.invoke(app, [*args, "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2


def test_data_check_reports_layout_counts_and_problems(tmp_path):
    root = make_competition(tmp_path / "c", classes=2, per_class=5, test_per_class=2)
    (root / "train" / "circle" / "broken.jpg").write_bytes(b"nope")
    shutil.copy(root / "test" / "img_00000.png", root / "train" / "square" / "leak.png")
    (root / "train" / "notes.txt").write_text("hi")
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "layout: folders" in out and re.search(r"circle +train 6", out) and re.search(r"square +train 6", out)
    assert "unreadable images" in out and "broken.jpg" in out
    assert "train/test identical files: 1" in out and "leak.png" in out
    assert "notes.txt" in out and out.strip().endswith("ok")


def test_data_check_fails_when_test_set_is_unusable(tmp_path):
    root = make_competition(tmp_path / "c", classes=2, per_class=3, test_per_class=2)
    (root / "test" / "img_00000.png").write_bytes(b"broken")
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 2 and "NOT READY" in result.output


def test_python_dash_m_comp_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "comp", "data", "check", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: data folder not found: {tmp_path / 'missing'}; pass the competition folder (the one holding train/ or train.csv)"]


def test_train_folds_predict_tta_submit_via_cli(tmp_path, shapes, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(tiny_config), "--data", str(shapes), "--out", str(run), "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert "cv acc" in result.output
    result = runner.invoke(app, ["predict", str(run), "--tta", "--tta-views", "identity,hflip", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "prediction.csv").is_file() and (tmp_path / "prediction_probs.csv").is_file()
    result = runner.invoke(app, ["evaluate", str(run), "--tta", "--tta-views", "identity,hflip"])
    assert result.exit_code == 0 and "hflip" in result.output
    result = runner.invoke(app, ["submit", "prediction.csv", "-m", "cli"])  # data dir from prediction_meta.json
    assert result.exit_code == 0, result.output
    assert "valid; archived" in result.output and (tmp_path / "submissions" / "history.csv").is_file()
    one_line_error(runner.invoke(app, ["predict", str(run), "--weights", "a,b"]), "--weights takes comma-separated numbers")


def test_evaluate_a_final_fit_says_how_to_get_val_scores(tmp_path, shapes, tiny_config):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(tiny_config), "--data", str(shapes), "--out", str(run),
                                 "--epochs", "1", "--set", "data.train_on_val=true"])
    assert result.exit_code == 0, result.output
    one_line_error(runner.invoke(app, ["evaluate", str(run)]),
                    "it trained on every labelled image (data.train_on_val); retrain with --set data.train_on_val=false")
