"""`comp lb`: leaderboard scores in the ledger (by hand and from a stand-in Kaggle CLI), CV beside LB."""

import os
import shutil
import stat

import pandas as pd
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from comp.cli import app
from comp.submission.ledger import HISTORY_COLUMNS, read_ledger
from comp.predict import predict
from comp.submission.submit import submit
from comp.train import train
from tests.conftest import one_line_error, write_config

runner = CliRunner()
QUIET = dict(log=lambda s: None)


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    """Three real runs of other learning rates, each predicted and submitted with comp submit."""
    from comp.data.synthetic import make_competition

    root = tmp_path_factory.mktemp("season")
    data = make_competition(root / "data", classes=3, per_class=12, test_per_class=2, size=32)
    config = write_config(root / "c.yaml", data={"dir": str(data)}, train={"epochs": 2})
    for name, lr in (("lr-1", "0.1"), ("lr-01", "0.01"), ("lr-001", "0.001")):
        run = root / "runs" / name
        train(config, out=run, overrides=[f"optim.lr={lr}"], **QUIET)
        prediction = predict([run], data=data, tta=False, out=root / "pred" / f"{name}.csv", workers=0, **QUIET)
        del prediction
        submit(root / "pred" / f"{name}.csv", message=f"resnet lr {lr}", directory=root / "subs")
    return root


@pytest.fixture
def subs(season, tmp_path):
    """A private copy of the archive (tests change its ledger)."""
    shutil.copytree(season / "subs", tmp_path / "subs")
    return tmp_path / "subs"


def test_scores_are_recorded_by_row_or_file_name_and_cv_stands_beside_them(subs):
    ledger = read_ledger(subs)
    assert list(ledger.columns) == list(HISTORY_COLUMNS) and ledger["metric"].tolist() == ["accuracy"] * 3
    files = ledger["file"].tolist()
    assert runner.invoke(app, ["lb", "1", "0.61", "--dir", str(subs)]).exit_code == 0
    assert runner.invoke(app, ["lb", files[1], "0.72", "--private", "0.70", "--dir", str(subs)]).exit_code == 0
    assert runner.invoke(app, ["lb", "lr-001.csv", "0.55", "--dir", str(subs)]).exit_code == 0  # the name it was submitted under
    result = runner.invoke(app, ["lb", "--dir", str(subs)])
    assert result.exit_code == 0, result.output
    ledger = read_ledger(subs)
    assert ledger["public_score"].tolist() == ["0.61", "0.72", "0.55"] and ledger["private_score"].tolist() == ["", "0.7", ""]
    header, *rows = result.output.splitlines()[:4]
    assert header.split()[:8] == ["#", "time_utc", "runs", "metric", "cv", "cv_ci", "public", "private"]
    assert rows[1].split()[2:4] == ["lr-01", "accuracy"] and "0.7200" in rows[1] and "0.7000" in rows[1]
    assert all(row.split()[5].startswith("[") for row in rows)  # each CV's 95% interval, from its run's held-out images
    cv = pd.to_numeric(ledger["cv_score"])
    rho = spearmanr(cv, [0.61, 0.72, 0.55]).statistic
    assert f"Spearman rank correlation {rho:+.3f} over 3 submissions" in result.output
    assert (subs / "cv_vs_lb.png").stat().st_size > 5000

    # a corrected score says what it replaced
    result = runner.invoke(app, ["lb", "1", "0.62", "--dir", str(subs)])
    assert "row 1: public score 0.61 -> 0.62" in result.output


def test_wrong_names_and_scores_are_one_line(subs):
    one_line_error(runner.invoke(app, ["lb", "9", "0.5", "--dir", str(subs)]), "rows 1..3")
    one_line_error(runner.invoke(app, ["lb", "nothing.csv", "0.5", "--dir", str(subs)]), "no archived submission named")
    one_line_error(runner.invoke(app, ["lb", "1", "nan", "--dir", str(subs)]), "not a score")
    one_line_error(runner.invoke(app, ["lb", "1", "--dir", str(subs)]), "--private SCORE")
    one_line_error(runner.invoke(app, ["lb", "1", "0.5", "--kaggle", "x", "--dir", str(subs)]), "--kaggle")
    one_line_error(runner.invoke(app, ["lb", "--dir", str(subs / "none")]), "comp submit first")
    ledger = read_ledger(subs)
    ledger.loc[1, "file"] = "20260101-000000_lr-1.csv"  # two archived files submitted as lr-1.csv
    ledger.to_csv(subs / "history.csv", index=False)
    one_line_error(runner.invoke(app, ["lb", "lr-1", "0.5", "--dir", str(subs)]), "names 2 archived submissions", "row number")
    assert read_ledger(subs)["public_score"].tolist() == ["", "", ""]  # nothing written by a refused command


def test_an_old_ledger_gains_the_new_columns_and_submit_keeps_appending(subs, season):
    old = read_ledger(subs)[["time_utc", "file", "sha256", "runs", "cv_score", "message", "agreement_with_previous"]]
    old["mine"] = "kept"  # a column the user added by hand
    old.to_csv(subs / "history.csv", index=False)
    assert runner.invoke(app, ["lb", "2", "0.7", "--dir", str(subs)]).exit_code == 0
    submit(season / "pred" / "lr-01.csv", message="again", directory=subs)
    ledger = read_ledger(subs)
    assert list(ledger.columns) == list(HISTORY_COLUMNS) + ["mine"]
    assert ledger["public_score"].tolist() == ["", "0.7", "", ""] and ledger["mine"].tolist() == ["kept"] * 3 + [""]
    assert ledger["metric"].tolist() == ["", "", "", "accuracy"]
    assert ledger["agreement_with_previous"].iloc[-1] != ""  # still compared with the file before it


