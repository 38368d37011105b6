"""Competition folders: layout detection, class names, test ids and the submission format (the
sample's columns; the shape of the values is the task's, `comp.tasks`).

Two layouts are recognised (see docs/contract.md):

1. folders: `train/<class>/*`, optional `val/<class>/*`, `test/*`, optional `sample_submission.csv`;
2. csv: `train.csv` (id + label columns), `sample_submission.csv`, and image folders of any name
   (`train/`, `train_images/`, `train-jpg/`, `jpeg/train/`, ...): the training folder is the one
   where train.csv's ids name the most images, the test folder the one where the sample's ids do
   (else `test/` or `test_images/`); two folders that could each be meant are refused with one
   line, and `data.train_images` / `data.test_images` name them outright.

Class names are strings exactly as the user wrote them (folder names or CSV labels). Their order
(= the model's output index) is numeric when every name is an integer ("3" < "12" < "100"),
otherwise lexicographic; predictions are always written as names, never as indices.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pandas as pd

from comp.config import DataConfig
from comp.data.file_index import FileIndex
from comp.data.image_folders import image_folders, shown, test_folder, train_folder
from comp.data.images import is_image_file, list_images, other_files
from comp.data.labels import multi_hot, read_labels, sort_class_names
from comp.errors import UserError
from comp.tasks import Task, get_task
from comp.tasks.regression import parse_numbers
from comp.tasks.single import SingleLabel

DEFAULT_COLUMNS = ("image_name", "pred_label")  # the NYCU format, used without a sample submission


@dataclass
class Split:
    """Labelled images: `paths[i]` has class (or grade) index `labels[i]`; in a multi-label
    competition `targets[i]` is its (C,) 0/1 row of tags instead, in a regression its number, and
    every `labels[i]` is -1."""

    paths: list[Path]
    labels: list[int]
    targets: Optional[np.ndarray] = None  # multi-label: (N, C) uint8; regression: (N,) float64

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx) -> "Split":
        idx = list(idx)
        targets = self.targets[idx] if self.targets is not None else None
        return Split([self.paths[i] for i in idx], [self.labels[i] for i in idx], targets)


@dataclass
class SubmissionFormat:
    """What the prediction CSV must look like: columns, id style and row order (from the sample)."""

    columns: list[str]
    id_style: Literal["stem", "name"]  # "cat_01" or "cat_01.jpg"
    sample: Optional[Path] = None  # the sample_submission.csv it was copied from, if any
    sample_values: Optional[list[str]] = None  # the sample's first value column, as written (its placeholder values)

    @property
    def id_column(self) -> str:
        return self.columns[0]

    @property
    def label_column(self) -> str:
        return self.columns[1]


@dataclass
class Competition:
    """Everything `comp` needs to know about a competition folder."""

    root: Path
    layout: Literal["folders", "csv"]
    classes: list[str]
    train: Split
    val: Optional[Split]  # a labelled validation split that ships with the data, if any
    test_paths: list[Path]
    test_ids: list[str]
    submission: SubmissionFormat
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path or row, reason)
    test_problem: Optional[str] = None  # why the test set is unusable; training still works
    id_column: Optional[str] = None  # CSV layout: the train.csv columns used
    label_column: Optional[str] = None
    task: Task = field(default_factory=SingleLabel)  # the competition type (comp.tasks), resolved from the labels
    label_kind: str = "single"  # single | tags (space-separated, in label_column) | onehot (one 0/1 column per class)
    notes: list[str] = field(default_factory=list)  # which image folders were chosen and why (comp data check)

    def require_test(self) -> None:
        """Raise the reason the test set cannot be predicted, if there is one."""
        if self.test_problem:
            raise UserError(self.test_problem)
        if not self.test_paths:
            sample = self.submission.sample
            if sample is not None:
                raise UserError(f"{sample}: lists no test ids; restore the competition's sample_submission.csv")
            raise UserError(f"{self.root}: no test images found; expected a test/ or test_images/ folder")

    def class_counts(self, split: Optional[Split] = None) -> dict[str, int]:
        """Images per class name (or per tag) for `split` (default: train), in class order."""
        split = split or self.train
        return dict(zip(self.classes, self.task.counts(split, self.classes)))


def open_configured(data: DataConfig) -> Competition:
    """`open_competition` for a config's `data` section; no `data.dir` is a UserError."""
    if not data.dir:
        raise UserError("no data folder: pass --data DIR or set data.dir in the config")
    return open_competition(data.dir, data.id_column, data.label_column, data.task, settings=data)


