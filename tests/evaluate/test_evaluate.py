"""`comp evaluate` scores what `comp predict` writes: the same merge rule, temperatures, weights and views.

The competition here has test images that are copies of its validation images, so the file
`comp predict` writes can be scored against known answers and compared with what `comp evaluate`
reported for the same options.
"""

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import log_loss
from typer.testing import CliRunner

from comp.cli import app
from comp.data.synthetic import SHAPES, make_competition
from comp.evaluate import evaluate
from comp.predict import predict
from comp.train import train
from tests.conftest import write_config

runner = CliRunner()
QUIET = dict(log=lambda s: None)
VIEWS = ["identity", "hflip", "vflip"]


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory) -> tuple[Path, pd.DataFrame, list[Path]]:
    """(competition whose test/ holds copies of val/, answers, two 1-epoch log-loss runs merged geometrically).

    Eight classes after one epoch: every run's log loss is well above 1 (chance is 2.08).
    """
    root = tmp_path_factory.mktemp("mirrored")
    data = make_competition(root / "data", classes=8, per_class=8, val_per_class=3, test_per_class=0, size=32,
                            sample_submission=False)
    rows = []
    for image in sorted((data / "val").rglob("*.png")):
        (data / "test").mkdir(exist_ok=True)
        shutil.copy(image, data / "test" / image.name)
        rows.append((image.stem, image.parent.name))
    answers = pd.DataFrame(rows, columns=["image_name", "label"])
    classes = sorted(SHAPES[:8])
    pd.DataFrame({"image_name": answers["image_name"], **{c: 1 / 8 for c in classes}}).to_csv(data / "sample_submission.csv", index=False)
    runs = []
    for seed in (0, 1):
        config = write_config(root / f"c{seed}.yaml", data={"dir": str(data)}, train={"epochs": 1, "seed": seed},
                              tta={"views": VIEWS, "merge": "geometric"})
        train(config, out=root / f"run{seed}", overrides=["metric=log_loss"], **QUIET)
        runs.append(root / f"run{seed}")
    return data, answers, runs


def _written_log_loss(probs_csv: Path, answers: pd.DataFrame) -> float:
    """sklearn's log loss of a `*_probs.csv` comp predict wrote, against the answers."""
    table = pd.read_csv(probs_csv)
    truth = answers.set_index("image_name").loc[table["id"], "label"]
    return log_loss(truth, table.drop(columns="id").to_numpy(), labels=list(table.columns[1:]))


def test_evaluate_scores_the_merge_rule_and_temperature_predict_uses(mirrored, tmp_path):
    data, answers, (run, _) = mirrored
    res = evaluate([run], tta=True, views=VIEWS, **QUIET)
    entry = res["runs"][str(run)]
    assert res["merge"] == "geometric" and entry["temperature"] != 1.0
    predict([run], views=VIEWS, out=tmp_path / "p.csv", workers=0, **QUIET)
    # Used to merge the views by the arithmetic mean and each view calibrated on its own, whatever tta.merge said.
    assert entry["tta_score"] == pytest.approx(_written_log_loss(tmp_path / "p_probs.csv", answers), abs=1e-6)
    mean = evaluate([run], tta=True, views=VIEWS, merge_rule="mean", **QUIET)
    predict([run], views=VIEWS, merge_rule="mean", out=tmp_path / "m.csv", workers=0, **QUIET)
    assert mean["runs"][str(run)]["tta_score"] == pytest.approx(_written_log_loss(tmp_path / "m_probs.csv", answers), abs=1e-6)
    assert abs(mean["runs"][str(run)]["tta_score"] - entry["tta_score"]) > 1e-6  # the rule matters, so the test can tell


def test_fit_on_poor_log_loss_runs_recommends_what_predict_then_scores(mirrored, tmp_path):
    data, answers, runs = mirrored
    res = evaluate(runs, tta=True, views=VIEWS, fit=True, **QUIET)
    singles = [res["runs"][str(r)]["tta_score"] for r in runs]
    assert min(singles) > 1  # the case that used to give NaN weights
    assert all(math.isfinite(w) and w >= 0 for w in res["weights"]) and sum(res["weights"]) == pytest.approx(1)
    assert res["fitted_score"] <= min(singles) + 1e-6 and res["views_selected"]  # float32 merging rounds in the 8th digit
    predict(runs, weights=res["weights"], views=res["views_selected"], out=tmp_path / "fit.csv", workers=0, **QUIET)
    assert res["views_score"] == pytest.approx(_written_log_loss(tmp_path / "fit_probs.csv", answers), abs=1e-6)


def test_cli_evaluate_fit_with_tta_and_merge_option(mirrored):
    _, _, runs = mirrored
    result = runner.invoke(app, ["evaluate", *map(str, runs), "--tta", "--fit", "--merge", "mean"])
    assert result.exit_code == 0, result.output
    assert "merged by mean" in result.output and "--weights" in result.output and "nan" not in result.output.lower()
    bad = runner.invoke(app, ["evaluate", str(runs[0]), "--merge", "median"])
    assert bad.exit_code == 2 and "--merge" in bad.stderr
