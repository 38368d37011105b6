"""Every factor-suite network builds at 28, 32 and 64 px with 1 or 3 channels, via timm and comp."""

import pytest
import timm
import torch

from comp.config import ModelConfig
from comp.models.factory import build_model
from comp.models.heads import count_params
from comp.models.scratch import SCRATCH_MODELS

# Parameters with a 10-class classifier and 3 input channels (the table in comp/models/scratch.py).
PARAMS = {
    "scratch_cnn": 7_453_770, "scratch_vgg": 33_638_218, "scratch_vgg_bn": 33_642_442,
    "scratch_resnet18": 11_173_962, "scratch_resnet18_se": 11_264_074, "scratch_resnet18_cbam": 11_261_802,
    "scratch_resnet34": 21_282_122, "scratch_resnet_wide": 44_662_922, "scratch_resnet_small": 308_650,
    "scratch_vit_hybrid": 3_534_922, "scratch_cnn_small": 330_538, "scratch_cnn_small_bn": 330_730,
    "scratch_cnn_small_deep": 421_354,
}
# The studies' parameter counts on CIFAR-10 where they reported one.
STUDIES = {"scratch_cnn": 7.28e6, "scratch_vgg_bn": 32.86e6, "scratch_resnet18": 11.18e6}


def test_every_network_is_listed_and_pinned():
    assert set(SCRATCH_MODELS) == set(PARAMS)
    for name in SCRATCH_MODELS:
        assert timm.is_model(name)


@pytest.mark.parametrize("name", SCRATCH_MODELS)
def test_shapes_and_parameter_counts(name):
    with torch.device("meta"):  # counting needs no weight initialisation
        assert count_params(timm.create_model(name, num_classes=10)) == PARAMS[name]
    if name in STUDIES:
        assert abs(PARAMS[name] - STUDIES[name]) / STUDIES[name] < 0.03
    for chans in (1, 3):
        model = timm.create_model(name, num_classes=7, in_chans=chans).eval()
        for size in (28, 32, 64):
            with torch.inference_mode():
                assert model(torch.randn(2, chans, size, size)).shape == (2, 7), (chans, size)
    headless = timm.create_model(name, num_classes=0).eval()
    with torch.inference_mode():
        assert headless(torch.randn(2, 3, 32, 32)).shape == (2, headless.num_features)


def test_comp_factory_builds_scratch_networks_with_its_heads():
    model = build_model(ModelConfig(name="scratch_resnet_small", pretrained="none", head="V1"), 5).eval()
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 5)
    model.train()
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()  # gradients reach the stem
    assert model.backbone.stem[0].weight.grad is not None
