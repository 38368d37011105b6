"""Regression: one number per image (PetFinder Pawpularity, RSNA bone age), scored by RMSE, MAE, R2 or Pearson.

`classes` is one name, the target column's; targets are (N,) float numbers. The model has one
output, trained on the target standardized by the training rows' mean and std (`train.loss: mse`,
the default, `smooth_l1` or `l1`), or with `bce` on the target scaled into [0, 1] by
`data.target_range` behind a sigmoid. `setup` fits the scale on a run's training split and
`record` writes it (and the range) into the run's config, so every later stage (predict, package,
export) un-standardizes with the same numbers. Predictions are clipped to the range when written.
Splits are stratified on quantile bins of the target; Mixup blends targets linearly.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import numpy as np
import torch

from comp.errors import UserError
from comp.probs import FLOAT_FORMAT
from comp.tasks.splits import holdout_indices, kfold_indices
from comp.tasks.value_metrics import NUMBER_METRICS, NumberMetric, get_number_metric
from comp.tasks.value_task import ValueTask, numbers, value_shape

BINS = 10  # quantile bins the folds are stratified on (fewer when the data is small)
MIN_DECIMALS = 4  # never write fewer: an integer sample's placeholders do not make the metric score integers


class Regression(ValueTask):
    name = "regression"
    label = "regression"
    what = "target"
    acc_name = "acc"
    from_tables = True  # nothing is fitted on held-out images: *_probs.csv tables re-ensemble as they are
    shapes = ("value",)
    losses = ("mse", "smooth_l1", "l1", "bce")
    probabilities = "the predicted number"
    decision = "value"
    min_classes = 1  # the target column
    counted = False
    has_accuracy = False

    # -- metrics and config

    def metric(self, name: str) -> NumberMetric:
        return get_number_metric(name)

    def check(self, cfg, classes: list[str]) -> NumberMetric:
        self._check_common(cfg)
        if cfg.data.sampler == "balanced":
            raise UserError("data.sampler=balanced draws images by class; a regression run has none: set data.sampler=uniform")
        return self.metric(cfg.metric)

    # -- labels and splits

    def targets(self, labels, classes, source=None) -> torch.Tensor:
        return torch.from_numpy(parse_numbers(labels, source)).float()

    def split_targets(self, split) -> torch.Tensor:
        if split.targets is None:  # an empty split (data.train_on_val: no validation images)
            return torch.zeros(len(split), dtype=torch.float32)
        return torch.as_tensor(np.asarray(split.targets, dtype=np.float32))

    def label_texts(self, split, idx, classes) -> list[str]:
        return [FLOAT_FORMAT % float(split.targets[i]) for i in idx]

    def counts(self, split, classes) -> list[int]:
        return [len(split)]

    def kfold(self, split, k, seed):
        return kfold_indices(quantile_bins(split.targets, k), k, seed)

    def holdout(self, split, fraction, seed):
        return holdout_indices(quantile_bins(split.targets, max(2, round(1 / fraction))), fraction, seed)

    # -- training

    def for_data(self, split) -> "Regression":
        """A copy whose range, where unset, is the labelled targets' [min, max] (what the competition's images span)."""
        y = np.asarray(split.targets, dtype=np.float64)
        task = copy.copy(self)
        if task.target_range is None and len(y):
            task.target_range = (float(y.min()), float(y.max()) if y.max() > y.min() else float(y.min()) + 1.0)
        return task

    def setup(self, split) -> "Regression":
        """A copy with the scale (mean, std of the training `split`'s targets) and the range where unset."""
        y = np.asarray(split.targets, dtype=np.float64)
        task = self.for_data(split)
        if task.target_scale is None:
            std = float(y.std()) if len(y) > 1 else 0.0
            task.target_scale = (float(y.mean()) if len(y) else 0.0, std if std > 0 else 1.0)
        return task

    def record(self, data) -> None:
        data.target_scale = self.target_scale
        data.target_range = self.target_range

    def loss_weights(self, spec, split, classes) -> Optional[torch.Tensor]:
        return None

    def loss(self, t, num_classes, weight=None):
        """`ValueLoss` on the standardized target (bce: scaled by the range), and a linear Mixup."""
        from comp.tasks.value_losses import ValueLoss

        kind = self.kind_of(t.loss)
        if kind == "bce":
            lo, hi = self._range()
            return ValueLoss("bce", lo, hi - lo), self._mixup(t)
        mean, std = self._scale()
        return ValueLoss(kind, mean, std), self._mixup(t)

    def value_loss(self):
        from comp.tasks.value_losses import ValueLoss

        if self.loss_kind == "bce":
            lo, hi = self._range()
            return ValueLoss("bce", lo, hi - lo)
        return ValueLoss(self.loss_kind, *self._scale())

    def decided(self, soft):
        return soft[:, 0].float()

    def decision_texts(self, soft, classes):
        return [FLOAT_FORMAT % v for v in soft[:, 0].tolist()]

    def confidence(self, soft):
        raise UserError("pseudo.threshold keeps the test images the teachers are sure of; a number has no confidence: "
                        "unset pseudo.threshold for a regression")

    def flagged(self, soft, targets, sure):
        raise UserError("comp data check --teacher lists confident disagreements with class labels; a regression has none: "
                        "comp evaluate RUN --report lists its largest errors (top_errors.csv)")

    def _scale(self) -> tuple[float, float]:
        if self.target_scale is None:  # a bug: training sets it up (setup), predict reads it from the run's config
            raise RuntimeError("regression task without a target scale; call setup() on the training split first")
        return self.target_scale

    def _range(self) -> tuple[float, float]:
        if self.target_range is None:
            raise RuntimeError("regression task without a target range; call setup() on the training split first")
        return self.target_range

    def activation(self, logits):
        """(B, 1) logits -> (B, 1) numbers in the target's units: un-standardized, or the sigmoid mapped onto the range (bce)."""
        z = logits.float()[..., :1]
        if self.loss_kind == "bce":
            lo, hi = self._range()
            return torch.sigmoid(z) * (hi - lo) + lo
        mean, std = self._scale()
        return z * std + mean

    def eval_loss(self, logits, targets) -> float:
        """The squared error in standard deviations of the target, whatever the training loss (so runs compare)."""
        std = self._scale()[1]
        return (((self.activation(logits)[:, 0] - targets.float()) / std) ** 2).sum().item()

    def hits(self, logits, targets) -> float:
        return float("nan")  # no accuracy: a number is never exactly right

    def accuracy(self, probs, targets) -> float:
        return float("nan")

    # -- scores

    def score(self, metric, probs, targets, classes, thresholds=None) -> float:
        if len(targets) == 0:
            return float("nan")
        return float(self.metric(metric).fn(probs[:, 0].double().numpy(), targets.double().numpy()))

    def resampler(self, metric, probs, targets, classes, thresholds=None):
        from comp.tasks.resample import number_resampler

        return number_resampler(self.metric(metric).name, probs[:, 0].double().numpy(), targets.double().numpy())

    def export_facts(self, run_dir, metric, classes) -> dict[str, str]:
        lo, hi = self._range()
        return {"task": self.name, "target_range": f"{lo:.10g}\n{hi:.10g}",
                "output": "the predicted number, in the target's units (clip it to target_range, as comp predict does)"}

    # -- the submission

    def resolve_shape(self, fmt, classes, metric="rmse", override="auto"):
        self.one_value_column(fmt, "value", override)
        if fmt.sample_values:
            bad = [v for v in fmt.sample_values if not _is_number(v)]
            if bad:
                raise UserError(f"{fmt.sample}: the placeholder {bad[0].strip()!r} is not a number; a regression competition's "
                                "sample holds numbers (check data.task)")
        return value_shape(fmt, "value")

    def decode(self, probs, classes, shape, thresholds=None, clip=False) -> dict[str, Any]:
        """Each image's number, clipped to the target range, rounded to max(the sample's decimals, `MIN_DECIMALS`)."""
        v = probs[:, 0].double().numpy()
        if self.target_range is not None:
            v = np.clip(v, *self.target_range)
        return {shape.columns[1]: np.round(v, max(shape.decimals or 0, MIN_DECIMALS))}

    def _decided(self, values, thresholds):
        return torch.from_numpy(np.round(values[:, 0].double().numpy(), MIN_DECIMALS))

    def guess_shape(self, df, fmt, classes):
        return value_shape(fmt, "value")

    def check_values(self, path, df, shape, classes) -> None:
        """Finite numbers inside the target range."""
        column = shape.columns[1]
        v = numbers(path, df, column, "numbers")
        if self.target_range is not None:
            lo, hi = self.target_range
            out = (v < lo - 1e-9) | (v > hi + 1e-9)
            if out.any():
                row = int(out.nonzero()[0][0])
                raise UserError(f"{path}: line {row + 2}: {df[column].iloc[row]!r} is outside the target range [{lo:g}, {hi:g}]; "
                                "clip the predictions (comp predict does), or set data.target_range")

    # -- data check

    def audit_lines(self, comp, limit) -> list[str]:
        y = np.asarray(comp.train.targets, dtype=np.float64)
        lo, hi = self.target_range or (y.min(), y.max())
        return [f"task: regression (numbers in column {comp.label_column!r}; trained on the standardized target)",
                f"target: min {y.min():.4g}, mean {y.mean():.4g}, max {y.max():.4g}, std {y.std():.4g}; {len(np.unique(y))} distinct "
                f"values; predictions clipped to [{lo:.4g}, {hi:.4g}]" + ("" if self.target_range else " (data.target_range)")]

    def imbalance_fix(self) -> str:
        return "a skewed target: consider --set train.loss=smooth_l1 (less pulled by the tail)"


def parse_numbers(labels, source=None) -> np.ndarray:
    """Label texts -> (N,) float64; the first that is not a finite number is one line naming it."""
    out = np.empty(len(labels), dtype=np.float64)
    for i, text in enumerate(labels):
        try:
            out[i] = float(str(text).strip())
        except ValueError:
            raise UserError(f"{source or 'labels'}: target {text!r} (row {i + 1}) is not a number; a regression target is numeric "
                            "(check data.label_column, or use data.task=single for class names)") from None
        if not np.isfinite(out[i]):
            raise UserError(f"{source or 'labels'}: target {text!r} (row {i + 1}) is not finite; fix or drop the row")
    return out


def quantile_bins(values, k: int) -> np.ndarray:
    """(N,) bin indices of `values` at their quantiles: as many bins as keep at least `k` values in each
    (so each of k stratified folds gets some of every bin), at most `BINS`."""
    y = np.asarray(values, dtype=np.float64)
    n_bins = max(1, min(BINS, len(y) // max(k, 1)))
    if n_bins < 2:
        return np.zeros(len(y), dtype=np.int64)
    edges = np.unique(np.quantile(y, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, y, side="right").astype(np.int64)


def _is_number(text: str) -> bool:
    try:
        return bool(np.isfinite(float(str(text).strip())))
    except ValueError:
        return False


__all__ = ["NUMBER_METRICS", "Regression", "parse_numbers", "quantile_bins"]
