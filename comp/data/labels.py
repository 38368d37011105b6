"""Labels in train.csv: which column holds them, the class order, and which task the table is.

Class names are strings exactly as the user wrote them; their order (= the model's output index)
is numeric when every name is an integer ("3" < "12" < "100"), otherwise lexicographic.

Two shapes are multi-label (`data.task: auto | single | multilabel`, default auto):

- **one-hot**: besides the id, two or more columns and every value 0 or 1 (Plant Pathology 2020,
  ChestX-ray14): one class per column, named by its header, in the file's column order. A row
  with no 1 is an image with none of the tags (a negative for every class); it is kept and counted.
- **tags**: one label column of space-separated names (Planet, iMet, Plant Pathology 2021).

A label column with spaces can also be single-label class names that contain spaces (`Ankle boot`,
`Tomato Late blight`). Auto reads the column by how its names recombine: when the words of the
multi-word labels also make up other labels and there are fewer distinct words than distinct
labels, it is tags (Planet: 17 tags in some 450 combinations); when no multi-word label is made
of words other labels use, it is class names; anything between stops with one line asking for
`data.task`. Nothing is guessed.

A label column of numbers is read by its values: integers with at most `MAX_NUMBERED_CLASSES`
distinct values stay classes (NYCU's "0".."99" folders, grades scored as classes); numbers with a
fraction and more distinct values than that are a regression target (`data.task: regression`);
anything between (Pawpularity's integers 1-100, a few fractional values) stops with one line asking
for `data.task`. Ordinal grades are never guessed: `data.task: ordinal` says the integers are
ordered and scored in order (`comp data check` offers it for a column of a few integers).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pandas as pd

from comp.errors import UserError

LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target", "species", "breed", "diagnosis", "y", "tags")
Task = Literal["single", "multilabel", "ordinal", "regression"]
MAX_NUMBERED_CLASSES = 30  # more distinct integers than this may be a numeric target: asked, not guessed
_ONE_HOT = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


@dataclass
class LabelReading:
    """How train.csv labels its images: the task, where the labels are, and the classes."""

    task: Task
    label_columns: list[str]  # single or tags: [the label column]; one-hot: the class columns
    kind: Literal["single", "tags", "onehot", "value"]  # value: one number per image (regression)
    classes: list[str] = field(default_factory=list)  # multi-label only: the tag names, in class order
    repeats: list[tuple[str, str]] = field(default_factory=list)  # (train.csv line, what) of a tag given twice in a cell (used once)

    def tags_of(self, row: pd.Series) -> Optional[list[str]]:
        """A multi-label row's tags (None when the row has no usable label: an empty tags cell)."""
        if self.kind == "onehot":
            return [c for c in self.label_columns if _ONE_HOT[row[c].strip()] == 1]
        tags = row[self.label_columns[0]].split()
        return tags or None


def sort_class_names(names) -> list[str]:
    """Numeric order when every name is an integer (NYCU's "0".."99"), else lexicographic."""
    names = sorted(set(names))
    if names and all(_is_int(n) for n in names):
        return sorted(names, key=lambda n: (int(n), n))
    return names


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def detect_label_column(df: pd.DataFrame, id_col: str, csv_path: Path) -> str:
    """The label column: the only column besides the id, else the one with a usual label name."""
    others = [c for c in df.columns if c != id_col]
    if len(others) == 1:
        return others[0]
    named = [c for c in others if c.strip().lower() in LABEL_COLUMN_NAMES]
    if len(named) == 1:
        return named[0]
    raise UserError(
        f"{csv_path}: cannot tell which column is the label among {others}; set data.label_column=<column>"
    )


