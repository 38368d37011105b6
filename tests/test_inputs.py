"""Inputs: never a silently wrong dataset, never a traceback.

Competition folders of the kinds Kaggle ships, with the ways they used to be read wrongly (and
reported "ok"), and user input that used to end in a traceback or a misleading message.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from comp.cli import app
from comp.config import load_config
from comp.data.competition import open_competition
from comp.data.synthetic import draw_shape, make_competition
from comp.errors import UserError
from comp.predict import predict
from comp.submission.submit import submit
from comp.train import train
from tests.conftest import one_line_error, write_config

runner = CliRunner()
QUIET = dict(log=lambda s: None)
SHAPES = ("circle", "square", "triangle")


def _image(path: Path, shape: str, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_shape(shape, 32, np.random.default_rng(seed)).save(path)


def _csv_competition(root: Path, rows: list[tuple], columns: list[str], files: dict[str, str], test: int = 3,
                     sample_columns=("id", "label")) -> Path:
    """train.csv from `rows`, `images/<rel>` drawn as `files[rel]`'s shape, test/ and a sample."""
    for i, (rel, shape) in enumerate(files.items()):
        _image(root / "images" / rel, shape, i)
    for i in range(test):
        _image(root / "test" / f"t{i}.png", SHAPES[i % 3], 100 + i)
    pd.DataFrame(rows, columns=columns).to_csv(root / "train.csv", index=False)
    sample = {c: [f"t{i}" for i in range(test)] if k == 0 else ["x"] * test for k, c in enumerate(sample_columns)}
    pd.DataFrame(sample).to_csv(root / "sample_submission.csv", index=False)
    return root


# -- 1. CSV ids with subfolders -----------------------------------------------------------


def test_csv_ids_with_subfolders_match_the_relative_path(tmp_path):
    files = {f"{c}/{i:03d}.png": s for c, s in (("cat", "circle"), ("dog", "square")) for i in range(15)}
    rows = [(rel, rel.split("/")[0]) for rel in files]
    comp = open_competition(_csv_competition(tmp_path / "c", rows, ["image", "label"], files))
    assert len(comp.train) == 30 and len(set(comp.train.paths)) == 30  # used to be 15 files, dog rows on cat images
    for path, label in zip(comp.train.paths, comp.train.labels):
        assert path.parent.name == comp.classes[label]


def test_a_bare_name_that_matches_several_files_is_an_error_naming_them(tmp_path):
    files = {"cat/000.png": "circle", "dog/000.png": "square", "dog/001.png": "square"}
    root = _csv_competition(tmp_path / "c", [("000.png", "cat"), ("001.png", "dog")], ["image", "label"], files)
    one_line_error(runner.invoke(app, ["data", "check", str(root)]), "matches 2 images", "cat/000.png", "dog/000.png")


# -- 2. the id column ---------------------------------------------------------------------


def test_the_id_column_is_the_one_naming_the_most_files(tmp_path):
    files = {f"{i}.png": SHAPES[i % 3] for i in range(60)}
    rows = [(str(i % 3), str(i)) for i in range(60)]  # label first; labels 0-2 also match files 0.png-2.png
    comp = open_competition(_csv_competition(tmp_path / "c", rows, ["label", "id"], files))
    assert comp.id_column == "id" and comp.classes == ["0", "1", "2"] and len(comp.train) == 60
    result = runner.invoke(app, ["data", "check", str(tmp_path / "c")])
    assert "train.csv columns: id 'id', label 'label'" in result.output


def test_two_columns_naming_different_files_equally_is_a_question(tmp_path):
    files = {f"{i}.png": SHAPES[i % 3] for i in range(6)}
    rows = [(str(i), str(5 - i), SHAPES[i % 3]) for i in range(6)]
    root = _csv_competition(tmp_path / "c", rows, ["a", "b", "label"], files)
    with pytest.raises(UserError, match="columns 'a' and 'b' both name 6 image files; set data.id_column"):
        open_competition(root)
    assert len(open_competition(root, id_column="b").train) == 6


# -- 3. duplicate and conflicting rows ----------------------------------------------------


