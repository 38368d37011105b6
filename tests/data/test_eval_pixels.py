"""One evaluation preprocessing for every consumer: validation during training, val_probs.csv,
`comp evaluate` and `comp predict` see the same pixels, on both input paths, cached or not."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from comp.config import load_config
from comp.data.competition import Split
from comp.data.loaders import make_loaders
from comp.engine.infer import decoded_batches
from comp.probs import read_probs
from tests.conftest import write_config

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _photos(root, n=12):
    """Non-square RGB images of assorted sizes, half JPEG, half PNG, two classes."""
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n):
        w, h = [(50, 37), (90, 64), (33, 80), (41, 41)][i % 4]
        p = root / f"{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
        labels.append(i % 2)
    return paths, labels


@pytest.mark.parametrize("cache", ["on", "off"])
@pytest.mark.parametrize("crop_pct", [0.8, 1.0])
def test_validation_batches_are_the_pixels_predict_sees(tmp_path, cache, crop_pct):
    paths, labels = _photos(tmp_path)
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"cache": cache, "cache_dir": str(tmp_path / "cache")}))
    dcfg = {"image_size": 24, "mean": MEAN, "std": STD, "crop_pct": crop_pct}
    train, val = Split(paths[:6], labels[:6]), Split(paths[6:], labels[6:])
    _, val_batches, _ = make_loaders(cfg, dcfg, train, val, torch.device("cpu"))
    seen = torch.cat([x for x, _, _ in val_batches])

    decoded = torch.cat([x for x, _, _ in decoded_batches(val.paths, 24, crop_pct, cfg.data, 4, 0)])
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    expected = (decoded.float() * (1 / 255.0)).sub_(mean).mul_(1 / std)
    # The tensor path used to validate on an upsampled center zoom of the crop_pct=1 cache.
    assert torch.equal(seen.contiguous(), expected), (seen - expected).abs().max()


def test_cached_and_uncached_prediction_decode_the_same_pixels(tmp_path):
    paths, _ = _photos(tmp_path)
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"cache_dir": str(tmp_path / "cache")}))
    on = cfg.data.model_copy(update={"cache": "on"})
    off = cfg.data.model_copy(update={"cache": "off"})
    a = torch.cat([x for x, _, _ in decoded_batches(paths, 24, 0.875, on, 4, 0)])
    b = torch.cat([x for x, _, _ in decoded_batches(paths, 24, 0.875, off, 4, 0)])
    assert a.dtype == b.dtype == torch.uint8 and torch.equal(a, b)  # PIL vs cv2 resizes used to differ


@pytest.mark.parametrize("cache", ["on", "off"])
def test_best_val_acc_is_the_accuracy_of_val_probs(tmp_path, cache):
    from comp.data.synthetic import make_competition
    from comp.engine.fit import fit

    data = make_competition(tmp_path / "c", classes=3, per_class=12, size=40)
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(data), "cache": cache, "crop_pct": 0.7,
                                                              "val_fraction": 0.3}, train={"epochs": 2}))
    summary = fit(cfg, tmp_path / "run", log=lambda s: None)
    ids, probs, classes, meta = read_probs(tmp_path / "run" / "val_probs.csv")
    y = torch.tensor([classes.index(c) for c in meta["label"]])
    acc = (probs.argmax(1) == y).sum().item() / len(y)
    assert summary["best_val_acc"] == pytest.approx(acc, abs=1e-9)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["val_images"] == len(ids)
