"""Probability tables on disk: one row per image, metadata columns first, then one column per class.

Used for `val_probs.csv` (per run), `oof.csv` (k-fold) and `<prediction>_probs.csv`, so runs can be
re-scored and re-ensembled without running the models again. The leading columns named in
`META_COLUMNS` (always `id`, then `label` and `fold` when present, in that order) are metadata;
every later column is a class. A class may be called anything: a class name that equals a
metadata name or starts with the escape character `\\` is written with one more `\\` in front
(a class called `label` has the column `\\label`), and reading removes it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from comp.errors import UserError

META_COLUMNS = ("id", "label", "fold")
ESCAPE = "\\"


def class_column(name: str) -> str:
    """The column header of class `name` (escaped where it could be read as metadata)."""
    return ESCAPE + name if name in META_COLUMNS or name.startswith(ESCAPE) else name


def _class_name(column: str) -> str:
    return column[len(ESCAPE):] if column.startswith(ESCAPE) else column


# Ten significant digits of rows renormalised in float64: every written value is within 5e-11 of
# the float64 row's (relatively), so a row read back sums to 1 within 5e-11, well inside what
# sklearn's log_loss accepts (1.5e-8). With 6 digits rows summed to 1 +- 2e-6 and it warned.
FLOAT_FORMAT = "%.10g"


def unit_rows(probs: torch.Tensor) -> np.ndarray:
    """(N, C) probabilities as float64 rows that sum to 1 (float32 rows do only up to ~1e-7)."""
    p = probs.detach().double().cpu()
    return (p / p.sum(1, keepdim=True)).numpy()


def write_probs(path: Path, ids: Sequence[str], probs: torch.Tensor, classes: Sequence[str], unit: bool = True, **meta: Sequence) -> None:
    """Write (N, C) `probs` (`FLOAT_FORMAT`) with an `id` column and optional `label`/`fold` columns.

    Rows are renormalised to sum to 1 (`unit`); a multi-label table (per-tag probabilities, a
    label of space-separated tags) is written as it is, with `unit=False`.
    """
    df = pd.DataFrame({"id": list(ids)})
    for key in ("label", "fold"):
        if key in meta:
            df[key] = list(meta[key])
    values = unit_rows(probs) if unit else probs.detach().double().cpu().numpy()
    df = pd.concat([df, pd.DataFrame(values, columns=[class_column(c) for c in classes])], axis=1)
    df.to_csv(path, index=False, float_format=FLOAT_FORMAT)


def read_probs(path: Path) -> tuple[list[str], torch.Tensor, list[str], dict[str, list]]:
    """Read a table written by `write_probs`: (ids, (N, C) probs, classes, {meta column: values})."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"cannot read probabilities {path} ({e}); pass a *_probs.csv written by comp predict") from e
    columns = [str(c) for c in df.columns]
    if not columns or columns[0] != "id":
        raise UserError(f"{path} is not a comp probability table (first column must be 'id')")
    n_meta = 1
    for name in META_COLUMNS[1:]:  # in their fixed order, each at most once
        if n_meta < len(columns) and columns[n_meta] == name:
            n_meta += 1
    classes = [_class_name(c) for c in columns[n_meta:]]
    try:
        probs = torch.tensor(df.iloc[:, n_meta:].replace("", "nan").to_numpy(dtype="float32"))  # pandas writes NaN as ""
    except ValueError as e:
        raise UserError(f"{path}: a probability is not a number ({e}); regenerate the table with comp predict") from e
    meta = {c: df[c].tolist() for c in columns[1:n_meta]}
    if "fold" in meta:
        meta["fold"] = [int(v) for v in meta["fold"]]
    return df["id"].tolist(), probs, classes, meta


def tag_targets(labels: Sequence[str], classes: Sequence[str], source: Optional[Path] = None) -> torch.Tensor:
    """Space-separated tag sets -> (N, C) 0/1 targets over `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    out = torch.zeros(len(labels), len(classes), dtype=torch.long)
    for row, text in enumerate(labels):
        for tag in str(text).split():
            if tag not in index:
                raise UserError(f"{source or 'labels'}: tag {tag!r} is not one of the classes")
            out[row, index[tag]] = 1
    return out


def label_indices(labels: Sequence[str], classes: Sequence[str], source: Optional[Path] = None) -> torch.Tensor:
    """Class names -> (N,) indices into `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    try:
        return torch.tensor([index[str(l)] for l in labels], dtype=torch.long)
    except KeyError as e:
        raise UserError(f"{source or 'labels'}: label {e.args[0]!r} is not one of the classes") from e
