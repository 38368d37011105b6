"""The decode-once cache on photo-sized images: what it stores, when it is rebuilt, when it is not
used, and training and prediction through it."""

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

import comp.data.cache as cache
import comp.data.images as images
from comp.config import load_config
from comp.data.cache import eval_crops, load_or_build
from comp.data.images import decode_rgb
from comp.data.transforms import eval_resize, eval_resize_crop, working_square
from comp.engine.fit import fit
from comp.predict import predict
from tests.conftest import write_config
from tests.engine.test_crash_safety import DETERMINISTIC, assert_resume_is_exact

SIZE, CROP = 32, 0.875  # squares of eval_resize(32, 0.875) = 37 px


def _scene(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A w x h RGB image with structure (a gradient and a bright block), so resizes and crops show."""
    x = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3)) * rng.uniform(0.3, 1, 3)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    x[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(150, 256, 3)
    return Image.fromarray(x.astype(np.uint8))


def _photo_competition(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """Folders layout, 2 classes of JPEGs from 60 to 140 px a side (classes differ in brightness), 4 test JPEGs."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(("dark", "light")):
        (root / "train" / name).mkdir(parents=True)
        for i in range(per_class):
            w, h = (int(v) for v in rng.integers(60, 141, 2))
            im = np.asarray(_scene(w, h, rng)) * (0.4 + 0.6 * c)
            Image.fromarray(im.astype(np.uint8)).save(root / "train" / name / f"{i:03d}.jpg", quality=90)
    (root / "test").mkdir()
    for i in range(4):
        _scene(int(rng.integers(60, 141)), int(rng.integers(60, 141)), rng).save(root / "test" / f"t{i}.jpg", quality=90)
    return root


def _expected_square(path: Path) -> torch.Tensor:
    return torch.from_numpy(working_square(decode_rgb(path, eval_resize(SIZE, CROP)), SIZE, CROP)).permute(2, 0, 1)


def test_exif_cmyk_grayscale_and_rgba_photos_go_through_the_cache_as_decoded_from_the_files(tmp_path):
    rng = np.random.default_rng(1)
    base = _scene(150, 90, rng)
    rotated = tmp_path / "exif6.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    base.save(rotated, quality=92, exif=exif)
    base.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=92)
    base.convert("L").save(tmp_path / "gray.jpg", quality=92)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 150, dtype=np.uint8), (90, 1))))
    rgba.save(tmp_path / "rgba.png")
    paths = [rotated, tmp_path / "cmyk.jpg", tmp_path / "gray.jpg", tmp_path / "rgba.png"]
    squares, ok = load_or_build(paths, SIZE, CROP, tmp_path / "cache")
    assert ok.all() and squares.shape == (4, 3, 37, 37) and squares.dtype == torch.uint8
    for i, p in enumerate(paths):
        assert torch.equal(squares[i], _expected_square(p)), p.name
        crop = torch.from_numpy(eval_resize_crop(decode_rgb(p, eval_resize(SIZE, CROP)), SIZE, CROP)).permute(2, 0, 1)
        assert torch.equal(eval_crops(squares, SIZE, CROP)[i], crop), p.name  # the eval pixels of comp predict
    # The EXIF orientation was applied: the stored square is the upright (portrait) image's, not the raw one's.
    with Image.open(rotated) as raw:
        unrotated = torch.from_numpy(working_square(np.asarray(raw.convert("RGB")), SIZE, CROP)).permute(2, 0, 1)
        upright = torch.from_numpy(working_square(np.asarray(ImageOps.exif_transpose(raw).convert("RGB")), SIZE, CROP)).permute(2, 0, 1)
    def gap(a: torch.Tensor, b: torch.Tensor) -> float:  # mean difference (draft decoding shifts edges a little)
        return float((a.int() - b.int()).abs().float().mean())

    assert gap(squares[0], upright) < 3 and gap(squares[0], unrotated) > 10
    gray = squares[2]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_a_changed_photo_is_decoded_again_and_a_damaged_cache_rebuilt(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.jpg")
        _scene(120, 90, rng).save(paths[-1], quality=90)
    decoded = []
    real = cache._decode
    monkeypatch.setattr(cache, "_decode", lambda p, *a: decoded.append(p) or real(p, *a))
    first, _ = load_or_build(paths, SIZE, CROP, tmp_path / "c")
    first = first.clone()
    load_or_build(paths, SIZE, CROP, tmp_path / "c")
    assert len(decoded) == 3  # the second call read the file
    _scene(120, 90, np.random.default_rng(9)).save(paths[1], quality=90)
    stat = os.stat(paths[1])
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed, _ = load_or_build(paths, SIZE, CROP, tmp_path / "c")
    assert len(decoded) == 6 and not torch.equal(changed[1], first[1]) and torch.equal(changed[0], first[0])
    assert torch.equal(changed[1], _expected_square(paths[1]))
    changed = changed.clone()  # (the returned tensor maps the file, which is damaged in place next)
    data = tmp_path / "c" / f"{cache.cache_key(paths, SIZE, CROP)}.u8"
    data.write_bytes(data.read_bytes()[:100])  # a truncated cache file is rebuilt, not read
    again, ok = load_or_build(paths, SIZE, CROP, tmp_path / "c")
    assert len(decoded) == 9 and ok.all() and torch.equal(again, changed)


def test_the_disk_budget_falls_back_to_the_files_and_says_why(tmp_path, monkeypatch):
    data = _photo_competition(tmp_path / "photos", per_class=6)
    bars = []
    real = cache.decode_all
    monkeypatch.setattr(cache, "decode_all", lambda *a, **k: bars.append(a[5] if len(a) > 5 else k.get("progress")) or real(*a, **k))
    lines = []
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(data), "image_size": SIZE, "crop_pct": CROP,
                                                              "cache_dir": str(tmp_path / "cache"), "cache_max_gb": 1e-6}))
    fit(cfg, tmp_path / "run", log=lines.append)
    line = next(x for x in lines if x.startswith("input: "))
    assert "files, decoded every epoch: the cache would take" in line and "data.cache_max_gb 1e-06" in line, line
    assert not list((tmp_path / "cache").glob("*.u8"))  # val_probs.csv was predicted from the files too
    lines.clear()
    fit(cfg.model_copy(update={"data": cfg.data.model_copy(update={"cache_max_gb": 10.0})}), tmp_path / "run2", log=lines.append)
    assert any(x.startswith("input: decode-once cache (12 images as 37 px squares") for x in lines), lines
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 1  # val_probs.csv came from training's cache, not a second one
    assert bars and bars[0] is not None  # training's one-off decode has a progress bar (shown in a terminal)


