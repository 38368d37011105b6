"""Labels that are one class index per image (`Split.labels`): what single-label classes and ordinal
grades share. Targets are (N,) indices into the classes; splits are stratified by class (or grade)."""

from __future__ import annotations

import numpy as np
import torch

from comp.probs import label_indices
from comp.tasks.splits import holdout_indices, kfold_indices


class IndexLabels:
    """The label half of the `Task` interface for one class index per image (mixed into a task)."""

    def targets(self, labels, classes, source=None) -> torch.Tensor:
        return label_indices(labels, classes, source)

    def split_targets(self, split) -> torch.Tensor:
        return torch.tensor(split.labels, dtype=torch.long)

    def label_texts(self, split, idx, classes) -> list[str]:
        return [classes[split.labels[i]] for i in idx]

    def decision_texts(self, soft, classes) -> list[str]:
        return [classes[i] for i in self.decided(soft).tolist()]

    def counts(self, split, classes) -> list[int]:
        return np.bincount(np.asarray(split.labels, dtype=np.int64), minlength=len(classes)).tolist()

    def kfold(self, split, k, seed):
        return kfold_indices(split.labels, k, seed)

    def holdout(self, split, fraction, seed):
        return holdout_indices(split.labels, fraction, seed)
