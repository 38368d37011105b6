"""The numbers of `comp evaluate --report`: per-class scores, confusions, top losses, calibration.

Everything is computed from held-out probabilities (N, C) and labels (N,) with `sklearn.metrics`
where it has the measure (precision, recall, F1, confusion matrix); the reliability bins and the
expected calibration error (top-label, equal-width bins, as in Guo et al. 2017) are written here
because sklearn's `calibration_curve` is for binary problems only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

PER_CLASS_COLUMNS = ["class", "support", "precision", "recall", "f1", "predicted", "most_confused_with", "confused_count"]


def confusion(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted (argmax) class."""
    return confusion_matrix(labels.numpy(), probs.argmax(1).numpy(), labels=np.arange(num_classes))


def per_class_table(probs: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> pd.DataFrame:
    """One row per class, in class order.

    Columns: class, support (true images), precision, recall, f1 (sklearn, 0 where undefined),
    predicted (images predicted as it), most_confused_with (the wrong class its images are most
    often predicted as; empty when none is) and confused_count (how many).
    """
    c = len(classes)
    pred = probs.argmax(1).numpy()
    precision, recall, f1, support = precision_recall_fscore_support(labels.numpy(), pred, labels=np.arange(c), zero_division=0)
    cm = confusion(probs, labels, c)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    worst = off.argmax(1)
    count = off.max(1)
    return pd.DataFrame({
        "class": list(classes),
        "support": support.astype(int),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "predicted": cm.sum(0).astype(int),
        "most_confused_with": [classes[w] if n > 0 else "" for w, n in zip(worst, count)],
        "confused_count": count.astype(int),
    }, columns=PER_CLASS_COLUMNS)


def worst_first(table: pd.DataFrame) -> pd.DataFrame:
    """The per-class table sorted by F1, then recall, lowest first (classes without images last)."""
    return table.assign(_empty=table["support"] == 0).sort_values(["_empty", "f1", "recall", "class"], kind="stable").drop(columns="_empty")


def confused_pairs(cm: np.ndarray, classes: Sequence[str], n: int = 10) -> list[tuple[str, str, int]]:
    """The `n` largest off-diagonal cells as (true class, predicted class, count), largest first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:n]
    pairs = [(classes[i // len(classes)], classes[i % len(classes)], int(off.flat[i])) for i in flat]
    return [p for p in pairs if p[2] > 0]


def top_losses(
    probs: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], ids: Sequence[str], paths: Sequence[Path], n: int
) -> pd.DataFrame:
    """The `n` held-out images with the highest loss -log p(true class), highest first.

    Columns: rank, id, path, true, predicted, p_predicted, p_true, loss. High-loss images that
    look like their predicted class are the usual label errors of a competition.
    """
    p_true = probs.gather(1, labels.view(-1, 1)).squeeze(1).double()
    loss = -p_true.clamp(min=1e-15).log()
    order = torch.argsort(-loss, stable=True)[: max(0, n)]
    pred = probs.argmax(1)
    rows = [
        dict(rank=r + 1, id=ids[i], path=str(paths[i]), true=classes[int(labels[i])], predicted=classes[int(pred[i])],
             p_predicted=float(probs[i, pred[i]]), p_true=float(p_true[i]), loss=float(loss[i]))
        for r, i in enumerate(order.tolist())
    ]
    return pd.DataFrame(rows, columns=["rank", "id", "path", "true", "predicted", "p_predicted", "p_true", "loss"])


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> tuple[pd.DataFrame, float]:
    """Top-label reliability bins and the expected calibration error.

    Returns:
        (a table with one row per non-empty equal-width confidence bin: lo, hi, images,
        confidence (mean top probability), accuracy; ECE = sum over bins of
        images / N * |accuracy - confidence|).
    """
    conf, pred = probs.double().max(1)
    hit = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(conf, edges[1:-1])  # bin k holds (edges[k], edges[k+1]]; bin 0 also holds 0
    rows, ece = [], 0.0
    for k in range(bins):
        m = which == k
        if not bool(m.any()):
            continue
        c, a, n = float(conf[m].mean()), float(hit[m].mean()), int(m.sum())
        rows.append(dict(lo=float(edges[k]), hi=float(edges[k + 1]), images=n, confidence=c, accuracy=a))
        ece += n / len(conf) * abs(a - c)
    return pd.DataFrame(rows, columns=["lo", "hi", "images", "confidence", "accuracy"]), ece


def text_table(table: pd.DataFrame, four_places: Sequence[str] = ()) -> str:
    """`table` as aligned plain text: missing values as '-', the `four_places` columns with 4 decimals,
    other floats with 4 significant digits, cells cut at 40 characters."""
    def text(column: str, v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if column in four_places else f"{v:.4g}"
        return str(v)

    cells = [[text(c, v) for c, v in zip(table.columns, row)] for row in table.itertuples(index=False)]
    widths = [min(40, max(len(str(c)), *(len(r[i]) for r in cells))) for i, c in enumerate(table.columns)]
    lines = ["  ".join(str(c)[:w].ljust(w) for c, w in zip(table.columns, widths))]
    lines += ["  ".join(v[:w].ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)
