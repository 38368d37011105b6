"""Is a gain real? `comp compare`, `comp runs --vs/--ci`, `comp lb`'s CV intervals, and runs of several seeds."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.compare import compare
from comp.evaluate.intervals import held_out, score_interval
from comp.predict import predict, run_score
from comp.probs import read_probs
from comp.runs import runs as list_runs
from comp.submission.lb import show
from comp.train import train
from tests.conftest import one_line_error, write_config

runner = CliRunner()
QUIET = dict(log=lambda s: None)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A competition with two single runs (other lr), a 3-seed run, and a run of another competition."""
    from comp.data.synthetic import make_competition

    root = tmp_path_factory.mktemp("seeds")
    data = make_competition(root / "data", classes=3, per_class=20, test_per_class=2, size=32)
    other = make_competition(root / "other", classes=4, per_class=6, test_per_class=1, size=32)
    config = write_config(root / "c.yaml", data={"dir": str(data), "val_fraction": 0.25}, train={"epochs": 2, "checkpoint_minutes": 0})
    runs = root / "runs"
    train(config, out=runs / "a", **QUIET)
    train(config, out=runs / "b", overrides=["optim.lr=0.001"], **QUIET)
    train(config, out=runs / "s3", seeds=3, overrides=["train.epochs=1"], **QUIET)
    train(config, out=root / "elsewhere" / "x", overrides=[f"data.dir={other}", "train.epochs=1"], **QUIET)
    return {"root": root, "runs": runs, "config": config, "data": data, "x": root / "elsewhere" / "x"}


def test_compare_scores_runs_as_predict_and_gives_a_paired_interval(world):
    a, b = world["runs"] / "a", world["runs"] / "b"
    lines = []
    out = compare([a, b], resamples=500, log=lines.append)
    assert out["runs"][str(a)]["score"] == pytest.approx(run_score(a)) and out["runs"][str(b)]["score"] == pytest.approx(run_score(b))
    c = out["comparisons"][0]
    assert c["difference"] == pytest.approx(run_score(b) - run_score(a)) and c["images"] == 15  # a quarter of 60 images, the same split
    assert c["low"] <= c["difference"] <= c["high"] and 0 <= c["b_better_share"] <= 1
    assert c["outside_noise"] == (c["low"] > 0 or c["high"] < 0)
    assert any(line.startswith("B - A: ") and "paired bootstrap" in line for line in lines)
    assert lines[-1] == c["sentence"][0].upper() + c["sentence"][1:] + "."
    # the difference by hand: each run's accuracy on the shared images, from val_probs.csv
    ids_a, p_a, classes, meta = read_probs(a / "val_probs.csv")
    ids_b, p_b, _, _ = read_probs(b / "val_probs.csv")
    truth = np.array([classes.index(label) for label in meta["label"]])
    p_b = p_b[[ids_b.index(i) for i in ids_a]]
    assert c["difference"] == pytest.approx(float((p_b.argmax(1).numpy() == truth).mean() - (p_a.argmax(1).numpy() == truth).mean()))
    result = runner.invoke(app, ["compare", str(a), str(b), str(world["runs"] / "s3"), "--metric", "log_loss", "--resamples", "200"])
    assert result.exit_code == 0, result.output
    assert "C - A: " in result.output and "log_loss" in result.output


def test_compare_refuses_runs_it_cannot_pair(world, tmp_path):
    a = world["runs"] / "a"
    one_line_error(runner.invoke(app, ["compare", str(a)]), "two or more runs")
    one_line_error(runner.invoke(app, ["compare", str(a), str(world["x"])]), "different competitions")
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)
    table = pd.read_csv(moved / "val_probs.csv", dtype=str)
    table["id"] = "elsewhere/" + table["id"]  # the same images under other ids: nothing shared
    table.to_csv(moved / "val_probs.csv", index=False)
    one_line_error(runner.invoke(app, ["compare", str(a), str(moved)]), "share no held-out image")
    relabelled = tmp_path / "relabelled"
    shutil.copytree(a, relabelled)
    table = pd.read_csv(relabelled / "val_probs.csv", dtype=str)
    table.loc[0, "label"] = next(c for c in table.columns[2:] if c != table.loc[0, "label"])  # another class
    table.to_csv(relabelled / "val_probs.csv", index=False)
    one_line_error(runner.invoke(app, ["compare", str(a), str(relabelled)]), "differently")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(a, unfinished)
    (unfinished / "summary.json").unlink()
    one_line_error(runner.invoke(app, ["compare", str(a), str(unfinished)]), "unfinished run")