def test_duplicate_rows_are_used_once_and_reported(tmp_path):
    files = {f"{i}.png": SHAPES[i % 3] for i in range(6)}
    rows = [(f"{i}.png", SHAPES[i % 3]) for i in range(6)] + [("2.png", "triangle")]
    root = _csv_competition(tmp_path / "c", rows, ["image", "label"], files)
    comp = open_competition(root)
    assert len(comp.train) == 6 and len(set(comp.train.paths)) == 6
    assert any("duplicate row" in why for _, why in comp.skipped)
    assert "duplicate row for images/2.png" in runner.invoke(app, ["data", "check", str(root)]).output


def test_conflicting_labels_for_one_image_are_an_error(tmp_path):
    files = {f"{i}.png": SHAPES[i % 3] for i in range(6)}
    rows = [(f"{i}.png", "big cat") for i in range(6)] + [("4.png", "naïve ü")]
    root = _csv_competition(tmp_path / "c", rows, ["image", "label"], files)
    one_line_error(runner.invoke(app, ["data", "check", str(root)]), "images/4.png", "'big cat'", "'naïve ü'")


# -- 4. a wrong-typed section -------------------------------------------------------------


def test_a_wrong_typed_section_is_the_same_error_with_or_without_data(tmp_path, shapes):
    for raw in ("data: 5\n", "data: [1, 2]\n"):
        (tmp_path / "c.yaml").write_text(raw)
        alone = runner.invoke(app, ["train", str(tmp_path / "c.yaml")])
        with_data = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--data", str(shapes)])
        one_line_error(alone, "bad value for 'data'", "c.yaml")
        one_line_error(with_data, "bad value for 'data'", "c.yaml")  # used to train at 224 px on defaults
        assert alone.stderr == with_data.stderr
    (tmp_path / "c.yaml").write_text("{}\n")
    one_line_error(runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--set", "data=5", "--data", str(shapes)]),
                    "--set data: bad value for 'data'")


# -- 5. class names that are table columns ------------------------------------------------


def test_class_names_may_be_any_table_column_name(tmp_path):
    from comp.evaluate import evaluate
    from comp.probs import read_probs

    data = make_competition(tmp_path / "c", classes=3, per_class=8, test_per_class=2, size=32, class_names=["fold", "label", "id"])
    config = write_config(tmp_path / "c.yaml", data={"dir": str(data)})
    train(config, out=tmp_path / "run", folds=2, **QUIET)
    _, probs, classes, meta = read_probs(tmp_path / "run" / "oof.csv")
    assert classes == ["fold", "id", "label"] and probs.shape == (24, 3) and set(meta["label"]) == set(classes)
    predict([tmp_path / "run"], out=tmp_path / "p.csv", workers=0, **QUIET)
    again = predict([tmp_path / "p_probs.csv"], out=tmp_path / "q.csv", **QUIET)  # re-ensembling the table
    assert again["images"] == 6 and (tmp_path / "q.csv").read_text() == (tmp_path / "p.csv").read_text()
    assert evaluate([tmp_path / "run"], **QUIET)["runs"]


# -- 6. custom columns reach predict and submit -------------------------------------------


def test_custom_train_csv_columns_are_carried_to_submit(tmp_path, monkeypatch):
    files = {f"{i}.png": SHAPES[i % 3] for i in range(24)}
    rows = [(f"{i}.png", SHAPES[i % 3], "scan") for i in range(24)]
    root = _csv_competition(tmp_path / "c", rows, ["file", "kind", "source"], files, sample_columns=("id", "kind"))
    with pytest.raises(UserError, match="set data.label_column"):
        open_competition(root)
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "c.yaml", data={"dir": str(root), "label_column": "kind"})
    train(config, out=tmp_path / "run", **QUIET)
    meta = predict([tmp_path / "run"], out=tmp_path / "p.csv", workers=0, **QUIET)
    assert (meta["id_column"], meta["label_column"]) == ("file", "kind")
    assert submit(tmp_path / "p.csv", directory=tmp_path / "subs")["file"]  # used to fail: "cannot tell ... label"
    predict([tmp_path / "p_probs.csv"], data=root, out=tmp_path / "q.csv", **QUIET)  # columns from p_meta.json
    (tmp_path / "q_meta.json").unlink()
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "q.csv"), "--data", str(root)]), "data.label_column")
    result = runner.invoke(app, ["submit", str(tmp_path / "q.csv"), "--data", str(root), "--label-column", "kind",
                                 "--dir", str(tmp_path / "subs")])
    assert result.exit_code == 0, result.output


