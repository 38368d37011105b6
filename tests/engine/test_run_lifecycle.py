"""Run directories never lie: overwrite, resume, extend, folds into one folder, unfinished runs.

Each test here reproduces a way a run used to end with files that described another run, or with
a traceback, and checks the fixed behaviour through `comp.train.train` or the CLI.
"""

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from comp.cli import app
from comp.engine.infer import find_model_dirs
from comp.errors import UserError
from comp.predict import predict, run_score
from comp.train import train
from tests.conftest import write_config

runner = CliRunner()
QUIET = dict(log=lambda s: None)


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture
def config(tmp_path, shapes):
    return write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}, train={"checkpoint_minutes": 0})


# -- 1. resume of a run without validation ------------------------------------------------


def test_resume_of_a_run_without_validation_continues(tmp_path, shapes):
    config = write_config(tmp_path / "c.yaml", data={"dir": str(shapes), "train_on_val": True})
    run = tmp_path / "run"
    train(config, out=run, **QUIET)
    summary = train(config, out=run, resume=True, epochs=2, **QUIET)  # used to raise ValueError on '' val cells
    assert summary["epochs_run"] == 2 and summary["best_val_acc"] is None
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["0", "1"] and all(r["val_acc"] == "" for r in rows)


# -- 2. --overwrite leaves nothing of the old run -----------------------------------------


def test_overwrite_replaces_a_single_run_by_k_folds_and_back(tmp_path, config):
    run = tmp_path / "run"
    train(config, out=run, **QUIET)
    train(config, out=run, folds=2, overwrite=True, **QUIET)
    assert not any((run / f).exists() for f in ("best.pt", "last.pt", "summary.json", "metrics.csv", "val_probs.csv"))
    assert find_model_dirs(run) == [run / "fold_0", run / "fold_1"]  # predict used the old top-level best.pt
    cv = json.loads((run / "cv.json").read_text())

    train(config, out=run, overwrite=True, **QUIET)
    assert not any((run / f).exists() for f in ("cv.json", "oof.csv", "fold_0", "fold_1"))
    summary = json.loads((run / "summary.json").read_text())
    assert run_score(run) == summary["best_val_acc"]  # not the old run's cv_acc
    assert cv["folds"] == 2


def test_overwrite_refuses_a_folder_with_files_comp_did_not_write(tmp_path, config):
    run = tmp_path / "run"
    train(config, out=run, **QUIET)
    (run / "notes.txt").write_text("mine")
    before = _files(run)
    with pytest.raises(UserError, match="notes.txt"):
        train(config, out=run, overwrite=True, **QUIET)
    assert _files(run) == before


# -- 3. --resume --epochs re-plans the schedule; --set on resume takes effect or is refused -


def test_resume_with_more_epochs_continues_the_longer_schedule(tmp_path, config):
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    train(config, out=straight, epochs=4, **QUIET)
    train(config, out=extended, epochs=2, **QUIET)
    train(config, out=extended, resume=True, epochs=4, **QUIET)
    a, b = _rows(straight), _rows(extended)
    assert [r["epoch"] for r in b] == ["0", "1", "2", "3"]
    # Epochs 3-4 follow the 4-epoch cosine, as in a run planned for 4 epochs; the old schedule
    # had ended, so they trained at min_lr (1e-5).
    assert float(b[2]["lr"]) == pytest.approx(float(a[2]["lr"]), rel=1e-6)
    assert float(b[2]["lr"]) > 100 * 1e-5
    assert yaml.safe_load((extended / "config.yaml").read_text())["train"]["epochs"] == 4


def test_resume_set_values_take_effect_and_are_recorded(tmp_path, config):
    run = tmp_path / "run"
    train(config, out=run, epochs=1, **QUIET)
    train(config, out=run, resume=True, epochs=2, overrides=["optim.lr=0.0007", "sched.name=none"], **QUIET)
    rows = _rows(run)
    assert float(rows[1]["lr"]) == pytest.approx(0.0007)  # used to keep training with the old lr and cosine
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == pytest.approx(0.0007) and saved["sched"]["name"] == "none"


