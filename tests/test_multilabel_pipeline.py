"""Multi-label competitions through comp train (single and --folds), predict --tta and submit, in both shapes."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

from comp.cli import app
from comp.config import load_config
from comp.data.synthetic import make_tagged_competition
from comp.tasks.losses import TagLoss, tag_pos_weights
from comp.tasks.multilabel import MultiLabel
from comp.tasks.tag_metrics import tag_score
from comp.probs import read_probs, tag_targets
from tests.conftest import one_line_error, write_config

runner = CliRunner()


@pytest.fixture(scope="module")
def tags_comp(tmp_path_factory):
    return make_tagged_competition(tmp_path_factory.mktemp("planet") / "planet", shape="tags")


@pytest.fixture(scope="module")
def onehot_comp(tmp_path_factory):
    return make_tagged_competition(tmp_path_factory.mktemp("plants") / "plants", shape="onehot", seed=1)


def _config(tmp_path, data, metric):
    """The tiny config on `data`, 2 epochs, scored by `metric`."""
    path = write_config(tmp_path / "c.yaml", data={"dir": str(data)}, train={"epochs": 2})
    raw = yaml.safe_load(path.read_text())
    raw["metric"] = metric
    path.write_text(yaml.safe_dump(raw))
    return path


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_tags_train_predict_submit_with_fitted_thresholds(tmp_path, tags_comp):
    config = _config(tmp_path, tags_comp, "f2_samples")
    run = tmp_path / "run"
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(run)]))
    assert "at the fitted thresholds" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "multilabel" and summary["metric"] == "f2_samples" and summary["classes"] == ["circle", "square", "triangle"]
    ids, probs, classes, meta = read_probs(run / "val_probs.csv")
    y = tag_targets(meta["label"], classes)
    assert summary["best_val_score"] == pytest.approx(tag_score("f2_samples", probs, y), abs=1e-6)  # at 0.5
    fitted = json.loads((run / "thresholds.json").read_text())
    assert fitted["classes"] == classes and fitted["fitted_on"] == "val_probs.csv"
    assert summary["best_val_score_thresholded"] == pytest.approx(tag_score("f2_samples", probs, y, fitted["thresholds"]), abs=1e-6)
    assert not torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-3)  # per-tag probabilities, never renormalized
    assert "task: multilabel" in (run / "config.yaml").read_text()

    prediction = tmp_path / "prediction.csv"
    out = _ok(runner.invoke(app, ["predict", str(run), "--tta", "--out", str(prediction)]))
    assert f"thresholds: {run / 'thresholds.json'}" in out
    written = pd.read_csv(prediction, dtype=str, keep_default_na=False)
    assert list(written.columns) == ["image_name", "tags"]
    _, test_probs, _, _ = read_probs(tmp_path / "prediction_probs.csv")
    expected = [" ".join(c for c, p, t in zip(classes, row, fitted["thresholds"]) if p >= t) or classes[int(np.argmax(row))]
                for row in test_probs.numpy()]
    assert written["tags"].tolist() == expected  # tags at the run's thresholds, the most probable one when none passes
    meta_written = json.loads((tmp_path / "prediction_meta.json").read_text())
    assert meta_written["shape"] == "tags" and meta_written["cv_score"] == pytest.approx(summary["best_val_score_thresholded"])
    # a TTA prediction's cv_score says what it scores: the identity view's held-out predictions
    assert meta_written["cv_score_views"] == ["identity"] and "held-out score of the identity view" in out
    _ok(runner.invoke(app, ["submit", str(prediction), "--dir", str(tmp_path / "subs")]))
    # --no-calibrate drops a temperature, not the thresholds: the tags and the recorded score stay those at the thresholds
    _ok(runner.invoke(app, ["predict", str(run), "--tta", "--no-calibrate", "--out", str(tmp_path / "raw.csv")]))
    raw_meta = json.loads((tmp_path / "raw_meta.json").read_text())
    assert raw_meta["cv_score"] == pytest.approx(summary["best_val_score_thresholded"]) and raw_meta["cv_score_raw"] == summary["best_val_score"]
    assert pd.read_csv(tmp_path / "raw.csv", dtype=str, keep_default_na=False)["tags"].tolist() == written["tags"].tolist()

    bad = written.copy()
    bad.loc[0, "tags"] = "circle hexagon"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "bad.csv"), "--data", str(tags_comp)]), "line 2", "'hexagon'")
    bad.loc[0, "tags"] = "circle circle"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "bad.csv"), "--data", str(tags_comp)]), "appears twice")

    # comp evaluate scores what predict writes: at 0.5 and at the run's thresholds
    from comp.evaluate import evaluate

    plain = evaluate([run], log=lambda s: None)
    entry = plain["runs"][str(run)]
    assert entry["views"]["identity"] == pytest.approx(summary["best_val_score"], abs=1e-6)
    assert entry["thresholded_score"] == pytest.approx(summary["best_val_score_thresholded"], abs=1e-6)
    report = tmp_path / "report"
    out = _ok(runner.invoke(app, ["evaluate", str(run), "--tta", "--fit", "--report", str(report)]))
    assert "at the run's thresholds" in out and "selected views" in out and "thresholds fitted for that combination" in out
    table = pd.read_csv(report / "per_tag.csv")
    assert table["tag"].tolist() == classes and table["support"].tolist() == y.sum(0).tolist()
    # the report's thresholds are those comp predict applies (it used to show ones refitted for the views)
    assert table["threshold"].tolist() == pytest.approx(fitted["thresholds"])
    assert "at the thresholds comp predict applies to that combination" in out
    assert {"thresholds.png", "top_losses.png", "top_losses.csv", "report.md"} <= {p.name for p in report.iterdir()}
    assert set(pd.read_csv(report / "top_losses.csv")["true"]) <= set(meta["label"])  # captioned with tag sets

    # comp export: per-tag sigmoid probabilities, the thresholds in the file's metadata
    model_file = tmp_path / "model.pt"
    out = _ok(runner.invoke(app, ["export", str(run), "--format", "torchscript", "--out", str(model_file)]))
    assert "per-tag probabilities of 3 classes" in out
    extra = {"thresholds": "", "task": ""}
    loaded = torch.jit.load(str(model_file), _extra_files=extra)
    extra = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
    assert extra["task"] == "multilabel" and [float(t) for t in extra["thresholds"].split()] == pytest.approx(fitted["thresholds"])
    probs_out = loaded(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    assert probs_out.shape == (4, 3) and not torch.allclose(probs_out.sum(1), torch.ones(4))

    # a run recorded with tta.merge geometric (before training refused it) is refused by export as predict refuses it
    import shutil

    old = tmp_path / "geometric"
    shutil.copytree(run, old)
    ckpt = torch.load(old / "best.pt", weights_only=False)
    ckpt["config"]["tta"]["merge"] = "geometric"
    torch.save(ckpt, old / "best.pt")
    one_line_error(runner.invoke(app, ["export", str(old), "--format", "torchscript", "--out", str(tmp_path / "g.pt")]), "merge")
    one_line_error(runner.invoke(app, ["predict", str(old), "--out", str(tmp_path / "g.csv")]), "merge")
    assert not (tmp_path / "g.pt").exists()


def test_onehot_kfold_writes_probabilities_or_zero_one_columns_by_metric(tmp_path, onehot_comp):
    run = tmp_path / "auc"
    config = _config(tmp_path, onehot_comp, "roc_auc")
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--folds", "2", "--set", "train.epochs=1"]))
    cv = json.loads((run / "cv.json").read_text())
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["task"] == "multilabel"  # the k-fold run's own config, as its folds'
    ids, probs, classes, meta = read_probs(run / "oof.csv")
    assert classes == ["circle", "square", "triangle"] and len(ids) == 80 and sorted(set(meta["fold"])) == [0, 1]
    assert cv["cv_score"] == pytest.approx(tag_score("roc_auc", probs, tag_targets(meta["label"], classes)), abs=1e-6)
    assert not (run / "thresholds.json").exists()  # AUC scores probabilities: nothing to fit
    prediction = tmp_path / "auc.csv"
    _ok(runner.invoke(app, ["predict", str(run), "--out", str(prediction)]))
    written = pd.read_csv(prediction)
    assert list(written.columns) == ["image_id", "circle", "square", "triangle"]
    assert written.iloc[:, 1:].to_numpy().min() >= 0 and not np.allclose(written.iloc[:, 1:].sum(1), 1)
    _ok(runner.invoke(app, ["submit", str(prediction), "--dir", str(tmp_path / "subs")]))

    f2 = tmp_path / "f2"
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(f2), "--folds", "2", "--set", "metric=f2_samples",
                                  "--set", "train.epochs=1"]))
    assert "per-tag thresholds fitted on oof.csv" in out and (f2 / "thresholds.json").is_file()
    assert json.loads((f2 / "thresholds.json").read_text())["fitted_on"] == "oof.csv"
    prediction = tmp_path / "f2.csv"
    _ok(runner.invoke(app, ["predict", str(f2), "--out", str(prediction)]))
    values = pd.read_csv(prediction).iloc[:, 1:]
    assert set(np.unique(values.to_numpy())) <= {0, 1} and (values.sum(1) >= 1).all()
    _ok(runner.invoke(app, ["submit", str(prediction), "--dir", str(tmp_path / "subs")]))
    bad = pd.read_csv(prediction)
    bad.iloc[3, 2] = 2
    bad.to_csv(tmp_path / "bad.csv", index=False)
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "bad.csv"), "--data", str(onehot_comp)]), "line 5", "not a probability")
    (tmp_path / "bad_meta.json").write_text((tmp_path / "f2_meta.json").read_text())  # the shape comp predict recorded
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "bad.csv")]), "line 5", "not 0 or 1")

    # an ensemble of two k-fold runs of one split gets thresholds fitted on their merged out-of-fold predictions
    out = _ok(runner.invoke(app, ["predict", str(f2), str(run), "--out", str(tmp_path / "both.csv")]))
    assert "fitted on the 2 runs' merged held-out predictions" in out


def test_a_multilabel_run_resumes(tmp_path, tags_comp):
    config = _config(tmp_path, tags_comp, "f1_samples")
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "train.epochs=1"]))
    # comp runs: an unfinished run's score is at 0.5, finished runs' at their thresholds: it says so
    import shutil

    from comp.runs import leaderboard

    shutil.copytree(run, tmp_path / "listed" / "cut")
    (tmp_path / "listed" / "cut" / "summary.json").unlink()
    row = leaderboard([tmp_path / "listed"]).iloc[0]
    assert row["state"].endswith("(score at 0.5: no fitted thresholds yet)") and row["acc"] == pytest.approx(
        pd.read_csv(run / "metrics.csv")["val_acc"].iloc[0])
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--resume", "--epochs", "2"]))
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [0, 1]
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2


def test_multilabel_settings_that_do_not_fit_are_one_line(tmp_path, tags_comp):
    config = _config(tmp_path, tags_comp, "roc_auc")
    # a tags sample cannot hold probabilities: the message used to suggest data.submission=probs, whose file
    # (image_name,circle,square,...) the sample does not describe and comp submit then called valid
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "r")])
    one_line_error(result, "roc_auc scores per-tag probabilities", "cannot hold probabilities", "data.submission=tags")
    assert "data.submission=probs" not in result.output
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "r"), "--set", "data.submission=probs"]),
                   "data.submission=probs writes one column per tag", "one value column 'tags'")
    config = _config(tmp_path, tags_comp, "accuracy")
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "r")]), "does not score tags")
    config = _config(tmp_path, tags_comp, "f2_samples")
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "r"), "--set", "data.sampler=balanced"]),
                   "data.sampler=balanced")
    # refused before training, not after it by predict (or silently merged by the mean in export)
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "r"), "--set", "tta.merge=geometric"]),
                   "tta.merge=geometric", "set tta.merge=mean")
    # timm's asymmetric loss takes no weights: refused rather than dropped while summary.json records them
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "r"), "--set", "train.loss=asl",
                                       "--set", "train.class_weights=balanced"]), "train.class_weights", "asl")
    assert not (tmp_path / "r").exists()


def test_the_tag_losses(tmp_path):
    logits = torch.randn(6, 3)
    y = (torch.rand(6, 3) > 0.5).float()
    assert TagLoss(3)(logits, y) == pytest.approx(F.binary_cross_entropy_with_logits(logits, y).item())
    smooth = TagLoss(3, label_smoothing=0.2)(logits, y)
    assert smooth == pytest.approx(F.binary_cross_entropy_with_logits(logits, y * 0.8 + 0.1).item())
    blended = y * 0.7 + y.flip(0) * 0.3  # a mixup blend arrives smoothed by timm: not smoothed again
    assert TagLoss(3, label_smoothing=0.2)(logits, blended) == pytest.approx(F.binary_cross_entropy_with_logits(logits, blended).item())
    w = tag_pos_weights("balanced", np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]]), ["a", "b", "c"])
    assert w.tolist() == [pytest.approx(1 / 3), 3.0, 1.0]  # negatives / positives; no positive: 1
    assert torch.isfinite(TagLoss(3, kind="asl")(logits, y)) and torch.isfinite(TagLoss(3, kind="focal")(logits, y))
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["train.mixup=0.4", "train.label_smoothing=0.1"])
    criterion, mixup = MultiLabel().loss(cfg.train, 3)
    x, target = mixup(torch.randn(4, 3, 8, 8), torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]))
    assert target.shape == (4, 3) and target.min() >= 0.05 - 1e-6 and target.max() <= 0.95 + 1e-6
    assert isinstance(criterion, TagLoss)



def test_a_sample_tag_training_never_saw_stops_before_training(tmp_path, tags_comp):
    import shutil

    data = tmp_path / "planet"
    shutil.copytree(tags_comp, data)
    sample = pd.read_csv(data / "sample_submission.csv")
    sample.loc[2, "tags"] = "circle hexagon"
    sample.to_csv(data / "sample_submission.csv", index=False)
    config = _config(tmp_path, data, "f2_samples")
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "r")]), "line 4", "'hexagon'", "training never saw it")
    assert not (tmp_path / "r").exists()


def test_the_offline_bundle_writes_the_tags_comp_predict_writes(tmp_path, tags_comp):
    from tests.ship.test_package import _run_offline

    config = _config(tmp_path, tags_comp, "f2_samples")
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--folds", "2", "--set", "train.epochs=1"]))
    bundle = tmp_path / "bundle"
    out = _ok(runner.invoke(app, ["package", str(run), "--out", str(bundle)]))
    assert f"thresholds: {run / 'thresholds.json'}" in out
    settings = json.loads((bundle / "bundle.json").read_text())
    assert settings["thresholds"] == json.loads((run / "thresholds.json").read_text())["thresholds"]
    expected = tmp_path / "expected.csv"
    _ok(runner.invoke(app, ["predict", str(run), "--out", str(expected)]))
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    done = _run_offline(bundle, tags_comp, work / "submission.csv", work, home)
    assert done.returncode == 0, done.stderr
    assert (work / "submission.csv").read_bytes() == expected.read_bytes()
    assert pd.read_csv(expected).columns.tolist() == ["image_name", "tags"]
    out = _ok(runner.invoke(app, ["package", str(run), "--out", str(tmp_path / "half"), "--half"]))
    assert "keeps the fp32 tag set on" in out


def test_tune_searches_a_multilabel_competition_on_the_thresholded_score(tmp_path, tags_comp):
    pytest.importorskip("optuna")
    config = _config(tmp_path, tags_comp, "f2_samples")
    raw = yaml.safe_load(config.read_text())
    raw["train"].update(epochs=1, checkpoint_minutes=0)
    raw["tune"] = {"space": {"optim.lr": {"log": [1e-3, 3e-2]}}, "sampler": "random", "trials": 2}
    config.write_text(yaml.safe_dump(raw))
    _ok(runner.invoke(app, ["tune", str(config), "--out", str(tmp_path / "study")]))
    trials = pd.read_csv(tmp_path / "study" / "trials.csv")
    for row in trials.itertuples():
        summary = json.loads((tmp_path / "study" / row.run_dir / "summary.json").read_text())
        assert row.value == pytest.approx(summary["best_val_score_thresholded"])  # what comp predict would write
    assert (tmp_path / "study" / "best.yaml").is_file()


def test_a_multilabel_log_loss_run_gets_one_sigmoid_temperature_that_predict_applies(tmp_path, onehot_comp):
    from comp.tasks.calibration import apply_tag_temperature

    config = _config(tmp_path, onehot_comp, "log_loss")
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "train.label_smoothing=0.2"]))
    saved = json.loads((run / "calibration.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert saved["kind"] == "sigmoid" and summary["temperature"] == pytest.approx(saved["temperature"])
    _, probs, classes, meta = read_probs(run / "val_probs.csv")
    y = tag_targets(meta["label"], classes)
    calibrated = tag_score("log_loss", apply_tag_temperature(probs, saved["temperature"]), y)
    assert summary["best_val_score_calibrated"] == pytest.approx(calibrated, abs=1e-6)
    assert calibrated <= tag_score("log_loss", probs, y) + 1e-9  # fitted to lower it
    from comp.evaluate import evaluate

    scored = evaluate([run], log=lambda s: None)["runs"][str(run)]  # as predict writes it: with the temperature
    raw = evaluate([run], calibrate=False, log=lambda s: None)["runs"][str(run)]  # --no-calibrate reaches multi-label runs too
    assert scored["tta_score"] == pytest.approx(summary["best_val_score_calibrated"], abs=1e-6)
    assert raw["tta_score"] == pytest.approx(summary["best_val_score"], abs=1e-6) and "temperature" not in raw
    _ok(runner.invoke(app, ["predict", str(run), "--no-tta", "--out", str(tmp_path / "cal.csv")]))
    _ok(runner.invoke(app, ["predict", str(run), "--no-tta", "--no-calibrate", "--out", str(tmp_path / "raw.csv")]))
    cal, raw = pd.read_csv(tmp_path / "cal.csv"), pd.read_csv(tmp_path / "raw.csv")
    expected = apply_tag_temperature(torch.tensor(raw[classes].to_numpy()), saved["temperature"]).numpy()
    assert np.allclose(cal[classes].to_numpy(), expected, atol=1e-7)


def test_at_least_one_tag_can_be_switched_off(tmp_path, tags_comp):
    config = _config(tmp_path, tags_comp, "f2_samples")
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "train.epochs=1", "--set", "data.at_least_one_tag=false"]))
    saved = json.loads((run / "thresholds.json").read_text())
    assert saved["ensure_one"] is False
    saved["thresholds"] = [0.999] * 3  # no tag passes: every row is left empty
    (run / "thresholds.json").write_text(json.dumps(saved))
    prediction = tmp_path / "prediction.csv"
    _ok(runner.invoke(app, ["predict", str(run), "--out", str(prediction)]))
    assert pd.read_csv(prediction, dtype=str, keep_default_na=False)["tags"].tolist() == [""] * 12
    _ok(runner.invoke(app, ["submit", str(prediction), "--dir", str(tmp_path / "subs")]))  # an empty tag set is a valid row
    on = tmp_path / "on"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(on), "--set", "train.epochs=1"]))
    (on / "thresholds.json").write_text(json.dumps({**json.loads((on / "thresholds.json").read_text()), "thresholds": [0.999] * 3}))
    _ok(runner.invoke(app, ["predict", str(on), "--out", str(prediction)]))
    assert all(len(t.split()) == 1 for t in pd.read_csv(prediction)["tags"])  # the most probable tag each


def test_onehot_single_run_evaluates_with_a_per_tag_report(tmp_path, onehot_comp):
    config = _config(tmp_path, onehot_comp, "macro_f1")
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run)]))
    summary = json.loads((run / "summary.json").read_text())
    out = _ok(runner.invoke(app, ["evaluate", str(run), "--report", str(tmp_path / "report")]))
    assert f"{summary['best_val_score_thresholded']:.4f}, what comp predict writes" in out
    table = pd.read_csv(tmp_path / "report" / "per_tag.csv")
    fitted = json.loads((run / "thresholds.json").read_text())["thresholds"]
    assert table["threshold"].tolist() == pytest.approx(fitted)
    assert table["f1"].mean() == pytest.approx(summary["best_val_score_thresholded"], abs=1e-6)  # macro F1 = the mean per-tag F1


def test_a_probability_metric_submitted_as_tags_records_no_cv_score_for_them(tmp_path, tags_comp):
    # The ledger's CV used to be the AUC of the probabilities while the file held 0/1 tag sets.
    config = _config(tmp_path, tags_comp, "roc_auc")
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--set", "data.submission=tags", "--set", "train.epochs=1"]))
    out = _ok(runner.invoke(app, ["predict", str(run), "--no-tta", "--out", str(tmp_path / "p.csv")]))
    meta = json.loads((tmp_path / "p_meta.json").read_text())
    assert meta["shape"] == "tags" and meta["cv_score"] is None and "roc_auc scores probabilities" in meta["cv_score_missing"]
    assert "no cv_score recorded" in out
    _ok(runner.invoke(app, ["submit", str(tmp_path / "p.csv"), "--dir", str(tmp_path / "subs")]))
    assert pd.read_csv(tmp_path / "subs" / "history.csv", dtype=str, keep_default_na=False)["cv_score"].tolist() == [""]
    # comp evaluate no longer says "at 0.5" of a metric that scores probabilities
    scored = _ok(runner.invoke(app, ["evaluate", str(run)]))
    assert "roc_auc at 0.5" not in scored and "held-out images, roc_auc" in scored


def test_submit_refuses_per_tag_columns_against_a_tags_sample(tmp_path, tags_comp):
    # A file of one probability column per tag, recorded as comp predict wrote it, was called valid
    # although the sample (image_name,tags) describes another file.
    ids = pd.read_csv(tags_comp / "sample_submission.csv").iloc[:, 0].tolist()
    probs = pd.DataFrame({"image_name": ids, **{t: [0.5] * len(ids) for t in ("circle", "square", "triangle")}})
    probs.to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "p_meta.json").write_text(json.dumps({"data": str(tags_comp), "task": "multilabel", "metric": "roc_auc",
                                                      "shape": "probs"}))
    one_line_error(runner.invoke(app, ["submit", str(tmp_path / "p.csv"), "--dir", str(tmp_path / "subs")]),
                   "data.submission=probs writes one column per tag", "one value column 'tags'")
    assert not (tmp_path / "subs").exists()


def test_a_multilabel_final_fit_on_every_labelled_image_trains(tmp_path, onehot_comp):
    # data.train_on_val leaves no validation images; the empty split's tag rows used to crash the loaders
    config = _config(tmp_path, onehot_comp, "roc_auc")
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), "--set", "train.epochs=1",
                                  "--set", "data.train_on_val=true"]))
    assert "without a validation split" in out


def test_compare_scores_f2_at_each_runs_fitted_thresholds(tmp_path, tags_comp):
    from comp.compare import compare
    from comp.predict import run_score

    config = _config(tmp_path, tags_comp, "f2_samples")
    a, b = tmp_path / "a", tmp_path / "b"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(a), "--epochs", "1"]))
    _ok(runner.invoke(app, ["train", str(config), "--out", str(b), "--epochs", "1", "--set", "optim.lr=0.001"]))
    out = compare([a, b], resamples=300, log=lambda s: None)
    assert out["metric"] == "f2_samples"
    assert out["runs"][str(a)]["score"] == pytest.approx(run_score(a)) and out["runs"][str(b)]["score"] == pytest.approx(run_score(b))
    assert json.loads((a / "summary.json").read_text()).get("best_val_score_thresholded") == pytest.approx(run_score(a))
    c = out["comparisons"][0]
    assert c["difference"] == pytest.approx(run_score(b) - run_score(a)) and c["low"] <= c["difference"] <= c["high"]
    auc = _ok(runner.invoke(app, ["compare", str(a), str(b), "--metric", "roc_auc", "--resamples", "200"]))
    assert "B - A: " in auc and "roc_auc" in auc


def test_a_run_of_seeds_fits_its_thresholds_on_the_seeds_merged_predictions(tmp_path, tags_comp):
    from comp.predict import run_score

    config = _config(tmp_path, tags_comp, "f2_samples")
    run = tmp_path / "s2"
    _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--epochs", "1", "--seeds", "2"]))
    saved = json.loads((run / "seeds.json").read_text())
    fitted = json.loads((run / "thresholds.json").read_text())
    assert fitted["fitted_on"] == "val_probs.csv" and saved["final_score"] == saved["score_thresholded"] == pytest.approx(run_score(run))
    _, merged, classes, meta = read_probs(run / "val_probs.csv")
    seeds = [read_probs(run / f"seed_{s}" / "val_probs.csv") for s in saved["seeds"]]
    order = [[t[0].index(i) for i in read_probs(run / "val_probs.csv")[0]] for t in seeds]
    assert torch.allclose(merged, sum(t[1][o] for t, o in zip(seeds, order)) / 2, atol=1e-6)  # the tags' probabilities averaged
    assert tag_score("f2_samples", merged, tag_targets(meta["label"], classes), fitted["thresholds"]) == pytest.approx(saved["final_score"])
    out = _ok(runner.invoke(app, ["predict", str(run), "--out", str(tmp_path / "p.csv")]))
    assert "thresholds.json" in out
