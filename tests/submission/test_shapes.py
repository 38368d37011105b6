"""Submission shapes read from sample_submission.csv: written by predict, validated by submit."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.data.competition import open_competition
from comp.tasks.single import SingleLabel
from comp.data.synthetic import make_competition
from comp.errors import UserError
from comp.predict import predict
from comp.submission.submit import submit
from comp.train import train
from tests.conftest import one_line_error, write_config

QUIET = dict(log=lambda s: None)


def _comp(tmp_path, classes, names=None, sample_columns=None):
    data = make_competition(tmp_path / "c", classes=classes, per_class=8, test_per_class=3, size=32, class_names=names)
    if sample_columns is not None:
        sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
        ids = sample.iloc[:, 0]
        pd.DataFrame({c: ids if i == 0 else "0" for i, c in enumerate(sample_columns)}).to_csv(data / "sample_submission.csv", index=False)
    return data


def _run(tmp_path, data, *overrides):
    config = write_config(tmp_path / "c.yaml", data={"dir": str(data)})
    train(config, out=tmp_path / "run", overrides=list(overrides), **QUIET)
    meta = predict([tmp_path / "run"], out=tmp_path / "p.csv", workers=0, **QUIET)
    return meta, pd.read_csv(tmp_path / "p.csv", dtype=str), pd.read_csv(tmp_path / "p_probs.csv")


def test_one_probability_column_per_class_in_the_sample_order(tmp_path):
    data = _comp(tmp_path, 3, sample_columns=["image_id", "triangle", "circle", "square"])
    meta, pred, probs = _run(tmp_path, data, "metric=log_loss")
    assert meta["shape"] == "probs" and list(pred.columns) == ["image_id", "triangle", "circle", "square"]
    values = pred[["triangle", "circle", "square"]].astype(float)
    assert ((values.sum(1) - 1).abs() < 1e-4).all()
    assert (values["circle"] - probs["circle"]).abs().max() < 1e-4  # names match columns, not positions
    assert submit(tmp_path / "p.csv", directory=tmp_path / "subs")["file"]
    pred.loc[0, "triangle"] = "0.9"  # a row that no longer sums to 1
    pred.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(UserError, match="sum to"):
        submit(tmp_path / "p.csv", directory=tmp_path / "subs")


def test_binary_positive_class_column(tmp_path):
    data = _comp(tmp_path, 2, names=["cat", "dog"], sample_columns=["id", "dog"])
    meta, pred, probs = _run(tmp_path, data, "metric=roc_auc")
    assert meta["shape"] == "positive" and list(pred.columns) == ["id", "dog"]
    assert (pred["dog"].astype(float) - probs["dog"]).abs().max() < 1e-4  # the probability, never a class name
    submit(tmp_path / "p.csv", directory=tmp_path / "subs")


def test_binary_target_column_with_a_positive_class(tmp_path):
    data = _comp(tmp_path, 2, names=["benign", "malignant"], sample_columns=["image_name", "target"])
    meta, pred, probs = _run(tmp_path, data, "metric=roc_auc", "data.positive_class=malignant")
    assert meta["shape"] == "positive"
    assert (pred["target"].astype(float) - probs["malignant"]).abs().max() < 1e-4
    submit(tmp_path / "p.csv", directory=tmp_path / "subs")


def test_top_k_names_for_map_at_k(tmp_path):
    data = _comp(tmp_path, 4)
    meta, pred, probs = _run(tmp_path, data, "metric=map@3")
    assert meta["shape"] == "topk" and meta["k"] == 3
    classes = list(probs.columns[1:])
    for row, (_, p) in zip(pred.iloc[:, 1], probs.iterrows()):
        names = row.split()
        assert len(names) == 3 and names == [classes[i] for i in p[classes].astype(float).argsort()[::-1][:3]]
    submit(tmp_path / "p.csv", directory=tmp_path / "subs")
    pred.iloc[0, 1] = pred.iloc[0, 1].split()[0]
    pred.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(UserError, match="needs 3 different class names"):
        submit(tmp_path / "p.csv", directory=tmp_path / "subs")


def test_label_shape_stays_the_default(tmp_path):
    meta, pred, _ = _run(tmp_path, _comp(tmp_path, 3))
    assert meta["shape"] == "label" and set(pred.iloc[:, 1]) <= {"circle", "square", "triangle"}


def test_shapes_that_cannot_hold_the_metric_or_the_classes_are_refused(tmp_path):
    data = _comp(tmp_path, 3, sample_columns=["id", "target"])
    fmt, classes = open_competition(data).submission, ["circle", "square", "triangle"]
    with pytest.raises(UserError, match="roc_auc scores probabilities, but .* one column 'target'"):
        SingleLabel().resolve_shape(fmt, classes, "roc_auc")  # 3 classes, a binary-looking sample
    assert SingleLabel().resolve_shape(fmt, classes, "roc_auc", override="probs").columns == ["id", *classes]
    with pytest.raises(UserError, match="positive is for binary"):
        SingleLabel().resolve_shape(fmt, classes, "accuracy", override="positive")
    with pytest.raises(UserError, match="'ankle boot' contains a space"):
        SingleLabel().resolve_shape(fmt, ["ankle boot", "bag", "coat"], "map@3")  # "ankle boot bag coat" could not be read back
    bad = _comp(tmp_path / "b", 3, sample_columns=["id", "circle", "square", "hexagon"])
    result = CliRunner().invoke(app, ["data", "check", str(bad)])
    assert result.exit_code == 2 and "'hexagon'] match no class" in result.output
    # one true thing about the sample: it exists and cannot be used (it used to say "no sample_submission.csv")
    assert "sample_submission.csv cannot be used: see PROBLEM" in result.output and "NYCU" not in result.output
    one_line_error(CliRunner().invoke(app, ["predict", str(tmp_path / "x"), "--shape", "pie"]), "--shape 'pie'")


@pytest.mark.parametrize("metric, names, columns, message", [
    ("map@3", ["Ankle boot", "Bag", "Coat"], None, "'Ankle boot' contains a space"),
    ("log_loss", None, ["id", "label"], "log_loss scores probabilities, but .* one column 'label'"),
])
def test_a_metric_the_sample_cannot_hold_stops_training_before_it_starts(tmp_path, metric, names, columns, message):
    data = _comp(tmp_path, 3, names=names, sample_columns=columns)
    config = write_config(tmp_path / "c.yaml", data={"dir": str(data)})
    # Used to train to the end and be refused by comp predict and comp package afterwards.
    with pytest.raises(UserError, match=message):
        train(config, out=tmp_path / "run", overrides=[f"metric={metric}"], **QUIET)
    with pytest.raises(UserError, match=message):
        train(config, out=tmp_path / "kf", folds=2, overrides=[f"metric={metric}"], **QUIET)
    assert not (tmp_path / "run").exists() and not (tmp_path / "kf").exists()
    if metric == "log_loss":  # the fix the message names works
        train(config, out=tmp_path / "run", overrides=[f"metric={metric}", "data.submission=probs"], **QUIET)


def test_class_folders_with_surrounding_spaces_are_the_same_class_everywhere(tmp_path):
    import shutil

    data = _comp(tmp_path, 3, names=["  spaced", "plain ", "mid dle"], sample_columns=["image_name", "spaced", "plain", "mid dle"])
    competition = open_competition(data)
    assert competition.classes == ["mid dle", "plain", "spaced"]  # what a CSV label and a header read as
    check = CliRunner().invoke(app, ["data", "check", str(data)])
    # Used to say the header 'spaced' matched no class while listing the class '  spaced'.
    assert check.exit_code == 0 and "match no class" not in check.output, check.output
    meta, written, _ = _run(tmp_path, data, "metric=log_loss")
    assert list(written.columns) == ["image_name", "spaced", "plain", "mid dle"] and meta["shape"] == "probs"
    submit(tmp_path / "p.csv", directory=tmp_path / "subs")
    shutil.copytree(data / "train" / "plain ", data / "train" / "plain")
    with pytest.raises(UserError, match=r"folders 'plain' and 'plain ' differ only by surrounding spaces"):
        open_competition(data)
