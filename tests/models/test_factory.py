import numpy as np
import pytest
import timm
import torch
from PIL import Image

from comp.config import DataConfig, ModelConfig
from comp.errors import UserError
from comp.models.factory import build_model, data_config


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(UserError, match=r"unknown model 'resnet5O'.*did you mean .*resnet50"):
        build_model(ModelConfig(name="resnet5O", pretrained="none"), 3)


def test_torchvision_weight_tags_resolve():
    for name in ("resnet34.tv_in1k", "resnet50.tv2_in1k", "resnet101.tv2_in1k", "resnext50_32x4d.tv2_in1k", "resnext101_32x8d.tv2_in1k"):
        assert name in timm.list_pretrained(name.split(".")[0] + "*")


def test_hub_failure_offline_says_how_to_pass_a_file(monkeypatch):
    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, **kw)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(UserError, match=r"model.pretrained=/path/to/weights.pth"):
        build_model(ModelConfig(name="resnet18.tv_in1k", pretrained="hub"), 3)


def test_local_weights_file_is_loaded(tmp_path):
    src = timm.create_model("test_resnet", num_classes=1000)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    model = build_model(ModelConfig(name="test_resnet", pretrained=str(path)), 4)
    assert torch.equal(model.backbone.conv1[0].weight, src.conv1[0].weight)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_weights_for_another_architecture_are_refused(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(UserError, match=r"do not fit test_resnet"):
        build_model(ModelConfig(name="test_resnet", pretrained=str(path)), 4)
    with pytest.raises(UserError, match="weights file not found"):
        build_model(ModelConfig(name="test_resnet", pretrained=str(tmp_path / "none.pth")), 4)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read weights file"):
        build_model(ModelConfig(name="test_resnet", pretrained=str(tmp_path / "junk.pth")), 4)


def test_bundled_only_for_lite_models():
    with pytest.raises(UserError, match="bundled exists only for"):
        build_model(ModelConfig(name="test_resnet", pretrained="bundled"), 3)


def test_data_config_from_pretrained_cfg_and_overrides():
    model = build_model(ModelConfig(name="tf_efficientnet_lite0", pretrained="none"), 3)
    d = data_config(DataConfig(), model)
    assert d == {"image_size": 224, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 0.875}
    d = data_config(DataConfig(image_size=64, crop_pct=1.0), model)
    assert (d["image_size"], d["crop_pct"]) == (64, 1.0)


def test_bundled_lite0_recognises_real_photos():
    """The position mapping of the bundled weights is right: ImageNet classes of sklearn's photos."""
    from sklearn.datasets import load_sample_image

    from comp.data.transforms import eval_preset

    model = build_model(ModelConfig(name="tf_efficientnet_lite0", pretrained="bundled", head="V0"), 1000)
    full = timm.create_model("tf_efficientnet_lite0")
    full.load_state_dict({**{k: v for k, v in model.backbone.state_dict().items()}, **_classifier(model)}, strict=True)
    full.eval()
    d = data_config(DataConfig(), model)
    tf = eval_preset(size=d["image_size"], mean=d["mean"], std=d["std"], crop_pct=d["crop_pct"])
    top5 = {}
    for name in ("china.jpg", "flower.jpg"):
        x = tf(image=np.asarray(Image.fromarray(load_sample_image(name))))["image"][None]
        with torch.no_grad():
            top5[name] = full(x).topk(5).indices[0].tolist()
    assert top5["flower.jpg"][0] == 985  # daisy
    assert {497, 663, 442} & set(top5["china.jpg"][:3])  # church, monastery, bell cote


def _classifier(model):
    from comp.models.weights import bundled_state_dict

    full = timm.create_model("tf_efficientnet_lite0")
    sd = bundled_state_dict("tf_efficientnet_lite0", full)
    return {k: v for k, v in sd.items() if k.startswith("classifier.")}


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "resnet18"])
@pytest.mark.parametrize("head", ["V0", "V1"])
def test_heads_fit_backbones_whose_head_widens_the_pooled_features(name, head):
    """MobileNetV3 pools 288 channels and its conv head widens them to 1024 (timm's head_hidden_size)."""
    model = build_model(ModelConfig(name=name, pretrained="none", head=head), num_classes=7, pretrained=False).eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        assert model(x).shape == (2, 7)
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.num_features)
