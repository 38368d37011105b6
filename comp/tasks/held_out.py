"""A run's held-out predictions as training wrote them, and several runs' merged: what post-processing
(multi-label thresholds, ordinal cut-points) is fitted on when `comp predict` ensembles runs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from comp.errors import UserError


def held_out_table(run_dir: Path) -> Path:
    """The held-out predictions a run's post-processing is fitted on: a k-fold run's oof.csv, else val_probs.csv."""
    run_dir = Path(run_dir)
    return run_dir / ("oof.csv" if (run_dir / "oof.csv").is_file() else "val_probs.csv")


def merged_held_out(run_dirs: Sequence[Path], weights: Sequence[float], columns: Sequence[str], what: str) -> tuple[torch.Tensor, list[str]]:
    """The runs' held-out (N, D) predictions merged with `weights` (in the first run's image order)
    and their label texts. Every run must hold out the same images (k-fold runs of one split);
    otherwise refused, naming `what` cannot be fitted, rather than averaging post-processing fitted
    to other predictions."""
    from comp.probs import read_probs

    tables = [read_probs(held_out_table(r)) for r in run_dirs]
    ids = tables[0][0]
    for r, (other, _, table_columns, _) in zip(run_dirs, tables):
        if sorted(other) != sorted(ids) or table_columns != list(columns):
            raise UserError(
                f"{r}: holds out other images than {run_dirs[0]}, so the ensemble's {what} cannot be fitted; "
                "ensemble k-fold runs of the same folds (same seed and --folds), or predict each run alone"
            )
    order = [{i: k for k, i in enumerate(t[0])} for t in tables]
    total = sum(weights)
    merged = sum(w / total * t[1][[o[i] for i in ids]] for w, t, o in zip(weights, tables, order))
    return merged, list(tables[0][3]["label"])
