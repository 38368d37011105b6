"""Temperature scaling: fitted on held-out predictions, stored with the run, applied by predict."""

import json

import pytest
import torch

from comp.calibration import apply_temperature, fit_temperature, nll
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
