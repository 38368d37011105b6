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


def _noisy_photo(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 200, w)[None, :, None] + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(x.clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("draft_size,short_side", [(None, 480), (300, 480), (150, 240), (70, 120), (40, 60), (20, 60)])
def test_decode_rgb_is_load_rgb_pixel_for_pixel_at_every_draft_scale(tmp_path, monkeypatch, draft_size, short_side):
    """The fast JPEG decoder is an accelerator only: the pixels (and so every prediction) are PIL's,
    whether or not simplejpeg is installed. A 640 x 480 photo decodes at DCT scale 1, 1/2, 1/4 and
    1/8 (at most: 1/8 is the smallest scale) with its short side never below the draft size."""
    import comp.data.images as images

    base = _noisy_photo(640, 480)
    files = {
        "rgb.jpg": dict(quality=90),
        "progressive.jpg": dict(quality=85, progressive=True),
        "subsampling444.jpg": dict(quality=95, subsampling=0),
    }
    paths = [_save(base, tmp_path / name, **kw) for name, kw in files.items()]
    paths.append(_save(base.convert("L"), tmp_path / "gray.jpg", quality=90))
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        paths.append(_save(base, tmp_path / f"exif{orientation}.jpg", quality=90, exif=exif))
    real_load = images.load_rgb
    fallbacks = []
    monkeypatch.setattr(images, "load_rgb", lambda p, *a: fallbacks.append(p) or real_load(p, *a))
    for path in paths:
        fast = images.decode_rgb(path, draft_size)
        expected = np.asarray(real_load(path, draft_size))
        assert fast.dtype == np.uint8 and fast.flags.writeable
        assert fast.shape == expected.shape and np.array_equal(fast, expected), path.name
    assert fallbacks == []  # every one of them took the fast path, so the equality above tested it
    monkeypatch.setattr(images, "simplejpeg", None)  # where it is not installed (a bundle on Kaggle)
    for path in paths:
        assert np.array_equal(images.decode_rgb(path, draft_size), np.asarray(real_load(path, draft_size))), path.name
    assert len(fallbacks) == len(paths)
    assert images.decode_rgb(paths[0], draft_size).shape == (short_side, short_side * 4 // 3, 3)


def test_decode_rgb_leaves_other_images_and_bad_jpegs_to_pil(tmp_path):
    import comp.data.images as images

    base = _noisy_photo(64, 48)
    cmyk = _save(base.convert("CMYK"), tmp_path / "cmyk.jpg", quality=90)
    png = _save(base.convert("RGBA"), tmp_path / "a.png")
    named_jpg = _save(base, tmp_path / "really-a-png.jpg", format="PNG")
    for path in (cmyk, png, named_jpg):
        assert np.array_equal(images.decode_rgb(path, 32), np.asarray(load_rgb(path, 32))), path.name
    buf = io.BytesIO()
    base.save(buf, "JPEG")
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DECODE_ERRORS):  # PIL's verdict, as for load_rgb (strict simplejpeg never returns half an image)
        images.decode_rgb(truncated)
