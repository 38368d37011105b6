"""Probability tables on disk: one row per image, metadata columns first, then one column per class.

Used for `val_probs.csv` (per run), `oof.csv` (k-fold) and `<prediction>_probs.csv`, so runs can be
re-scored and re-ensembled without running the models again. Columns are read by position (the
metadata count is stored in the header name `n_meta`-free way: metadata columns are the ones named
in `META_COLUMNS`), so a class may be called anything except those names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import torch

from comp.errors import UserError

META_COLUMNS = ("id", "label", "fold")


def write_probs(path: Path, ids: Sequence[str], probs: torch.Tensor, classes: Sequence[str], **meta: Sequence) -> None:
    """Write (N, C) `probs` with an `id` column and optional `label`/`fold` columns."""
    df = pd.DataFrame({"id": list(ids)})
    for key in ("label", "fold"):
        if key in meta:
            df[key] = list(meta[key])
    df = pd.concat([df, pd.DataFrame(probs.numpy(), columns=list(classes))], axis=1)
    df.to_csv(path, index=False, float_format="%.6g")


def read_probs(path: Path) -> tuple[list[str], torch.Tensor, list[str], dict[str, list]]:
    """Read a table written by `write_probs`: (ids, (N, C) probs, classes, {meta column: values})."""
    try:
        df = pd.read_csv(path, dtype={"id": str, "label": str}, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"cannot read probabilities {path} ({e}); pass a *_probs.csv written by comp predict") from e
    meta_cols = [c for c in df.columns[:3] if c in META_COLUMNS]
    if not meta_cols or meta_cols[0] != "id":
        raise UserError(f"{path} is not a comp probability table (first column must be 'id')")
    classes = [str(c) for c in df.columns[len(meta_cols):]]
    probs = torch.tensor(df[df.columns[len(meta_cols):]].to_numpy(dtype="float32"))
    return df["id"].astype(str).tolist(), probs, classes, {c: df[c].tolist() for c in meta_cols[1:]}


def label_indices(labels: Sequence[str], classes: Sequence[str], source: Optional[Path] = None) -> torch.Tensor:
    """Class names -> (N,) indices into `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    try:
        return torch.tensor([index[str(l)] for l in labels], dtype=torch.long)
    except KeyError as e:
        raise UserError(f"{source or 'labels'}: label {e.args[0]!r} is not one of the classes") from e
