"""Dataset readers on tiny fixtures written in the official on-disk formats."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comp.data.sources import load_dataset
from comp.errors import UserError


def write_cifar(root: Path, name: str = "cifar10", per_file: int = 4) -> Path:
    """torchvision's python pickle batches with bytes keys, as the official tarballs hold them."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, train, test, meta, names_key, labels_key, n = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta", b"label_names", b"labels", 10
    else:
        folder, train, test, meta, names_key, labels_key, n = root / "cifar-100-python", ["train"], ["test"], "meta", b"fine_label_names", b"fine_labels", 100
    folder.mkdir(parents=True)
    for k, fname in enumerate(train + test):
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        data[0, :1024] = 255  # image 0: red channel full
        labels = [(k + i) % n for i in range(per_file)]
        with open(folder / fname, "wb") as f:
            pickle.dump({b"data": data, labels_key: labels, b"batch_label": b"x"}, f, protocol=2)
    with open(folder / meta, "wb") as f:
        pickle.dump({names_key: [f"class_{i}".encode() for i in range(n)]}, f, protocol=2)
    return root


def write_tiny_imagenet(root: Path) -> Path:
    """The official zip layout with two classes, one grayscale JPEG among the training images."""
    base = root / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\nn00000001\tunused\n")
    for c, w in enumerate(wnids):
        d = base / "train" / w / "images"
        d.mkdir(parents=True)
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(3):
            im = Image.new("RGB", (64, 64), (200 * c, 50, 50))
            (im.convert("L") if i == 0 else im).save(d / f"{w}_{i}.JPEG")
    lines = []
    for i in range(4):
        Image.new("RGB", (64, 64), (0, 0, 255)).save(base / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnids[i % 2]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("name, n_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickle_batches(tmp_path, name, n_classes):
    root = write_cifar(tmp_path, name)
    x, y, names = load_dataset(name, root, "train")
    n_files = 5 if name == "cifar10" else 1
    assert x.shape == (4 * n_files, 32, 32, 3) and x.dtype == np.uint8
    assert (x[0, :, :, 0] == 255).all()  # channel-first rows become HWC
    assert y.dtype == np.int64 and len(names) == n_classes and names[3] == "class_3"
    xt, yt, _ = load_dataset(name, next(root.iterdir()), "test")  # the folder itself works too
    assert xt.shape == (4, 32, 32, 3) and yt.tolist() == [(n_files + i) % n_classes for i in range(4)]


def test_tiny_imagenet_layout_with_grayscale_jpeg(tmp_path):
    root = write_tiny_imagenet(tmp_path)
    x, y, names = load_dataset("tiny-imagenet", root, "train")
    assert x.shape == (6, 64, 64, 3) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert names == ["goldfish", "European fire salamander"]
    assert x[0].std(axis=2).max() < 2  # the grayscale JPEG came back as three equal channels
    xt, yt, _ = load_dataset("tiny-imagenet", root / "tiny-imagenet-200", "test")
    assert xt.shape == (4, 64, 64, 3) and yt.tolist() == [0, 1, 0, 1]
    assert (root / "tiny-imagenet-200" / ".comp_test.npz").is_file()
    assert load_dataset("tiny-imagenet", root, "test")[1].tolist() == [0, 1, 0, 1]  # from the cache


def test_fashion_mnist_idx_folder(tmp_path):
    def idx(arr: np.ndarray) -> bytes:
        return bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()

    images = np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(images)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx(np.array([2, 0, 9], np.uint8)))
    x, y, names = load_dataset("fashion-mnist", tmp_path, "test")
    assert x.shape == (3, 28, 28, 1) and (x[..., 0] == images).all() and y.tolist() == [2, 0, 9]
    assert names[9] == "ankle_boot"


def test_missing_datasets_offline_say_what_to_do(tmp_path, monkeypatch):
    import torchvision.datasets
    import torchvision.datasets.utils

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", offline)
    with pytest.raises(UserError, match="cifar-10-python.tar.gz.*--data"):
        load_dataset("cifar10", tmp_path, "train")
    with pytest.raises(UserError, match="tiny-imagenet-200.zip.*--data"):
        load_dataset("tiny-imagenet", tmp_path, "train")
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        load_dataset("mnist", tmp_path, "train")
