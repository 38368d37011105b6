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


# -- one entry point for the factor suite -----------------------------------------------------------

DATASETS = ("fashion-mnist", "cifar10", "cifar100", "tiny-imagenet")
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta", b"label_names", b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", b"fine_label_names", b"fine_labels"),
}
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def load_dataset(name: str, root: Optional[Path], split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A dataset split in memory, read from its official on-disk format.

    Args:
        name: one of DATASETS.
        root: the dataset folder itself or its parent (like torchvision's `root`); None looks in the
            usual places (Debian's folder for Fashion-MNIST) and downloads into ~/.cache/comp/datasets
            when online.
        split: "train" or "test" (Tiny-ImageNet's labelled `val/` serves as its test split).

    Returns:
        images uint8 (N, H, W, C) with C = 1 (Fashion-MNIST) or 3, labels int64 (N,), class names.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, not {split!r}")
    download_root = Path(root) if root else Path.home() / ".cache" / "comp" / "datasets"
    if name == "fashion-mnist":
        x, y = fashion_mnist(split, root=root, download_root=download_root)
        return x[..., None], y.astype(np.int64), list(FASHION_CLASSES)
    if name in _CIFAR:
        return cifar(name, root, split, download_root)
    if name == "tiny-imagenet":
        return tiny_imagenet(root, split, download_root)
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _locate(root: Optional[Path], folder: str, marker: str, download_root: Path) -> Optional[Path]:
    """`root` itself, `root/folder`, or `download_root/folder`, whichever holds `marker`."""
    candidates = [Path(root), Path(root) / folder] if root else []
    candidates.append(download_root / folder)
    return next((c for c in candidates if (c / marker).exists()), None)


def cifar(name: str, root: Optional[Path], split: str, download_root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """CIFAR-10/100 from torchvision's python pickle batches (`cifar-10-batches-py/`, `cifar-100-python/`)."""
    import pickle

    folder, train_files, test_files, meta_file, names_key, labels_key = _CIFAR[name]
    found = _locate(root, folder, meta_file, download_root)
    if found is None:
        try:
            from torchvision.datasets import CIFAR10, CIFAR100

            (CIFAR10 if name == "cifar10" else CIFAR100)(str(download_root), download=True)
            found = download_root / folder
        except Exception as e:  # offline: every network error type ends here
            raise UserError(
                f"{name} not found under {root or download_root} ({folder}/ with {meta_file}); offline, download "
                f"https://www.cs.toronto.edu/~kriz/{folder.replace('-batches-py', '').replace('-python', '')}-python.tar.gz "
                "elsewhere, extract it and pass --data to the folder that holds it"
            ) from e

    def unpickle(p: Path) -> dict:
        with open(p, "rb") as f:
            return pickle.load(f, encoding="bytes")  # the official format is a pickle (as in torchvision)

    xs, ys = [], []
    for fname in train_files if split == "train" else test_files:
        d = unpickle(found / fname)
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(d[labels_key], dtype=np.int64))
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in unpickle(found / meta_file)[names_key]]
    return np.concatenate(xs), np.concatenate(ys), names


def tiny_imagenet(root: Optional[Path], split: str, download_root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Tiny-ImageNet-200 from the official zip layout: `wnids.txt`, `words.txt`,
    `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` + `val/val_annotations.txt`.

    The labelled val split is returned as "test". Class names are the first gloss of each wnid in
    words.txt. Grayscale JPEGs among the images are converted to RGB. Decoding 110,000 JPEGs takes
    a while, so the arrays are cached next to the data (`.comp_<split>.npz`) when writable.
    """
    from comp.data.images import load_rgb

    found = _locate(root, "tiny-imagenet-200", "wnids.txt", download_root)
    if found is None:
        try:
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive(TINY_IMAGENET_URL, str(download_root))
            found = download_root / "tiny-imagenet-200"
        except Exception as e:  # offline
            raise UserError(
                f"Tiny-ImageNet not found under {root or download_root} (tiny-imagenet-200/ with wnids.txt); offline, "
                f"download {TINY_IMAGENET_URL} elsewhere, unzip it and pass --data to the folder that holds it"
            ) from e
    cached = found / f".comp_{split}.npz"
    wnids = [w.strip() for w in (found / "wnids.txt").read_text().split() if w.strip()]
    words = {}
    if (found / "words.txt").is_file():
        for line in (found / "words.txt").read_text().splitlines():
            wnid, _, gloss = line.partition("\t")
            words[wnid] = gloss.split(",")[0].strip()
    names = [words.get(w, w) for w in wnids]
    if cached.is_file():
        with np.load(cached) as z:
            return z["x"], z["y"], names
    index = {w: i for i, w in enumerate(wnids)}
    items: list[tuple[Path, int]] = []
    if split == "train":
        for w in wnids:
            items += [(p, index[w]) for p in sorted((found / "train" / w / "images").glob("*.JPEG"))]
    else:
        for line in (found / "val" / "val_annotations.txt").read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in index:
                items.append((found / "val" / "images" / parts[0], index[parts[1]]))
    x = np.stack([np.asarray(load_rgb(p).resize((64, 64))) for p, _ in items]) if items else np.zeros((0, 64, 64, 3), np.uint8)
    y = np.array([c for _, c in items], dtype=np.int64)
    try:
        np.savez(cached, x=x, y=y)
    except OSError:
        pass  # read-only data folder: decode again next time
    return x, y, names