def _stand_in_kaggle(folder, output, code=0):
    """A `kaggle` executable printing `output` (what `kaggle competitions submissions COMP -v` prints)."""
    folder.mkdir(exist_ok=True)
    exe = folder / "kaggle"
    (folder / "out.txt").write_text(output)
    exe.write_text(f"#!/bin/sh\necho \"$@\" > {folder}/args.txt\ncat {folder}/out.txt\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return folder


def test_kaggle_scores_are_fetched_and_matched_by_file_name_or_message(subs, tmp_path, monkeypatch):
    files = read_ledger(subs)["file"].tolist()
    csv = (
        "fileName,date,description,status,publicScore,privateScore\n"
        f"{files[0]},2026-11-29 10:00:00,resnet lr 0.1,SubmissionStatus.COMPLETE,0.6100,0.6000\n"
        "submission.csv,2026-11-29 10:05:00,resnet lr 0.01,complete,0.7200,\n"  # uploaded by hand: matched by its message
        "submission.csv,2026-11-29 10:06:00,resnet lr 0.001,pending,,\n"
        "other.csv,2026-11-29 09:00:00,a notebook,complete,0.5000,0.5000\n"
    )
    bin_dir = _stand_in_kaggle(tmp_path / "bin", csv)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = runner.invoke(app, ["lb", "--kaggle", "my-comp", "--dir", str(subs)])
    assert result.exit_code == 0, result.output
    assert (bin_dir / "args.txt").read_text().split() == ["competitions", "submissions", "my-comp", "-v"]
    ledger = read_ledger(subs)
    assert ledger["public_score"].tolist() == ["0.61", "0.72", ""] and ledger["private_score"].tolist() == ["0.6", "", ""]
    assert "4 submissions, 2 matched to the ledger, 2 rows updated, 1 not scored yet" in result.output
    assert "other.csv (no ledger rows)" in result.output
    assert "a rank correlation needs 3" in result.output

    _stand_in_kaggle(bin_dir, "401 - Unauthorized\n", code=1)
    one_line_error(runner.invoke(app, ["lb", "--kaggle", "my-comp", "--dir", str(subs)]), "failed: 401 - Unauthorized")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    one_line_error(runner.invoke(app, ["lb", "--kaggle", "my-comp", "--dir", str(subs)]), "Kaggle CLI is not installed")


def test_the_same_file_scored_twice_differently_is_left_alone(subs, tmp_path, monkeypatch):
    first = read_ledger(subs)["file"].iloc[0]
    csv = ("fileName,date,description,status,publicScore,privateScore\n"
           f"{first},2026-11-29,x,complete,0.61,\n{first},2026-11-29,x,complete,0.64,\n")
    monkeypatch.setenv("PATH", f"{_stand_in_kaggle(tmp_path / 'bin', csv)}{os.pathsep}{os.environ['PATH']}")
    result = runner.invoke(app, ["lb", "--kaggle", "c", "--dir", str(subs)])
    assert result.exit_code == 0 and "lists 2 scores for it" in result.output
    assert read_ledger(subs)["public_score"].tolist() == ["", "", ""]


def test_bad_scores_are_one_line_before_any_change_and_negative_scores_are_accepted(subs):
    # Used to print "row 1: public score 0.61 -> 0.5" and then refuse --private nan (nothing written);
    # "abc" and "0,85" gave Typer's boxed usage error; "-0.5" read as an option "-0".
    assert runner.invoke(app, ["lb", "1", "0.61", "--dir", str(subs)]).exit_code == 0
    result = runner.invoke(app, ["lb", "1", "0.5", "--private", "nan", "--dir", str(subs)])
    one_line_error(result, "--private nan is not a score")
    assert "->" not in result.output and read_ledger(subs)["public_score"].tolist() == ["0.61", "", ""]
    one_line_error(runner.invoke(app, ["lb", "1", "abc", "--dir", str(subs)]), "SCORE 'abc' is not a number")
    one_line_error(runner.invoke(app, ["lb", "1", "0,85", "--dir", str(subs)]), "decimal point, e.g. 0.85")
    result = runner.invoke(app, ["lb", "2", "-0.5", "--private", "-1.25", "--dir", str(subs)])
    assert result.exit_code == 0, result.output
    assert read_ledger(subs).loc[1, ["public_score", "private_score"]].tolist() == ["-0.5", "-1.25"]


def test_submissions_of_two_metrics_are_ranked_and_drawn_per_metric(subs):
    # One Spearman "over 4 submissions" used to mix f2_samples and roc_auc scores, on one pair of axes.
    from PIL import Image

    ledger = read_ledger(subs)
    ledger = pd.concat([ledger, ledger], ignore_index=True)
    ledger["metric"] = ["accuracy"] * 3 + ["roc_auc"] * 3
    ledger["cv_score"] = ["0.5", "0.6", "0.7", "0.91", "0.93", "0.92"]
    ledger["public_score"] = ["0.52", "0.61", "0.69", "0.90", "0.95", "0.91"]
    ledger.to_csv(subs / "history.csv", index=False)
    result = runner.invoke(app, ["lb", "--dir", str(subs)])
    assert result.exit_code == 0, result.output
    assert "CV vs public LB (accuracy): Spearman rank correlation +1.000 over 3 submissions" in result.output
    rho = spearmanr([0.91, 0.93, 0.92], [0.90, 0.95, 0.91]).statistic
    assert f"CV vs public LB (roc_auc): Spearman rank correlation {rho:+.3f} over 3 submissions" in result.output
    assert "over 6 submissions" not in result.output
    assert Image.open(subs / "cv_vs_lb.png").size[0] == 2 * 715  # a 6.5-inch panel per metric at 110 dpi, side by side
