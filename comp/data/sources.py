"""Readers for public datasets in their real on-disk formats.

Fashion-MNIST: the four idx files (gzipped or not), from Debian's `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist), a folder you name, or torchvision's download when online.
Debian's .gz files differ byte-wise from torchvision's (its checksums fail), so the idx format is
read here directly.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Optional

import numpy as np

from comp.errors import UserError

FASHION_CLASSES = ("tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally .gz) as a numpy array of its declared shape (uint8 data)."""
    data = gzip.open(path).read() if str(path).endswith(".gz") else Path(path).read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem):
        for p in (folder / name, folder / "raw" / name, folder / "FashionMNIST" / "raw" / name):
            if p.is_file():
                return p
    return None


def fashion_mnist(split: str = "train", root: Optional[Path] = None, download_root: Optional[Path] = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) uint8 and labels (N,) for split "train" or "test".

    Looks in `root` (if given), then Debian's folder, then `download_root` (torchvision layout),
    and finally asks torchvision to download into `download_root` (works only online).
    """
    images_stem, labels_stem = _FASHION_FILES[split]
    folders = ([Path(root)] if root else []) + list(FASHION_DIRS) + ([Path(download_root)] if download_root else [])
    for folder in folders:
        images, labels = _find(folder, images_stem), _find(folder, labels_stem)
        if images and labels:
            return read_idx(images), read_idx(labels)
    if download_root is not None:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(download_root), train=split == "train", download=True)
            return fashion_mnist(split, root=Path(download_root) / "FashionMNIST" / "raw")
        except Exception:  # offline: every network error type ends here
            pass
    raise UserError(
        "Fashion-MNIST not found; install it with: sudo apt-get install dataset-fashion-mnist "
        "(Debian/Ubuntu), or run once online so torchvision can download it, or pass its idx folder"
    )
