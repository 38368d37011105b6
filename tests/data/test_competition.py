import shutil

import pandas as pd
import pytest
from PIL import Image

from comp.data.competition import open_competition, sort_class_names
from comp.data.synthetic import make_competition
from comp.errors import UserError


def test_folders_layout(shapes):
    comp = open_competition(shapes)
    assert comp.layout == "folders"
    assert comp.classes == ["circle", "square", "triangle"]
    assert len(comp.train) == 48 and comp.val is None
    assert comp.class_counts() == {"circle": 16, "square": 16, "triangle": 16}
    assert all(comp.classes[y] in p.name for p, y in zip(comp.train.paths, comp.train.labels))
    sample = pd.read_csv(shapes / "sample_submission.csv", dtype=str)
    assert comp.test_ids == list(sample["image_name"])  # sample order, not folder order
    assert [p.stem for p in comp.test_paths] == comp.test_ids
    assert comp.submission.columns == ["image_name", "pred_label"] and comp.submission.id_style == "stem"
    comp.require_test()


def test_val_folder_is_used_and_must_match_train_classes(tmp_path):
    root = make_competition(tmp_path / "c", classes=2, per_class=4, val_per_class=2)
    comp = open_competition(root)
    assert len(comp.val) == 4 and comp.class_counts(comp.val) == {"circle": 2, "square": 2}
    (root / "val" / "ghost").mkdir()
    Image.new("RGB", (8, 8)).save(root / "val" / "ghost" / "g.png")
    with pytest.raises(UserError, match=r"ghost.*no train/ folder"):
        open_competition(root)


def test_numeric_class_names_sort_numerically(tmp_path):
    root = make_competition(tmp_path / "c", classes=3, per_class=2, class_names=["100", "3", "12"])
    comp = open_competition(root)
    assert comp.classes == ["3", "12", "100"]
    assert sort_class_names(["b", "a", "10"]) == ["10", "a", "b"]


def test_no_sample_submission_uses_nycu_format(shapes):
    (shapes / "sample_submission.csv").unlink()
    comp = open_competition(shapes)
    assert comp.submission.columns == ["image_name", "pred_label"]
    assert comp.test_ids == sorted(p.stem for p in (shapes / "test").iterdir())


def test_sample_with_file_names_keeps_name_style(tmp_path):
    root = make_competition(tmp_path / "c", classes=2, per_class=3, test_per_class=2, id_style="name", ext=".jpg")
    comp = open_competition(root)
    assert comp.submission.id_style == "name"
    assert all(i.endswith(".jpg") for i in comp.test_ids)


def test_csv_layout(shapes_csv):
    comp = open_competition(shapes_csv)
    assert comp.layout == "csv" and comp.classes == ["circle", "square", "triangle"]
    assert len(comp.train) == 48
    assert comp.submission.columns == ["id", "label"]
    df = pd.read_csv(shapes_csv / "train.csv", dtype=str)
    first = comp.train.paths[0]
    assert df.set_index("image_id").loc[first.stem, "label"] == comp.classes[comp.train.labels[0]]


def test_csv_with_file_names_extra_columns_and_overrides(shapes_csv):
    df = pd.read_csv(shapes_csv / "train.csv", dtype=str)
    df = df.assign(file=df.image_id + ".png", fold=0, species=df.label)[["fold", "file", "species"]]
    df.to_csv(shapes_csv / "train.csv", index=False)
    comp = open_competition(shapes_csv)  # id column by matching files, label column by name
    assert len(comp.train) == 48 and comp.classes == ["circle", "square", "triangle"]
    df.assign(kind=df.species, grade=df.species)[["fold", "file", "grade", "kind"]].to_csv(shapes_csv / "train.csv", index=False)
    with pytest.raises(UserError, match="data.label_column"):
        open_competition(shapes_csv)
    assert open_competition(shapes_csv, label_column="kind").classes == comp.classes


def test_csv_rows_without_images_are_skipped_and_listed(shapes_csv):
    df = pd.read_csv(shapes_csv / "train.csv", dtype=str)
    extra = pd.DataFrame({"image_id": ["missing_1"], "label": ["circle"]})
    pd.concat([df, extra]).to_csv(shapes_csv / "train.csv", index=False)
    comp = open_competition(shapes_csv)
    assert len(comp.train) == 48
    assert any("missing_1" in what for what, _ in comp.skipped)


def test_csv_images_folder_name_variants(shapes_csv):
    shutil.move(shapes_csv / "train", shapes_csv / "train_images")
    shutil.move(shapes_csv / "test", shapes_csv / "test_images")
    comp = open_competition(shapes_csv)
    assert len(comp.train) == 48 and len(comp.test_paths) == 12


def test_test_problems_do_not_block_training(shapes):
    first = sorted((shapes / "test").iterdir())[0]
    first.unlink()
    comp = open_competition(shapes)
    assert len(comp.train) == 48
    with pytest.raises(UserError, match=r"1 of 12 ids have no test image"):
        comp.require_test()


def test_layout_errors(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        open_competition(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no competition layout"):
        open_competition(tmp_path / "empty")


def test_empty_class_folder_is_ignored_and_listed(shapes):
    (shapes / "train" / "empty_class").mkdir()
    comp = open_competition(shapes)
    assert "empty_class" not in comp.classes
    assert any("empty_class" in p for p, _ in comp.skipped)
