"""Validating a prediction CSV against the competition: its columns, ids and values (`comp submit`).

The columns of the sample submission (or the NYCU default), one row per test id, every id present
once, no empty value (a tags cell may be empty where the task allows an image with no tag), and
values of the submission's shape, checked by the competition's task (class names, probabilities,
top-k names, known tags, 0/1 cells).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from comp.data.competition import Competition
from comp.errors import UserError
from comp.tasks.shape import Shape


def validate_prediction(path: Path, competition: Competition, shape: Optional[Shape] = None) -> pd.DataFrame:
    """Check `path` against the competition's submission format and `shape`; return it as a DataFrame.

    Every shape: the sample's columns, one row per test id, no empty value. Then, by shape: label
    = a class name per row; probs = numbers in [0, 1] whose rows sum to 1 (multi-label: each in
    [0, 1]); positive = numbers in [0, 1]; topk = k different class names per row; tags = known
    tags, none twice; onehot = 0 or 1. `shape` defaults to what the sample and the file's values
    say (the task's `guess_shape`).

    Raises:
        UserError: naming the first problem found and how to fix it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prediction file not found: {path}; write one with comp predict")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable CSV ({e}); regenerate it with comp predict") from e
    fmt = competition.submission
    expected_columns = shape.columns if shape is not None else fmt.columns
    if list(df.columns) != expected_columns:
        raise UserError(f"{path}: columns {list(df.columns)} but the competition expects {expected_columns}")
    # One normalization for checking, comparing and archiving: surrounding spaces are not part of a value.
    df = df.apply(lambda col: col.str.strip())
    ids = df[fmt.id_column]
    task = competition.task
    shape = shape or task.guess_shape(df, fmt, competition.classes)
    # a tags cell may be empty (data.at_least_one_tag: false): an image with no tag
    required = df[[fmt.id_column]] if task.may_be_empty(shape) else df
    empty = (required == "").any(axis=1)
    if empty.any():
        row = int(empty.to_numpy().nonzero()[0][0]) + 2
        raise UserError(f"{path}: empty value on line {row}; every row needs an id and a value in every column")
    dupes = ids[ids.duplicated()]
    if len(dupes):
        raise UserError(f"{path}: id {dupes.iloc[0]!r} appears more than once; each test id must appear once")
    expected = set(competition.test_ids)
    unknown = [i for i in ids if i not in expected]
    if unknown:
        raise UserError(f"{path}: id {unknown[0]!r} is not a test id ({len(unknown)} unknown); check the id style ({fmt.id_style})")
    missing = expected - set(ids)
    if missing:
        raise UserError(f"{path}: {len(df)} rows for {len(expected)} test ids; {len(missing)} missing, e.g. {sorted(missing)[0]!r}")
    task.check_values(path, df, shape, competition.classes)
    return df
