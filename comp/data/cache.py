"""Decode-once image cache: every image decoded once, kept as uint8 squares in a memory-mapped file.

Decoding is most of a CPU epoch: PNGs of small images, and for photo-sized JPEGs (400-1000 px)
the decode plus a resize in Python workers, every epoch again. Here each image is decoded once
(threads, the GIL released while decoding and resizing; JPEGs in draft mode, libjpeg's DCT-domain
downscale to no less than the needed size, by `images.decode_rgb`) to a `working_square` of side
R = `eval_resize(size, crop_pct)` (the eval resize: 256 px for 224 px at crop_pct 0.875; the
training size itself at crop_pct 1):

- the image is resized as for evaluation (short side R, nothing stretched) and the R x R square
  around the eval crop is kept, so the centre (size x size) of a square is, pixel for pixel, what
  `comp predict` sees (`transforms.eval_resize_crop`) and training crops come from the whole
  square; the long side's strips beyond it are dropped (1/8 of a 4:3 photo's width each side);
- squares go to `<key>.u8`, a raw (N, R, R, 3) uint8 file read through a memory map (seen as
  channels_last (N, 3, R, R): a gathered batch is already in the layout the fast resize and
  the model want), so memory
  stays bounded by what the OS caches, not the data set; `<key>.ok.npy` (written last) marks the
  cache complete and lists which files decoded. The key hashes the file list, each file's size,
  mtime, ctime and inode, R, size and crop_pct: a changed file is decoded again (even one rewritten
  with its old size and mtime; see `cache_key`), a damaged cache is rebuilt.

`data.cache: auto` uses it when the file fits `data.cache_max_gb` on disk (default 10 GB), else
streams from the files; `choose_cache` says which and why in one line.
"""

from __future__ import annotations

import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from comp.data.images import DECODE_ERRORS, decode_rgb
from comp.data.transforms import eval_resize, square_margin, working_square

CACHE_VERSION = "4"  # 4: torch's resize in eval_resize_crop