def open_competition(
    root: Path | str, id_column: Optional[str] = None, label_column: Optional[str] = None, task: str = "auto", settings=None,
) -> Competition:
    """Detect the layout of `root` and index its images, classes and submission format.

    Args:
        root: competition folder.
        id_column, label_column: CSV layout only; override the detected train.csv columns.
        task: data.task: `auto` or a task name (CSV layout; comp.data.labels reads which).
        settings: the config's data section (or any object with its task keys, `positive_class`,
            `at_least_one_tag`) the competition's `Task` is set up with (`comp.tasks.get_task`).

    Returns:
        A `Competition`; class indices of `train`/`val` refer to `classes` (multi-label: `targets`).

    Raises:
        UserError: missing folder, no recognisable layout, unusable CSV, test images missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}; pass the competition folder (the one holding train/ or train.csv)")
    if (root / "train.csv").is_file():
        competition = _open_csv(root, id_column, label_column, task, settings)
    elif task not in ("auto", "single", "ordinal"):
        raise UserError(f"{root}: data.task={task} needs a train.csv (tags, one 0/1 column per class, or numbers); "
                        "class folders hold one label per image")
    elif (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir()):
        competition = _open_folders(root)
    else:
        competition = None
    if competition is not None:
        # class folders are single-label unless data.task says they are grades
        name = "ordinal" if task == "ordinal" and competition.layout == "folders" else competition.task.name
        # with the run's task settings and the competition's classes (and, for regression, its target range)
        competition.task = get_task(name, settings, classes=competition.classes).for_data(competition.train)
        competition.task.check_classes(competition.classes, competition.root)
        return competition
    raise UserError(
        f"{root}: no competition layout found; expected train/<class>/ folders or train.csv + an image folder"
    )


def read_table(path: Path) -> pd.DataFrame:
    """A competition CSV as strings ("NA" stays a label): UTF-8 with or without Excel's byte-order
    mark, else Latin-1 (which decodes any bytes, so odd exports still open)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="latin-1")


# -- folders layout -------------------------------------------------------------------------


def _class_folders(split_dir: Path, skipped: list[tuple[str, str]]) -> dict[str, list[Path]]:
    """{class name: its images} of `split_dir`'s class folders.

    A class is the folder's name without surrounding spaces, as a CSV label or a sample
    submission's header is read (`train/  spaced/` is the class `spaced`), so the three always
    compare equal; two folders that differ only by such spaces are an error, not one class.
    """
    found: dict[str, list[Path]] = {}
    folder_of: dict[str, str] = {}
    for d in sorted(split_dir.iterdir()):
        if d.name.startswith("."):
            continue
        if not d.is_dir():
            if is_image_file(d):
                skipped.append((str(d), "image outside a class folder"))
            continue
        skipped += [(str(p), "not an image file (extension)") for p in other_files(d)]
        images = list_images(d)
        if not images:
            skipped.append((str(d), "class folder without images (class ignored)"))
            continue
        name = d.name.strip()
        if not name:
            raise UserError(f"{split_dir}: the folder {d.name!r} has no name but spaces; give the class a name")
        if name in folder_of:
            raise UserError(
                f"{split_dir}: folders {folder_of[name]!r} and {d.name!r} differ only by surrounding spaces, which are not part of "
                f"a class name; merge or rename one"
            )
        folder_of[name] = d.name
        found[name] = images
    return found


def _open_folders(root: Path) -> Competition:
    skipped: list[tuple[str, str]] = []
    train_dirs = _class_folders(root / "train", skipped)
    if not train_dirs:
        raise UserError(f"{root / 'train'}: no class folder holds an image; expected train/<class>/<image>")
    classes = sort_class_names(train_dirs)
    index = {c: i for i, c in enumerate(classes)}
    train = _split_from(train_dirs, index)
    val = None
    if (root / "val").is_dir():
        val_dirs = _class_folders(root / "val", skipped)
        unknown = sorted(set(val_dirs) - set(index))
        if unknown:
            raise UserError(f"{root / 'val'}: classes {unknown[:5]} have no train/ folder; rename or remove them")
        val = _split_from(val_dirs, index) if val_dirs else None
    test_dir = root / "test"
    test_paths = list_images(test_dir) if test_dir.is_dir() else []
    submission, test_paths, test_ids, problem = _test_set(root, test_paths, classes)
    return Competition(root, "folders", classes, train, val, test_paths, test_ids, submission, skipped, problem)


