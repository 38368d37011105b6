"""Imbalanced classes: class-weighted / focal loss and the class-balanced sampler."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.utils.class_weight import compute_class_weight
from timm.loss import SoftTargetCrossEntropy

from comp.config import load_config
from comp.data.competition import Split
from comp.data.loaders import make_loaders
from comp.data.sampling import EpochBatchSampler, balanced_order
from comp.data.synthetic import make_competition
from comp.engine.fit import fit
from comp.tasks.losses import ClassWeightedLoss, class_weights
from comp.errors import UserError
from tests.conftest import write_config
from tests.engine.test_crash_safety import DETERMINISTIC, assert_resume_is_exact

COUNTS = [30, 9, 4]  # 7.5 : 1


@pytest.fixture
def skewed(tmp_path: Path) -> Path:
    """3 classes with 30 / 9 / 4 training images and a balanced test set."""
    return make_competition(tmp_path / "skewed", classes=3, per_class=COUNTS, test_per_class=4, size=32)


# -- the loss ---------------------------------------------------------------------------------


def test_unweighted_loss_is_torch_and_timm_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 5, generator=g), torch.randint(0, 5, (16,), generator=g)
    soft = torch.softmax(torch.randn(16, 5, generator=g), 1)
    for ls in (0.0, 0.1):
        assert torch.allclose(ClassWeightedLoss(5, label_smoothing=ls)(logits, y), nn.CrossEntropyLoss(label_smoothing=ls)(logits, y), atol=1e-6)
    assert torch.allclose(ClassWeightedLoss(5)(logits, soft), SoftTargetCrossEntropy()(logits, soft), atol=1e-6)
    w = torch.tensor([3.0, 1.0, 0.5, 2.0, 1.0])
    assert torch.allclose(ClassWeightedLoss(5, w)(logits, y), nn.CrossEntropyLoss(weight=w)(logits, y), atol=1e-6)
    # One-hot soft targets are the same loss as their indices, weighted or not.
    onehot = torch.nn.functional.one_hot(y, 5).float()
    assert torch.allclose(ClassWeightedLoss(5, w)(logits, onehot), ClassWeightedLoss(5, w)(logits, y), atol=1e-6)


def test_focal_loss_down_weights_confident_images():
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.0]])  # a confident right image and an unsure one
    y = torch.tensor([0, 0])
    ce = ClassWeightedLoss(2)
    focal = ClassWeightedLoss(2, gamma=2.0)
    assert torch.allclose(ClassWeightedLoss(2, gamma=0.0)(logits, y), ce(logits, y))
    p = torch.softmax(logits, 1)[:, 0]
    expected = (-(1 - p) ** 2 * p.log()).mean()
    assert torch.allclose(focal(logits, y), expected, atol=1e-6)
    # The confident image's share of the loss shrinks under the focal term.
    share = lambda loss: loss(logits[:1], y[:1]) / loss(logits[1:], y[1:])  # noqa: E731
    assert share(focal) < share(ce) / 10


def test_balanced_weights_are_sklearns_and_user_weights_are_checked():
    labels = [0] * 30 + [1] * 9 + [2] * 4
    w = class_weights("balanced", labels, ["a", "b", "c"])
    assert np.allclose(w.numpy(), compute_class_weight("balanced", classes=np.arange(3), y=np.array(labels)))
    assert class_weights("none", labels, ["a", "b", "c"]) is None
    assert class_weights([1, 2, 3], labels, ["a", "b", "c"]).tolist() == [1, 2, 3]
    assert class_weights({"c": 4.0}, labels, ["a", "b", "c"]).tolist() == [1, 1, 4]
    # A class without training images keeps weight 1 instead of breaking sklearn.
    assert class_weights("balanced", [0, 0, 1], ["a", "b", "c"]).tolist()[2] == 1
    with pytest.raises(UserError, match="2 weights for 3 classes"):
        class_weights([1, 2], labels, ["a", "b", "c"])
    with pytest.raises(UserError, match="unknown classes"):
        class_weights({"d": 2.0}, labels, ["a", "b", "c"])


@pytest.mark.parametrize("cache", ["on", "off"])
@pytest.mark.parametrize("mixup", [0.0, 0.4])
def test_class_weights_reach_the_loss_on_both_input_paths(tmp_path, skewed, monkeypatch, cache, mixup):
    seen = []
    real = ClassWeightedLoss.forward

    def spy(self, logits, target):
        seen.append((self.weight.clone(), target.ndim))
        return real(self, logits, target)

    monkeypatch.setattr(ClassWeightedLoss, "forward", spy)
    cfg = load_config(write_config(
        tmp_path / "c.yaml", data={"dir": str(skewed), "cache": cache, "batch_size": 8, "val_fraction": 0.2},
        train={"class_weights": "balanced", "mixup": mixup, "seed": 0},
    ))
    summary = fit(cfg, tmp_path / "run", log=lambda s: None)
    train_labels = [0] * 24 + [1] * 7 + [2] * 3  # the stratified 80 % of 30 / 9 / 4
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(train_labels))
    assert seen and all(np.allclose(w.numpy(), expected, rtol=1e-5) for w, _ in seen)
    assert np.allclose(summary["class_weights"], expected, rtol=1e-5)
    assert {nd for _, nd in seen} == ({2} if mixup else {1})  # mixup's soft targets reach the same loss


def test_mixup_with_an_odd_batch_size_trains(tmp_path, shapes):
    """timm's Mixup skips odd batches; their index targets must still reach a loss that takes them."""
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes), "batch_size": 7}, train={"mixup": 0.4, "epochs": 1}))
    summary = fit(cfg, tmp_path / "run", log=lambda s: None)
    assert summary["epochs_run"] == 1