def test_resume_refuses_a_change_that_would_make_another_run(tmp_path, config):
    run = tmp_path / "run"
    train(config, out=run, **QUIET)
    before = _files(run)
    for change, key in (("model.head=V2", "model.head"), ("data.batch_size=8", "data.batch_size"), ("train.seed=5", "train.seed")):
        with pytest.raises(UserError, match=key):
            train(config, out=run, resume=True, epochs=2, overrides=[change], **QUIET)
    assert _files(run) == before  # config.yaml was rewritten before the refusal


# -- 4. folds into one folder share folds, seed and recipe --------------------------------


def test_folds_of_one_folder_must_share_the_recipe(tmp_path, config):
    run = tmp_path / "run"
    train(config, out=run, folds=3, fold=0, **QUIET)
    before = _files(run)
    with pytest.raises(UserError, match="train.folds 3 -> 5"):
        train(config, out=run, folds=5, fold=1, overrides=["optim.lr=0.01"], **QUIET)
    with pytest.raises(UserError, match="optim.lr 0.01 -> 0.02"):
        train(config, out=run, folds=3, fold=1, overrides=["optim.lr=0.02"], **QUIET)
    with pytest.raises(UserError, match="train.seed"):
        train(config, out=run, folds=3, fold=1, overrides=["train.seed=1"], **QUIET)
    assert _files(run) == before  # a refused command wrote nothing, config.yaml included
    cv = train(config, out=run, folds=3, fold=1, overrides=["data.workers=1"], **QUIET)  # machine settings may differ
    oof = list(csv.DictReader(open(run / "oof.csv")))
    assert cv["folds_done"] == 2 and len(oof) == len({r["id"] for r in oof}) == cv["images"]


def test_a_fold_is_not_trained_into_a_single_run(tmp_path, config):
    run = tmp_path / "run"
    train(config, out=run, **QUIET)
    before = _files(run)
    with pytest.raises(UserError, match="holds a single run"):
        train(config, out=run, folds=3, fold=0, **QUIET)
    assert _files(run) == before


# -- 5. a failed resume leaves the run as it was ------------------------------------------


def test_resume_on_other_data_is_refused_and_the_run_still_resumes(tmp_path, config):
    from comp.data.synthetic import make_competition

    other = make_competition(tmp_path / "other", classes=4, per_class=8, size=32)
    run = tmp_path / "run"
    train(config, out=run, **QUIET)
    before = _files(run)
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--resume", "--epochs", "2", "--data", str(other)])
    assert result.exit_code == 2 and "Traceback" not in result.output and "classes" in result.stderr, result.output
    assert _files(run) == before
    assert train(config, out=run, resume=True, epochs=2, **QUIET)["epochs_run"] == 2


# -- 6. unfinished k-fold runs are not ensembled ------------------------------------------


def test_predict_and_evaluate_refuse_an_unfinished_k_fold_run(tmp_path, config):
    from comp.evaluate import evaluate

    run = tmp_path / "run"
    train(config, out=run, folds=3, fold=0, **QUIET)
    train(config, out=run, folds=3, fold=1, **QUIET)
    (run / "fold_1" / "summary.json").unlink()  # as after a kill inside fold 1's last epoch
    for call in (lambda: predict([run], out=tmp_path / "p.csv", workers=0, **QUIET), lambda: evaluate([run], **QUIET)):
        with pytest.raises(UserError, match=r"fold 0 finished, fold 1 interrupted after epoch 1 of 1, fold 2 not started") as e:
            call()
        assert "train_on_val" not in str(e.value)
    assert not (tmp_path / "p.csv").exists()
    meta = predict([run / "fold_0"], out=tmp_path / "p.csv", workers=0, **QUIET)  # the finished fold alone, by choice
    assert meta["runs"]


