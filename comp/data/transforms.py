"""Albumentations presets for the file path: train and eval, keyword-only like torchvision's presets.

Size, mean and std come from the backbone's pretrained config (see `models.factory.data_config`), so
training and prediction cannot disagree. The train defaults are the seeds' NYCU recipe:
RandomResizedCrop 224, horizontal flip, ColorJitter(.2, .2, .2, .1), rotation 10, translate .1.
"""

from __future__ import annotations

from typing import Optional, Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2


def train_preset(
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (0.75, 4 / 3),
    hflip: float = 0.5,
    vflip: float = 0.0,
    color_jitter: Optional[Sequence[float]] = (0.2, 0.2, 0.2, 0.1),
    rotate: float = 10.0,
    translate: float = 0.1,
    erase: float = 0.0,
) -> A.Compose:
    """Training transform: uint8 HWC RGB array -> normalized float tensor (3, size, size)."""
    ops = [A.RandomResizedCrop(size=(size, size), scale=scale, ratio=ratio, area_for_downscale="image")]
    if hflip:
        ops.append(A.HorizontalFlip(p=hflip))
    if vflip:
        ops.append(A.VerticalFlip(p=vflip))
    if color_jitter and any(color_jitter):
        b, c, s, h = color_jitter
        ops.append(A.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h, p=1.0))
    if rotate or translate:
        # One warp for both (torchvision's RandomRotation then RandomAffine would interpolate twice).
        ops.append(
            A.Affine(rotate=(-rotate, rotate), translate_percent=(-translate, translate), border_mode=cv2.BORDER_REFLECT_101, p=1.0)
        )
    ops.append(A.Normalize(mean=mean, std=std, max_pixel_value=255.0))
    if erase:  # after Normalize, as torchvision's RandomErasing: the fill 0 is the mean colour
        ops.append(A.Erasing(scale=(0.02, 0.25), ratio=(0.3, 3.3), fill=0, p=erase))
    ops.append(ToTensorV2())
    return A.Compose(ops)


def eval_preset(*, size: int, mean: Sequence[float], std: Sequence[float], crop_pct: float = 1.0) -> A.Compose:
    """Eval transform: resize the short side to size / crop_pct, center-crop size, normalize.

    Returns a transform from a uint8 HWC RGB array to a float tensor (3, size, size).
    """
    resize = max(size, int(round(size / crop_pct)))
    return A.Compose(
        [
            A.SmallestMaxSize(max_size=resize, area_for_downscale="image"),
            A.CenterCrop(height=size, width=size),
            A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
            ToTensorV2(),
        ]
    )
