"""Test-time augmentation views as whole-batch tensor ops (airbench-style), plus their parsing.

Every view takes the normalized batch the model would see, (B, 3, S, S), and returns a batch the
model can take: the test images are decoded once and each view is a cheap tensor operation.

View names (comma-separated on the command line, a list in `tta.views`):

| name | view |
|---|---|
| `identity` | the eval image |
| `hflip`, `vflip` | mirrored left-right / top-bottom |
| `rot<D>` | rotated by D degrees (e.g. `rot10`, `rot-10`), reflection at the borders |
| `crop<F>` | center crop of fraction F (e.g. `crop0.9`) resized back to S: a zoom-in |
| `scale<F>` | the whole image resized to S*F (e.g. `scale1.25`): the model runs at another resolution |
| `hflip+<view>` | a view of the mirrored image (e.g. `hflip+rot10`) |
"""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from comp.errors import UserError

View = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_VIEWS = ("identity", "hflip")
_NUM = r"(-?\d+(?:\.\d+)?)"
_GRAMMAR = "identity, hflip, vflip, rot<deg>, crop<frac>, scale<factor>, hflip+<view>"


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a batch (B, C, H, W) by `degrees` counter-clockwise about the center."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def center_zoom(x: torch.Tensor, frac: float) -> torch.Tensor:
    """Center crop `frac` of each side of (B, C, H, W) and resize back to (H, W)."""
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=frac > 1)


def rescale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Resize (B, C, H, W) to (B, C, round(H*factor), round(W*factor))."""
    h, w = x.shape[-2:]
    size = (max(8, round(h * factor)), max(8, round(w * factor)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=factor < 1)


def parse_view(name: str) -> View:
    """The tensor function for one view name (see the module docstring)."""
    name = name.strip().lower()
    if name.startswith("hflip+"):
        inner = parse_view(name[len("hflip+") :])
        return lambda x: inner(x.flip(3))
    if name in ("identity", "id", "none"):
        return lambda x: x
    if name == "hflip":
        return lambda x: x.flip(3)
    if name == "vflip":
        return lambda x: x.flip(2)
    m = re.fullmatch(r"(rot|crop|scale)" + _NUM, name)
    if m:
        kind, value = m.group(1), float(m.group(2))
        if kind == "rot" and abs(value) <= 180:
            return lambda x: rotate(x, value)
        if kind == "crop" and 0.2 <= value <= 1:
            return lambda x: center_zoom(x, value)
        if kind == "scale" and 0.25 <= value <= 4:
            return lambda x: rescale(x, value)
    raise UserError(f"unknown TTA view {name!r}; use {_GRAMMAR} (e.g. --tta-views identity,hflip,rot10)")


def parse_views(names: Sequence[str] | str) -> list[str]:
    """Validate view names ("a,b" or a list) and return them normalized, in order, without repeats."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    out: list[str] = []
    for n in names:
        parse_view(n)
        n = n.strip().lower()
        if n not in out:
            out.append(n)
    if not out:
        raise UserError(f"no TTA views given; use {_GRAMMAR}")
    return out
