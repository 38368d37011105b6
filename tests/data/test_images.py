import io

import numpy as np
import pytest
import torch
from PIL import Image

from comp.data.audit import inspect_image
from comp.data.images import DECODE_ERRORS, ImageFileDataset, collate_skip_bad, list_images, load_rgb, unreadable_image
from comp.data.transforms import eval_preset
from comp.errors import UserError


def _save(im, path, **kw):
    im.save(path, **kw)
    return path


def test_modes_become_rgb(tmp_path):
    gray = _save(Image.new("L", (10, 8), 77), tmp_path / "g.png")
    pal = Image.new("P", (10, 8), 1)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.info["transparency"] = 0
    pal = _save(pal, tmp_path / "p.png")
    rgba = _save(Image.new("RGBA", (10, 8), (255, 0, 0, 0)), tmp_path / "a.png")
    la = _save(Image.new("LA", (10, 8), (0, 255)), tmp_path / "la.png")
    cmyk = _save(Image.new("CMYK", (10, 8), (0, 255, 255, 0)), tmp_path / "c.jpg")
    for path in (gray, pal, rgba, la, cmyk):
        im = load_rgb(path)
        assert im.mode == "RGB" and im.size == (10, 8), path
    assert load_rgb(gray).getpixel((0, 0)) == (77, 77, 77)
    assert load_rgb(pal).getpixel((0, 0)) == (200, 10, 10)  # palette index 1, opaque
    assert load_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # fully transparent -> white
    assert load_rgb(la).getpixel((0, 0)) == (0, 0, 0)  # opaque black
    r, g, b = load_rgb(cmyk).getpixel((0, 0))
    assert r > 200 and g < 60 and b < 60  # C=0, M=Y=255 is red


def test_16_bit_png_is_scaled_by_full_range(tmp_path):
    arr = np.full((6, 6), 65535, dtype=np.uint16)
    arr[0, 0] = 32768
    path = tmp_path / "16.png"
    Image.fromarray(arr).save(path)
    im = np.asarray(load_rgb(path))
    assert im[1, 1].tolist() == [255, 255, 255]
    assert abs(int(im[0, 0, 0]) - 128) <= 1


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (20, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif.tobytes())
    assert load_rgb(path).size == (10, 20)


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert inspect_image(empty).error == "empty file"
    assert inspect_image(text).error and inspect_image(truncated).error
    for path in (empty, text, truncated):
        with pytest.raises(DECODE_ERRORS):
            load_rgb(path)
        assert isinstance(unreadable_image(path), UserError) and path.name in str(unreadable_image(path))


def test_dataset_skips_bad_files_through_collate(tmp_path):
    good = _save(Image.new("RGB", (12, 12), (9, 9, 9)), tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    tf = eval_preset(size=8, mean=(0.5,) * 3, std=(0.5,) * 3)
    ds = ImageFileDataset([good, bad, good], [0, 1, 2], tf)
    x, y, bad_paths = collate_skip_bad([ds[i] for i in range(3)])
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    assert y.tolist() == [0, 2] and bad_paths == [str(bad)]
    x, y, bad_paths = collate_skip_bad([ds[1]])
    assert len(y) == 0 and bad_paths == [str(bad)]


def test_list_images_ignores_junk(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.JPG", "sub/b.png", ".hidden.png", "notes.txt", ".DS_Store", "Thumbs.db"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.JPG", "sub/b.png"]


def test_jpeg_draft_decodes_small_but_not_below_request(tmp_path):
    path = _save(Image.new("RGB", (800, 600), (0, 128, 0)), tmp_path / "big.jpg")
    im = load_rgb(path, draft_size=64)
    assert min(im.size) >= 64 and im.size[0] < 800
