"""Stratified splits of labelled images: per class (sklearn's StratifiedKFold and a hold-out that keeps
every class), and per tag (iterative stratification) for images with several tags. Each task's
`kfold` and `holdout` pick one (`comp.tasks`)."""

from __future__ import annotations

import numpy as np

from comp.errors import UserError


def holdout_indices(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified hold-out: about `fraction` of every class goes to validation.

    Written out rather than sklearn's `train_test_split(stratify=...)`, which refuses a class with one
    image and a validation set smaller than the number of classes; both are normal in small
    competitions. A class with one image stays in train; any class with two or more puts at least one
    image in validation.

    Args:
        labels: class index per image, length N.
        fraction: share of each class held out, in (0, 1).
        seed: the split is a pure function of (labels, fraction, seed).

    Returns:
        (train_idx, val_idx): sorted index lists that partition range(N).
    """
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    train_idx, val_idx = [], []
    for c in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == c)
        rng.shuffle(idx)
        n_val = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        val_idx += idx[:n_val].tolist()
        train_idx += idx[n_val:].tolist()
    return sorted(train_idx), sorted(val_idx)


def kfold_indices(labels: list[int], k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """Stratified K-fold (sklearn's StratifiedKFold, shuffled with `seed`).

    A class with fewer images than folds is still split (sklearn warns; we do not): it is
    validated in only as many folds as it has images. Fewer images than folds in *every* class is
    an error with the fix.

    Returns:
        K (train_idx, val_idx) pairs; the val parts partition range(N).
    """
    import warnings

    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(np.asarray(labels))
    if k > len(labels) or counts[counts > 0].max() < k:
        most = int(counts.max())
        if most < 2:
            raise UserError(f"--folds {k}: every class has a single image, so no fold can validate a class it also trains on; add images")
        raise UserError(f"--folds {k}: every class has fewer than {k} images; use fewer folds (at most --folds {most})")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % 2**32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class ..." - reported by the caller
        return [(sorted(tr.tolist()), sorted(va.tolist())) for tr, va in skf.split(np.zeros(len(labels)), labels)]


def _iterstrat():
    try:
        from iterstrat import ml_stratifiers
    except ImportError:
        raise UserError("multi-label splits need iterative-stratification: pip install 'comp[multilabel]' "
                        "(or pip install iterative-stratification)") from None
    return ml_stratifiers


def tag_kfold_indices(targets: np.ndarray, k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """K folds of a multi-label set, stratified per tag by iterative stratification (Sechidis et
    al. 2011, the `iterative-stratification` package's MultilabelStratifiedKFold), so each fold holds
    each tag in about its overall share: a tag with at least K images is in every fold's val part.

    Args:
        targets: (N, C) 0/1 tags per image.

    Returns:
        K (train_idx, val_idx) pairs; the val parts partition range(N).
    """
    y = np.asarray(targets)
    if k > len(y):
        raise UserError(f"--folds {k}: only {len(y)} labelled images; use fewer folds")
    folds = _iterstrat().MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed % 2**32)
    return [(sorted(tr.tolist()), sorted(va.tolist())) for tr, va in folds.split(np.zeros(len(y)), y)]


def tag_holdout_indices(targets: np.ndarray, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A hold-out of about `fraction` of the images with every tag in about its overall share
    (iterative stratification, MultilabelStratifiedShuffleSplit). Returns sorted (train_idx, val_idx)."""
    y = np.asarray(targets)
    split = _iterstrat().MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed % 2**32)
    tr, va = next(split.split(np.zeros(len(y)), y))
    return sorted(tr.tolist()), sorted(va.tolist())