# -- 7. a sample submission with extra columns --------------------------------------------


def test_a_sample_with_extra_columns_is_refused_up_front(tmp_path):
    data = make_competition(tmp_path / "c", classes=3, per_class=6, test_per_class=2, size=32)
    sample = pd.read_csv(data / "sample_submission.csv")
    sample["Usage"] = "Public"
    sample.to_csv(data / "sample_submission.csv", index=False)
    result = runner.invoke(app, ["data", "check", str(data)])
    assert result.exit_code == 2 and "'Usage'] match no class" in result.output and "NOT READY" in result.output
    config = write_config(tmp_path / "c.yaml", data={"dir": str(data)})
    train(config, out=tmp_path / "run", **QUIET)  # training is not blocked by the test set
    with pytest.raises(UserError, match="Usage.\\] match no class"):
        predict([tmp_path / "run"], out=tmp_path / "p.csv", workers=0, **QUIET)
    assert not (tmp_path / "p.csv").exists()


# -- 8. bad --weights, NaN in a submission ------------------------------------------------


@pytest.fixture(scope="module")
def run_and_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    data = make_competition(tmp / "c", classes=3, per_class=8, test_per_class=2, size=32)
    train(write_config(tmp / "c.yaml", data={"dir": str(data)}), out=tmp / "run", **QUIET)
    return tmp / "run", data


@pytest.mark.parametrize("weights", ["nan,1", "inf,1", "1,-1", "0,0"])
def test_bad_weights_are_refused_before_any_work(tmp_path, weights):
    # The runs do not even exist: the weights are checked first.
    result = runner.invoke(app, ["predict", str(tmp_path / "a"), str(tmp_path / "b"), "--weights", weights,
                                 "--out", str(tmp_path / "p.csv")])
    one_line_error(result, "--weights", "finite, >= 0 and not all 0")


def test_submit_refuses_nan_probabilities(tmp_path, run_and_data):
    run, data = run_and_data
    predict([run], out=tmp_path / "p.csv", workers=0, **QUIET)
    table = pd.read_csv(tmp_path / "p_probs.csv")
    table.iloc[0, 1] = float("nan")
    table.to_csv(tmp_path / "p_probs.csv", index=False)
    with pytest.raises(UserError, match="NaN or infinite probabilities"):
        submit(tmp_path / "p.csv", directory=tmp_path / "subs")
    assert not (tmp_path / "subs").exists()


# -- 9. submit normalizes once --------------------------------------------------------------


def test_submit_compares_and_archives_the_values_it_validated(tmp_path, run_and_data):
    run, data = run_and_data
    predict([run], out=tmp_path / "p.csv", workers=0, **QUIET)
    first = submit(tmp_path / "p.csv", directory=tmp_path / "subs")
    padded = pd.read_csv(tmp_path / "p.csv", dtype=str).apply(lambda c: "  " + c + " ")
    padded.to_csv(tmp_path / "p.csv", index=False)
    second = submit(tmp_path / "p.csv", directory=tmp_path / "subs")
    assert second["agreement_with_previous"] == "1.0000"  # identical labels used to "agree 0.0%"
    archived = pd.read_csv(second["path"], dtype=str)
    assert (archived == pd.read_csv(first["path"], dtype=str)).all().all()  # archived without the spaces


# -- 10. one line, not a traceback --------------------------------------------------------