def test_wrong_number_of_weights_is_refused_before_any_write(tmp_path, skewed):
    from typer.testing import CliRunner

    from comp.cli import app
    from tests.conftest import one_line_error

    config = write_config(tmp_path / "c.yaml", train={"class_weights": [1.0, 2.0]})
    result = CliRunner().invoke(app, ["train", str(config), "--data", str(skewed), "--out", str(tmp_path / "run")])
    one_line_error(result, "2 weights for 3 classes")
    assert not (tmp_path / "run").exists()


# -- the sampler ------------------------------------------------------------------------------


def test_balanced_order_fills_each_class_equally_and_is_reproducible():
    labels = torch.tensor([0] * 50 + [1] * 10 + [2] * 3)
    order = balanced_order(labels, seed=0, epoch=0)
    assert len(order) == len(labels)
    counts = torch.bincount(labels[order], minlength=3)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 63  # 21 each
    # A rare image repeats 7 times (21 slots / 3 images), the common class shows 21 distinct images.
    reps = torch.bincount(order, minlength=63)
    assert reps[60:].tolist() == [7, 7, 7] and reps[:50].max() == 1 and (reps[:50] == 1).sum() == 21
    assert torch.equal(order, balanced_order(labels, seed=0, epoch=0))
    assert not torch.equal(order, balanced_order(labels, seed=0, epoch=1))
    assert not torch.equal(order, balanced_order(labels, seed=1, epoch=0))


def test_ddp_ranks_split_the_balanced_epoch_of_one_process():
    labels = [0] * 40 + [1] * 8 + [2] * 5
    one = EpochBatchSampler(len(labels), 8, seed=3, drop_last=True, balance=labels)
    ranks = [EpochBatchSampler(len(labels), 4, seed=3, drop_last=True, rank=r, world=2, balance=labels) for r in range(2)]
    for s in [one, *ranks]:
        s.set_epoch(2)
    merged = [a + b for a, b in zip(*ranks)]
    assert merged == list(one)


@pytest.mark.parametrize("cache", ["on", "off"])
def test_the_training_loaders_draw_balanced_epochs(tmp_path, skewed, cache):
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(skewed), "cache": cache, "batch_size": 8, "sampler": "balanced"}))
    from comp.data.competition import open_competition

    comp = open_competition(skewed)
    dcfg = {"image_size": 32, "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0}
    train, _, _ = make_loaders(cfg, dcfg, comp.train, Split([], []), torch.device("cpu"))
    epochs = []
    for epoch in (0, 0, 1):
        train.set_epoch(epoch)
        epochs.append(torch.cat([y for _, y, _ in train]))
    counts = torch.bincount(epochs[0], minlength=3)
    assert counts.max() - counts.min() <= 3  # 40 of 43 slots (drop_last), 14 or 15 each before the drop
    assert torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[0], epochs[2])


@pytest.mark.parametrize("cache", ["on", "off"])
def test_resume_mid_epoch_with_the_balanced_sampler_is_exact(tmp_path, skewed, monkeypatch, cache):
    cfg = load_config(write_config(
        tmp_path / "c.yaml", data={"dir": str(skewed), "cache": cache, "batch_size": 8, "sampler": "balanced"},
        train={**DETERMINISTIC, "epochs": 2, "checkpoint_minutes": 0, "class_weights": "balanced", "loss": "focal"},
    ))
    # 39 train images / batch 8 = 4 batches per epoch: Ctrl-C during the 2nd batch of epoch 2.
    assert_resume_is_exact(cfg, tmp_path, monkeypatch, at_forward=4 + 2, partial_batches=2)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["sampler"] == "balanced" and len(summary["class_weights"]) == 3


def test_data_check_reports_the_imbalance_and_suggests_the_switches(skewed, shapes):
    from typer.testing import CliRunner

    from comp.cli import app

    out = CliRunner().invoke(app, ["data", "check", str(skewed)]).output
    assert "largest / smallest class 7.5:1" in out and "data.sampler=balanced" in out and "train.class_weights=balanced" in out
    out = CliRunner().invoke(app, ["data", "check", str(shapes)]).output
    assert "largest / smallest class 1.0:1" in out and "data.sampler" not in out
