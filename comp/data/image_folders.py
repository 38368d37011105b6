"""Which folders of a CSV competition hold its training and test images.

Kaggle names them freely (`train`, `train_images`, `train-jpg`, `Train`, `jpeg/train`,
`train-resized`): the training folder is the one where train.csv's ids name the most images, the
test folder the one where the sample's ids do; two that could each be meant are refused with one
line, and `data.train_images` / `data.test_images` name them outright. `comp data check` prints
which folders were chosen and why (`Competition.notes`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pandas as pd

from comp.data.file_index import FileIndex
from comp.data.images import list_images
from comp.errors import UserError

TEST_IMAGE_DIRS = ("test", "test_images")  # a test folder's usual names, when no sample names its ids


def image_folders(root: Path) -> dict[Path, list[Path]]:
    """Every folder right below `root` that holds images, with its images (recursively).

    Kaggle names them freely (`train`, `train_images`, `train-jpg`, `Train`, `jpeg/`), so the
    folder a CSV means is found by where its ids resolve (`choose_image_folder`), not by name.
    """
    found: dict[Path, list[Path]] = {}
    for d in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = list_images(d)
        if images:
            found[d] = images
    return found


def choose_image_folder(root: Path, folders: dict[Path, list[Path]], id_lists: dict[str, list], what: str,
                        option: str) -> Optional[tuple[Path, "FileIndex", str]]:
    """The folder whose images the ids of `id_lists` (a column name -> its values) name the most of.

    Two folders that name as many images could each be meant: refused with one line asking for
    `option`. When every image named lies in one subfolder of the winner (SIIM-ISIC's `jpeg/train/`
    beside `jpeg/test/`), that subfolder is the folder. None when no folder holds any of the ids.

    Returns:
        (folder, its FileIndex, why it was chosen, for `comp data check`).
    """
    best: dict[Path, tuple[int, frozenset, FileIndex]] = {}
    for d, images in folders.items():
        index = FileIndex(images, d)
        scored = []
        for ids in id_lists.values():  # distinct files named, so a label column (0, 1, 2 = 0.png ...) names few
            files = frozenset(p for v in ids for p in index.lookup(str(v)))
            scored.append((len(files), files))
        count, files = max(scored, key=lambda s: s[0], default=(0, frozenset()))
        if count:
            best[d] = (count, files, index)
    if not best:
        return None
    top = max(c for c, _, _ in best.values())
    tops = [d for d, (c, _, _) in best.items() if c == top]
    if len(tops) > 1:
        names = ", ".join(f"{d.relative_to(root).as_posix()}/" for d in tops[:3])
        raise UserError(f"{root}: the {what} ids name {top} images in each of {names}; set {option}=<folder> to the one meant")
    chosen, (_, files, index) = tops[0], best[tops[0]]
    common = Path(os.path.commonpath([p.parent for p in files]))
    if common != chosen and chosen in common.parents:
        inner = chosen / common.relative_to(chosen).parts[0]
        chosen, index = inner, FileIndex([p for p in folders[chosen] if inner in p.parents], inner)
    total = max(len(ids) for ids in id_lists.values())
    return chosen, index, f"the {what} ids name {top} images there ({total} rows)"


def shown(folder: Path, root: Path) -> str:
    """A folder as messages name it: relative to the competition folder, with a slash."""
    return f"{folder.relative_to(root).as_posix()}/" if root in folder.parents else str(folder)


def _given_folder(root: Path, given: str, option: str) -> Path:
    folder = Path(given) if Path(given).is_absolute() else root / given
    if not folder.is_dir() or not list_images(folder):
        raise UserError(f"{option}={given}: no folder of images at {folder}; give the folder (relative to {root}) that holds them")
    return folder


def train_folder(root: Path, df: pd.DataFrame, id_column: Optional[str], given: Optional[str],
                  folders: dict[Path, list[Path]]) -> tuple[Path, FileIndex, str]:
    """The folder of the training images: `data.train_images`, else the one where train.csv's ids
    (the id column's, or any column's when it is not known yet) name the most images."""
    if given:
        folder = _given_folder(root, given, "data.train_images")
        return folder, FileIndex(list_images(folder), folder), "data.train_images"
    columns = [id_column] if id_column in df.columns else list(df.columns)
    found = choose_image_folder(root, folders, {c: df[c].tolist() for c in columns}, "train.csv", "data.train_images")
    if found is None:
        where = ", ".join(f"{shown(d, root)}" for d in list(folders)[:5]) or "none holds images"
        raise UserError(f"{root}: train.csv names no image in the folders here ({where}); set data.train_images=<folder>")
    return found


def test_folder(root: Path, given: Optional[str], folders: dict[Path, list[Path]], train_dir: Path,
                sample_ids: list[str]) -> tuple[Optional[Path], str, Optional[str]]:
    """The folder of the test images and why: `data.test_images`, else the one where the sample's
    ids name the most images (the training folder only when no other does: test file names may
    repeat training ones), else a folder named test/ or test_images/. A test set that cannot be
    told is a problem for predicting (`Competition.require_test`), not for training."""
    if given:
        return _given_folder(root, given, "data.test_images"), "data.test_images", None
    ids = sample_ids
    if ids:
        others = {d: images for d, images in folders.items() if d != train_dir}
        try:
            found = None
            for candidates in (others, folders):
                found = choose_image_folder(root, candidates, {"id": ids}, "sample_submission.csv", "data.test_images") if ids else None
                if found is not None:
                    break
        except UserError as e:
            return None, "", str(e)
        if found is not None:
            return found[0], found[2], None
    named = next((root / d for d in TEST_IMAGE_DIRS if (root / d).is_dir()), None)
    return named, f"named {named.name}/" if named else "", None
