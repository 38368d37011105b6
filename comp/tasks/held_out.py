"""A run's held-out predictions as training wrote them, and several runs' merged: what post-processing
(multi-label thresholds, ordinal cut-points) is fitted on when `comp predict` ensembles runs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from comp.errors import UserError


def held_out_table(run_dir: Path) -> Path:
    """The held-out predictions a run's post-processing is fitted on: a k-fold run's oof.csv, else val_probs.csv."""
    run_dir = Path(run_dir)
    return run_dir / ("oof.csv" if (run_dir / "oof.csv").is_file() else "val_probs.csv")


def read_fitted(run_dir: Path, file: str, classes: Sequence[str], key: str, of: str) -> Optional[list[float]]:
    """The values under `key` of the record `file` a run fitted for `classes` (thresholds.json,
    cutpoints.json), or None when it has none; one fitted for other classes (`of`: tags, grades) is refused."""
    from comp.files import read_json

    record = read_json(Path(run_dir) / file)
    if record is None:
        return None
    if record.get("classes") != list(classes):
        raise UserError(f"{Path(run_dir) / file}: fitted for other {of}; retrain the run or delete the file")
    return [float(t) for t in record[key]]


def ensemble_post(run_dirs: Sequence[Path], weights: Sequence[float], columns: Sequence[str], own: Callable[[Path], Optional[list[float]]],
                  file: str, what: str, metric: str, refit: Callable[[torch.Tensor, list[str]], tuple[list[float], float]]
                  ) -> tuple[list[float], str]:
    """What `comp predict` cuts an ensemble at, and where it comes from: one run's own (`own(run)`,
    its `file`), or `refit(merged predictions, label texts)` -> (values, score) on the runs' merged
    held-out predictions (`merged_held_out`), never an average of values fitted to other predictions."""
    if len(run_dirs) == 1:
        values = own(run_dirs[0])
        if values is None:
            raise UserError(f"{run_dirs[0]}: no {file}; finish the run (comp train CONFIG --resume --out {run_dirs[0]})")
        return values, f"{Path(run_dirs[0]) / file}"
    merged, labels = merged_held_out(run_dirs, weights, columns, what)
    values, score = refit(merged, labels)
    return values, f"fitted on the {len(run_dirs)} runs' merged held-out predictions ({metric} {score:.4f})"


def merged_held_out(run_dirs: Sequence[Path], weights: Sequence[float], columns: Sequence[str], what: str) -> tuple[torch.Tensor, list[str]]:
    """The runs' held-out (N, D) predictions merged with `weights` (in the first run's image order)
    and their label texts. Every run must hold out the same images (k-fold runs of one split);
    otherwise refused, naming `what` cannot be fitted, rather than averaging post-processing fitted
    to other predictions."""
    ids, stacked, _, meta = aligned_held_out(run_dirs, columns, lambda r: (
        f"{r}: holds out other images than {run_dirs[0]}, so the ensemble's {what} cannot be fitted; "
        "ensemble k-fold runs of the same folds (same seed and --folds), or predict each run alone"))
    total = sum(weights)
    merged = sum(w / total * p for w, p in zip(weights, stacked))
    return merged, list(meta["label"])


def aligned_held_out(run_dirs: Sequence[Path], columns: Optional[Sequence[str]], refusal: Callable[[Path], str]
                     ) -> tuple[list[str], torch.Tensor, list[str], dict[str, list]]:
    """The runs' held-out tables on one image order (the first run's): (ids (N), (R, N, D) predictions,
    the columns, the first table's metadata). A run holding out other images, or with other columns
    than `columns` (None: the first run's), is refused with `refusal(run)`."""
    from comp.probs import read_probs

    tables = [read_probs(held_out_table(r)) for r in run_dirs]
    ids = tables[0][0]
    columns = list(tables[0][2] if columns is None else columns)
    for r, (other, _, table_columns, _) in zip(run_dirs, tables):
        if sorted(other) != sorted(ids) or table_columns != columns:
            raise UserError(refusal(r))
    order = [{i: k for k, i in enumerate(t[0])} for t in tables]
    return ids, torch.stack([t[1][[o[i] for i in ids]] for t, o in zip(tables, order)]), columns, tables[0][3]