def test_a_run_of_seeds_is_one_split_and_predicts_the_mean_of_its_seeds(world, tmp_path):
    run = world["runs"] / "s3"
    saved = json.loads((run / "seeds.json").read_text())
    assert saved["seeds"] == [0, 1, 2] and (run / "config.yaml").is_file()
    seeds = [run / f"seed_{s}" for s in saved["seeds"]]
    ids = [sorted(read_probs(s / "val_probs.csv")[0]) for s in seeds]
    assert ids[0] == ids[1] == ids[2]  # one split (data.split_seed 0), only the training's seed differs
    from comp.engine.rundir import saved_config

    assert [saved_config(s).train.seed for s in seeds] == [0, 1, 2]
    scores = [run_score(s) for s in seeds]
    assert saved["mean"] == pytest.approx(np.mean(scores)) and saved["sd"] == pytest.approx(np.std(scores, ddof=1))
    assert saved["low"] < saved["mean"] < saved["high"]
    common = dict(data=world["data"], tta=False, **QUIET)
    predict([run], out=tmp_path / "all.csv", **common)
    for i, s in enumerate(seeds):
        predict([s], out=tmp_path / f"seed{i}.csv", **common)
    ids_all, p_all, _, _ = read_probs(tmp_path / "all_probs.csv")
    mean = sum(read_probs(tmp_path / f"seed{i}_probs.csv")[1] for i in range(3)) / 3
    assert np.allclose(p_all.numpy(), mean.numpy(), atol=1e-6)  # the seeds' ensemble is the mean of the seeds' probabilities
    assert held_out(run).score() == pytest.approx(run_score(run))  # its held-out score: the seeds' merged table
    from comp.evaluate import evaluate

    scored = evaluate([run], **QUIET)["runs"][str(run)]  # re-predicted: each image once, the seeds merged, not three times
    assert scored["images"] == saved["images"] and scored["tta_score"] == pytest.approx(saved["score"], abs=1e-6)


def test_resume_continues_an_unfinished_seed_and_starts_the_rest(world, tmp_path):
    out = tmp_path / "s3"
    shutil.copytree(world["runs"] / "s3", out)
    before = json.loads((out / "seeds.json").read_text())
    (out / "seeds.json").unlink()
    (out / "seed_1" / "summary.json").unlink()  # killed in its last epoch: last.pt is there
    shutil.rmtree(out / "seed_2")  # never started
    one_line_error(runner.invoke(app, ["predict", str(out), "--out", str(tmp_path / "p.csv")]),
                   "unfinished 3-seed run", "seed_1 interrupted after epoch 1 of 1", "seed_2 not started")
    lines = []
    train(world["config"], out=out, resume=True, log=lines.append)
    assert "seed 0: finished earlier, skipped" in lines and any(line.startswith("seed 1 (2/3): interrupted") for line in lines)
    after = json.loads((out / "seeds.json").read_text())
    assert after["seed_scores"] == pytest.approx(before["seed_scores"]) and after["score"] == pytest.approx(before["score"])


def test_runs_vs_and_ci_columns(world):
    lines = []
    table = list_runs([world["runs"]], vs=world["runs"] / "a", ci=True, log=lines.append).set_index("run")
    a, b, s3 = (str(world["runs"] / n) for n in ("a", "b", "s3"))
    assert table.loc[a, "vs a"] == "(reference)"
    d = compare([world["runs"] / "a", world["runs"] / "b"], resamples=2000, **QUIET)["comparisons"][0]
    assert table.loc[b, "vs a"].startswith(f"{d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
    iv = score_interval([world["runs"] / "b"])
    assert table.loc[b, "score_ci"] == f"[{iv.low:.4f}, {iv.high:.4f}]"
    assert table.loc[s3, "train.seeds"] == 3 and table.loc[s3, "score"] == pytest.approx(run_score(world["runs"] / "s3"))
    one_line_error(runner.invoke(app, ["runs", str(world["runs"]), "--vs", str(world["x"].parent / "nothing")]), "not")


def test_lb_shows_each_cv_with_its_interval(world, tmp_path):
    a = world["runs"] / "a"
    pd.DataFrame([{"time_utc": "2026-12-05T10:00", "file": "one.csv", "runs": str(a), "metric": "accuracy",
                   "cv_score": f"{run_score(a):.4f}", "public_score": "0.9"},
                  {"time_utc": "2026-12-05T11:00", "file": "two.csv", "runs": str(tmp_path / "gone"), "metric": "accuracy",
                   "cv_score": "0.5", "public_score": "0.8"}]).to_csv(tmp_path / "history.csv", index=False)
    lines = []
    table = show(tmp_path, log=lines.append)
    iv = score_interval([a])
    assert table["cv_ci"].tolist() == [f"[{iv.low:.4f}, {iv.high:.4f}]", ""]  # the second run is gone: no interval, no guess
    assert any("comp compare" in line for line in lines)


def test_a_run_of_kfold_seeds_packages_to_the_same_file_as_predict(world, tmp_path):
    import subprocess
    import sys

    from tests.ship.test_package import _offline_env

    run = tmp_path / "k2s2"
    train(world["config"], out=run, seeds=2, folds=2, overrides=["train.epochs=1"], **QUIET)
    assert sorted(p.relative_to(run).as_posix() for p in run.glob("seed_*/fold_*")) == [
        "seed_0/fold_0", "seed_0/fold_1", "seed_1/fold_0", "seed_1/fold_1"]  # K x N models
    expected = tmp_path / "expected.csv"
    result = runner.invoke(app, ["predict", str(run), "--out", str(expected)])
    assert result.exit_code == 0 and "from 4 models" in result.output, result.output
    assert runner.invoke(app, ["package", str(run), "--out", str(tmp_path / "bundle")]).exit_code == 0
    done = subprocess.run([sys.executable, "-S", str(tmp_path / "bundle" / "inference.py"), "--data", str(world["data"]), "--out",
                           str(tmp_path / "bundle.csv")], env=_offline_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bundle.csv").read_bytes() == expected.read_bytes()