def _split_from(folders: dict[str, list[Path]], index: dict[str, int]) -> Split:
    paths, labels = [], []
    for name, images in folders.items():
        paths += images
        labels += [index[name]] * len(images)
    return Split(paths, labels)


# -- csv layout -----------------------------------------------------------------------------


def _open_csv(root: Path, id_column: Optional[str], label_column: Optional[str], task: str = "auto", settings=None) -> Competition:
    csv_path = root / "train.csv"
    try:
        df = read_table(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{csv_path}: cannot parse CSV ({e}); fix the file") from e
    folders = image_folders(root)
    image_dir, files, why = train_folder(root, df, id_column, getattr(settings, "train_images", None), folders)
    notes = [f"train images: {shown(image_dir, root)} ({why})"]
    other = other_files(image_dir)
    id_col = id_column or _detect_id_column(df, files, csv_path)
    if id_col not in df.columns:
        raise UserError(f"{csv_path}: no column {id_col!r}; columns are {list(df.columns)}")
    reading = read_labels(df, id_col, label_column, task, csv_path)
    lab_col = reading.label_columns[0] if reading.kind != "onehot" else None
    # A multi-label row's label is its tag set, written as sorted space-separated tags.
    label_texts = (df[lab_col] if reading.kind in ("single", "value")
                   else pd.Series([" ".join(sorted(set(reading.tags_of(r) or []))) for _, r in df.iterrows()], index=df.index))

    skipped: list[tuple[str, str]] = [(str(p), "not an image file (extension)") for p in other] + reading.repeats
    rows: dict[Path, str] = {}  # one training sample per image file
    for line, (image_id, label) in enumerate(zip(df[id_col], label_texts), start=2):
        found = files.lookup(image_id)
        if len(found) > 1:
            names = ", ".join(p.relative_to(root).as_posix() for p in found[:3])
            raise UserError(
                f"{csv_path}: id {image_id!r} (line {line}) matches {len(found)} images ({names}); "
                f"write ids as paths relative to {image_dir.name}/, e.g. {found[0].relative_to(image_dir).as_posix()!r}"
            )
        if not found:
            skipped.append((f"train.csv id {image_id!r}", f"no such image in {image_dir.name}/"))
            continue
        path, label = found[0], label.strip()
        if not label and reading.kind != "onehot":  # a one-hot row of zeros is an image with no tag
            skipped.append((str(path), "empty label in train.csv"))
        elif path not in rows:
            rows[path] = label
        elif rows[path] != label:
            raise UserError(
                f"{csv_path}: {path.relative_to(root).as_posix()} is listed with two labels ({rows[path]!r} and "
                f"{label!r}, line {line}); keep one row per image"
            )
        else:
            skipped.append((f"train.csv line {line}", f"duplicate row for {path.relative_to(root).as_posix()} (used once)"))
    if not rows:
        raise UserError(f"{csv_path}: no row of column {id_col!r} matches an image in {image_dir}/")
    if reading.kind == "value":  # regression: one number per image; the target column names the prediction
        classes = [lab_col]
        train = Split(list(rows), [-1] * len(rows), parse_numbers(list(rows.values()), csv_path))
    elif reading.kind != "single":  # tags: each image's row of 0/1 over the tags
        classes = reading.classes
        train = Split(list(rows), [-1] * len(rows), multi_hot([lab.split() for lab in rows.values()], classes))
    else:
        classes = sort_class_names(rows.values())
        index = {c: i for i, c in enumerate(classes)}
        train = Split(list(rows), [index[lab] for lab in rows.values()])

    test_dir, why, problem = test_folder(root, getattr(settings, "test_images", None), folders, image_dir, _sample_ids(root))
    test_paths = list_images(test_dir) if test_dir else []
    if test_dir is not None and test_dir == image_dir:
        # Some competitions keep train and test images in one folder and list test ids in the sample.
        used = set(train.paths)
        test_paths = [p for p in files.paths if p not in used]
    if test_dir is not None:
        notes.append(f"test images: {shown(test_dir, root)} ({why})")
    submission, test_paths, test_ids, test_problem = _test_set(root, test_paths, classes)
    return Competition(root, "csv", classes, train, None, test_paths, test_ids, submission, skipped, problem or test_problem, id_col,
                       lab_col, get_task(reading.task), reading.kind, notes)


def _sample_ids(root: Path) -> list[str]:
    """The ids of sample_submission.csv ([] without a readable one: `_test_set` reports why)."""
    sample = root / "sample_submission.csv"
    if not sample.is_file():
        return []
    try:
        return read_table(sample).iloc[:, 0].astype(str).str.strip().tolist()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, IndexError):
        return []


