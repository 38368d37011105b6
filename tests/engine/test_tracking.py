"""`track: [...]`: what TensorBoard, MLflow and W&B receive, read back with each library's own reader."""

import json
import socket
import sys
import types

import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.engine import tracking as tracking_module
from comp.train import train
from tests.conftest import one_line_error, write_config

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")
from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

runner = CliRunner()
COLUMNS = ("lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_score", "seconds")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A private MLflow store (and artifact folder: MLflow puts it under the working directory)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return MlflowClient(uri)


@pytest.fixture
def config(tmp_path, shapes):
    return write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}, train={"epochs": 2})


def _tensorboard(run_dir):
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def _run_id(run_dir):
    return json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"]


def _same_as_metrics_csv(run_dir, client, steps):
    """Every metrics.csv column, epoch by epoch, in TensorBoard's events and in MLflow's history."""
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert rows["epoch"].tolist() == steps
    acc = _tensorboard(run_dir)
    run_id = _run_id(run_dir)
    for col in COLUMNS:
        want = rows[col].tolist()
        board = acc.Scalars(col)
        assert [e.step for e in board] == steps, col  # each epoch once, also after a resume
        assert [e.value for e in board] == pytest.approx(want, rel=1e-5, abs=1e-7), col
        history = sorted(client.get_metric_history(run_id, col), key=lambda m: m.step)
        assert [m.step for m in history] == steps, col
        assert [m.value for m in history] == pytest.approx(want, rel=1e-5, abs=1e-7), col


def test_each_epoch_the_config_and_the_summary_reach_tensorboard_and_mlflow(tmp_path, config, store, shapes):
    run = tmp_path / "runs" / "a"
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "track=[tensorboard,mlflow]"])
    assert result.exit_code == 0, result.output
    assert "tracking: tensorboard, mlflow" in result.output
    _same_as_metrics_csv(run, store, [0, 1])

    mlrun = store.get_run(_run_id(run))
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == "a"
    assert store.get_experiment(mlrun.info.experiment_id).name == shapes.name  # the competition folder
    assert mlrun.data.params["optim.lr"] == "0.01" and mlrun.data.params["model.name"] == "test_resnet"
    assert "track" not in mlrun.data.params
    summary = json.loads((run / "summary.json").read_text())
    assert mlrun.data.metrics["summary.best_val_score"] == pytest.approx(summary["best_val_score"])
    assert {"summary.json", "curves.png", "config.yaml"} <= {a.path for a in store.list_artifacts(mlrun.info.run_id)}

    board = _tensorboard(run)
    assert board.Scalars("summary/best_val_acc")[0].value == pytest.approx(summary["best_val_acc"])
    assert "curves" in board.Tags()["images"] and "config/text_summary" in board.Tags()["tensors"]

    # a run directory holding event files and tracking.json is still a comp run: --overwrite replaces it
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--overwrite", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    assert not (run / "tracking.json").exists() and not list(run.glob("events.out.tfevents.*"))


def test_a_resumed_run_continues_the_same_tracked_run(tmp_path, config, store):
    run = tmp_path / "run"
    args = ["train", str(config), "--out", str(run), "--set", "track=[tensorboard,mlflow]"]
    assert runner.invoke(app, args + ["--set", "train.epochs=1"]).exit_code == 0
    first = _run_id(run)
    result = runner.invoke(app, args + ["--resume", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert _run_id(run) == first  # the same MLflow run, reopened
    assert len(store.search_runs([store.get_run(first).info.experiment_id])) == 1
    _same_as_metrics_csv(run, store, [0, 1, 2])  # epochs 1 and 2 appended, epoch 0 not logged twice
    mlrun = store.get_run(first)
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["train.epochs"] == "1" and mlrun.data.tags["comp.resumed.train.epochs"] == "3"


def test_a_kfold_run_is_one_tracked_run_with_a_nested_run_per_fold(tmp_path, config, store):
    run = tmp_path / "kfold"
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--folds", "2", "--set", "track=[tensorboard,mlflow]",
                                 "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    cv = json.loads((run / "cv.json").read_text())
    parent = _run_id(run)
    children = [_run_id(run / f"fold_{i}") for i in range(2)]
    assert len({parent, *children}) == 3
    for i, child in enumerate(children):
        mlrun = store.get_run(child)
        assert mlrun.data.tags["mlflow.parentRunId"] == parent and mlrun.info.run_name == f"fold_{i}"
        _same_as_metrics_csv(run / f"fold_{i}", store, [0])
    folds = sorted(store.get_metric_history(parent, "fold_score"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in folds] == [(int(i), pytest.approx(s)) for i, s in cv["fold_score"].items()]
    assert store.get_run(parent).data.metrics["cv_score"] == pytest.approx(cv["cv_score"])
    assert _tensorboard(run).Scalars("cv_score")[0].value == pytest.approx(cv["cv_score"], rel=1e-6)


def test_a_tracker_that_is_not_installed_is_one_line_before_anything_is_written(tmp_path, config, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "track=[mlflow]"])
    one_line_error(result, "mlflow is not installed", "pip install")
    assert not run.exists()
    monkeypatch.setitem(sys.modules, "wandb", None)
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(run), "--folds", "2", "--set", "track=wandb"]),
                   "wandb is not installed")
    assert not run.exists()
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "track=[comet]"]), "track")


