"""Networks of the factor suite, trained from scratch, registered as timm models.

`timm.create_model("scratch_resnet18", num_classes=10, in_chans=1)` builds one like any timm model,
so `comp train` and `comp factors` use them through the same factory (`model.name`,
`model.pretrained: none`). Each follows timm's model interface (`forward_features`,
`forward_head(pre_logits=...)`, `num_features`, `reset_classifier`, `pretrained_cfg`), and ends in
adaptive pooling, so 28, 32 and 64 px inputs with 1 or 3 channels work without hand-edited
flatten sizes.

| name | what it is | params (10 classes, 3 ch) | the studies' model |
|---|---|---|---|
| scratch_cnn | baseline: 3 double-conv blocks (64-128-256), no BN, MLP 4096-1536 | 7.45M | baseline CNN 7.28M |
| scratch_vgg / scratch_vgg_bn | VGG-16 conv stack (13 convs), MLP 4096-4096; without / with BN | 33.64M | deep VGG 32.86M |
| scratch_resnet18 | CIFAR ResNet-18 (3x3 stem, no max-pool) | 11.17M | ResNet-18-like 11.18M |
| scratch_resnet18_se, _cbam | the same with SE / CBAM attention in every block | 11.26M / 11.26M | SE, CBAM |
| scratch_resnet34 | CIFAR ResNet-34 | 21.28M | ResNet34 scratch |
| scratch_resnet_wide | ResNet-18 layout at 2x width (128-1024) | 44.66M | 17-layer ResNet 53.24M |
| scratch_vit_hybrid | conv stem to 1/4 resolution, 6 transformer blocks (dim 256) | 3.53M | ViT-like block |
| scratch_resnet_small | 3-stage ResNet (32-64-128, 1 block each) | 0.31M | - |
| scratch_cnn_small, _bn, _deep | CPU-sized CNNs of the Fashion-MNIST suite: 4 convs (32-64) without / with BN; 6 convs (32-64-128) with BN | 0.33M / 0.33M / 0.42M | - |

Params are measured by `tests/models/test_scratch.py`, which pins them.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from timm.layers import SEModule
from timm.layers.cbam import CbamModule
from timm.models import register_model
from timm.models.vision_transformer import Block

# Data defaults for 32 px natural images; `comp factors` sets each dataset's own mean/std.
_CFG = {
    "input_size": (3, 32, 32), "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616),
    "crop_pct": 1.0, "interpolation": "bilinear", "num_classes": 10, "first_conv": "stem", "classifier": "fc",
}


class _TimmInterface(nn.Module):
    """The parts of timm's model interface shared by every scratch net.

    Subclasses set `self.pre_logits` (pooled features -> num_features) and implement
    `forward_features`; pooling is `self.pool` over the feature map (or the tokens).
    """

    num_features: int

    def _init_head(self, num_classes: int, drop_rate: float) -> None:
        self.num_classes = num_classes
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.pretrained_cfg = dict(_CFG)
        self.default_cfg = self.pretrained_cfg

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map (B, C, h, w) -> (B, num_features) if pre_logits else logits (B, num_classes)."""
        x = self.pre_logits(self.pool(x))
        return x if pre_logits else self.fc(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


# -- VGG-style stacks ---------------------------------------------------------------------------


class ConvNet(_TimmInterface):
    """Conv3x3 stacks with max-pools ("M"), then an MLP on `pool_size` x `pool_size` pooled maps."""

    def __init__(
        self, layers: Sequence[Union[int, str]], mlp: Sequence[int] = (), *, pool_size: int = 1, bn: bool = True,
        in_chans: int = 3, num_classes: int = 10, drop_rate: float = 0.0, mlp_drop: float = 0.5, **_,
    ):
        super().__init__()
        mods: list[nn.Module] = []
        c = in_chans
        for v in layers:
            if v == "M":
                mods.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: 28 -> 14 -> 7 -> 4 -> 2 -> 1
                continue
            mods += [nn.Conv2d(c, int(v), 3, padding=1, bias=not bn)]
            mods += [nn.BatchNorm2d(int(v))] if bn else []
            mods.append(nn.ReLU(inplace=True))
            c = int(v)
        self.stem = mods[0]
        self.features = nn.Sequential(*mods[1:])
        self.pool_size = pool_size
        mlp_layers: list[nn.Module] = [nn.Flatten()]
        width = c * pool_size * pool_size
        for h in mlp:
            mlp_layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(mlp_drop)]
            width = h
        self.pre_logits = nn.Sequential(*mlp_layers)
        self.num_features = width
        self._init_head(num_classes, drop_rate)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x, self.pool_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, C, H/2^k, W/2^k)."""
        return self.features(self.stem(x))


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


# -- residual networks --------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs with BN) with optional SE or CBAM attention before the add."""

    def __init__(self, cin: int, cout: int, stride: int = 1, attn: Optional[str] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.attn = {"se": lambda: SEModule(cout, rd_ratio=1 / 16), "cbam": lambda: CbamModule(cout, rd_ratio=1 / 16)}.get(
            attn, nn.Identity
        )()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.attn(self.bn2(self.conv2(out)))
        return self.act(out + self.shortcut(x))


class ResNet(_TimmInterface):
    """CIFAR-style ResNet: 3x3 stride-1 stem, no max-pool, stages of `BasicBlock`s."""

    def __init__(
        self, blocks: Sequence[int], widths: Sequence[int], *, attn: Optional[str] = None,
        in_chans: int = 3, num_classes: int = 10, drop_rate: float = 0.0, **_,
    ):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, c = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(c if j == 0 else w, w, stride if j == 0 else 1, attn) for j in range(n)]))
            c = w
        self.stages = nn.Sequential(*stages)
        self.pre_logits = nn.Identity()
        self.num_features = c
        self._init_head(num_classes, drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, C, H / 2^(stages-1), W / 2^(stages-1))."""
        return self.stages(self.stem(x))


# -- conv stem + transformer blocks ---------------------------------------------------------------


class HybridViT(_TimmInterface):
    """A conv stem down to 1/4 resolution, then timm ViT blocks over the positions as tokens.

    Position comes from a depthwise 3x3 conv on the token grid (a conditional position encoding),
    which works at any input size where a learned table would not.
    """

    def __init__(self, dim: int = 256, depth: int = 6, heads: int = 8, *, in_chans: int = 3, num_classes: int = 10, drop_rate: float = 0.0, **_):
        super().__init__()

        def conv(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]

        self.stem = nn.Sequential(*conv(in_chans, dim // 4, 1), *conv(dim // 4, dim // 2, 2), *conv(dim // 2, dim, 2))
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio=2.0) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.pre_logits = nn.Identity()
        self.num_features = dim
        self._init_head(num_classes, drop_rate)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> tokens (B, H/4 * W/4, dim)."""
        x = self.stem(x)
        x = x + self.pos(x)
        return self.norm(self.blocks(x.flatten(2).transpose(1, 2)))