def _detect_id_column(df: pd.DataFrame, files: FileIndex, csv_path: Path) -> str:
    """The column whose values address the most distinct image files.

    A label column can match files too (labels 0-2 and files 0.png-2.png), but it addresses only
    as many files as there are classes; the id column addresses one per row. Columns that tie
    and map rows to different files are ambiguous: the user is asked for `data.id_column`.
    """
    # An id that matches several files still marks its column as the id column; the rows then
    # report the ambiguity with the file names.
    mappings = {col: [tuple(files.lookup(v)) for v in df[col]] for col in df.columns}
    distinct = {col: len({m for m in ms if m}) for col, ms in mappings.items()}
    best = max(df.columns, key=lambda c: distinct[c]) if len(df.columns) else None
    if best is None or distinct[best] == 0:
        raise UserError(
            f"{csv_path}: no column holds image file names, stems or paths; set data.id_column=<column> "
            f"(columns: {list(df.columns)})"
        )
    rivals = [c for c in df.columns if c != best and distinct[c] == distinct[best] and mappings[c] != mappings[best]]
    if rivals:
        raise UserError(
            f"{csv_path}: columns {best!r} and {rivals[0]!r} both name {distinct[best]} image files; "
            f"set data.id_column=<column> (--id-column for comp data check)"
        )
    return best


# -- test set and submission format ---------------------------------------------------------


def _test_set(
    root: Path, test_paths: list[Path], classes: list[str]
) -> tuple[SubmissionFormat, list[Path], list[str], Optional[str]]:
    """The submission format, the test images in submission order, their ids, and any problem.

    A problem with the test set (ids without images, clashing stems) does not stop training; it is
    raised by `Competition.require_test` when predicting.
    """
    sample_path = root / "sample_submission.csv"
    sample, problem = None, None
    if sample_path.is_file():
        try:
            sample = read_table(sample_path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            problem = f"{sample_path}: cannot parse CSV ({str(e).strip()}); fix or delete the file"
        else:
            if len(sample.columns) < 2:
                problem = f"{sample_path}: expected an id column and a label column, got {list(sample.columns)}"
            elif len(sample.columns) > 2 and {str(c).strip() for c in sample.columns[1:]} != set(classes):
                # Refused up front: predict would write columns that submit then rejects. (Value
                # columns that are the class names are the one-probability-per-class shape.)
                stray = [str(c) for c in sample.columns[1:] if str(c).strip() not in classes]
                problem = (
                    f"{sample_path}: columns {[str(c) for c in sample.columns]}; comp writes an id and either one "
                    f"value column or one column per class, and {stray} match no class; if the competition does "
                    "not score them, remove them from the sample"
                )
    if sample is None or problem:
        ids = [p.stem for p in test_paths]
        dupes = [i for i, n in Counter(ids).items() if n > 1]
        if dupes and not problem:
            problem = f"{root}: test images share the stem {dupes[0]!r} (e.g. .jpg and .png); rename one"
        return SubmissionFormat(list(DEFAULT_COLUMNS), "stem"), test_paths, ids, problem
    ids = [str(v).strip() for v in sample.iloc[:, 0]]
    has_ext = sum(is_image_file(Path(i)) for i in ids)
    style: Literal["stem", "name"] = "name" if ids and has_ext > len(ids) / 2 else "stem"
    index = FileIndex(test_paths)
    matches = [index.lookup(i) for i in ids]
    found = [m[0] if len(m) == 1 else None for m in matches]
    missing = [i for i, m in zip(ids, matches) if not m]
    ambiguous = [(i, m) for i, m in zip(ids, matches) if len(m) > 1]
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    problem = None
    if repeated:
        problem = f"{sample_path}: id {repeated[0]!r} appears {ids.count(repeated[0])} times; each test id must appear once"
    elif ambiguous:
        i, m = ambiguous[0]
        problem = f"{sample_path}: id {i!r} matches {len(m)} test images ({', '.join(p.name for p in m[:3])}); rename one"
    elif missing:
        problem = (
            f"{sample_path}: {len(missing)} of {len(ids)} ids have no test image (first: {missing[0]!r}); "
            "check the test folder matches the sample submission"
        )
    fmt = SubmissionFormat([str(c) for c in sample.columns], style, sample_path, [str(v) for v in sample.iloc[:, 1]])
    return fmt, [p for p in found if p is not None], [i for i, p in zip(ids, found) if p is not None], problem
