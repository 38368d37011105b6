"""`comp tune`: the space is checked first, trials are run directories, the study continues, survives
Ctrl-C and kill -9, prunes, and is shared by workers through SQLite or a real PostgreSQL."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from comp.tasks.single import SingleLabel
from comp.cli import app
from comp.data.synthetic import make_competition
from comp.errors import Interrupted, UserError
from comp.tune import summarize, tune
from tests.conftest import one_line_error, write_config

optuna = pytest.importorskip("optuna")
runner = CliRunner()
QUIET = dict(log=lambda s: None)
SPACE = {"optim.lr": {"log": [1.0e-3, 5.0e-2]}, "aug.scale": {"choice": [[0.35, 1.0], [0.8, 1.0]]}}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_competition(tmp_path_factory.mktemp("tune") / "data", classes=3, per_class=12, test_per_class=3, size=32)


def _config(tmp_path: Path, data: Path, space=None, **tune_keys) -> Path:
    return write_config(tmp_path / "t.yaml", data={"dir": str(data)}, train={"epochs": 2, "seed": 0, "checkpoint_minutes": 0},
                        tune={"space": space or SPACE, "sampler": "random", **tune_keys})


def _study(folder: Path):
    return optuna.load_study(study_name=folder.resolve().name, storage=f"sqlite:///{folder.resolve() / 'study.db'}")


def _states(study) -> list[str]:
    return [t.state.name for t in study.get_trials()]


@pytest.mark.parametrize("space, message", [
    ({"optim.lrr": {"log": [1e-3, 1e-2]}}, "tune.space 'optim.lrr': unknown key 'optim.lrr'; did you mean 'optim.lr'?"),
    ({"optim.lr": {"float": [-1.0, 1.0]}}, "tune.space 'optim.lr': bad value for 'optim.lr'"),
    ({"model.head": {"choice": ["V1", "V9"]}}, "unknown head preset 'V9'"),
    ({"optim.lr": {"uniform": [0.1, 0.2]}}, "give one of {float: [lo, hi]}"),
    ({"optim.lr": {"log": [0.0, 0.1]}}, "log bounds must be > 0"),
    ({"train.epochs": {"int": [3, 1]}}, "lo must be below hi"),
    # whole bounds on an integer key passed the check and the first trial failed with train.epochs=2.0976
    ({"train.epochs": {"float": [1, 3]}}, "float draws fractional values such as 1.637, which train.epochs does not take"),
    ({"train.epochs": {"float": [1, 3]}}, "use {int: [1, 3]}"),
    ({"train.seeds": {"int": [1, 3]}}, "comp tune trains each trial once"),  # would have been ignored: trials train one seed
])
def test_a_bad_space_is_refused_before_any_trial(tmp_path, data, space, message):
    config = _config(tmp_path, data, space)
    result = runner.invoke(app, ["tune", str(config), "--out", str(tmp_path / "study")])
    one_line_error(result, message)
    assert not (tmp_path / "study").exists()


def test_grid_needs_a_discrete_space(tmp_path, data):
    config = _config(tmp_path, data, sampler="grid")
    one_line_error(runner.invoke(app, ["tune", str(config), "--out", str(tmp_path / "s")]), "grid needs choice or int keys", "'optim.lr'")


def test_trials_are_runs_the_study_continues_and_best_yaml_trains(tmp_path, data):
    config = _config(tmp_path, data)
    study_dir = tmp_path / "study"
    result = tune(config, out=study_dir, trials=3, **QUIET)
    assert [r["state"] for r in result["trials"]] == ["complete"] * 3
    for r in result["trials"]:  # ordinary run directories: predict works on any trial
        assert (study_dir / r["run_dir"] / "summary.json").is_file() and r["epochs"] == 2
    values = [r["value"] for r in result["trials"]]
    assert values == sorted(values, reverse=True) and result["best"]["value"] == values[0]
    again = tune(config, out=study_dir, trials=4, **QUIET)  # the same command with a larger total: one more trial
    assert len(again["trials"]) == 4 and len(list(study_dir.glob("trial_*"))) == 4
    tune(config, out=study_dir, trials=4, **QUIET)  # finished: nothing new
    assert len(_study(study_dir).trials) == 4
    best = yaml.safe_load((study_dir / "best.yaml").read_text())
    assert "tune" not in best and best["optim"]["lr"] == pytest.approx(again["best"]["params"]["optim.lr"])
    assert best["aug"]["scale"] == again["best"]["params"]["aug.scale"]
    trained = runner.invoke(app, ["train", str(study_dir / "best.yaml"), "--out", str(tmp_path / "best"), "--epochs", "1"])
    assert trained.exit_code == 0, trained.output
    pred = runner.invoke(app, ["predict", str(study_dir / again["best"]["run_dir"]), "--out", str(tmp_path / "p.csv")])
    assert pred.exit_code == 0, pred.output
    assert {"history.png", "trials.csv", "importances.png"} <= {p.name for p in study_dir.iterdir()}
    shown = runner.invoke(app, ["tune", "--summary", str(study_dir)])
    assert shown.exit_code == 0 and "trial" in shown.output and "best: trial" in shown.output
    by_url = summarize(storage=f"sqlite:///{study_dir.resolve() / 'study.db'}", **QUIET)
    assert by_url["best"]["number"] == again["best"]["number"]


def test_a_k_fold_trial_is_a_k_fold_run_valued_by_its_cv_score(tmp_path, data):
    import json

    config = _config(tmp_path, data, trials=1)
    result = tune(config, out=tmp_path / "study", overrides=["train.folds=2", "train.epochs=1"], **QUIET)
    run = tmp_path / "study" / result["trials"][0]["run_dir"]
    cv = json.loads((run / "cv.json").read_text())
    assert cv["folds_done"] == 2 and result["trials"][0]["value"] == pytest.approx(cv["cv_score"])
    assert result["trials"][0]["epochs"] == 2  # one per fold


def test_the_pruner_stops_trials_whose_score_lags(tmp_path, data, monkeypatch):
    """A val score per epoch that is plainly bad for one lr drives Optuna's median pruner through fit's epoch hook."""
    import comp.engine.fit as fit_module

    config = _config(tmp_path, data, {"optim.lr": {"choice": [0.01, 1.0e-9]}}, pruner="median", trials=10)
    real_fit_split = fit_module.fit_split
    current = {}

    def fit_split(cfg, *args, **kwargs):  # remember the trial's lr for the scripted score
        current["lr"] = cfg.optim.lr
        return real_fit_split(cfg, *args, **kwargs)

    monkeypatch.setattr(fit_module, "fit_split", fit_split)
    monkeypatch.setattr(SingleLabel, "score", lambda self, *args: 0.9 if current["lr"] == 0.01 else 0.1)
    result = tune(config, out=tmp_path / "study", **QUIET)
    pruned = [r for r in result["trials"] if r["state"] == "pruned"]
    assert pruned and all(r["params"]["optim.lr"] == 1.0e-9 and r["epochs"] == 1 for r in pruned)  # stopped after epoch 1
    assert all(r["state"] == "complete" for r in result["trials"] if r["params"]["optim.lr"] == 0.01)
    summary = yaml.safe_load((tmp_path / "study" / pruned[0]["run_dir"] / "summary.json").read_text())
    assert summary["stopped_by"] == "pruner"


def test_a_diverging_trial_is_pruned_and_the_study_goes_on(tmp_path, data):
    # the grid draws each lr exactly once, so the diverging trial is always among them (a random
    # sampler could leave it out and the check pass without it)
    config = _config(tmp_path, data, {"optim.lr": {"choice": [1.0e8, 0.01]}}, trials=2, sampler="grid")
    result = tune(config, out=tmp_path / "study", **QUIET)
    states = {r["params"]["optim.lr"]: r["state"] for r in result["trials"]}
    assert states == {1.0e8: "pruned", 0.01: "complete"}


def test_ctrl_c_mid_trial_resumes_that_trial_on_the_next_run(tmp_path, data, monkeypatch):
    from tests.engine.test_crash_safety import _interrupt_at_forward

    config = _config(tmp_path, data, trials=2)
    study_dir = tmp_path / "study"
    _interrupt_at_forward(monkeypatch, 3)  # the 3rd training batch of trial 0
    # the printed command carries every option given (it used to drop --data, so it failed with "no data folder")
    again = f"continue with: comp tune {config} --out {study_dir} --data {data} --trials 2 --set train.checkpoint_minutes=0"
    with pytest.raises(Interrupted, match=r"trial_0000/ holds the trial's last.pt .* " + re.escape(again) + "$"):
        tune(config, out=study_dir, data=data, trials=2, overrides=["train.checkpoint_minutes=0"], **QUIET)
    monkeypatch.undo()
    assert _states(_study(study_dir)) == ["FAIL", "WAITING"]
    lines: list[str] = []
    result = tune(config, out=study_dir, log=lines.append)
    assert any("trial 1 (trial_0000, resumed)" in line for line in lines), lines
    assert sorted(r["run_dir"] for r in result["trials"] if r["state"] == "complete") == ["trial_0000", "trial_0002"]
    assert not (study_dir / "trial_0001").exists()


def _tune_process(config: Path, study_dir: Path, *extra: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "comp", "tune", str(config), "--out", str(study_dir), *extra],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def test_a_worker_killed_mid_trial_leaves_no_trial_running_and_its_parameters_run_again(tmp_path, data):
    config = write_config(tmp_path / "t.yaml", data={"dir": str(data), "batch_size": 8}, train={"epochs": 30, "seed": 0},
                          tune={"space": SPACE, "sampler": "random", "heartbeat": 1, "trials": 1})
    study_dir = tmp_path / "study"
    proc = _tune_process(config, study_dir, log=tmp_path / "w.log")
    end = time.monotonic() + 120
    while not (study_dir / "trial_0000" / "last.pt").exists():
        assert proc.poll() is None and time.monotonic() < end, (tmp_path / "w.log").read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = _study(study_dir).trials[0]
    assert killed.state.name == "RUNNING"
    _wait_until_stale(study_dir, killed._trial_id)
    result = tune(config, out=study_dir, overrides=["train.epochs=2", "train.checkpoint_minutes=0"], **QUIET)
    study = _study(study_dir)
    assert "RUNNING" not in _states(study) and _states(study) == ["FAIL", "COMPLETE"]
    retry = study.trials[1]
    assert retry.params == killed.params and retry.user_attrs["run_dir"] == "trial_0000"
    assert result["trials"][0]["run_dir"] == "trial_0000" and (study_dir / "trial_0000" / "summary.json").is_file()


def _wait_until_stale(study_dir: Path, trial_id: int, limit: float = 60.0) -> None:
    """Wait until Optuna itself counts the trial's heartbeat as stale (past the grace period of 2
    heartbeats), as the next worker will check it. A fixed sleep of 2.5 s failed under load: SQLite
    stamps heartbeats to the second, so staleness can take up to 3 s, more on a busy machine."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval, as comp tune sets it
        storage = optuna.storages.RDBStorage(f"sqlite:///{study_dir.resolve() / 'study.db'}", heartbeat_interval=1)
    study_id = storage.get_study_id_from_name(study_dir.resolve().name)
    end = time.monotonic() + limit
    while trial_id not in storage._get_stale_trial_ids(study_id):  # the check Optuna's fail_stale_trials makes
        assert time.monotonic() < end, "the killed trial's heartbeat never went stale"
        time.sleep(0.1)


