"""Temperature scaling: fitted on held-out predictions, stored with the run, applied by predict."""

import json

import pytest
import torch

from comp.tasks.calibration import apply_temperature, fit_temperature, nll
from comp.data.synthetic import make_competition
from comp.evaluate import evaluate
from comp.predict import predict
from comp.train import train
from tests.conftest import write_config

QUIET = dict(log=lambda s: None)


@pytest.mark.parametrize("sharpness, expected", [(3.0, 3.0), (1 / 3, 1 / 3)])
def test_the_temperature_undoes_over_and_under_confidence(sharpness, expected):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 5, generator=g) * 2
    labels = torch.multinomial(logits.softmax(1), 1, generator=g).flatten()  # labels drawn from the true probabilities
    miscalibrated = (logits * sharpness).softmax(1)  # over- (x3) or under-confident (/3)
    t = fit_temperature(miscalibrated, labels)
    assert t == pytest.approx(expected, rel=0.1)
    assert nll(apply_temperature(miscalibrated, t), labels) < nll(miscalibrated, labels) - 0.05
    assert torch.equal(apply_temperature(miscalibrated, t).argmax(1), miscalibrated.argmax(1))  # ranking unchanged


def test_a_log_loss_run_is_calibrated_and_predict_applies_it(tmp_path):
    data = make_competition(tmp_path / "c", classes=3, per_class=12, test_per_class=3, size=32)
    config = write_config(tmp_path / "c.yaml", data={"dir": str(data)}, train={"epochs": 2})
    train(config, out=tmp_path / "run", overrides=["metric=log_loss", "data.submission=probs"], **QUIET)
    info = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert info["temperature"] > 0 and info["val_log_loss_calibrated"] <= info["val_log_loss"] + 1e-9
    # One view, so the calibrated table is the raw one rescaled (with TTA each view is rescaled, then merged).
    meta = predict([tmp_path / "run"], out=tmp_path / "p.csv", workers=0, tta=False, **QUIET)
    raw = predict([tmp_path / "run"], out=tmp_path / "r.csv", workers=0, tta=False, calibrate=False, **QUIET)
    assert meta["temperatures"] == {str(tmp_path / "run"): pytest.approx(info["temperature"])} and raw["temperatures"] == {}
    import pandas as pd

    p, r = pd.read_csv(tmp_path / "p_probs.csv"), pd.read_csv(tmp_path / "r_probs.csv")
    t = torch.tensor(r.iloc[:, 1:].to_numpy())
    assert torch.allclose(torch.tensor(p.iloc[:, 1:].to_numpy()), apply_temperature(t, info["temperature"]), atol=2e-5)
    res = evaluate([tmp_path / "run"], **QUIET)
    entry = res["runs"][str(tmp_path / "run")]
    assert res["metric"] == "log_loss" and entry["log_loss_calibrated"] == pytest.approx(info["val_log_loss_calibrated"], abs=1e-4)
    assert entry["log_loss_raw"] == pytest.approx(info["val_log_loss"], abs=1e-4)


def test_an_accuracy_run_has_no_temperature(tmp_path, shapes):
    train(write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}), out=tmp_path / "run", **QUIET)
    assert not (tmp_path / "run" / "calibration.json").exists()


@pytest.fixture(scope="module")
def kfold_log_loss(tmp_path_factory):
    """(competition, 2-fold log-loss run with probability columns in its sample)."""
    root = tmp_path_factory.mktemp("kfold-ll")
    data = make_competition(root / "c", classes=3, per_class=14, test_per_class=6, size=32)
    config = write_config(root / "c.yaml", data={"dir": str(data)}, train={"epochs": 3})  # 1 epoch predicts one class everywhere
    train(config, out=root / "run", folds=2, overrides=["metric=log_loss", "data.submission=probs"], **QUIET)
    return data, root / "run"


def _labels(probs_csv) -> list[int]:
    import pandas as pd

    return pd.read_csv(probs_csv).iloc[:, 1:].to_numpy().argmax(1).tolist()


def test_a_kfold_run_has_one_temperature_fitted_on_oof_and_it_never_changes_its_labels(kfold_log_loss, tmp_path):
    from comp.predict.ensemble import merge
    from comp.probs import read_probs

    data, run = kfold_log_loss
    info = json.loads((run / "calibration.json").read_text())
    assert info["fitted_on"] == "oof.csv" and info["images"] == 42
    # Folds calibrated one by one (the old design): give them very different temperatures, as real folds had (0.58, 0.24, 0.53).
    raw = {}
    for i in (0, 1):
        predict([run / f"fold_{i}"], out=tmp_path / f"f{i}.csv", workers=0, tta=False, calibrate=False, **QUIET)
        raw[i] = read_probs(tmp_path / f"f{i}_probs.csv")[1]
    plain = merge(torch.stack([raw[0], raw[1]])).argmax(1)
    for sharp, soft in ((0, 1), (1, 0)):
        per_fold = merge(torch.stack([apply_temperature(raw[sharp], 0.05), apply_temperature(raw[soft], 20.0)])).argmax(1)
        if not torch.equal(per_fold, plain):
            break
    assert not torch.equal(per_fold, plain), "these temperatures per fold must move a label, or the test cannot tell"
    for i, t in ((sharp, 0.05), (soft, 20.0)):
        (run / f"fold_{i}" / "calibration.json").write_text(json.dumps({"temperature": t}))

    meta = predict([run], out=tmp_path / "cal.csv", workers=0, tta=False, **QUIET)
    predict([run], out=tmp_path / "raw.csv", workers=0, tta=False, calibrate=False, **QUIET)
    assert meta["temperatures"] == {str(run): pytest.approx(info["temperature"])}
    assert _labels(tmp_path / "cal_probs.csv") == _labels(tmp_path / "raw_probs.csv")  # calibration changes no label