# -- registry -------------------------------------------------------------------------------------


def _make(cls, *args, **kwargs):
    kwargs.pop("pretrained", None)
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    kwargs.pop("drop_path_rate", None)
    return cls(*args, **kwargs)


@register_model
def scratch_cnn(**kw) -> ConvNet:
    return _make(ConvNet, [64, 64, "M", 128, 128, "M", 256, 256, "M"], (1536,), pool_size=4, bn=False, **kw)


@register_model
def scratch_cnn_small(**kw) -> ConvNet:
    return _make(ConvNet, [32, 32, "M", 64, 64, "M"], (256,), pool_size=4, bn=False, mlp_drop=0.25, **kw)


@register_model
def scratch_cnn_small_bn(**kw) -> ConvNet:
    return _make(ConvNet, [32, 32, "M", 64, 64, "M"], (256,), pool_size=4, bn=True, mlp_drop=0.25, **kw)


@register_model
def scratch_cnn_small_deep(**kw) -> ConvNet:
    return _make(ConvNet, [32, 32, "M", 64, 64, "M", 128, 128, "M"], (256,), pool_size=2, bn=True, mlp_drop=0.25, **kw)


@register_model
def scratch_vgg(**kw) -> ConvNet:
    return _make(ConvNet, VGG16, (4096, 4096), bn=False, **kw)


@register_model
def scratch_vgg_bn(**kw) -> ConvNet:
    return _make(ConvNet, VGG16, (4096, 4096), bn=True, **kw)


@register_model
def scratch_resnet18(**kw) -> ResNet:
    return _make(ResNet, (2, 2, 2, 2), (64, 128, 256, 512), **kw)


@register_model
def scratch_resnet18_se(**kw) -> ResNet:
    return _make(ResNet, (2, 2, 2, 2), (64, 128, 256, 512), attn="se", **kw)


@register_model
def scratch_resnet18_cbam(**kw) -> ResNet:
    return _make(ResNet, (2, 2, 2, 2), (64, 128, 256, 512), attn="cbam", **kw)


@register_model
def scratch_resnet34(**kw) -> ResNet:
    return _make(ResNet, (3, 4, 6, 3), (64, 128, 256, 512), **kw)


@register_model
def scratch_resnet_wide(**kw) -> ResNet:
    return _make(ResNet, (2, 2, 2, 2), (128, 256, 512, 1024), **kw)


@register_model
def scratch_resnet_small(**kw) -> ResNet:
    return _make(ResNet, (1, 1, 1), (32, 64, 128), **kw)


@register_model
def scratch_vit_hybrid(**kw) -> HybridViT:
    return _make(HybridViT, **kw)


SCRATCH_MODELS = (
    "scratch_cnn", "scratch_cnn_small", "scratch_cnn_small_bn", "scratch_cnn_small_deep", "scratch_vgg", "scratch_vgg_bn", "scratch_resnet18", "scratch_resnet18_se", "scratch_resnet18_cbam",
    "scratch_resnet34", "scratch_resnet_wide", "scratch_resnet_small", "scratch_vit_hybrid",
)
