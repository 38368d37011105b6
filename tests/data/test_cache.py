import numpy as np
import torch
from PIL import Image

import comp.data.cache as cache
from comp.data.augment import BatchAugment
from comp.data.batches import TensorBatches
from comp.data.cache import choose_cache, load_or_build


def _images(tmp_path, n=5, size=(20, 12)):
    paths = []
    rng = np.random.default_rng(0)
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_decode_once_and_reuse_until_files_change(tmp_path, monkeypatch):
    paths = _images(tmp_path)
    (tmp_path / "bad.png").write_text("no")
    paths.append(tmp_path / "bad.png")
    calls = []
    real = cache.decode_all
    monkeypatch.setattr(cache, "decode_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    images, ok = load_or_build(paths, 8, 1.0, tmp_path / "c")
    assert images.shape == (6, 3, 8, 8) and images.dtype == torch.uint8
    assert ok.tolist() == [True] * 5 + [False]
    again, _ = load_or_build(paths, 8, 1.0, tmp_path / "c")
    assert torch.equal(images, again) and len(calls) == 1
    load_or_build(paths, 16, 1.0, tmp_path / "c")  # another size is another cache
    Image.new("RGB", (20, 12)).save(paths[0])  # a changed file invalidates the key
    changed, _ = load_or_build(paths, 8, 1.0, tmp_path / "c")
    assert len(calls) == 3 and not torch.equal(changed[0], images[0])


def test_cached_pixels_match_a_center_crop_of_the_short_side(tmp_path):
    p = tmp_path / "wide.png"
    arr = np.zeros((10, 30, 3), dtype=np.uint8)
    arr[:, 10:20] = 255  # white center square, black sides
    Image.fromarray(arr).save(p)
    images, _ = load_or_build([p], 10, 1.0, tmp_path / "c")
    assert images.min() == 255  # the 10x10 center crop is all white


def test_auto_caches_within_the_disk_budget_and_says_why(tmp_path):
    paths = _images(tmp_path, 3, (28, 28))
    choice = choose_cache("auto", paths, 224, 0.875, max_gb=1.0)
    assert choice.use and "3 images as 256 px squares" in choice.reason
    over = choose_cache("auto", paths * 10_000, 224, 0.875, max_gb=1.0)  # 30,000 x 196 KB = 5.5 GB
    assert not over.use and "data.cache_max_gb" in over.reason and "--set data.cache_max_gb=" in over.reason
    assert choose_cache("on", paths * 10_000, 224, 0.875, max_gb=1.0).use
    assert not choose_cache("off", paths, 32, 1.0, max_gb=1.0).use


def test_batch_augment_identity_flip_and_determinism():
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    same = BatchAugment(scale=(1, 1), ratio=(1, 1), hflip=0.0)(x, g)
    assert torch.allclose(same, x.float() / 255, atol=1e-5)
    flipped = BatchAugment(scale=(1, 1), ratio=(1, 1), hflip=1.0)(x, g)
    assert torch.allclose(flipped, x.float().flip(3) / 255, atol=1e-5)
    aug = BatchAugment(scale=(0.3, 1), rotate=15, translate=0.1, color_jitter=(0.3, 0.3, 0.3, 0.1))
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == (4, 3, 16, 16) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # per-image parameters, not one per batch


def test_tensor_batches_cover_every_image_once_per_epoch():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    labels = torch.arange(10)
    tb = TensorBatches(images, labels, batch_size=4, mean=(0, 0, 0), std=(1 / 255,) * 3, shuffle=True, seed=0)
    assert len(tb) == 3
    seen = torch.cat([y for _, y, _ in tb])
    assert sorted(seen.tolist()) == list(range(10))
    for x, y, bad in tb:
        assert torch.allclose(x[:, 0, 0, 0], y.float()) and bad == []  # x = image value, normalized back
    dropped = TensorBatches(images, labels, batch_size=4, mean=(0, 0, 0), std=(1, 1, 1), shuffle=True, drop_last=True)
    assert len(dropped) == 2 and sum(len(y) for _, y, _ in dropped) == 8


def test_axis_aligned_grid_equals_affine_grid():
    import torch.nn.functional as F

    from comp.data.augment import _axis_aligned_grid

    theta = torch.zeros(3, 2, 3)
    theta[:, 0, 0] = torch.tensor([0.5, -1.0, 0.8])
    theta[:, 1, 1] = torch.tensor([0.7, 1.0, -0.6])
    theta[:, 0, 2] = torch.tensor([0.1, 0.0, -0.2])
    theta[:, 1, 2] = torch.tensor([-0.3, 0.05, 0.0])
    assert torch.allclose(_axis_aligned_grid(theta, 5, 7), F.affine_grid(theta, [3, 3, 5, 7], align_corners=False), atol=1e-6)


def test_the_cpu_crop_path_reads_crops_from_the_store_as_from_the_gathered_batch():
    """TensorBatches hands the whole (memory-mapped) store and the batch's rows to the augmentation,
    which on the CPU crop path cuts each crop straight out of it: the same floats as augmenting the
    gathered batch, from a channels_last store or any other, normalised or not."""
    from comp.data.augment import CROP_PATH_MIN_SIZE

    side = CROP_PATH_MIN_SIZE + 16
    store = torch.randint(0, 256, (7, 3, side, side), dtype=torch.uint8)
    rows = torch.tensor([5, 0, 5, 3])
    aug = BatchAugment(scale=(0.1, 1), hflip=0.5, vflip=0.5)
    mean, inv_std = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1), torch.tensor([4.0, 5.0, 3.0]).view(1, 3, 1, 1)
    for layout in (torch.channels_last, torch.contiguous_format):
        x = store.contiguous(memory_format=layout)
        for normalize in (None, (mean, inv_std)):
            gathered = aug(x[rows], torch.Generator().manual_seed(3), CROP_PATH_MIN_SIZE, normalize)
            direct = aug(x, torch.Generator().manual_seed(3), CROP_PATH_MIN_SIZE, normalize, rows=rows)
            assert direct.shape == (4, 3, CROP_PATH_MIN_SIZE, CROP_PATH_MIN_SIZE) and torch.equal(direct, gathered)
        plain = aug(x, torch.Generator().manual_seed(3), CROP_PATH_MIN_SIZE, rows=rows)
        assert torch.allclose(direct, (plain - mean) * inv_std, atol=1e-5)  # the fused multiply-add normalises
        assert not torch.equal(plain[0], plain[2])  # row 5 twice, cropped differently


def test_a_file_rewritten_with_its_old_size_and_mtime_is_decoded_again(tmp_path):
    import os
    import time

    p = tmp_path / "0.bmp"  # BMP keeps its byte size whatever the pixels
    Image.new("RGB", (12, 12), (10, 20, 30)).save(p)
    before, _ = load_or_build([p], 8, 1.0, tmp_path / "c")
    st = os.stat(p)
    time.sleep(0.05)  # the kernel's file clock is coarse (a few ms): let it tick, as it has between two real runs
    Image.new("RGB", (12, 12), (200, 100, 50)).save(p)  # as an archive unpacked with its timestamps, cp -p or rsync -t
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(p).st_size == st.st_size and os.stat(p).st_mtime_ns == st.st_mtime_ns
    after, _ = load_or_build([p], 8, 1.0, tmp_path / "c")
    # The key used to be (path, size, mtime): the old pixels were served.
    assert after[0, :, 0, 0].tolist() == [200, 100, 50] and before[0, :, 0, 0].tolist() == [10, 20, 30]
