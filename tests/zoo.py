"""The file zoo: a competition salted with every kind of odd or broken file, generated on the spot.

`salted_competition(root)` writes a folders-layout competition whose train/ and test/ hold good
images in every awkward encoding plus broken and junk files, and returns what `comp` must make of
them: which files it must skip and list, and which test ids the submission must contain.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from comp.data.synthetic import draw_shape

SIZE = 32


def _shape(kind: str, seed: int) -> Image.Image:
    return draw_shape(kind, SIZE, np.random.default_rng(seed))


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header claims side x side pixels (over PIL's decompression-bomb limit).

    Only the header is real: nothing that respects the limit ever decodes the pixels, and the
    file is a few bytes, not gigabytes.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def write_odd_encodings(folder: Path, kind: str, seed: int) -> list[Path]:
    """The same kind of image in every awkward encoding; all must decode to RGB. Returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    im = _shape(kind, seed)
    out = []

    def save(image: Image.Image, name: str, **kw) -> None:
        image.save(folder / name, **kw)
        out.append(folder / name)

    save(im, "plain.png")
    save(im.convert("L"), "gray.png")
    save(im.convert("CMYK"), "cmyk.jpg", quality=95)
    save(Image.fromarray((np.asarray(im.convert("L")).astype(np.uint16) * 257)), "sixteen_bit.png")
    pal = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    save(pal, "palette_transparent.png")
    save(im.convert("LA"), "la.png")
    save(im.convert("RGBA"), "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, displayed upright
    save(im.rotate(90, expand=True), "exif_rotated.jpg", exif=exif.tobytes(), quality=95)
    save(im, "bïld mit leerzeichen.png")  # unicode and a space in the name
    (folder / "linked.png").symlink_to(folder / "plain.png")
    out.append(folder / "linked.png")
    return out


def write_broken(folder: Path) -> list[Path]:
    """Files with image extensions that cannot be decoded. Returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero_bytes.jpg").write_bytes(b"")
    buf = io.BytesIO()
    _shape("circle", 99).save(buf, "JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "text.jpg").write_text("this is not an image\n")
    bomb_png(folder / "bomb.png")
    return [folder / n for n in ("zero_bytes.jpg", "truncated.jpg", "text.jpg", "bomb.png")]


def write_junk(folder: Path) -> tuple[list[Path], list[Path]]:
    """(files to list as non-images, OS files to ignore silently)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("labelling notes")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    return [folder / "notes.txt"], [folder / ".DS_Store", folder / "Thumbs.db"]


def salted_competition(root: Path, per_class: int = 12, layout: str = "folders") -> dict:
    """Write the zoo competition to `root`, in the folders layout or the CSV one.

    The CSV variant moves every train file into train_images/ (class folders become a file name
    prefix) and writes train.csv with a UTF-8 byte-order mark, as Excel does; its rows include
    the broken files and the folder-less ones are gone (a CSV has no empty class folder).

    Returns:
        {"root", "skipped": paths that must be listed in skipped_files.txt, "ignored": OS files
        that must not be, "test_ids": ids the submission must hold, in sample order,
        "classes": class names expected}.
    """
    train = root / "train"
    for c, kind in enumerate(("circle", "square")):
        for i in range(per_class):
            (train / kind).mkdir(parents=True, exist_ok=True)
            _shape(kind, 100 * c + i).save(train / kind / f"{kind}_{i:03d}.png")
    write_odd_encodings(train / "circle" / "odd", "circle", 7)  # nested folders count for the class
    broken = write_broken(train / "square")
    listed, ignored = write_junk(train / "square")
    solo = train / "triangle ünï"  # a class with a single image, unicode and a space in its name
    solo.mkdir()
    _shape("triangle", 5).save(solo / "only one.png")
    (train / "empty_class").mkdir()

    skipped = broken + listed + [train / "empty_class"]
    classes = ["circle", "square", "triangle ünï"]
    if layout == "csv":
        skipped = _to_csv_layout(root, skipped)

    test_files = write_odd_encodings(root / "test", "square", 11)
    (root / "test" / ".DS_Store").write_bytes(b"\0")
    ids = [p.stem for p in test_files]
    with open(root / "sample_submission.csv", "w", encoding="utf-8") as f:
        f.write("image_name,pred_label\n" + "".join(f"{i},circle\n" for i in ids))
    ignored = [root / "train_images" / p.name for p in ignored] if layout == "csv" else ignored
    return {"root": root, "skipped": skipped, "ignored": ignored, "test_ids": ids, "classes": classes}


def _to_csv_layout(root: Path, skipped: list[Path]) -> list[Path]:
    """Move train/<class>/... to train_images/<class>__<name> + train.csv; return the new skip list."""
    images = root / "train_images"
    images.mkdir()
    rows, moved = [], {}
    for d in sorted((root / "train").iterdir()):
        for p in sorted(d.rglob("*")):
            if p.is_dir():
                continue
            new = images / (p.name if p.name in (".DS_Store", "Thumbs.db") else f"{d.name}__{p.parent.name}__{p.name}")
            if p.is_symlink():
                new.symlink_to(images / f"{d.name}__{p.parent.name}__{p.resolve().name}")
                p.unlink()
            else:
                p.rename(new)
            moved[p] = new
            if new.suffix in (".png", ".jpg"):
                rows.append(f"{new.name},{d.name}\n")
    for d in sorted((root / "train").rglob("*"), reverse=True):
        d.rmdir()
    (root / "train").rmdir()
    (root / "train.csv").write_text("\ufeffimage,label\n" + "".join(rows), encoding="utf-8")
    return [moved[p] for p in skipped if p in moved]
