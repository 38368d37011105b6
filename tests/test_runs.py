"""`comp runs`: one row per run (single, k-fold, unfinished), sorted by the metric, with the keys that differ."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.runs import leaderboard, sort_runs
from comp.train import train
from tests.conftest import one_line_error, write_config

runner = CliRunner()
QUIET = dict(log=lambda s: None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """runs/: two single runs (other lr), a 2-fold run, and an unfinished run (no summary.json yet)."""
    from comp.data.synthetic import make_competition

    root = tmp_path_factory.mktemp("runs")
    data = make_competition(root / "data", classes=3, per_class=12, test_per_class=2, size=32)
    config = write_config(root / "c.yaml", data={"dir": str(data)}, train={"epochs": 2, "checkpoint_minutes": 0})
    runs = root / "runs"
    train(config, out=runs / "lr-01", **QUIET)
    train(config, out=runs / "lr-001", overrides=["optim.lr=0.001"], **QUIET)
    train(config, out=runs / "kfold", folds=2, overrides=["train.epochs=1"], **QUIET)
    train(config, out=runs / "cut", overrides=["train.epochs=3"], **QUIET)
    (runs / "cut" / "summary.json").unlink()  # as after a kill in its last epoch
    return runs


def test_every_run_is_one_row_with_what_differs(folder):
    table = leaderboard([folder]).set_index("run")
    assert sorted(table.index) == sorted(str(folder / n) for n in ("lr-01", "lr-001", "kfold", "cut"))  # folds are not rows
    # epochs per fold (2 folds of 1 epoch used to read 2, beside single runs' 2 epochs)
    assert table.loc[str(folder / "kfold"), "epochs"] == 1 and table.loc[str(folder / "kfold"), "state"] == "finished"
    assert table.loc[str(folder / "cut"), "state"] == "interrupted after epoch 3 of 3"  # marked, not hidden
    metrics = pd.read_csv(folder / "cut" / "metrics.csv")
    best = metrics["val_score"].idxmax()
    assert table.loc[str(folder / "cut"), "score"] == pytest.approx(metrics.at[best, "val_score"])  # its best so far
    assert table.loc[str(folder / "cut"), "acc"] == pytest.approx(metrics.at[best, "val_acc"])  # and that epoch's acc (was "-")
    assert {"optim.lr", "train.epochs", "train.folds"} <= set(table.columns)  # the keys that differ among the runs
    assert "data.dir" not in table.columns and "model.name" not in table.columns  # equal everywhere, or where it ran
    assert "data.crop_pct" not in table.columns  # a k-fold run's values as its folds resolved them, not its top config's None
    assert table.loc[str(folder / "lr-001"), "optim.lr"] == 0.001


def test_sorted_by_the_metric_with_the_csv_and_other_orders(folder, tmp_path):
    result = runner.invoke(app, ["runs", str(folder), "--csv", str(tmp_path / "runs.csv")])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(tmp_path / "runs.csv")
    scores = written["score"].tolist()
    assert scores == sorted(scores, reverse=True)  # accuracy: higher first
    assert result.output.splitlines()[0].split()[:4] == ["run", "state", "metric", "score"]
    by_date = sort_runs(leaderboard([folder]), "date")
    assert by_date["date"].tolist() == sorted(by_date["date"], reverse=True)  # newest first
    one_line_error(runner.invoke(app, ["runs", str(folder), "--sort", "colour"]), "--sort 'colour'")
    one_line_error(runner.invoke(app, ["runs", str(tmp_path / "none")]), "not a folder")


def test_log_loss_runs_sort_lowest_first():
    table = pd.DataFrame({"run": ["a", "b", "c"], "metric": ["log_loss"] * 3, "score": [0.5, None, 0.2]})
    assert sort_runs(table)["run"].tolist() == ["c", "a", "b"]  # lower is better; no score last
