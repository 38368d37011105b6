"""`comp package`: the offline bundle's inference.py writes what `comp predict` writes, without comp installed."""

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from comp.cli import app
from comp.data.synthetic import make_competition
from tests.conftest import one_line_error, write_config

runner = CliRunner()


@pytest.fixture(scope="module")
def kfold(tmp_path_factory) -> tuple[Path, Path]:
    """(competition, 2-fold log-loss run): calibration.json for the run and per fold, a probability submission
    (the sample has one label column, so training is told data.submission=probs)."""
    root = tmp_path_factory.mktemp("package")
    data = make_competition(root / "data", classes=3, per_class=12, test_per_class=5, size=32, layout="csv")
    config = write_config(root / "c.yaml", train={"epochs": 1, "seed": 0})
    result = runner.invoke(app, ["train", str(config), "--data", str(data), "--out", str(root / "run"), "--folds", "2",
                                 "--set", "metric=log_loss", "--set", "data.submission=probs"])
    assert result.exit_code == 0, result.output
    assert (root / "run" / "fold_0" / "calibration.json").is_file() and (root / "run" / "calibration.json").is_file()
    return data, root / "run"


def _offline_env(home: Path) -> dict[str, str]:
    """An environment whose Python (with -S) sees the libraries' site-packages but no installed comp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMP_", "PYTHON"))}
    env.update(PYTHONPATH=os.pathsep.join(site.getsitepackages()), HOME=str(home), PYTHONNOUSERSITE="1")
    return env


def _run_offline(bundle: Path, data: Path, out: Path, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-S", str(bundle / "inference.py"), "--data", str(data), "--out", str(out)],
                          cwd=cwd, env=_offline_env(home), capture_output=True, text=True, timeout=300)


def test_bundle_reproduces_comp_predict_without_comp_installed(kfold, tmp_path):
    data, run = kfold
    bundle = tmp_path / "bundle"
    # A shape the competition cannot take is refused before anything is written.
    one_line_error(runner.invoke(app, ["package", str(run), "--out", str(bundle), "--shape", "positive"]), "positive is for binary")
    assert not bundle.exists()
    result = runner.invoke(app, ["package", str(run), "--out", str(bundle), "--tta-views", "identity,hflip,rot10", "--shape", "probs"])
    assert result.exit_code == 0, result.output
    assert "MiB" in result.output
    expected = tmp_path / "expected" / "prediction.csv"
    result = runner.invoke(app, ["predict", str(run), "--data", str(data), "--out", str(expected), "--tta-views", "identity,hflip,rot10",
                                 "--shape", "probs"])
    assert result.exit_code == 0, result.output

    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    # The environment really cannot import an installed comp.
    probe = subprocess.run([sys.executable, "-S", "-c", "import comp"], cwd=work, env=_offline_env(home), capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'comp'" in probe.stderr
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    done = _run_offline(bundle, data, work / "submission.csv", work, home)
    assert done.returncode == 0, done.stderr
    assert (work / "submission.csv").read_bytes() == expected.read_bytes()
    header = expected.read_text().splitlines()[0].split(",")
    assert len(header) == 4  # id + 3 class probabilities: the log-loss shape (the run's data.submission), calibrated
    # Nothing else was written: not beside --out, not in HOME, not in the bundle (no __pycache__).
    assert [p.name for p in work.iterdir()] == ["submission.csv"]
    assert list(home.iterdir()) == []
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before

    settings = json.loads((bundle / "bundle.json").read_text())
    assert settings["views"] == ["identity", "hflip", "rot10"] and settings["runs"] == ["run"]
    for fold in ("fold_0", "fold_1"):
        assert (bundle / "models" / "run" / fold / "calibration.json").is_file()
        with safe_open(str(bundle / "models" / "run" / fold / "model.safetensors"), framework="pt") as f:
            assert json.loads(f.metadata()["classes"]) == ["circle", "square", "triangle"]
    help_text = subprocess.run([sys.executable, "-S", str(bundle / "inference.py"), "--help"], env=_offline_env(home),
                               capture_output=True, text=True).stdout
    assert "/kaggle/input/" in help_text and "/kaggle/working/submission.csv" in help_text
    assert "/kaggle/input/" in (bundle / "README.md").read_text()


def test_half_bundle_reports_its_agreement(kfold, tmp_path):
    data, run = kfold
    full, half = tmp_path / "full", tmp_path / "half"
    assert runner.invoke(app, ["package", str(run), "--out", str(full), "--shape", "probs"]).exit_code == 0
    result = runner.invoke(app, ["package", str(run), "--out", str(half), "--half", "--shape", "probs"])
    assert result.exit_code == 0, result.output
    assert "keeps the fp32 label" in result.output and "max |probability difference|" in result.output
    weights = half / "models" / "run" / "fold_0" / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        assert all(f.get_tensor(k).dtype in (__import__("torch").float16, __import__("torch").int64) for k in f.keys())
    assert weights.stat().st_size < 0.6 * (full / "models" / "run" / "fold_0" / "model.safetensors").stat().st_size
    (tmp_path / "w").mkdir()
    (tmp_path / "h").mkdir()
    done = _run_offline(half, data, tmp_path / "w" / "sub.csv", tmp_path / "w", tmp_path / "h")
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "w" / "sub.csv").read_text().splitlines()) == 16  # header + 15 test images


def test_package_refusals_write_nothing(kfold, tmp_path):
    data, run = kfold
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    one_line_error(runner.invoke(app, ["package", str(run), "--out", str(busy)]), "not an empty folder")
    one_line_error(runner.invoke(app, ["package", str(run), "--out", str(tmp_path / "b"), "--weights", "1,2"]), "weights")
    one_line_error(runner.invoke(app, ["package", str(run), "--out", str(tmp_path / "b"), "--shape", "wide"]), "--shape")
    one_line_error(runner.invoke(app, ["package", str(tmp_path), "--out", str(tmp_path / "b")]), "not a comp run")
    assert not (tmp_path / "b").exists()


def test_offline_bundle_error_is_one_line(kfold, tmp_path):
    _, run = kfold
    bundle = tmp_path / "bundle"
    assert runner.invoke(app, ["package", str(run), "--out", str(bundle), "--shape", "probs"]).exit_code == 0
    one_line_error(runner.invoke(app, ["package", str(bundle / "models" / "run"), "--out", str(tmp_path / "again")]), "has no best.pt")
    (tmp_path / "h").mkdir()
    done = _run_offline(bundle, tmp_path / "missing", tmp_path / "sub.csv", tmp_path, tmp_path / "h")
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "sub.csv").exists()


def test_half_agreement_is_that_of_the_merged_prediction_the_bundle_writes(kfold, tmp_path, monkeypatch):
    """fp16 leaves each model's first view alone but flips the merge of its two views: the labels written change."""
    import torch

    import comp.engine.infer as infer
    from comp.ship.package import package

    data, run = kfold
    bundle = tmp_path / "bundle"

    def fake_views(members, views, paths, **kwargs):
        n = len(paths)
        same = torch.tensor([0.6, 0.4, 0.0]).expand(n, 3)
        second = torch.tensor([0.1, 0.9, 0.0]).expand(n, 3) if bundle in Path(members[0].run_dir).parents else same
        return [torch.stack([same, second]) for _ in members], torch.ones(n, dtype=torch.bool)

    monkeypatch.setattr(infer, "predict_views", fake_views)
    result = package([run], out=bundle, half=True, views=["identity", "hflip"], calibrate=False, shape="probs", log=lambda s: None)
    # Used to compare each model's first view (100% agreement) while every label of the bundle's file changed.
    assert result["half_agreement"]["label_agreement"] == 0.0
    assert result["half_agreement"]["max_abs_prob_diff"] == pytest.approx(0.25)