def test_jobs_runs_trials_side_by_side_on_one_machine(tmp_path, data):
    # Trials long enough (6 x 4 epochs) that the second worker has started (imports take seconds) before they are done.
    config = _config(tmp_path, data, trials=6, pruner="none")
    result = tune(config, out=tmp_path / "study", jobs=2, overrides=["train.epochs=4"], **QUIET)
    study = _study(tmp_path / "study")
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 6 <= len(finished) <= 7  # each extra worker may finish one trial more
    assert len({tuple(sorted(t.params.items())) for t in finished}) == len(finished)  # no worker repeats another's draw
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both processes ran trials
    assert (tmp_path / "study" / "worker_1.log").is_file() and result["best"] is not None


def test_without_optuna_the_message_says_how_to_install_it(tmp_path, data, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    one_line_error(runner.invoke(app, ["tune", str(_config(tmp_path, data)), "--out", str(tmp_path / "s")]), "pip install 'comp[tune]'")


# -- a real PostgreSQL server ---------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path_factory):
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1 (as the postgres user); skipped where it is not installed."""
    if not (PG_BIN / "initdb").exists() or shutil.which("su") is None or os.geteuid() != 0:
        pytest.skip("PostgreSQL 15 binaries (or root to run them as postgres) not available")
    pytest.importorskip("psycopg")
    root = Path("/tmp") / f"comp-pg-{os.getpid()}-{_free_port()}"
    root.mkdir()
    shutil.chown(root, "postgres")
    port = _free_port()

    def as_postgres(cmd: str) -> None:
        subprocess.run(["su", "postgres", "-s", "/bin/bash", "-c", cmd], check=True, capture_output=True, timeout=120)

    as_postgres(f"{PG_BIN}/initdb -D {root}/db -A trust -U postgres")
    as_postgres(f"{PG_BIN}/pg_ctl -D {root}/db -l {root}/log -o '-p {port} -k {root} -c listen_addresses=127.0.0.1' -w start")
    try:
        as_postgres(f"{PG_BIN}/createdb -h 127.0.0.1 -p {port} -U postgres comp")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/comp"
    finally:
        subprocess.run(["su", "postgres", "-s", "/bin/bash", "-c", f"{PG_BIN}/pg_ctl -D {root}/db -m immediate -w stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(tmp_path, data, postgres):
    config = _config(tmp_path, data, trials=4, pruner="none")
    extra = ["--storage", postgres, "--study", "shared"]
    workers = [_tune_process(config, tmp_path / "study", *extra, log=tmp_path / f"w{i}.log") for i in range(2)]
    for i, w in enumerate(workers):
        assert w.wait(timeout=600) == 0, (tmp_path / f"w{i}.log").read_text()
    study = optuna.load_study(study_name="shared", storage=postgres)
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 4 <= len(finished) <= 5  # at most one trial over the total per extra worker
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both workers ran trials
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) and len({t.user_attrs["run_dir"] for t in finished}) == len(finished)
    shown = runner.invoke(app, ["tune", "--summary", postgres, "--study", "shared"])
    assert shown.exit_code == 0 and "best: trial" in shown.output


def test_a_storage_that_does_not_open_is_one_line_and_writes_nothing(tmp_path, data, monkeypatch):
    # --summary used to print a 156-line SQLAlchemy traceback; comp tune --storage left an empty --out folder.
    pytest.importorskip("psycopg")
    monkeypatch.chdir(tmp_path)  # where --summary URL would write runs/<study>-tune
    dead = "postgresql+psycopg://postgres@127.0.0.1:1/comp"  # nothing listens on port 1
    missing = f"sqlite:///{tmp_path / 'no' / 'such' / 'study.db'}"
    for url in (dead, missing):
        one_line_error(runner.invoke(app, ["tune", "--summary", url]), "cannot open the study storage")
    one_line_error(runner.invoke(app, ["tune", str(_config(tmp_path, data)), "--storage", dead, "--out", str(tmp_path / "study")]),
                   "cannot open the study storage", "--storage")
    assert not (tmp_path / "study").exists() and not (tmp_path / "no").exists() and not Path("runs").exists()
