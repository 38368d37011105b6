"""Graded (ordinal) and numeric (regression) competitions through comp data check -> train (single and --folds) ->
evaluate --fit --report -> predict --tta -> submit, package's inference.py, export, runs, and resume."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from comp.cli import app
from comp.data.synthetic import make_graded_competition
from comp.probs import label_indices, read_probs
from comp.tasks.cutpoints import cut, score_cut
from tests.conftest import one_line_error, write_config
from tests.ship.test_package import _run_offline

runner = CliRunner()


@pytest.fixture(scope="module")
def grades(tmp_path_factory):
    return make_graded_competition(tmp_path_factory.mktemp("aptos") / "aptos", images=80, test_images=12)


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    return make_graded_competition(tmp_path_factory.mktemp("petfinder") / "petfinder", kind="regression", images=80, test_images=12)


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def _config(tmp_path, data, metric, **train):
    import yaml

    path = write_config(tmp_path / "c.yaml", data={"dir": str(data)}, train={"epochs": 2, "seed": 0, **train})
    raw = yaml.safe_load(path.read_text())
    raw["metric"] = metric
    path.write_text(yaml.safe_dump(raw))
    return path


def test_ordinal_end_to_end_with_fitted_cut_points(tmp_path, grades):
    out = _ok(runner.invoke(app, ["data", "check", str(grades)]))
    assert "--task ordinal" in out  # integer classes: data check offers the ordinal task
    out = _ok(runner.invoke(app, ["data", "check", str(grades), "--task", "ordinal"]))
    assert "task: ordinal" in out and "grades: 4" in out
    config = _config(tmp_path, grades, "qwk", label_smoothing=0.0)
    run = tmp_path / "run"
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "data.task=ordinal"]))
    assert "at the fitted cut-points" in out and "4 grades" in out
    summary = json.loads((run / "summary.json").read_text())
    fitted = json.loads((run / "cutpoints.json").read_text())
    ids, values, columns, meta = read_probs(run / "val_probs.csv")
    assert columns == ["grade"] and values.shape == (len(ids), 1)
    y = label_indices(meta["label"], fitted["classes"]).numpy()
    v = values[:, 0].double().numpy()
    assert summary["best_val_score"] == pytest.approx(score_cut("qwk", v, y, fitted["classes"]), abs=1e-6)  # at rounding
    assert summary["best_val_score_cut"] == pytest.approx(score_cut("qwk", v, y, fitted["classes"], fitted["cuts"]), abs=1e-6)
    assert summary["best_val_score_cut"] >= summary["best_val_score"]  # fitted cut-points are never worse on what they fit

    prediction = tmp_path / "prediction.csv"
    out = _ok(runner.invoke(app, ["predict", str(run), "--tta", "--out", str(prediction)]))
    assert f"cut-points: {run / 'cutpoints.json'}" in out
    written = pd.read_csv(prediction, dtype=str)
    assert list(written.columns) == ["id_code", "diagnosis"]
    _, test_values, _, _ = read_probs(tmp_path / "prediction_probs.csv")  # the merged continuous value, before the cut
    assert written["diagnosis"].tolist() == [fitted["classes"][g] for g in cut(test_values[:, 0].double().numpy(), fitted["cuts"])]
    _ok(runner.invoke(app, ["submit", str(prediction), "--dir", str(tmp_path / "subs")]))
    bad = written.copy()
    bad.loc[2, "diagnosis"] = "2.5"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    (tmp_path / "bad_meta.json").write_text((tmp_path / "prediction_meta.json").read_text())  # what predict recorded: an ordinal task
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "bad.csv")]), "line 4", "not a grade")

    report = tmp_path / "report"
    out = _ok(runner.invoke(app, ["evaluate", str(run), "--tta", "--fit", "--report", str(report)]))
    assert "qwk at rounding" in out and "at the run's cut-points" in out and "cut-points fitted for that combination" in out
    table = pd.read_csv(report / "per_grade.csv")
    assert table["support"].sum() == len(ids) and list(table["grade"]) == [0, 1, 2, 3]
    assert {"confusion_matrix.png", "cutpoints.png", "top_errors.csv", "report.md"} <= {p.name for p in report.iterdir()}

    bundle = tmp_path / "bundle"
    _ok(runner.invoke(app, ["package", str(run), "--out", str(bundle)]))
    expected = tmp_path / "expected.csv"
    _ok(runner.invoke(app, ["predict", str(run), "--out", str(expected)]))  # package's defaults: TTA on, as configured
    done = _run_offline(bundle, grades, tmp_path / "bundle.csv", tmp_path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bundle.csv").read_bytes() == expected.read_bytes()

    model_file = tmp_path / "model.pt"
    out = _ok(runner.invoke(app, ["export", str(run), "--format", "torchscript", "--out", str(model_file)]))
    extra = {"cutpoints": "", "task": ""}
    loaded = torch.jit.load(str(model_file), _extra_files=extra)
    assert extra["task"].decode() == "ordinal"
    assert [float(c) for c in extra["cutpoints"].decode().split()] == pytest.approx(fitted["cuts"], abs=1e-5)
    assert loaded(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)).shape == (4, 1)


def test_ordinal_corn_folds_and_an_ensemble_refits_its_cut_points(tmp_path, grades):
    config = _config(tmp_path, grades, "qwk", epochs=1)
    corn, plain = tmp_path / "corn", tmp_path / "plain"
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(corn), "--folds", "2", "--set", "data.task=ordinal",
                                  "--set", "train.loss=corn"]))
    assert "cut-points fitted on oof.csv" in out
    cv = json.loads((corn / "cv.json").read_text())
    assert json.loads((corn / "cutpoints.json").read_text())["fitted_on"] == "oof.csv" and cv["cv_score_cut"] >= cv["cv_score"]
    ids, values, columns, meta = read_probs(corn / "oof.csv")
    assert columns == ["grade"] and len(ids) == 80 and 0 <= values.min() and values.max() <= 3  # CORN's expected grade
    # folds stratified on the grade: each fold validates on about half of every grade
    labels = np.array(meta["label"], dtype=int)
    folds = np.array(meta["fold"])
    for g in range(4):
        assert abs((folds[labels == g] == 0).sum() - (labels == g).sum() / 2) <= 1
    _ok(runner.invoke(app, ["train", str(config), "--out", str(plain), "--folds", "2", "--set", "data.task=ordinal"]))
    out = _ok(runner.invoke(app, ["predict", str(corn), str(plain), "--out", str(tmp_path / "both.csv")]))
    assert "cut-points: fitted on the 2 runs' merged held-out predictions" in out
    from comp.compare import compare
    from comp.predict import run_score

    compared = compare([corn, plain], resamples=300, log=lambda s: None)  # qwk at each run's own fitted cut-points, as predict cuts
    assert compared["runs"][str(corn)]["score"] == pytest.approx(cv["cv_score_cut"])
    assert compared["runs"][str(plain)]["score"] == pytest.approx(run_score(plain)) and compared["comparisons"][0]["images"] == 80
    assert set(pd.read_csv(tmp_path / "both.csv", dtype=str)["diagnosis"]) <= {"0", "1", "2", "3"}
    one_line_error(runner.invoke(app, ["predict", str(corn), "--merge", "geometric", "--out", str(tmp_path / "g.csv")]),
                   "ordinal runs merge")
    assert not (tmp_path / "g.csv").exists()


def test_regression_end_to_end(tmp_path, numbers):
    out = _ok(runner.invoke(app, ["data", "check", str(numbers)]))
    assert "task: regression" in out and "predictions clipped to" in out
    config = _config(tmp_path, numbers, "rmse")
    run = tmp_path / "run"
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(run)]))
    assert "best val rmse" in out and "acc" not in out.splitlines()[-1]
    recorded = (run / "config.yaml").read_text()
    assert "task: regression" in recorded and "target_scale" in recorded and "target_range" in recorded
    ids, values, columns, meta = read_probs(run / "val_probs.csv")
    assert columns == ["Pawpularity"] and values.shape == (len(ids), 1)
    truth = np.array(meta["label"], dtype=float)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_val_score"] == pytest.approx(np.sqrt(((values[:, 0].double().numpy() - truth) ** 2).mean()), rel=1e-5)

    prediction = tmp_path / "prediction.csv"
    _ok(runner.invoke(app, ["predict", str(run), "--tta", "--out", str(prediction)]))
    written = pd.read_csv(prediction)
    lo, hi = json.loads((tmp_path / "prediction_meta.json").read_text())["target_range"]
    assert list(written.columns) == ["Id", "Pawpularity"] and written["Pawpularity"].between(lo, hi).all()
    _ok(runner.invoke(app, ["submit", str(prediction), "--dir", str(tmp_path / "subs")]))
    bad = pd.read_csv(prediction, dtype=str)
    bad.loc[0, "Pawpularity"] = "1e9"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "bad.csv"), "--data", str(numbers)]), "line 2", "outside the target range")
    bad.loc[0, "Pawpularity"] = "high"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "bad.csv"), "--data", str(numbers)]), "line 2", "not a finite number")

    report = tmp_path / "report"
    out = _ok(runner.invoke(app, ["evaluate", str(run), "--tta", "--fit", "--report", str(report)]))
    assert "nan" not in out  # a regression has no accuracy to show beside its scores
    assert {"predicted_vs_true.png", "residuals.png", "residuals_by_bin.csv", "top_errors.csv", "report.md"} <= {p.name for p in report.iterdir()}
    assert pd.read_csv(report / "residuals_by_bin.csv")["images"].sum() == len(ids)

    bundle = tmp_path / "bundle"
    _ok(runner.invoke(app, ["package", str(run), "--out", str(bundle)]))
    expected = tmp_path / "expected.csv"
    _ok(runner.invoke(app, ["predict", str(run), "--out", str(expected)]))
    done = _run_offline(bundle, numbers, tmp_path / "bundle.csv", tmp_path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bundle.csv").read_bytes() == expected.read_bytes()
    out = _ok(runner.invoke(app, ["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]))
    assert "the predicted number (one column) out" in out


def test_regression_bce_folds_and_runs_sorted_lower_first(tmp_path, numbers):
    config = _config(tmp_path, numbers, "rmse", epochs=1)
    bce = tmp_path / "runs" / "bce"
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(bce), "--folds", "2", "--set", "train.loss=bce"]))
    assert "nan" not in out and "val_rmse" in out  # no accuracy column for numbers
    ids, values, columns, meta = read_probs(bce / "oof.csv")
    truth = np.array(meta["label"], dtype=float)
    assert values.min() >= truth.min() - 1e-3 and values.max() <= truth.max() + 1e-3  # a sigmoid onto the range stays inside it
    # folds stratified on quantile bins: both folds see low and high targets alike
    folds = np.array(meta["fold"])
    assert abs(np.median(truth[folds == 0]) - np.median(truth[folds == 1])) < 10
    mse = tmp_path / "runs" / "mse"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(mse), "--set", "train.epochs=2"]))
    scores = {r: json.loads(p.read_text())[k] for r, p, k in (("bce", bce / "cv.json", "cv_score"), ("mse", mse / "summary.json", "best_val_score"))}
    from comp.runs import runs

    table = runs([tmp_path / "runs"], log=lambda s: None)
    assert [r.rsplit("/", 1)[-1] for r in table["run"]] == sorted(scores, key=scores.get)  # rmse: lower is better, listed first
    # comp compare: the k-fold run's out-of-fold images that the single run holds out too, in rmse (lower is better)
    from comp.compare import compare
    from comp.predict import run_score

    out = compare([bce, mse], resamples=300, log=lambda s: None)
    c = out["comparisons"][0]
    assert out["runs"][str(mse)]["score"] == pytest.approx(run_score(mse)) and out["runs"][str(bce)]["score"] == pytest.approx(run_score(bce))
    assert c["images"] == json.loads((mse / "summary.json").read_text())["val_images"] < 80
    assert c["difference"] == pytest.approx(c["score_b"] - c["score_a"]) and c["low"] <= c["difference"] <= c["high"]
    assert ("better than" in c["sentence"]) == c["outside_noise"]


@pytest.mark.parametrize("kind, task, metric", [("ordinal", "ordinal", "qwk"), ("regression", "regression", "mae")])
def test_each_value_task_resumes(tmp_path, grades, numbers, kind, task, metric):
    data = grades if kind == "ordinal" else numbers
    config = _config(tmp_path, data, metric, epochs=1)
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--set", f"data.task={task}"]))
    first = (run / "config.yaml").read_text()
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--resume", "--epochs", "2", "--set", f"data.task={task}"]))
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [0, 1]
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2
    # --overwrite replaces the run, cutpoints.json included (it used to be refused as a file comp did not write)
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--overwrite", "--set", f"data.task={task}"]))
    if kind == "regression":  # the resumed run keeps the target scale it was trained with
        import yaml

        assert yaml.safe_load(first)["data"]["target_scale"] == yaml.safe_load((run / "config.yaml").read_text())["data"]["target_scale"]


def test_a_final_fit_on_every_labelled_image_trains_and_predicts(tmp_path, numbers):
    # data.train_on_val leaves no validation images; the empty split's targets used to crash the loaders
    config = _config(tmp_path, numbers, "rmse", epochs=1)
    run = tmp_path / "run"
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "data.train_on_val=true"]))
    assert "without a validation split" in out and not (run / "val_probs.csv").exists()
    _ok(runner.invoke(app, ["predict", str(run), "--out", str(tmp_path / "p.csv")]))
    assert len(pd.read_csv(tmp_path / "p.csv")) == 12


def test_a_run_of_ordinal_seeds_fits_its_cut_points_on_the_merged_grades(tmp_path, grades):
    from comp.compare import compare
    from comp.predict import run_score

    config = _config(tmp_path, grades, "qwk", epochs=1)
    run = tmp_path / "s2"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--seeds", "2", "--set", "data.task=ordinal"]))
    saved = json.loads((run / "seeds.json").read_text())
    assert json.loads((run / "cutpoints.json").read_text())["fitted_on"] == "val_probs.csv"
    assert saved["final_score"] == saved["score_cut"] == pytest.approx(run_score(run))
    compared = compare([run / "seed_0", run], resamples=200, log=lambda s: None)  # one seed against the two seeds' ensemble
    assert compared["comparisons"][0]["score_b"] == pytest.approx(saved["final_score"])