def test_the_calibrated_score_is_recorded_and_is_what_meta_and_ledger_carry(kfold_log_loss, tmp_path):
    from sklearn.metrics import log_loss

    from comp.probs import label_indices, read_probs, unit_rows
    from comp.submission.submit import submit

    data, run = kfold_log_loss
    cv = json.loads((run / "cv.json").read_text())
    t = json.loads((run / "calibration.json").read_text())["temperature"]
    _, oof, classes, rows = read_probs(run / "oof.csv")
    y = label_indices(rows["label"], classes).numpy()
    assert cv["cv_score"] == pytest.approx(log_loss(y, unit_rows(oof), labels=[0, 1, 2]), abs=1e-6)
    assert cv["cv_score_calibrated"] == pytest.approx(log_loss(y, unit_rows(apply_temperature(oof, t)), labels=[0, 1, 2]), abs=1e-6)
    assert cv["cv_score_calibrated"] < cv["cv_score"] and cv["temperature"] == pytest.approx(t)
    meta = predict([run], out=tmp_path / "p.csv", workers=0, tta=False, **QUIET)
    # Used to carry the uncalibrated score while the file holds calibrated probabilities.
    assert meta["cv_score"] == pytest.approx(cv["cv_score_calibrated"]) and meta["cv_score_raw"] == pytest.approx(cv["cv_score"])
    row = submit(tmp_path / "p.csv", directory=tmp_path / "subs")
    assert row["cv_score"] == f"{cv['cv_score_calibrated']:.4f}"
    raw = predict([run], out=tmp_path / "r.csv", workers=0, tta=False, calibrate=False, **QUIET)
    assert raw["cv_score"] == pytest.approx(cv["cv_score"])  # --no-calibrate writes raw probabilities: their score


def test_a_single_runs_summary_records_its_calibrated_score(tmp_path):
    from sklearn.metrics import log_loss

    from comp.probs import label_indices, read_probs, unit_rows

    data = make_competition(tmp_path / "c", classes=3, per_class=12, test_per_class=3, size=32)
    config = write_config(tmp_path / "c.yaml", data={"dir": str(data)}, train={"epochs": 1})
    summary = train(config, out=tmp_path / "run", overrides=["metric=log_loss", "data.submission=probs"], **QUIET)
    t = json.loads((tmp_path / "run" / "calibration.json").read_text())["temperature"]
    _, probs, classes, rows = read_probs(tmp_path / "run" / "val_probs.csv")
    y = label_indices(rows["label"], classes).numpy()
    expected = log_loss(y, unit_rows(apply_temperature(probs, t)), labels=[0, 1, 2])
    assert summary["best_val_score_calibrated"] == pytest.approx(expected, abs=1e-6) and summary["temperature"] == pytest.approx(t)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["best_val_score_calibrated"] == summary["best_val_score_calibrated"]


def test_an_older_kfold_run_calibrated_per_fold_is_refused_until_resume_fits_its_temperature(kfold_log_loss, tmp_path):
    import shutil

    from comp.errors import UserError

    data, run = kfold_log_loss
    old = tmp_path / "old"
    shutil.copytree(run, old)
    (old / "calibration.json").unlink()  # what an earlier comp left: fold_i/calibration.json only
    with pytest.raises(UserError, match=r"--resume --out .*old.*--no-calibrate"):
        predict([old], out=tmp_path / "p.csv", workers=0, tta=False, **QUIET)
    assert not (tmp_path / "p.csv").exists()
    predict([old], out=tmp_path / "p.csv", workers=0, tta=False, calibrate=False, **QUIET)
    with pytest.raises(UserError, match=r"--no-calibrate"):  # comp evaluate asks the same
        evaluate([old], **QUIET)
    raw = evaluate([old], calibrate=False, **QUIET)  # and takes the flag: no temperature asked for, none applied
    assert "temperature" not in raw["runs"][str(old)] and raw["runs"][str(old)]["tta_score"] == pytest.approx(
        json.loads((run / "cv.json").read_text())["cv_score"], abs=1e-4)
    train(old / "config.yaml", out=old, resume=True, **QUIET)  # every fold is finished: only oof.csv, cv.json, calibration.json
    assert json.loads((old / "calibration.json").read_text())["fitted_on"] == "oof.csv"
    predict([old], out=tmp_path / "q.csv", workers=0, tta=False, **QUIET)


def test_written_probability_rows_sum_to_one_and_sklearn_reads_them_without_a_warning(kfold_log_loss, tmp_path):
    import warnings

    import numpy as np
    import pandas as pd
    from sklearn.metrics import log_loss

    data, run = kfold_log_loss
    predict([run], out=tmp_path / "p.csv", workers=0, **QUIET)
    for path in (tmp_path / "p.csv", tmp_path / "p_probs.csv", run / "oof.csv", run / "fold_0" / "val_probs.csv"):
        table = pd.read_csv(path)
        values = table[[c for c in table.columns if c in ("circle", "square", "triangle")]].to_numpy(dtype=np.float64)
        assert values.shape[1] == 3
        # Written with 6 significant digits, rows summed to 1 +- 2e-6 and sklearn's log_loss warned on comp's own files.
        assert np.abs(values.sum(1) - 1).max() < 1e-9, path
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            log_loss(np.arange(len(values)) % 3, values, labels=[0, 1, 2])
