"""Graded (ordinal) and numeric (regression) tasks: detection, metrics against sklearn, cut-points, the target
scale, binned folds, losses, and every refusal, each one line before any training."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, cohen_kappa_score, mean_absolute_error, r2_score, root_mean_squared_error

from comp.config import load_config
from comp.data.competition import Split, open_competition
from comp.data.labels import read_labels
from comp.data.synthetic import make_graded_competition
from comp.errors import UserError
from comp.tasks import get_task
from comp.tasks.cutpoints import cut, fit_cutpoints, rounding_cuts
from comp.tasks.ordinal import Ordinal
from comp.tasks.regression import Regression, quantile_bins
from comp.tasks.value_losses import LinearMixup, ValueLoss, corn_expected_grade
from tests.conftest import write_config

GRADES = ["0", "1", "2", "3", "4"]


def _read(values, task="auto"):
    df = pd.DataFrame({"id": [f"i{k}" for k in range(len(values))], "y": [str(v) for v in values]})
    return read_labels(df, "id", None, task, Path("train.csv"))


def test_auto_reads_numbers_by_their_values_and_asks_when_unclear():
    rng = np.random.default_rng(0)
    assert _read(rng.uniform(0, 100, 50).round(2)).task == "regression"  # many fractional values
    assert _read(rng.integers(0, 5, 50)).task == "single"  # a few integers stay classes (data check offers ordinal)
    with pytest.raises(UserError, match="data.task=regression") as e:
        _read(rng.integers(1, 101, 400))  # Pawpularity: 1-100 integers, a target or 100 classes
    assert "data.task=ordinal" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="distinct numbers"):
        _read([0.5, 1.5, 2.5] * 10)  # a few fractional values
    assert _read(["cat", "dog"] * 5).task == "single"
    assert _read(rng.integers(1, 101, 40), task="regression").task == "regression"  # said outright: never asked


def test_a_non_numeric_target_and_a_non_integer_grade_are_one_line(tmp_path):
    data = make_graded_competition(tmp_path / "reg", kind="regression", images=20, test_images=4)
    table = pd.read_csv(data / "train.csv", dtype=str)
    table.loc[3, "Pawpularity"] = "cute"
    table.to_csv(data / "train.csv", index=False)
    with pytest.raises(UserError, match="'cute' .* is not a number"):
        open_competition(data, task="regression")
    grades = make_graded_competition(tmp_path / "ord", images=20, test_images=4)
    table = pd.read_csv(grades / "train.csv", dtype=str)
    table.loc[0, "diagnosis"] = "mild"
    table.to_csv(grades / "train.csv", index=False)
    with pytest.raises(UserError, match="must be integers .*'mild'"):
        open_competition(grades, task="ordinal")


def test_grade_metrics_match_sklearn_on_the_cut_grades():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 200)
    v = y + rng.normal(0, 0.8, 200)
    task = Ordinal(classes=GRADES)
    grades = np.clip(np.round(v), 0, 4).astype(int)
    p = torch.tensor(v).float()[:, None]
    t = torch.tensor(y)
    assert task.score("qwk", p, t, GRADES) == pytest.approx(cohen_kappa_score(y, grades, weights="quadratic"), abs=1e-6)
    assert task.score("accuracy", p, t, GRADES) == pytest.approx(accuracy_score(y, grades), abs=1e-9)
    assert task.score("mae", p, t, GRADES) == pytest.approx(mean_absolute_error(y, grades), abs=1e-9)
    assert task.accuracy(p, t) == pytest.approx(accuracy_score(y, grades), abs=1e-6)
    cuts = [0.2, 1.1, 2.5, 3.9]
    at = np.searchsorted(cuts, v.astype(np.float32), side="right")
    assert task.score("qwk", p, t, GRADES, cuts) == pytest.approx(cohen_kappa_score(y, at, weights="quadratic"), abs=1e-6)
    # grades named 1..5: mae is in the grades' own numbers, kappa on their order
    named = ["1", "2", "3", "5", "8"]
    assert Ordinal(classes=named).score("mae", p, t, named) == pytest.approx(
        mean_absolute_error(np.array([1, 2, 3, 5, 8])[y], np.array([1, 2, 3, 5, 8])[grades]), abs=1e-9)


@pytest.mark.parametrize("name", ["qwk", "accuracy", "mae"])
def test_the_cut_point_search_scores_grades_as_sklearn_does(name):
    # the search evaluates the metric from the confusion matrix (thousands of times); it must be sklearn's value
    from comp.tasks.value_metrics import GRADE_METRICS

    m = GRADE_METRICS[name]
    rng = np.random.default_rng(5)
    values = np.array([1.0, 2.0, 3.0, 5.0, 8.0])
    for n in (7, 300):
        y = rng.integers(0, 5, n)
        p = np.clip(y + rng.integers(-2, 3, n), 0, 3)  # grade 4 never predicted
        confusion = np.bincount(y * 5 + p, minlength=25).reshape(5, 5)
        assert m.from_confusion(confusion, values) == pytest.approx(m.fn(p, y, values), abs=1e-12)


def test_number_metrics_match_sklearn_and_scipy():
    rng = np.random.default_rng(2)
    y = rng.uniform(1, 100, 300)
    p = y + rng.normal(0, 10, 300)
    task = Regression()
    pt, yt = torch.tensor(p)[:, None], torch.tensor(y)
    assert task.score("rmse", pt, yt, ["t"]) == pytest.approx(root_mean_squared_error(y, p), rel=1e-9)
    assert task.score("mae", pt, yt, ["t"]) == pytest.approx(mean_absolute_error(y, p), rel=1e-9)
    assert task.score("r2", pt, yt, ["t"]) == pytest.approx(r2_score(y, p), rel=1e-9)
    assert task.score("pearson", pt, yt, ["t"]) == pytest.approx(pearsonr(p, y).statistic, rel=1e-9)
    assert not task.metric("rmse").higher_is_better and task.metric("r2").higher_is_better and task.metric("pearson").higher_is_better
    assert np.isnan(task.score("pearson", torch.ones(5, 1), torch.arange(5.0), ["t"]))  # a constant prediction has none


def test_fitted_cut_points_beat_rounding_where_it_is_clearly_wrong():
    # A regression pulled to the common grade: grade g predicted around 0.6 + 0.5 g, so rounding
    # gives almost everything grades 1-2. The fitted cuts sit between the humps.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 500)
    v = 0.6 + 0.5 * y + rng.normal(0, 0.12, 500)
    fit = fit_cutpoints(v, y, "qwk", GRADES)
    assert fit["score_at_rounding"] < 0.85 and fit["score"] > 0.97
    assert fit["score"] >= fit["score_at_rounding"]
    assert all(a < b for a, b in zip(fit["cuts"], fit["cuts"][1:]))
    assert np.allclose(fit["cuts"], 0.85 + 0.5 * np.arange(4), atol=0.12)  # the midpoints between the humps
    # never worse than rounding, and rounding stays where it is best (well-placed predictions)
    exact = y + rng.normal(0, 0.1, 500)
    again = fit_cutpoints(exact, y, "qwk", GRADES)
    assert again["score"] >= again["score_at_rounding"] == pytest.approx(1.0)
    # mae is minimised, not maximised
    assert fit_cutpoints(v, y, "mae", GRADES)["score"] < fit_cutpoints(v, y, "mae", GRADES)["score_at_rounding"]
    assert cut(np.array([-3.0, 0.5, 0.49, 9.0]), rounding_cuts(5)).tolist() == [0, 1, 0, 4]


def test_the_target_scale_round_trips_and_bce_maps_the_range():
    y = np.array([10.0, 20.0, 30.0, 60.0])
    task = Regression(loss="mse").setup(Split([Path(f"{i}") for i in range(4)], [-1] * 4, y))
    mean, std = task.target_scale
    assert mean == pytest.approx(30.0) and std == pytest.approx(y.std()) and task.target_range == (10.0, 60.0)
    z = torch.tensor((y - mean) / std).float()[:, None]  # what a perfect head outputs
    assert task.activation(z)[:, 0].double().numpy() == pytest.approx(y, rel=1e-6)
    assert ValueLoss("mse", mean, std)(z, torch.tensor(y)).item() == pytest.approx(0.0, abs=1e-10)
    data = type("D", (), {})()
    task.record(data)
    again = get_task("regression", data, "mse")  # what predict rebuilds from the run's recorded config
    assert again.activation(z)[:, 0].double().numpy() == pytest.approx(y, rel=1e-6)
    bce = Regression(loss="bce", target_range=(0, 100))
    assert bce.activation(torch.tensor([[0.0], [-50.0], [50.0]]))[:, 0].tolist() == pytest.approx([50.0, 0.0, 100.0], abs=1e-4)
    target = torch.tensor([0.0, 100.0, 25.0])
    logits = torch.logit(torch.tensor([1e-6, 1 - 1e-6, 0.25]))[:, None]
    assert ValueLoss("bce", 0, 100)(logits, target).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy(torch.tensor([1e-6, 1 - 1e-6, 0.25]), target / 100).item(), rel=1e-4)


def test_regression_folds_are_stratified_on_quantile_bins_of_the_target():
    rng = np.random.default_rng(4)
    y = np.exp(rng.normal(3, 1, 300))  # skewed, as Pawpularity and bone age are
    split = Split([Path(f"{i}") for i in range(300)], [-1] * 300, y)
    folds = Regression().kfold(split, 5, seed=0)
    val = sorted(i for _, v in folds for i in v)
    assert val == list(range(300))  # the val parts partition the images
    bins = quantile_bins(y, 5)
    assert len(np.unique(bins)) == 10
    for train, v in folds:
        assert not set(train) & set(v)
        per_bin = np.bincount(bins[v], minlength=10)
        assert per_bin.min() >= 5 and per_bin.max() <= 7  # each bin's 30 images spread 6 +- 1 over the folds
    train, v = Regression().holdout(split, 0.2, seed=0)
    assert len(v) == pytest.approx(60, abs=5) and np.bincount(bins[v], minlength=10).min() >= 4


def test_linear_mixup_blends_values_and_corn_gives_the_expected_grade():
    torch.manual_seed(0)
    mix = LinearMixup(mixup_alpha=1.0, num_classes=1, label_smoothing=0.0)
    x = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    xm, t = mix(x.clone(), torch.tensor([0, 4]))
    lam = 1 - xm[0].mean().item()  # image 0 = lam * 0 + (1 - lam) * 1
    assert t.tolist() == pytest.approx([4 * (1 - lam), 4 * lam], abs=1e-5)
    sure = torch.tensor([[20.0, 20.0, -20.0, -20.0], [-20.0, 0.0, 0.0, 0.0]])  # grade 2 for sure; grade 0 for sure
    assert corn_expected_grade(sure)[:, 0].tolist() == pytest.approx([2.0, 0.0], abs=1e-6)
    half = corn_expected_grade(torch.zeros(1, 4))  # 0.5 + 0.25 + 0.125 + 0.0625
    assert half.item() == pytest.approx(0.9375)
    ordinal = Ordinal(loss="corn", classes=GRADES)
    assert ordinal.model_outputs(GRADES) == 4 and Ordinal(classes=GRADES).model_outputs(GRADES) == 1


@pytest.mark.parametrize("task, overrides, message", [
    ("regression", ["metric=qwk"], "does not score numbers"),
    ("multilabel", ["metric=rmse"], "does not score tags"),
    ("ordinal", ["metric=rmse"], "does not score grades"),
    ("ordinal", ["metric=qwk", "tta.merge=geometric"], "ordinal runs merge"),
    ("regression", ["metric=rmse", "tta.merge=logit"], "regression runs merge"),
    ("ordinal", ["metric=qwk", "train.loss=corn", "train.mixup=0.2"], "corn trains on whole grades"),
    ("ordinal", ["metric=qwk", "train.loss=ce"], "train.loss=ce does not train ordinal"),
    ("regression", ["metric=rmse", "train.loss=corn"], "does not train regression"),
    ("single", ["train.loss=mse"], "does not train single-label"),
    ("ordinal", ["metric=qwk", "train.class_weights=balanced"], "train.class_weights"),
    ("regression", ["metric=rmse", "data.sampler=balanced"], "data.sampler=balanced"),
])
def test_settings_a_value_task_cannot_use_are_one_line(tmp_path, task, overrides, message):
    cfg = load_config(write_config(tmp_path / "c.yaml"), overrides)
    classes = ["t"] if task == "regression" else GRADES
    with pytest.raises(UserError, match=message) as e:
        get_task(task, cfg.data, cfg.train.loss, classes).check(cfg, classes)
    assert "\n" not in str(e.value)


def test_submission_checks_of_grades_and_numbers(tmp_path):
    grades = make_graded_competition(tmp_path / "ord", images=20, test_images=4)
    sample = pd.read_csv(grades / "sample_submission.csv", dtype=str)
    sample.loc[1, "diagnosis"] = "7"
    sample.to_csv(grades / "sample_submission.csv", index=False)
    comp = open_competition(grades, task="ordinal")
    with pytest.raises(UserError, match="grade '7', which training never saw"):
        comp.task.resolve_shape(comp.submission, comp.classes, "qwk")
    numbers = open_competition(make_graded_competition(tmp_path / "reg", kind="regression", images=40, test_images=4))
    assert numbers.task.name == "regression" and numbers.classes == ["Pawpularity"]
    shape = numbers.task.resolve_shape(numbers.submission, numbers.classes, "rmse")
    assert shape.kind == "value" and shape.decimals == 1
    lo, hi = numbers.task.target_range
    written = numbers.task.decode(torch.tensor([[lo - 5.0], [hi + 5.0], [12.345678]]), numbers.classes, shape)["Pawpularity"]
    assert written.tolist() == [lo, hi, 12.3457]  # clipped to the range, at least 4 decimals
    df = pd.DataFrame({"Id": ["a", "b"], "Pawpularity": ["12.5", "inf"]})
    with pytest.raises(UserError, match="line 3, .* not a finite number"):
        numbers.task.check_values("p.csv", df, shape, numbers.classes)
    df["Pawpularity"] = ["12.5", str(hi + 1)]
    with pytest.raises(UserError, match="line 3: .* outside the target range"):
        numbers.task.check_values("p.csv", df, shape, numbers.classes)


def test_grade_folders_are_ordinal_when_data_task_says_so(tmp_path):
    from comp.data.synthetic import make_competition

    data = make_competition(tmp_path / "grades", classes=3, per_class=4, test_per_class=1, class_names=["0", "1", "2"])
    assert open_competition(data).task.name == "single"  # class folders are classes unless told
    graded = open_competition(data, task="ordinal")
    assert graded.task.name == "ordinal" and graded.classes == ["0", "1", "2"] and graded.task.classes == ["0", "1", "2"]
    named = make_competition(tmp_path / "named", classes=2, per_class=2, test_per_class=1)
    with pytest.raises(UserError, match="must be integers"):
        open_competition(named, task="ordinal")
