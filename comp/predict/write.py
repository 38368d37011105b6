"""Writing the prediction CSV: the sample's columns and ids, the values the task decodes for its shape."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import torch

from comp.probs import FLOAT_FORMAT
from comp.tasks import Task
from comp.tasks.shape import Shape


def output_paths(out: Path) -> tuple[Path, Path, Path]:
    """(prediction.csv, prediction_probs.csv, prediction_meta.json) for `out`."""
    out = Path(out)
    return out, out.with_name(out.stem + "_probs.csv"), out.with_name(out.stem + "_meta.json")


def write_prediction_csv(path: Path, ids: Sequence[str], probs: torch.Tensor, classes: Sequence[str], shape: Shape, task: Task,
                         thresholds: Optional[Sequence[float]] = None, clip: bool = False) -> None:
    """The submission in `shape`: the sample's columns, its ids in its order, and each row's values
    as `task.decode` gives them (class names, probabilities, top-k names, tags, 0/1 columns).

    Args:
        probs: (N, C) merged probabilities, rows in `ids` order, columns in `classes` order.
        thresholds: (C,) per-class thresholds of a thresholded shape (tags, onehot).
        clip: floor probabilities for a log-loss metric (`comp.tasks.single.LOG_LOSS_FLOOR`).
    """
    table = {shape.columns[0]: list(ids), **task.decode(probs, classes, shape, thresholds, clip)}
    pd.DataFrame(table).to_csv(path, index=False, float_format=FLOAT_FORMAT)
