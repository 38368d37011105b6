import csv
import zipfile

import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.data.competition import open_competition
from comp.errors import UserError
from comp.submission.submit import submit, validate_prediction

runner = CliRunner()


def _write(path, rows, columns=("image_name", "pred_label")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


@pytest.fixture
def good(shapes, tmp_path):
    comp = open_competition(shapes)
    return _write(tmp_path / "prediction.csv", [(i, "circle") for i in comp.test_ids]), comp


def test_valid_prediction_passes(good):
    path, comp = good
    assert len(validate_prediction(path, comp)) == len(comp.test_ids)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda rows: rows, "columns"),
        (lambda rows: rows[:-1], "missing"),
        (lambda rows: rows + rows[:1], "more than once"),
        (lambda rows: [(rows[0][0], "hexagon")] + rows[1:], "'hexagon' is not a class"),
        (lambda rows: [(rows[0][0], "")] + rows[1:], "empty value on line 2"),
        (lambda rows: [("nope", "circle")] + rows[1:], "'nope' is not a test id"),
        (lambda rows: [(r[0] + ".png", r[1]) for r in rows], "is not a test id"),
    ],
)
def test_invalid_predictions_are_refused(good, tmp_path, mutate, message):
    path, comp = good
    rows = list(pd.read_csv(path, dtype=str).itertuples(index=False, name=None))
    columns = ("id", "label") if message == "columns" else ("image_name", "pred_label")
    bad = _write(tmp_path / "bad.csv", mutate(rows), columns)
    with pytest.raises(UserError, match=message):
        validate_prediction(bad, comp)


def test_submit_archives_zips_records_and_never_overwrites(good, shapes, tmp_path):
    path, comp = good
    first = submit(path, data=shapes, message="one", directory=tmp_path / "subs")
    second = submit(path, data=shapes, message="two", directory=tmp_path / "subs")
    assert first["path"] != second["path"]  # same second: a suffix, not an overwrite
    files = sorted(p.name for p in (tmp_path / "subs").iterdir())
    assert len([f for f in files if f.endswith(".csv") and f != "history.csv"]) == 2
    with zipfile.ZipFile(second["zip"]) as z:
        assert z.namelist() == ["prediction.csv"]
        assert z.read("prediction.csv") == path.read_bytes()
    history = list(csv.DictReader(open(tmp_path / "subs" / "history.csv")))
    assert [h["message"] for h in history] == ["one", "two"]
    assert history[0]["agreement_with_previous"] == "" and history[1]["agreement_with_previous"] == "1.0000"
    assert len(history[1]["sha256"]) == 64


def test_cli_submit_failure_is_one_line_exit_2(good, shapes, tmp_path):
    path, comp = good
    bad = _write(tmp_path / "bad.csv", [(comp.test_ids[0], "circle")])
    result = runner.invoke(app, ["submit", str(bad), "--data", str(shapes), "--dir", str(tmp_path / "subs")])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "subs").exists()


def test_kaggle_cli_missing_is_explained(good, shapes, tmp_path, monkeypatch):
    path, _ = good
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(UserError, match=r"Kaggle CLI is not installed: pip install kaggle.*kaggle competitions submit my-comp"):
        submit(path, data=shapes, kaggle="my-comp", directory=tmp_path / "subs")


def test_demo_score_with_the_same_column_names_and_missing_rows(tmp_path):
    from comp.demo import score

    (tmp_path / "p.csv").write_text("ID,Category\na,x\nb,y\n")
    (tmp_path / "answers.csv").write_text("ID,Category\na,x\nb,z\nc,x\n")
    assert score(tmp_path / "p.csv", tmp_path / "answers.csv") == pytest.approx(1 / 3)


def _binary(tmp_path):
    from comp.data.synthetic import make_competition

    data = make_competition(tmp_path / "bin", classes=2, per_class=6, test_per_class=4, size=16, layout="csv")
    ids = pd.read_csv(data / "sample_submission.csv", dtype=str)["id"]
    pd.DataFrame({"id": ids, "target": "0.5"}).to_csv(data / "sample_submission.csv", index=False)
    return data, list(ids)


def test_without_meta_a_binary_probability_file_is_read_as_probabilities(tmp_path):
    data, ids = _binary(tmp_path)
    path = _write(tmp_path / "p.csv", [(i, f"{0.1 + 0.1 * k:.4f}") for k, i in enumerate(ids)], ("id", "target"))
    # Used to be guessed as class names: "label '0.1000' is not a class".
    row = submit(path, data=data, directory=tmp_path / "subs")
    assert row["agreement_with_previous"] == ""
    bad = _write(tmp_path / "bad.csv", [(i, "-0.01" if k == 3 else "0.5") for k, i in enumerate(ids)], ("id", "target"))
    with pytest.raises(UserError) as e:
        validate_prediction(bad, open_competition(data))
    assert "line 5" in str(e.value) and "'-0.01' is not a probability" in str(e.value) and "np." not in str(e.value)


def test_without_meta_top_k_blames_the_line_that_differs(good, tmp_path):
    path, comp = good
    rows = [(i, "circle square triangle") for i in comp.test_ids]
    rows[0] = (rows[0][0], "circle square")  # the first row is the bad one: k used to come from it
    bad = _write(tmp_path / "top.csv", rows)
    with pytest.raises(UserError, match=r"line 2 holds 'circle square'; each row needs 3 different class names"):
        validate_prediction(bad, comp)
    rows = [(i, "circle hexagon") if k == 2 else (i, "circle") for k, i in enumerate(comp.test_ids)]
    with pytest.raises(UserError, match=r"line 4: label 'circle hexagon' is not a class"):
        validate_prediction(_write(tmp_path / "lab.csv", rows), comp)


def test_a_missing_prediction_without_data_says_the_file_is_missing(tmp_path):
    # Used to say "no data folder: pass --data DIR", blaming an option for a typo in the file name.
    with pytest.raises(UserError, match="prediction file not found: .*nope.csv"):
        submit(tmp_path / "nope.csv", directory=tmp_path / "subs")


def test_agreement_is_blank_when_the_previous_file_held_another_shape(tmp_path):
    data, ids = _binary(tmp_path)
    probs = _write(tmp_path / "p.csv", [(i, "0.7") for i in ids], ("id", "target"))
    labels = _write(tmp_path / "l.csv", [(i, "square") for i in ids], ("id", "target"))
    submit(probs, data=data, directory=tmp_path / "subs")
    row = submit(labels, data=data, directory=tmp_path / "subs")  # class names after probabilities, same header
    assert row["agreement_with_previous"] == ""  # used to be "0.0000": names compared with numbers
    again = submit(labels, data=data, directory=tmp_path / "subs")
    assert again["agreement_with_previous"] == "1.0000"


def test_agreement_compares_whole_class_names_with_spaces(tmp_path):
    # Used to split each label on spaces and compare first words, which are not class names: always blank.
    from comp.data.synthetic import make_competition

    data = make_competition(tmp_path / "c", classes=2, per_class=2, test_per_class=3, class_names=["arctic fox", "red fox"])
    ids = open_competition(data).test_ids
    first = _write(tmp_path / "a.csv", [(i, "arctic fox") for i in ids])
    second = _write(tmp_path / "b.csv", [(i, "arctic fox" if k < 3 else "red fox") for k, i in enumerate(ids)])
    submit(first, data=data, directory=tmp_path / "subs")
    row = submit(second, data=data, directory=tmp_path / "subs")
    assert row["agreement_with_previous"] == "0.5000"  # 3 of the 6 ids keep 'arctic fox'
