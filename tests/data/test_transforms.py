import numpy as np
import pytest
import torch
from PIL import Image

from comp.data.transforms import eval_preset, eval_resize_crop, train_preset


@pytest.mark.parametrize("hw", [(20, 30), (300, 200), (64, 64)])
def test_presets_give_normalized_square_tensors(hw):
    ramp = np.linspace(0, 255, hw[1])[None, :, None] + np.random.default_rng(0).normal(0, 8, (*hw, 3))
    img = np.broadcast_to(ramp, (*hw, 3)).clip(0, 255).astype(np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    train = train_preset(size=48, mean=mean, std=std, color_jitter=None)
    train.set_random_seed(0)
    for tf in (train, eval_preset(size=48, mean=mean, std=std, crop_pct=0.875)):
        x = tf(image=img)["image"]
        assert x.shape == (3, 48, 48) and x.dtype == torch.float32
        pixels = x * s + m  # back to [0, 1] only if normalized with this mean and std
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.max() - pixels.min() > 0.5
    # eval = the one eval preprocessing, then (x / 255 - mean) / std
    expected = torch.from_numpy(eval_resize_crop(img, 48, 0.875)).permute(2, 0, 1).float() / 255
    assert torch.allclose(x, (expected - m) / s, atol=1e-5)


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
