import numpy as np
import pytest
import torch

from comp.data.transforms import eval_preset, train_preset


@pytest.mark.parametrize("hw", [(20, 30), (300, 200), (64, 64)])
def test_presets_give_normalized_square_tensors(hw):
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    train = train_preset(size=48, mean=mean, std=std)
    train.set_random_seed(0)
    for tf in (train, eval_preset(size=48, mean=mean, std=std, crop_pct=0.875)):
        x = tf(image=img)["image"]
        assert x.shape == (3, 48, 48) and x.dtype == torch.float32
        assert -3 < float(x.mean()) < 3


def test_eval_is_deterministic_and_normalizes():
    img = np.full((40, 40, 3), 255, dtype=np.uint8)
    x = eval_preset(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)(image=img)["image"]
    assert torch.allclose(x, torch.ones_like(x))


def test_train_preset_seeded_is_reproducible_and_random():
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    outs = []
    for _ in range(2):
        tf = train_preset(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
        tf.set_random_seed(7)
        outs.append([tf(image=img)["image"] for _ in range(2)])
    assert torch.equal(outs[0][0], outs[1][0])
    assert not torch.equal(outs[0][0], outs[0][1])