def test_user_errors_in_files_and_folders_are_one_line(tmp_path, run_and_data, tiny_config, shapes):
    run, data = run_and_data
    for head in ("{hidden: [-5]}", "{hidden: [0]}"):  # -5 was a RuntimeError; 0 trained at chance
        one_line_error(runner.invoke(app, ["train", str(tiny_config), "--data", str(shapes), "--set", f"model.head={head}"]),
                        "--set model.head", "greater than 0")
    (tmp_path / "latin1.yaml").write_bytes(b"data:\n  dir: caf\xe9\n")
    one_line_error(runner.invoke(app, ["train", str(tmp_path / "latin1.yaml")]), "not UTF-8")
    one_line_error(runner.invoke(app, ["lr-find", str(tiny_config), "--data", str(shapes), "--out",
                                        str(tmp_path / "missing" / "lr.png")]), "existing folder")
    (tmp_path / "folder").mkdir()
    one_line_error(runner.invoke(app, ["predict", str(run), "--out", str(tmp_path / "folder")]), "is a folder")
    predict([run], out=tmp_path / "p.csv", workers=0, **QUIET)
    (tmp_path / "some_file").write_text("x")
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "p.csv"), "--dir", str(tmp_path / "some_file")]), "is a file")


# -- 11. settings checked when the config is loaded ---------------------------------------


@pytest.mark.parametrize("override, fragment", [
    ("tta.views=[bogus]", "unknown TTA view 'bogus'"),
    ("data.image_size=1", "greater than or equal to 16"),
    ("aug.scale=[1,0.5]", "0 < min <= max <= 1"),
    ("aug.ratio=[2,1]", "0 < min <= max"),
    ("train.epochs=true", "got 'true'"),
    ("data.std=[0,0,0]", "every std must be > 0"),
])
def test_bad_settings_are_refused_at_load(tmp_path, override, fragment):
    (tmp_path / "c.yaml").write_text("{}\n")
    with pytest.raises(UserError, match=f"--set {override.split('=')[0]}: .*{fragment}".replace("[", "\\[")):
        load_config(tmp_path / "c.yaml", [override])


def test_tta_views_without_tta_are_refused(tmp_path, run_and_data):
    run, _ = run_and_data
    out = ["--out", str(tmp_path / "p.csv")]
    one_line_error(runner.invoke(app, ["predict", str(run), "--no-tta", "--tta-views", "bogus", *out]), "--tta-views needs")
    one_line_error(runner.invoke(app, ["predict", str(run), "--tta-views", "bogus", *out]), "unknown TTA view 'bogus'")
    assert not (tmp_path / "p.csv").exists()
    one_line_error(runner.invoke(app, ["evaluate", str(run), "--tta-views", "hflip"]), "--tta-views needs --tta")


# -- 12. messages that say the right thing ------------------------------------------------


def test_messages_name_the_real_cause_and_source(tmp_path, shapes):
    single = make_competition(tmp_path / "single", classes=3, per_class=1, test_per_class=1, size=32)
    config = write_config(tmp_path / "c.yaml", data={"dir": str(single)})
    with pytest.raises(UserError, match="every class has a single image") as e:
        train(config, out=tmp_path / "run", folds=2, **QUIET)
    assert "--folds 2" not in str(e.value).split(":", 1)[1]  # it used to suggest the same --folds 2
    for override, source in (("foo.bar=1", "--set foo.bar"), ("data.mean=[0,0]", "--set data.mean"),
                             ("model.head={hidden: x}", "--set model.head")):
        with pytest.raises(UserError, match=f"^{source}:"):
            load_config(tmp_path / "c.yaml", [override])
    result = runner.invoke(app, ["data", "check", str(tmp_path / "missing_dir")])
    one_line_error(result, "data folder not found")
    assert "--data" not in result.stderr  # data check takes the folder as its argument


def test_disk_full_before_any_checkpoint_does_not_suggest_resume(tmp_path, monkeypatch):
    from comp.files import save_atomic

    def full(obj, f, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="free disk space and run the command again") as e:
        save_atomic({"x": torch.zeros(1)}, tmp_path / "last.pt")
    assert "--resume" not in str(e.value)


def test_ids_that_all_match_several_files_name_the_files(tmp_path):
    files = {f"{c}/{i:03d}.png": s for c, s in (("cat", "circle"), ("dog", "square")) for i in range(4)}
    rows = [(f"{i:03d}.png", c) for c in ("cat", "dog") for i in range(4)]  # bare names: every one is ambiguous
    with pytest.raises(UserError, match="matches 2 images .*cat/000.png, images/dog/000.png"):
        open_competition(_csv_competition(tmp_path / "c", rows, ["image", "label"], files))
