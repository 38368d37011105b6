"""Multi-label competitions: detection (and the refusal when unclear), data check, metrics, thresholds, folds."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, fbeta_score, f1_score, log_loss, roc_auc_score
from typer.testing import CliRunner

from comp.cli import app
from comp.data.competition import open_competition
from comp.tasks.splits import tag_holdout_indices, tag_kfold_indices
from comp.errors import UserError
from comp.tasks.metrics import check_metric
from comp.tasks.tag_metrics import TAG_METRICS, predict_tags, tag_score
from comp.tasks.thresholds import fit_thresholds
from tests.conftest import one_line_error, write_config

runner = CliRunner()


def _competition(root, table: pd.DataFrame, test_ids=("t0", "t1")):
    """train.csv = `table` (first column: image ids), tiny PNGs for each id, a test folder and a sample."""
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rng = np.random.default_rng(0)
    for name in list(table.iloc[:, 0]) + list(test_ids):
        folder = root / ("test" if name in test_ids else "train")
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    table.to_csv(root / "train.csv", index=False)
    pd.DataFrame({table.columns[0]: list(test_ids), "tags": ["a"] * len(test_ids)}).to_csv(root / "sample_submission.csv", index=False)
    return root


TAGS = ["a b", "a", "b c", "c", "a c", "a b c", "b", "a"]  # a: 5 images, b: 4, c: 4


def test_a_column_of_tags_is_read_as_tag_sets(tmp_path):
    root = _competition(tmp_path / "planet", pd.DataFrame({"image_name": [f"i{k}" for k in range(8)], "tags": TAGS}))
    comp = open_competition(root)
    assert comp.task.name == "multilabel" and comp.label_kind == "tags" and comp.classes == ["a", "b", "c"]
    by_name = {p.stem: row.tolist() for p, row in zip(comp.train.paths, comp.train.targets)}
    assert by_name["i0"] == [1, 1, 0] and by_name["i5"] == [1, 1, 1] and by_name["i3"] == [0, 0, 1]
    assert comp.class_counts() == {"a": 5, "b": 4, "c": 4}
    assert comp.train.subset([0, 5]).targets.tolist() == [[1, 1, 0], [1, 1, 1]]

    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "task: multi-label (space-separated in column 'tags')" in out
    assert "tags per image: min 1, mean 1.62, max 3; 7 distinct tag sets" in out
    assert "rarest tags: b (4), c (4), a (5)" in out and "a  train 5  62.5% of images" in out


def test_data_check_suggests_only_remedies_a_multilabel_run_accepts(tmp_path):
    # A rare tag (1 image of 12 against 12) is an imbalance; data.sampler=balanced, which training refuses
    # for tags, used to be suggested.
    tags = ["a b"] + ["a"] * 11
    root = _competition(tmp_path / "rare", pd.DataFrame({"image_name": [f"i{k}" for k in range(12)], "tags": tags}))
    out = runner.invoke(app, ["data", "check", str(root), "--task", "multilabel"]).output
    assert "task: multi-label" in out
    assert "imbalance: largest / smallest class 12.0:1" in out and "train.class_weights=balanced" in out
    assert "sampler" not in out


def test_one_hot_columns_are_tags_in_column_order_and_a_row_of_zeros_is_kept(tmp_path):
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(5)], "scab": [1, 0, 0, 1, 0], "healthy": [0, 1, 0, 0, 0],
                          "rust": [0, 0, 0, 1, 1]})
    root = _competition(tmp_path / "plants", table)
    comp = open_competition(root)
    assert comp.label_kind == "onehot" and comp.classes == ["scab", "healthy", "rust"]  # the file's order, as the sample's columns
    assert comp.train.targets.tolist() == table[["scab", "healthy", "rust"]].to_numpy().tolist()
    out = runner.invoke(app, ["data", "check", str(root)]).output
    assert "task: multi-label (one 0/1 column per tag)" in out and "images with no tag: 1 (a negative for every tag)" in out


def test_class_names_with_spaces_stay_single_label_and_unclear_columns_ask(tmp_path):
    names = ["red fox", "arctic fox", "fox", "red fox", "arctic fox", "fox"]  # words that never recombine: class names
    root = _competition(tmp_path / "foxes", pd.DataFrame({"id": [f"i{k}" for k in range(6)], "label": names}))
    comp = open_competition(root)
    assert comp.task.name == "single" and comp.classes == ["arctic fox", "fox", "red fox"]

    crops = ["Tomato healthy", "Tomato blight", "Potato healthy", "Potato blight", "Tomato Late blight"]
    root = _competition(tmp_path / "crops", pd.DataFrame({"id": [f"i{k}" for k in range(5)], "label": crops}))
    with pytest.raises(UserError, match="set data.task=multilabel .* or data.task=single"):
        open_competition(root)
    assert open_competition(root, task="single").classes == sorted(crops)
    assert open_competition(root, task="multilabel").classes == ["Late", "Potato", "Tomato", "blight", "healthy"]
    one_line_error(runner.invoke(app, ["data", "check", str(root)]), "data.task")
    assert runner.invoke(app, ["data", "check", str(root), "--task", "single"]).exit_code == 0


def test_a_tag_given_twice_in_a_cell_is_read_once_and_reported(tmp_path):
    # One "a a b" cell used to flip auto-detection to "set data.task" without naming the cell, and
    # --task multilabel collapsed it silently.
    tags = list(TAGS)
    tags[2] = "b c c"
    root = _competition(tmp_path / "twice", pd.DataFrame({"image_name": [f"i{k}" for k in range(8)], "tags": tags}))
    comp = open_competition(root)
    assert comp.task.name == "multilabel"
    assert {p.stem: row.tolist() for p, row in zip(comp.train.paths, comp.train.targets)}["i2"] == [0, 1, 1]
    assert ("train.csv line 4", "tag 'c' given twice in 'b c c' (used once)") in comp.skipped
    out = runner.invoke(app, ["data", "check", str(root)]).output
    assert "train.csv line 4  tag 'c' given twice in 'b c c' (used once)" in out


def test_the_mixed_table_error_names_every_zero_one_column(tmp_path):
    # Used to list 3 of the 5 0/1 columns.
    table = pd.DataFrame({"id": ["i0", "i1", "i2"], **{c: [1, 0, 1] for c in "abcde"}, "note": ["x", "y", "z"]})
    root = _competition(tmp_path / "five", table)
    one_line_error(runner.invoke(app, ["data", "check", str(root)]), "'a', 'b', 'c', 'd', 'e' sit beside the text column 'note'")
    wide = pd.DataFrame({"id": ["i0", "i1", "i2"], **{f"t{k}": [1, 0, 1] for k in range(11)}, "note": ["x", "y", "z"]})
    root = _competition(tmp_path / "eleven", wide)
    one_line_error(runner.invoke(app, ["data", "check", str(root)]), "'t7' and 3 more sit beside")


def test_unclear_or_broken_multilabel_tables_are_one_line_and_lr_find_runs(tmp_path):
    mixed = pd.DataFrame({"id": ["i0", "i1", "i2"], "a": [1, 0, 1], "b": [0, 1, 1], "note": ["x", "y", "z"]})
    root = _competition(tmp_path / "mixed", mixed)
    one_line_error(runner.invoke(app, ["data", "check", str(root)]), "0/1 columns", "beside the text column 'note'", "data.label_column")

    blank = pd.DataFrame({"image_name": [f"i{k}" for k in range(8)], "tags": TAGS[:5] + ["", "a b", "b"]})
    root = _competition(tmp_path / "blank", blank)
    one_line_error(runner.invoke(app, ["data", "check", str(root)]), "line 7 has an empty 'tags' cell")

    # lr-find runs the multi-label loss on tag targets
    root = _competition(tmp_path / "planet", pd.DataFrame({"image_name": [f"i{k}" for k in range(8)], "tags": TAGS}))
    config = write_config(tmp_path / "c.yaml", data={"dir": str(root), "batch_size": 4})
    result = runner.invoke(app, ["lr-find", str(config), "--out", str(tmp_path / "lr.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr.png").is_file()
    folders = tmp_path / "folders"
    (folders / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folders / "train" / "cat" / "x.png")
    with pytest.raises(UserError, match="needs a train.csv"):
        open_competition(folders, task="multilabel")


def _random_case(n=60, c=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.35).astype(int)
    y[np.arange(c), np.arange(c)] = 1  # every tag has a positive
    y[c + np.arange(c), np.arange(c)] = 0  # ... and a negative
    p = np.clip(0.6 * y + 0.5 * rng.random((n, c)) - 0.1, 0, 1)
    return p, y


def test_each_metric_is_the_sklearn_computation():
    p, y = _random_case()
    pred = (p >= 0.5).astype(int)
    empty = pred.sum(1) == 0
    assert empty.any()  # the case exercises the most-probable-tag rule
    pred[np.flatnonzero(empty), p[empty].argmax(1)] = 1
    assert tag_score("f2_samples", p, y) == pytest.approx(fbeta_score(y, pred, beta=2, average="samples"))
    assert tag_score("f1_samples", p, y) == pytest.approx(f1_score(y, pred, average="samples"))
    assert tag_score("micro_f1", p, y) == pytest.approx(f1_score(y, pred, average="micro"))
    assert tag_score("macro_f1", p, y) == pytest.approx(f1_score(y, pred, average="macro"))
    assert tag_score("roc_auc", p, y) == pytest.approx(roc_auc_score(y, p, average="macro"))
    assert tag_score("average_precision", p, y) == pytest.approx(average_precision_score(y, p, average="macro"))
    assert tag_score("log_loss", p, y) == pytest.approx(np.mean([log_loss(y[:, k], p[:, k]) for k in range(y.shape[1])]))
    # without the rule an empty row scores 0, as Kaggle scores it
    plain = (p >= 0.5).astype(int)
    assert tag_score("f2_samples", p, y, ensure_one=False) == pytest.approx(fbeta_score(y, plain, beta=2, average="samples", zero_division=0))
    # a tag with no negative has no AUC: the mean is over the others
    y2 = y.copy()
    y2[:, 0] = 1
    assert tag_score("roc_auc", p, y2) == pytest.approx(np.mean([roc_auc_score(y2[:, k], p[:, k]) for k in range(1, 5)]))
    assert set(TAG_METRICS) == {"f1_samples", "f2_samples", "micro_f1", "macro_f1", "roc_auc", "average_precision", "log_loss"}


def test_multilabel_metric_names_are_refused_for_single_label_and_vice_versa():
    with pytest.raises(UserError, match="f2_samples scores multi-label competitions"):
        check_metric("f2_samples", ["cat", "dog"])
    with pytest.raises(UserError, match="qwk' does not score tags"):
        tag_score("qwk", np.zeros((2, 2)), np.zeros((2, 2)))


def test_fitted_thresholds_beat_a_clearly_wrong_half():
    rng = np.random.default_rng(1)
    n = 200
    y = np.zeros((n, 3), dtype=int)
    y[:, 0] = rng.random(n) < 0.5  # a common tag, well separated around 0.5
    y[:, 1] = rng.random(n) < 0.15  # a rare tag whose positives score 0.15-0.35: 0.5 never predicts it
    y[:3, 2] = 1  # three positives: too few for a threshold of its own
    y[y.sum(1) == 0, 0] = 1  # every image has a tag, as in Planet (an empty truth scores 0 whatever is predicted)
    p = np.where(y == 1, 0.7, 0.3) + rng.uniform(-0.15, 0.15, (n, 3))
    p[:, 1] = np.where(y[:, 1] == 1, rng.uniform(0.15, 0.35, n), rng.uniform(0.0, 0.12, n))
    fit = fit_thresholds(p, y, "f2_samples")
    assert fit["score"] > fit["score_at_0.5"] + 0.1
    assert 0.12 <= fit["thresholds"][1] <= 0.15  # between the rare tag's negatives and positives
    assert fit["fitted"] == [True, True, False] and fit["thresholds"][2] == fit["global"]
    assert tag_score("f2_samples", p, y, fit["thresholds"]) == pytest.approx(fit["score"])
    assert predict_tags(p, fit["thresholds"])[:, 1].tolist() == y[:, 1].tolist()
    with pytest.raises(UserError, match="scores probabilities"):
        fit_thresholds(p, y, "roc_auc")


def test_multilabel_folds_hold_every_tag_in_every_fold():
    rng = np.random.default_rng(2)
    y = np.zeros((90, 6), dtype=int)
    for tag, positives in enumerate([45, 30, 18, 9, 6, 5]):  # the rarest tag has one image per fold to give
        y[rng.choice(90, positives, replace=False), tag] = 1
    folds = tag_kfold_indices(y, 5, seed=0)
    assert sorted(i for _, va in folds for i in va) == list(range(90))
    for tr, va in folds:
        assert set(tr).isdisjoint(va)
        assert (y[va].sum(0) >= 1).all()  # every tag is validated in every fold
    assert tag_kfold_indices(y, 5, seed=0) == folds  # a pure function of the seed
    train, val = tag_holdout_indices(y, 0.2, seed=0)
    assert len(val) == pytest.approx(18, abs=2) and (y[val].sum(0) >= 1).all()
