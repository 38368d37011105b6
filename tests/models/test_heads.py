import pytest
import torch
import torch.nn as nn

from comp.config import HeadConfig, ModelConfig
from comp.models.factory import build_model
from comp.models.heads import backbone_stages, build_head, count_params


@pytest.mark.parametrize("spec", ["V0", "V1", "V2", "V3", "V4", HeadConfig(hidden=[32, 16], activation="gelu", bn=True, dropout=0.1)])
def test_head_shapes(spec):
    head = build_head(spec, 40, 7)
    assert head(torch.randn(5, 40)).shape == (5, 7)


def test_v1_is_the_nycu_head():
    head = build_head("V1", 2048, 100)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert (head[0].in_features, head[0].out_features, head[2].p, head[3].out_features) == (2048, 500, 0.5, 100)


def test_dropout_override_replaces_every_dropout():
    head = build_head("V3", 16, 3, dropout=0.05)
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.05, 0.05]


def _model(**kw):
    return build_model(ModelConfig(name="test_resnet", pretrained="none", **kw), num_classes=5)


def test_classifier_follows_timm_interface():
    model = _model(head="V2")
    x = torch.randn(4, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.ndim == 4
    assert model.forward_head(feats, pre_logits=True).shape == (4, model.num_features)
    logits = model(x)
    assert logits.shape == (4, 5) and torch.isfinite(logits).all()
    model.reset_classifier(9)
    assert model(x).shape == (4, 9)
    assert model.get_classifier() is model.head


def test_every_parameter_gets_a_gradient():
    model = _model(head="V4")
    model(torch.randn(4, 3, 32, 32)).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_freezing_head_only_and_last_stages():
    full = _model()
    stages = backbone_stages(full.backbone)
    assert len(stages) >= 3
    head_only = _model(trainable="head")
    assert count_params(head_only, trainable_only=True) == count_params(head_only.head)
    last1 = _model(trainable=1)
    trainable_backbone = {n.split(".")[0] for n, p in last1.backbone.named_parameters() if p.requires_grad}
    last_stage_roots = {n.split(".")[0] for n in stages[-1]}
    assert trainable_backbone and trainable_backbone <= last_stage_roots
    assert count_params(head_only, True) < count_params(last1, True) < count_params(full, True) == count_params(full)


def test_frozen_batchnorm_keeps_running_stats():
    model = _model(trainable="head")
    before = {k: v.clone() for k, v in model.backbone.state_dict().items() if "running_mean" in k}
    assert before
    model.train()
    model(torch.randn(8, 3, 32, 32) * 5 + 3)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