def default_cache_dir() -> Path:
    """$COMP_CACHE_DIR, else $XDG_CACHE_HOME/comp, else ~/.cache/comp."""
    if os.environ.get("COMP_CACHE_DIR"):
        return Path(os.environ["COMP_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "comp"


def cache_bytes(n: int, size: int, crop_pct: float) -> int:
    """Disk bytes of the cache of `n` images at this preprocessing."""
    side = eval_resize(size, crop_pct)
    return n * 3 * side * side


@dataclass
class CacheChoice:
    """`data.cache`'s decision for one set of images, with the one line that explains it."""

    use: bool
    reason: str


def choose_cache(mode: str, paths: Sequence[Path], size: int, crop_pct: float, max_gb: float) -> CacheChoice:
    """Whether to use the decode-once cache (`mode` = data.cache: auto, on or off) for `paths`."""
    need = cache_bytes(len(paths), size, crop_pct)
    side = eval_resize(size, crop_pct)
    what = f"{len(paths)} images as {side} px squares, {need / 2**30:.2f} GB"
    if mode == "off":
        return CacheChoice(False, "files, decoded every epoch (data.cache: off)")
    if mode == "on":
        return CacheChoice(True, f"decode-once cache ({what}; data.cache: on)")
    if need <= max_gb * 2**30:
        return CacheChoice(True, f"decode-once cache ({what} <= data.cache_max_gb {max_gb:g})")
    return CacheChoice(False, f"files, decoded every epoch: the cache would take {what} > data.cache_max_gb {max_gb:g}; "
                              f"raise it (--set data.cache_max_gb={need / 2**30 * 1.1:.0f}) to cache")


def cache_key(paths: Sequence[Path], size: int, crop_pct: float) -> str:
    """Hash of the file list (path, byte size, mtime, ctime, inode) and the preprocessing.

    Size and mtime alone miss a file rewritten with its old timestamp (archives unpacked with
    their times, `cp -p`, `rsync -t`, and formats such as BMP, TIFF or PPM keep their size). Any
    write to a file sets its ctime to now, which no tool can set back, and a file replaced by
    another has another inode, so the key changes with every change of content; it costs nothing
    over the `stat` already made (a content hash would read every file at every run: seconds for
    a few GB of photos). It also changes on metadata-only events (chmod, a move, a copy of the
    folder to another disk): one decode again, never stale pixels.
    """
    h = hashlib.sha1(f"v{CACHE_VERSION}|{size}|{crop_pct:.6f}|{len(paths)}".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()[:24]


def _decode(path: Path, size: int, crop_pct: float) -> Optional[np.ndarray]:
    try:
        img = decode_rgb(path, draft_size=eval_resize(size, crop_pct))
    except DECODE_ERRORS:
        return None
    return working_square(img, size, crop_pct)


def decode_all(
    paths: Sequence[Path], size: int, crop_pct: float, out: Union[np.ndarray, int], threads: int = 2, progress=None
) -> np.ndarray:
    """Decode `paths` into `out`; returns the ok mask (N,) bool (a bad file's square stays zeros).

    `out` is an (N, R, R, 3) uint8 array, or the descriptor of a file of that size, written with
    `pwrite`: into the page cache in one copy, where assigning into a fresh memory map takes a page
    fault per 4 KB (measured 0.13 s against 0.2-0.9 s for 2,000 squares of 256 px). Raises OSError
    when the file cannot be written (a full disk).
    """
    ok = np.zeros(len(paths), dtype=bool)
    if progress is not None:
        progress.begin(f"decode {eval_resize(size, crop_pct)}px", len(paths))

    def one(i: int) -> None:
        arr = _decode(paths[i], size, crop_pct)
        if arr is None:
            return
        if isinstance(out, np.ndarray):
            out[i] = arr
        elif os.pwrite(out, arr, i * arr.nbytes) != arr.nbytes:  # arr is C-contiguous (`working_square`)
            raise OSError(errno.ENOSPC, "short write to the image cache")
        ok[i] = True

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for done, _ in enumerate(pool.map(one, range(len(paths))), 1):
            if progress is not None:
                progress.step(done)
    return ok


def load_or_build(
    paths: Sequence[Path], size: int, crop_pct: float, cache_dir: Optional[Path] = None, threads: int = 2, progress=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached squares of `paths`, decoding and writing them on the first call.

    Returns:
        (uint8 (N, 3, R, R) channels_last, memory-mapped from disk; ok mask (N,) bool). A cache folder that
        cannot be written (or a disk that fills up) costs the next run a decode: the squares are then kept in memory.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(paths, size, crop_pct)
    data, mask = cache_dir / f"{key}.u8", cache_dir / f"{key}.ok.npy"
    side = eval_resize(size, crop_pct)
    shape = (len(paths), side, side, 3)
    if not paths:
        return _nchw(torch.zeros(shape, dtype=torch.uint8)), torch.zeros(0, dtype=torch.bool)
    if mask.is_file() and data.is_file() and data.stat().st_size == int(np.prod(shape)):
        try:
            ok = np.load(mask)
            if ok.shape == (len(paths),):
                return _mapped(data, shape), torch.from_numpy(ok)
        except (OSError, ValueError):  # a damaged mask: rebuild, never trust it
            pass
    tmp = data.with_name(f"{data.name}.{os.getpid()}.tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        return _in_memory(paths, size, crop_pct, shape, threads, progress)
    try:
        os.ftruncate(fd, int(np.prod(shape)))  # bad files' squares read as zeros
        ok = decode_all(paths, size, crop_pct, fd, threads, progress)
    except OSError:
        tmp.unlink(missing_ok=True)
        return _in_memory(paths, size, crop_pct, shape, threads, progress)
    finally:
        os.close(fd)
    os.replace(tmp, data)
    tmp_mask = mask.with_name(f"{key}.{os.getpid()}.tmp.npy")
    np.save(tmp_mask, ok)
    os.replace(tmp_mask, mask)  # last: the cache is complete
    return _mapped(data, shape), torch.from_numpy(ok)


def _in_memory(paths, size, crop_pct, shape, threads, progress) -> tuple[torch.Tensor, torch.Tensor]:
    out = np.zeros(shape, dtype=np.uint8)
    ok = decode_all(paths, size, crop_pct, out, threads, progress)
    return _nchw(torch.from_numpy(out)), torch.from_numpy(ok)


def _mapped(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    # Copy-on-write: a writable array for torch that never writes back to the file.
    return _nchw(torch.from_numpy(np.memmap(path, np.uint8, "c", shape=shape)))


def _nchw(nhwc: torch.Tensor) -> torch.Tensor:
    """(N, R, R, 3) storage as the (N, 3, R, R) channels_last tensor the rest of comp indexes."""
    return nhwc.permute(0, 3, 1, 2)


def cache_rows(pool: Sequence[Path], paths: Sequence[Path]) -> torch.Tensor:
    """(len(paths),) the row of each of `paths` in the cache built over `pool` (a superset of them)."""
    where = {Path(p): i for i, p in enumerate(pool)}
    return torch.tensor([where[Path(p)] for p in paths], dtype=torch.long)


def eval_crops(squares: torch.Tensor, size: int, crop_pct: float) -> torch.Tensor:
    """The eval crops (N, 3, size, size) of cached squares, as a view: `eval_resize_crop`'s pixels."""
    m = square_margin(size, crop_pct)
    return squares[:, :, m : m + size, m : m + size]
