"""`comp evaluate --report`: per-class table, confusion matrix, top losses, calibration, report.md."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from typer.testing import CliRunner

from comp.cli import app
from comp.data.synthetic import make_competition
from comp.probs import read_probs
from comp.evaluate.report import REPORT_FILES, write_class_report
from comp.evaluate.report.figures import plot_confusion, shown_classes
from comp.evaluate.report.tables import per_class_table, reliability, top_losses
from tests.conftest import one_line_error, write_config

runner = CliRunner()


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory) -> Path:
    """A 2-fold run on a 4-class competition with 24 / 12 / 8 / 6 images."""
    root = tmp_path_factory.mktemp("report")
    data = make_competition(root / "data", classes=4, per_class=[24, 12, 8, 6], test_per_class=2, size=32)
    config = write_config(root / "c.yaml", train={"epochs": 2, "seed": 0})
    result = runner.invoke(app, ["train", str(config), "--data", str(data), "--out", str(root / "run"), "--folds", "2"])
    assert result.exit_code == 0, result.output
    return root / "run"


def _sklearn_per_class(table: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids, probs, classes, meta = read_probs(table)
    y = np.array([classes.index(v) for v in meta["label"]])
    return classes, y, probs.argmax(1).numpy()


def test_report_of_a_kfold_run_agrees_with_sklearn_on_its_oof_predictions(kfold_run, tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", str(kfold_run), "--report", str(out), "--top-losses", "6"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)

    classes, y, pred = _sklearn_per_class(kfold_run / "oof.csv")
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=range(len(classes)), zero_division=0)
    table = pd.read_csv(out / "per_class.csv", keep_default_na=False)
    assert table["class"].tolist() == classes
    assert table["support"].tolist() == support.tolist() == [24, 6, 12, 8]  # circle, cross, square, triangle
    assert np.allclose(table["precision"], precision) and np.allclose(table["recall"], recall) and np.allclose(table["f1"], f1)
    cm = confusion_matrix(y, pred, labels=range(len(classes)))
    assert table["predicted"].tolist() == cm.sum(0).tolist()
    for row, counts in zip(table.itertuples(), cm):
        wrong = counts.copy()
        wrong[classes.index(row[1])] = 0
        assert row.confused_count == wrong.max()
        assert (row.most_confused_with == "") == (wrong.max() == 0)
        if wrong.max():
            assert counts[classes.index(row.most_confused_with)] == wrong.max()

    # The terminal table is worst first.
    printed = [line.split()[0] for line in result.output.splitlines() if line.split() and line.split()[0] in classes]
    assert printed == table.sort_values(["f1", "recall", "class"], kind="stable")["class"].tolist()

    # Top losses: the highest -log p(true) of the out-of-fold predictions, highest first.
    ids, probs, _, meta = read_probs(kfold_run / "oof.csv")
    p_true = probs[torch.arange(len(ids)), torch.tensor([classes.index(v) for v in meta["label"]])]
    losses = pd.read_csv(out / "top_losses.csv")
    assert len(losses) == 6 and losses["loss"].is_monotonic_decreasing
    expected = sorted((-p_true.clamp(min=1e-15).log()).tolist(), reverse=True)[:6]
    assert np.allclose(losses["loss"], expected, atol=1e-3)  # oof.csv holds 6 decimals
    assert all(Path(p).is_file() for p in losses["path"])

    for name in ("confusion_matrix.png", "top_losses.png", "calibration.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and min(im.size) >= 400
    md = (out / "report.md").read_text()
    assert "out-of-fold" in md and "![confusion matrix](confusion_matrix.png)" in md and "accuracy" in md


def test_report_of_a_single_run_uses_its_val_probs(tmp_path, shapes):
    config = write_config(tmp_path / "c.yaml", data={"val_fraction": 0.25})
    assert runner.invoke(app, ["train", str(config), "--data", str(shapes), "--out", str(tmp_path / "run")]).exit_code == 0
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--report", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    classes, y, pred = _sklearn_per_class(tmp_path / "run" / "val_probs.csv")
    _, recall, _, support = precision_recall_fscore_support(y, pred, labels=range(len(classes)), zero_division=0)
    table = pd.read_csv(tmp_path / "rep" / "per_class.csv")
    assert table["support"].tolist() == support.tolist() and np.allclose(table["recall"], recall)
    assert "validation" in (tmp_path / "rep" / "report.md").read_text()


def test_report_folder_with_other_files_is_refused_before_any_work(kfold_run, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    one_line_error(runner.invoke(app, ["evaluate", str(kfold_run), "--report", str(out)]), "holds other files", "notes.txt")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("")
    one_line_error(runner.invoke(app, ["evaluate", str(kfold_run), "--report", str(tmp_path / "file")]), "is a file")


def test_reliability_bins_and_ece_by_hand():
    # 4 images at confidence 0.9 (3 right), 2 at 0.6 (both right).
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = torch.tensor([0, 0, 0, 1, 0, 0])
    bins, ece = reliability(probs, labels, bins=10)
    assert bins["images"].tolist() == [2, 4]
    assert np.allclose(bins["accuracy"], [1.0, 0.75]) and np.allclose(bins["confidence"], [0.6, 0.9])
    assert ece == pytest.approx(2 / 6 * 0.4 + 4 / 6 * 0.15)


def test_tables_handle_a_class_without_images_and_ties_in_loss():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    labels = torch.tensor([0, 1, 1])
    table = per_class_table(probs, labels, ["a", "b", "c"])
    assert table.loc[2, "support"] == 0 and table.loc[2, "f1"] == 0 and table.loc[2, "most_confused_with"] == ""
    assert table.loc[1, "most_confused_with"] == "a" and table.loc[1, "confused_count"] == 1
    losses = top_losses(probs, labels, ["a", "b", "c"], ["x", "y", "z"], [Path("x"), Path("y"), Path("z")], 10)
    assert losses["id"].tolist() == ["z", "x", "y"]  # -log 0.3 first; 0.7 twice in id order


def test_a_100_class_matrix_shows_the_most_confused_classes(tmp_path):
    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(5, 20, 100))
    cm[7, 3] = cm[42, 8] = cm[99, 0] = 9  # the errors
    keep = shown_classes(cm)
    assert len(keep) == 30 and {0, 3, 7, 8, 42, 99} <= set(keep)
    plot_confusion(cm, [f"class number {i}" for i in range(100)], tmp_path / "cm.png")
    with Image.open(tmp_path / "cm.png") as im:
        assert im.size[0] > 1000  # sized for its 30 rows, not squeezed into the 10-class size


@pytest.mark.parametrize("names", [
    [f"Acer_pseudoplatanus_variety_{i:02d}" for i in range(45)],
    ["Tomato___Bacterial_spot", "Tomato___Early_blight", "Tomato___Late_blight", "Tomato___Leaf_Mold", "Tomato___Septoria_leaf_spot",
     "Tomato___Spider_mites Two-spotted_spider_mite", "Tomato___Target_Spot", "Tomato___Tomato_Yellow_Leaf_Curl_Virus",
     "Tomato___Tomato_mosaic_virus", "Tomato___healthy"],
    [f"{'x' * 12}{i}{'y' * 12}" for i in range(12)],  # differ only in the middle: numbered
])
def test_short_class_names_stay_distinct(names):
    from comp.evaluate.report.figures import short_names

    short = short_names(names)
    # Cutting the end made every Acer_pseudoplatanus_variety_NN read 'Acer_pseudoplatan…'.
    assert len(set(short)) == len(names) and all(len(s) <= 18 for s in short)
    assert short_names(["cat", "dog"]) == ["cat", "dog"]


def test_the_printed_table_tells_long_class_names_apart(tmp_path):
    names = [f"Acer_pseudoplatanus_variety_{i:02d}" for i in range(6)]
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(60, 6, generator=g).softmax(1)
    labels = torch.arange(60) % 6
    lines: list[str] = []
    paths = [tmp_path / f"{i}.png" for i in range(60)]
    for p in paths:
        Image.new("RGB", (8, 8)).save(p)
    write_class_report(tmp_path / "r", probs, labels, names, [p.name for p in paths], paths, title={}, top=4, log=lines.append)
    shown = [line.split()[0] for line in lines[1:7]]
    assert len(set(shown)) == 6, shown
