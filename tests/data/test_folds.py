from collections import Counter

from comp.data.competition import open_competition
from comp.data.folds import train_val_split
from comp.tasks.splits import holdout_indices
from comp.data.synthetic import make_competition


def test_holdout_is_stratified_partition_and_deterministic():
    labels = [0] * 50 + [1] * 30 + [2] * 2 + [3]
    tr, va = holdout_indices(labels, 0.2, seed=1)
    assert sorted(tr + va) == list(range(len(labels)))
    counts = Counter(labels[i] for i in va)
    assert counts == {0: 10, 1: 6, 2: 1}  # the one-image class stays in train
    assert holdout_indices(labels, 0.2, seed=1) == (tr, va)
    assert holdout_indices(labels, 0.2, seed=2) != (tr, va)


def test_small_data_still_gets_every_class_in_val():
    labels = [c for c in range(10) for _ in range(3)]
    _, va = holdout_indices(labels, 0.1, seed=0)
    assert sorted(labels[i] for i in va) == list(range(10))


def test_competition_val_folder_wins(tmp_path):
    comp = open_competition(make_competition(tmp_path / "c", classes=2, per_class=5, val_per_class=2))
    train, val = train_val_split(comp, 0.5, seed=0)
    assert len(train) == 10 and len(val) == 4


def test_kfold_partitions_and_stratifies():
    import numpy as np

    from comp.tasks.splits import kfold_indices

    labels = [0] * 30 + [1] * 15 + [2] * 2
    splits = kfold_indices(labels, 5, seed=0)
    vals = [v for _, v in splits]
    assert sorted(i for v in vals for i in v) == list(range(len(labels)))
    for tr, va in splits:
        assert not set(tr) & set(va)
        counts = np.bincount([labels[i] for i in va], minlength=3)
        assert counts[0] == 6 and counts[1] == 3  # exactly stratified
    # the 2-image class is validated in 2 of the 5 folds, never lost
    assert sum(any(labels[i] == 2 for i in v) for v in vals) == 2
    assert kfold_indices(labels, 5, seed=0) == splits


def test_kfold_refuses_when_every_class_is_smaller_than_k():
    import pytest

    from comp.tasks.splits import kfold_indices
    from comp.errors import UserError

    with pytest.raises(UserError, match=r"--folds 5: every class has fewer than 5 images; use fewer folds"):
        kfold_indices([0, 0, 1, 1, 2], 5, seed=0)