def _one_hot_columns(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns among `columns` whose every value is 0 or 1 (as written: 0, 1, 0.0, 1.0)."""
    return [c for c in columns if len(df) and df[c].str.strip().isin(list(_ONE_HOT)).all()]


def tag_reading(values: pd.Series) -> Optional[bool]:
    """Whether a label column of space-separated words is tags (True), class names (False), or
    unclear (None). See the module docstring for the rule."""
    labels = [v for v in dict.fromkeys(values.str.strip()) if v]
    multi = [v for v in labels if len(v.split()) > 1]
    if not multi:
        return False
    words = Counter(w for v in labels for w in set(v.split()))  # in how many distinct labels each word is
    recombined = [v for v in multi if all(words[w] > 1 for w in v.split())]
    if not recombined:
        return False
    # a tag given twice in a cell ("bag bag sandal") is a slip in a tags column, not a class name: it
    # is read once and reported (`read_labels`), as a repeated row is
    if len(recombined) == len(multi) and len(words) < len(labels):
        return True
    return None


def number_reading(values: pd.Series) -> Optional[str]:
    """How auto reads a label column of numbers: "single" (a few integers), "regression" (many
    fractional values), "unclear", or None when some label is not a number."""
    texts = [v for v in values.str.strip() if v]
    if not texts:
        return None
    try:
        numbers = np.array([float(v) for v in texts])
    except ValueError:
        return None
    if not np.isfinite(numbers).all():
        return None
    integers = bool((numbers == np.round(numbers)).all())
    many = len(set(texts)) > MAX_NUMBERED_CLASSES
    if integers and not many:
        return "single"
    if not integers and many:
        return "regression"
    return "unclear"


def read_labels(df: pd.DataFrame, id_col: str, label_column: Optional[str], task: str, csv_path: Path) -> LabelReading:
    """Decide the task of train.csv and where its labels are.

    `label_column` (data.label_column) names the single-label or tags column; `task` is
    data.task. Raises a one-line UserError for a table that is not clear (mixed 0/1 and text
    columns, an ambiguous tag column under auto, a one-hot set under `single`).
    """
    others = [c for c in df.columns if c != id_col]
    onehot = _one_hot_columns(df, others) if label_column is None else []
    text = [c for c in others if c not in onehot]
    if len(onehot) >= 2:
        if task not in ("auto", "multilabel"):
            raise UserError(
                f"{csv_path}: columns {_listed(onehot)} hold only 0/1, one column per class; that is a multi-label table, "
                f"not data.task={task} (set data.label_column=<column> to train on one column instead)"
            )
        if text:
            raise UserError(
                f"{csv_path}: 0/1 columns {_listed(onehot)} sit beside the text column {text[0]!r}; say which labels to use: "
                f"data.label_column={text[0]} (single-label or tags), or remove the other columns"
            )
        return LabelReading("multilabel", onehot, "onehot", list(onehot))
    column = label_column or detect_label_column(df, id_col, csv_path)
    if column not in df.columns:
        raise UserError(f"{csv_path}: no column {column!r}; columns are {list(df.columns)}")
    if task in ("single", "ordinal"):
        return LabelReading(task, [column], "single")
    if task == "regression":
        return LabelReading("regression", [column], "value")
    values = df[column].astype(str)
    numeric = number_reading(values) if task == "auto" else None
    if numeric == "regression":
        return LabelReading("regression", [column], "value")
    if numeric == "unclear":
        distinct = values.str.strip().replace("", None).dropna().nunique()
        raise UserError(
            f"{csv_path}: column {column!r} holds {distinct} distinct numbers; is it a number to predict or class names? set "
            "data.task=regression (a numeric target), data.task=ordinal (integer grades scored in order) or data.task=single (classes)"
        )
    reading = True if task == "multilabel" else tag_reading(values)
    if reading is None:
        line, sample = next(((i + 2, v) for i, v in enumerate(values) if len(v.split()) > 1), (0, ""))
        raise UserError(
            f"{csv_path}: column {column!r} holds labels with spaces (line {line}: {sample!r}) that may be several tags or one "
            "class name; set data.task=multilabel (space-separated tags) or data.task=single (class names with spaces)"
        )
    if not reading:
        return LabelReading("single", [column], "single")
    blank = [i + 2 for i, v in enumerate(values) if not v.strip()]
    if blank:
        raise UserError(
            f"{csv_path}: line {blank[0]} has an empty {column!r} cell ({len(blank)} rows in all); a multi-label row needs "
            "at least one tag: fill them, or drop the rows"
        )
    tags = sorted({t for v in values for t in v.split()})
    repeats = [(f"train.csv line {i + 2}", f"tag {t!r} given twice in {v.strip()!r} (used once)")
               for i, v in enumerate(values) for t, n in Counter(v.split()).items() if n > 1]
    return LabelReading("multilabel", [column], "tags", sort_class_names(tags), repeats)


def _listed(columns: list[str], most: int = 8) -> str:
    """Column names for a message: every one, or the first `most` and how many more."""
    shown = ", ".join(repr(c) for c in columns[:most])
    return shown + (f" and {len(columns) - most} more" if len(columns) > most else "")


def multi_hot(tag_lists: list[list[str]], classes: list[str]) -> np.ndarray:
    """(N, C) uint8 targets: 1 where image i has tag `classes[c]`."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(tag_lists), len(classes)), dtype=np.uint8)
    for i, tags in enumerate(tag_lists):
        out[i, [index[t] for t in tags]] = 1
    return out