def test_resume_mid_epoch_on_the_photo_path_is_exact(tmp_path, monkeypatch):
    data = _photo_competition(tmp_path / "photos", per_class=12)
    cfg = load_config(write_config(
        tmp_path / "c.yaml",
        data={"dir": str(data), "image_size": SIZE, "crop_pct": CROP, "batch_size": 8, "cache_dir": str(tmp_path / "cache")},
        train={**DETERMINISTIC, "epochs": 2, "checkpoint_minutes": 0},
        aug={"scale": [0.3, 1.0], "rotate": 0, "translate": 0, "color_jitter": None},  # the CPU crop-and-resize path
    ))
    # 21 train images / batch 8 = 2 batches per epoch (drop_last): Ctrl-C during the 1st batch of epoch 2.
    lines = assert_resume_is_exact(cfg, tmp_path, monkeypatch, at_forward=2 + 1, partial_batches=1)
    assert any("input: decode-once cache" in x for x in lines)


def test_predict_on_photos_decodes_nothing_the_second_time(tmp_path, monkeypatch):
    data = _photo_competition(tmp_path / "photos", per_class=4)
    cfg = write_config(tmp_path / "c.yaml", data={"image_size": SIZE, "crop_pct": CROP, "cache_dir": str(tmp_path / "cache")})
    from typer.testing import CliRunner

    from comp.cli import app

    assert CliRunner().invoke(app, ["train", str(cfg), "--data", str(data), "--out", str(tmp_path / "run")]).exit_code == 0
    calls = []
    real = images.decode_rgb
    counting = lambda p, *a, **k: calls.append(p) or real(p, *a, **k)  # noqa: E731
    monkeypatch.setattr(images, "decode_rgb", counting)
    monkeypatch.setattr(cache, "decode_rgb", counting)
    predict([tmp_path / "run"], out=tmp_path / "a.csv", workers=0, log=lambda s: None)
    assert len(calls) == 4  # 4 test photos, decoded once for both TTA views
    predict([tmp_path / "run"], out=tmp_path / "b.csv", workers=0, log=lambda s: None)
    assert len(calls) == 4 and (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_a_disk_that_fills_up_during_the_build_leaves_no_cache_and_the_squares_in_memory(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.jpg")
        _scene(100 + 10 * i, 80, rng).save(paths[-1], quality=90)
    expected, _ = load_or_build(paths, SIZE, CROP, tmp_path / "good")
    writes = []

    def full_disk(fd, data, offset):  # the third square no longer fits: a short write
        writes.append(offset)
        return memoryview(data).nbytes if len(writes) < 3 else 0

    monkeypatch.setattr(cache.os, "pwrite", full_disk)
    squares, ok = load_or_build(paths, SIZE, CROP, tmp_path / "full")
    assert len(writes) >= 3 and ok.all() and torch.equal(squares, expected)  # decoded again into memory
    assert list((tmp_path / "full").iterdir()) == []  # no half-written cache, no mask that would vouch for one
