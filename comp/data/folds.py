"""The labelled images a run trains and validates on: the hold-out split, and everything k-fold splits.

How a split is stratified (per class, or per tag) is the competition's task's (`comp.tasks`).
"""

from __future__ import annotations

import numpy as np

from comp.data.competition import Competition, Split


def merged_labelled(comp: Competition) -> Split:
    """All labelled images (train plus a shipped val/ split): what k-fold splits."""
    if comp.val is None:
        return comp.train
    targets = None if comp.train.targets is None else np.concatenate([comp.train.targets, comp.val.targets])
    return Split(comp.train.paths + comp.val.paths, comp.train.labels + comp.val.labels, targets)


def train_val_split(comp: Competition, fraction: float, seed: int) -> tuple[Split, Split]:
    """The competition's own val/ split when it has one, else the task's stratified hold-out of train."""
    if comp.val is not None and len(comp.val) > 0:
        return comp.train, comp.val
    train_idx, val_idx = comp.task.holdout(comp.train, fraction, seed)
    return comp.train.subset(train_idx), comp.train.subset(val_idx)


def split_kfold(comp: Competition, split: Split, k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """K folds of `split` (images of `comp`), stratified as its task stratifies."""
    return comp.task.kfold(split, k, seed)