def test_ctrl_c_in_a_fold_points_at_the_k_fold_run_and_a_fold_folder_is_refused(tmp_path, shapes, monkeypatch):
    from comp.errors import Interrupted
    from tests.engine.test_crash_safety import _interrupt_at_forward

    config = write_config(tmp_path / "c.yaml", data={"dir": str(shapes), "batch_size": 8}, train={"checkpoint_minutes": 0})
    run = tmp_path / "run"
    _interrupt_at_forward(monkeypatch, 3 + 2)  # 24 images per fold / batch 8: the 2nd batch of fold 1
    with pytest.raises(Interrupted) as stopped:
        train(config, out=run, folds=2, **QUIET)
    # Used to print --out RUN/fold_1, which then trained a whole new 2-fold run inside fold_1/.
    assert stopped.value.args[0].endswith(f"continue with: comp train {config} --resume --out {run}")
    monkeypatch.undo()
    before = _files(run)
    for extra in (["--resume"], ["--overwrite"]):
        result = runner.invoke(app, ["train", str(config), "--out", str(run / "fold_1"), *extra])
        assert result.exit_code == 2 and f"fold 1 of the k-fold run {run}" in result.stderr and "--fold 1" in result.stderr, result.output
    assert _files(run) == before
    with pytest.raises(UserError, match=rf"comp train CONFIG --resume --out {run} --fold 1$"):
        predict([run / "fold_1"], out=tmp_path / "p.csv", workers=0, **QUIET)
    train(config, out=run, resume=True, **QUIET)  # the printed command finishes the run itself
    assert json.loads((run / "cv.json").read_text())["folds_done"] == 2 and not (run / "fold_1" / "fold_0").exists()


def test_ctrl_c_in_one_fold_of_fold_i_points_at_that_fold(tmp_path, shapes, monkeypatch):
    from comp.errors import Interrupted
    from tests.engine.test_crash_safety import _interrupt_at_forward

    config = write_config(tmp_path / "c.yaml", data={"dir": str(shapes), "batch_size": 8}, train={"checkpoint_minutes": 0})
    _interrupt_at_forward(monkeypatch, 2)
    with pytest.raises(Interrupted, match=rf"--resume --out {tmp_path / 'run'} --fold 1$"):
        train(config, out=tmp_path / "run", folds=2, fold=1, **QUIET)


# -- 7. resuming a finished or early-stopped run changes nothing ---------------------------


def test_resuming_a_finished_run_changes_nothing(tmp_path, config):
    run = tmp_path / "run"
    train(config, out=run, **QUIET)
    before = _files(run)
    lines = []
    train(config, out=run, resume=True, log=lines.append)
    assert _files(run) == before and any("nothing to do" in line for line in lines)


def test_resuming_an_early_stopped_run_trains_no_more_epochs(tmp_path, shapes):
    config = write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}, optim={"lr": 1e-9}, sched={"name": "none"},
                          train={"epochs": 6, "patience": 1})
    run = tmp_path / "run"
    first = train(config, out=run, **QUIET)
    assert first["stopped_early"] and first["epochs_run"] < 6
    before = _files(run)
    for _ in range(2):
        assert train(config, out=run, resume=True, **QUIET)["epochs_run"] == first["epochs_run"]
    assert _files(run) == before


# -- 8. paths are stored absolute ---------------------------------------------------------


def test_a_relative_data_dir_is_stored_absolute(tmp_path, shapes, monkeypatch):
    monkeypatch.chdir(shapes.parent)
    config = write_config(tmp_path / "c.yaml")
    train(config, data=Path(shapes.name), out=tmp_path / "run", **QUIET)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["dir"] == str(shapes.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / shapes.name).mkdir()  # a folder of the same name must not be picked up
    monkeypatch.chdir(elsewhere)
    meta = predict([tmp_path / "run"], out=tmp_path / "p.csv", workers=0, **QUIET)
    assert Path(meta["data"]).resolve() == shapes.resolve()


# -- 11. two runs started in the same second ----------------------------------------------


def test_default_run_dirs_never_collide(tmp_path, config, monkeypatch):
    import datetime as real

    class Frozen(real.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 11, 25, 10, 15, 0)

    monkeypatch.setattr("comp.engine.rundir.datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    a = train(config, **QUIET)["run_dir"]
    b = train(config, **QUIET)["run_dir"]
    assert a != b and {Path(a).name, Path(b).name} == {"c-20261125-101500", "c-20261125-101500-2"}
    assert json.loads((Path(b) / "summary.json").read_text())["epochs_run"] == 1
