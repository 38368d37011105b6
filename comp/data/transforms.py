"""Presets for the file path: train (albumentations) and eval, keyword-only like torchvision's presets.

Size, mean and std come from the backbone's pretrained config (see `models.factory.data_config`), so
training and prediction cannot disagree. The train defaults are the seeds' NYCU recipe:
RandomResizedCrop 224, horizontal flip, ColorJitter(.2, .2, .2, .1), rotation 10, translate .1.

Evaluation has exactly one preprocessing, `eval_resize_crop`, used by every consumer: validation
during training (file path and decode-once cache), val_probs.csv, `comp evaluate` and `comp predict`
(cached or not). So a run's val accuracy is the accuracy of the pixels prediction will see.
"""

from __future__ import annotations

from typing import Optional, Sequence

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
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


def eval_resize(size: int, crop_pct: float) -> int:
    """The short side an image is resized to before the eval center crop: size / crop_pct."""
    return max(size, int(round(size / crop_pct)))


def eval_resize_crop(img: np.ndarray, size: int, crop_pct: float) -> np.ndarray:
    """The eval preprocessing: short side to `eval_resize(size, crop_pct)`, center crop size x size.

    Args:
        img: uint8 RGB (H, W, 3), as `images.decode_rgb` returns it (JPEGs may already be
            draft-decoded to no less than the resize).

    Returns:
        uint8 array (size, size, 3), writable. Resizing is torch's antialiased uint8 kernel:
        bilinear down (its support widens with the factor, as PIL's does, so large reductions do not
        alias), bicubic up; within 1-2 levels of PIL's filters, and 0.8 against PIL's 1.2 ms per
        400-800 px photo to its cache square (copies included).
    """
    x, left, top = _resized_with_eval_box(img, size, crop_pct)
    return x[:, top : top + size, left : left + size].permute(1, 2, 0).numpy().copy()  # never a view of `img`


def _resized_with_eval_box(img: np.ndarray, size: int, crop_pct: float) -> tuple[torch.Tensor, int, int]:
    """`img` as uint8 (3, H', W') with its short side resized to `eval_resize(size, crop_pct)`, and the eval crop's (left, top)."""
    resize = eval_resize(size, crop_pct)
    h, w = img.shape[:2]
    scale = resize / min(w, h)
    nw, nh = max(resize, round(w * scale)), max(resize, round(h * scale))
    x = torch.from_numpy(np.require(img, np.uint8, "W")).permute(2, 0, 1)  # a channels_last view: the fast uint8 kernels
    if (nw, nh) != (w, h):
        x = F.interpolate(x[None], (nh, nw), mode="bicubic" if scale > 1 else "bilinear", antialias=True)[0]
    return x, (nw - size) // 2, (nh - size) // 2


def square_margin(size: int, crop_pct: float) -> int:
    """Where the eval crop sits inside a `working_square`: rows and columns [m, m + size)."""
    return (eval_resize(size, crop_pct) - size) // 2


def working_square(img: np.ndarray, size: int, crop_pct: float) -> np.ndarray:
    """What the decode-once cache stores per image: a square of side R = `eval_resize(size, crop_pct)`.

    The image (uint8 (H, W, 3)) is resized exactly as for evaluation (short side R, nothing
    stretched) and the R x R square is cut around the eval crop, so that `square[m:m+size,
    m:m+size]` (m = `square_margin`) is `eval_resize_crop`'s output pixel for pixel: validation and
    prediction from the cache see the pixels of the file path. Training crops (RandomResizedCrop and
    TTA views) come from the whole square; the strips of the long side beyond it (1/8 of a 4:3
    photo's width on each side) are not used. Returns uint8 (R, R, 3), C-contiguous.
    """
    resize = eval_resize(size, crop_pct)
    x, left, top = _resized_with_eval_box(img, size, crop_pct)
    m = (resize - size) // 2
    x0 = min(max(left - m, 0), x.shape[2] - resize)
    y0 = min(max(top - m, 0), x.shape[1] - resize)
    # torch's copy: rows of R x 3 bytes at once (numpy's took twice as long on these strides)
    return x[:, y0 : y0 + resize, x0 : x0 + resize].permute(1, 2, 0).contiguous().numpy()


class EvalPreset:
    """Eval transform for `ImageFileDataset`: `tf(image=uint8 HWC RGB array)["image"]`.

    Returns `eval_resize_crop`'s pixels as a uint8 tensor (3, size, size), or, with mean and std,
    normalized float (3, size, size) computed as the tensor path computes it.
    """

    def __init__(self, *, size: int, crop_pct: float = 1.0, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None):
        self.size, self.crop_pct = size, crop_pct
        self.mean = None if mean is None else torch.tensor(mean).view(3, 1, 1)
        self.inv_std = None if std is None else 1.0 / torch.tensor(std).view(3, 1, 1)

    def __call__(self, *, image: np.ndarray) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(eval_resize_crop(image, self.size, self.crop_pct)).permute(2, 0, 1)
        if self.mean is not None:
            x = x.float().mul_(1 / 255.0).sub_(self.mean).mul_(self.inv_std)
        return {"image": x}


def eval_preset(*, size: int, mean: Sequence[float], std: Sequence[float], crop_pct: float = 1.0) -> EvalPreset:
    """Eval transform: `eval_resize_crop`, then normalize; uint8 HWC array -> float tensor (3, size, size)."""
    return EvalPreset(size=size, crop_pct=crop_pct, mean=mean, std=std)
