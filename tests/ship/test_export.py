"""`comp export`: ONNX and TorchScript models, uint8 RGB in, probabilities out, equal to comp predict."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from comp.cli import app
from comp.data.competition import open_competition
from comp.data.synthetic import make_competition
from comp.engine.infer import decode_loader
from tests.conftest import one_line_error, write_config

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(competition, 2-fold run, comp predict --no-tta probabilities of its test set)."""
    root = tmp_path_factory.mktemp("export")
    data = make_competition(root / "data", classes=3, per_class=12, test_per_class=4, size=32)
    config = write_config(root / "c.yaml", train={"epochs": 1, "seed": 0})
    assert runner.invoke(app, ["train", str(config), "--data", str(data), "--out", str(root / "run"), "--folds", "2"]).exit_code == 0
    result = runner.invoke(app, ["predict", str(root / "run"), "--no-tta", "--out", str(root / "pred.csv")])
    assert result.exit_code == 0, result.output
    return data, root / "run", root / "pred_probs.csv"


def _test_batch(data: Path, crop_pct: float) -> tuple[torch.Tensor, list[str]]:
    """Every test image as uint8 (N, 3, 32, 32), resized and cropped as comp's eval preprocessing does, and their ids."""
    comp = open_competition(data)
    x, pos, _ = next(iter(decode_loader(comp.test_paths, 32, crop_pct, batch_size=64, workers=0)))
    return x, [comp.test_ids[i] for i in pos.tolist()]


def _comp_probs(table: Path, ids: list[str]) -> np.ndarray:
    df = pd.read_csv(table, dtype={"id": str}).set_index("id")
    return df.loc[ids].to_numpy(dtype=np.float64)


def test_onnx_model_matches_comp_predict_and_carries_its_classes(trained, tmp_path):
    import onnx
    import onnxruntime

    data, run, probs_table = trained
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max |onnx - PyTorch|" in result.output
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["classes"].split("\n") == ["circle", "square", "triangle"] and meta["image_size"] == "32"
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x, ids = _test_batch(data, float(meta["crop_pct"]))
    for batch in (x, x[:3]):  # the batch dimension is dynamic
        got = session.run(["probs"], {"images": batch.numpy()})[0]
        assert got.shape == (len(batch), 3) and np.allclose(got.sum(1), 1, atol=1e-5)
    got = session.run(["probs"], {"images": x.numpy()})[0]
    assert np.abs(got - _comp_probs(probs_table, ids)).max() < 1e-4  # = comp predict --no-tta (6-digit table)


def test_torchscript_loads_with_torch_alone_and_matches(trained, tmp_path):
    data, run, probs_table = trained
    out = tmp_path / "model.pt"
    result = runner.invoke(app, ["export", str(run / "fold_1"), "--format", "torchscript", "--out", str(out)])
    assert result.exit_code == 0, result.output
    x, ids = _test_batch(data, 0.95)  # test_resnet's eval crop (the crop_pct extra file says so too)
    torch.save(x, tmp_path / "x.pt")
    # A Python that imports torch only: comp and timm are blocked.
    script = (
        "import sys; sys.modules['comp'] = None; sys.modules['timm'] = None\n"
        "import torch\n"
        "extra = {'classes.txt': '', 'image_size': '', 'crop_pct': ''}\n"
        f"m = torch.jit.load({str(out)!r}, _extra_files=extra)\n"
        f"p = m(torch.load({str(tmp_path / 'x.pt')!r})).detach()\n"
        f"torch.save(p, {str(tmp_path / 'p.pt')!r})\n"
        "print(extra['classes.txt'].decode().split(chr(10)), extra['image_size'].decode(), extra['crop_pct'].decode())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert "['circle', 'square', 'triangle'] 32 0.95" in done.stdout
    got = torch.load(tmp_path / "p.pt")
    # The fold alone is not the 2-fold ensemble of comp predict: compare with the fold's own predict.
    assert runner.invoke(app, ["predict", str(run / "fold_1"), "--no-tta", "--out", str(tmp_path / "f1.csv")]).exit_code == 0
    assert np.abs(got.numpy() - _comp_probs(tmp_path / "f1_probs.csv", ids)).max() < 1e-4


def test_export_refusals(trained, tmp_path, monkeypatch):
    _, run, _ = trained
    one_line_error(runner.invoke(app, ["export", str(run), "--format", "tflite", "--out", str(tmp_path / "m")]), "--format")
    one_line_error(runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(tmp_path)]), "is a folder")
    one_line_error(runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(tmp_path / "no" / "m.onnx")]), "does not exist")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    one_line_error(runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]), "comp[export]")
    assert list(tmp_path.iterdir()) == []