def test_an_unreachable_tracking_server_is_one_line_and_quick(tmp_path, config, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "track=[mlflow]"])
    one_line_error(result, f"http://127.0.0.1:{port}", "does not answer", "MLFLOW_TRACKING_URI")
    assert not run.exists()


def test_a_tracker_failing_mid_run_is_warned_about_once_and_training_goes_on(tmp_path, config, store, monkeypatch):
    calls = []
    original = tracking_module.MlflowTracker.log_metrics

    def flaky(self, values, step):
        calls.append(step)
        if step == 1:
            raise ConnectionError("server went away")
        original(self, values, step)

    monkeypatch.setattr(tracking_module.MlflowTracker, "log_metrics", flaky)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "track=[mlflow,tensorboard]", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: tracker mlflow failed (server went away)") == 1
    assert calls == [0, 1]  # dropped after its failure, not called again
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 3
    assert [e.step for e in _tensorboard(run).Scalars("val_loss")] == [0, 1, 2]  # the other tracker kept going
    assert [m.step for m in store.get_metric_history(_run_id(run), "val_loss")] == [0]


class _FakeWandb(types.ModuleType):
    """Records what comp asks of `wandb` (the library is not needed by the suite)."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.runs = [], []
        self.util = types.SimpleNamespace(generate_id=lambda: f"id{len(self.inits)}")
        self.Image = lambda path: ("image", path)

    def init(self, **kw):
        self.inits.append(kw)
        run = types.SimpleNamespace(logged=[], summary={}, finished=None)
        run.log = lambda values, step: run.logged.append((step, dict(values)))
        run.finish = lambda exit_code: setattr(run, "finished", exit_code)
        self.runs.append(run)
        return run


def test_wandb_gets_each_epoch_and_a_resume_reopens_the_same_id(tmp_path, config, shapes, monkeypatch):
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run = tmp_path / "run"
    args = ["train", str(config), "--out", str(run), "--set", "track=wandb"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args + ["--resume", "--epochs", "3"]).exit_code == 0
    first, again = fake.inits
    assert first["project"] == shapes.name and first["name"] == "run" and first["config"]["optim.lr"] == 0.01
    assert again["id"] == first["id"] and again["resume"] == "allow"
    rows = pd.read_csv(run / "metrics.csv")
    logged = fake.runs[0].logged + fake.runs[1].logged
    assert [s for s, _ in logged] == rows["epoch"].tolist()
    assert [v["val_loss"] for _, v in logged] == pytest.approx(rows["val_loss"].tolist(), rel=1e-5)
    assert fake.runs[1].finished == 0 and fake.runs[1].summary["curves"] == ("image", str(run / "curves.png"))


def test_ctrl_c_marks_the_tracked_run_killed_and_resume_finishes_it_without_repeating_an_epoch(tmp_path, shapes, store, monkeypatch):
    from comp.config import load_config
    from comp.engine.fit import fit
    from comp.errors import Interrupted
    from tests.engine.test_crash_safety import _interrupt_at_forward

    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes), "batch_size": 8},
                                   train={"epochs": 2, "checkpoint_minutes": 0}), ["track=[tensorboard,mlflow]"])
    run = tmp_path / "run"
    _interrupt_at_forward(monkeypatch, 5 + 2)  # 5 batches per epoch: Ctrl-C in the 2nd batch of epoch 2
    with pytest.raises(Interrupted):
        fit(cfg, run, log=lambda s: None)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    killed = store.get_run(_run_id(run))
    assert killed.info.status == "KILLED"
    assert [m.step for m in store.get_metric_history(killed.info.run_id, "val_loss")] == [0]
    fit(cfg, run, resume=True, log=lambda s: None)
    assert store.get_run(killed.info.run_id).info.status == "FINISHED"
    _same_as_metrics_csv(run, store, [0, 1])
