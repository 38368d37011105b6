"""What graded (ordinal) and numeric (regression) competitions share: one continuous prediction per image.

The model's activation gives each image one value, (N, 1): a grade position or a number. TTA
views and ensemble members are averaged as values (the arithmetic mean; a geometric mean or logit
averaging merges probabilities, which these are not) before anything is cut or clipped. There is
no temperature to fit and no log loss; Mixup blends the values linearly (`LinearMixup`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import torch

from comp.errors import UserError
from comp.tasks.base import Task
from comp.tasks.shape import Shape, one_column


class ValueTask(Task):
    """The shared half of `Ordinal` and `Regression` (not registered itself)."""

    unit_rows = False  # one value per image, never renormalised
    merge_rules = ("mean",)
    merge_why = " (a geometric mean or logit average merges probabilities; these are continuous values)"
    probabilities = "one continuous value"
    weights_hint = ""  # what the class-weights refusal suggests instead

    def _check_common(self, cfg) -> None:
        """Refusals every value task shares, before any training."""
        self.check_loss(cfg.train.loss)
        if cfg.train.class_weights != "none":
            raise UserError(f"train.class_weights weighs classes; a {self.label} run has one continuous output: "
                            f"set train.class_weights=none{self.weights_hint}")
        if cfg.data.positive_class is not None:
            raise UserError(f"data.positive_class is for binary single-label competitions; unset it for a {self.label} one")
        self.check_merge(cfg.tta.merge, "tta.merge")

    def _mixup(self, t):
        from comp.tasks.value_losses import LinearMixup

        if t.mixup > 0 or t.cutmix > 0:
            return LinearMixup(mixup_alpha=t.mixup, cutmix_alpha=t.cutmix, prob=t.mix_prob, label_smoothing=0.0, num_classes=1)
        return None

    def train_notes(self, cfg) -> list[str]:
        if cfg.train.label_smoothing:
            return [f"note: train.label_smoothing={cfg.train.label_smoothing} smooths class targets; the {self.label} loss ignores it"]
        return []

    # -- second rounds: a teacher's value is a target like the label (the temperature does not apply)

    def soft_of(self, targets, classes):
        return targets.float().view(-1, 1)

    def soft_loss(self, logits, soft, temperature=1.0):
        if self.loss_kind == "corn":
            raise UserError("train.loss=corn learns whole grades, not a teacher's continuous grade; set pseudo.hard=true "
                            "(the teachers' rounded grades) or train.loss=smooth_l1")
        return self.value_loss()(logits, soft[:, 0])

    def value_loss(self):
        """The run's `ValueLoss` (its kind and standardization)."""
        raise NotImplementedError

    # -- no temperature: these outputs are values, not probabilities

    def apply_temperature(self, probs, temperature):
        return probs

    def fit_temperature(self, probs, targets) -> float:
        return 1.0

    def log_loss(self, probs, targets) -> float:
        return float("nan")

    def export_head(self, logits, inv_t, rule):
        """Each model's (N, 1) value (the task's activation), averaged over the models."""
        return torch.stack([self.activation(z) for z in logits]).mean(0)

    def outputs_text(self, classes) -> str:
        return f"{self.probabilities} (one column)"

    def scored_as_written(self, metric, shape) -> bool:
        return True  # the held-out score is of the values (or grades) the file holds

    def same_decisions(self, a, b, thresholds=None):
        return self._decided(a, thresholds) == self._decided(b, thresholds)

    def _decided(self, values: torch.Tensor, thresholds) -> torch.Tensor:
        raise NotImplementedError

    def one_value_column(self, fmt, kind: str, override: str) -> None:
        """Refuse a shape override of another task and a sample with several value columns."""
        if override not in ("auto", kind):
            raise UserError(f"data.submission={override} is not a {self.label} shape; a {self.label} competition writes "
                            f"{kind} (one column), or auto")
        one_column(fmt, kind)


def numbers(path, df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """Column `column` of a prediction file as finite numbers; the first that is not one is refused, naming its line."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(bad.nonzero()[0][0])
        raise UserError(f"{path}: line {row + 2}, column {column!r}: {df[column].iloc[row]!r} is not a finite number; write {what}")
    return values


def value_shape(fmt, kind: str) -> Shape:
    """A one-column shape of the sample's columns (or the default ones without a sample)."""
    return Shape(kind, list(fmt.columns), decimals=sample_decimals(fmt))


def sample_decimals(fmt) -> Optional[int]:
    """The most decimals the sample's placeholder values are written with (None without a sample)."""
    values = getattr(fmt, "sample_values", None)
    if not values:
        return None
    return max((len(v.strip().split(".", 1)[1]) if "." in v and "e" not in v.lower() else 0) for v in values)


__all__ = ["ValueTask", "numbers", "sample_decimals", "value_shape"]
