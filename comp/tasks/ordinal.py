"""Ordinal grades (APTOS 2019, Diabetic Retinopathy, PANDA): integer grades scored in order, by kappa.

The classes are the grades, integer names in numeric order; targets are (N,) grade indices. The
model has one output, a regression on the grade index (`train.loss: smooth_l1`, the default, as
APTOS 2019's 1st place, or `mse`), or K - 1 CORN outputs (`corn`, coral-pytorch) whose activation
is the expected grade; either way the prediction is one continuous grade position per image,
averaged over TTA views and ensemble members before it is cut. The cut-points between grades are
fitted on the held-out predictions to maximise the metric (`comp.tasks.cutpoints`, cutpoints.json)
and applied by `comp predict`; an ensemble's are fitted again on the merged held-out predictions.
Splits are stratified by grade; the submission is an integer grade per image.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from comp.errors import UserError
from comp.tasks import cutpoints as cp
from comp.tasks.index_labels import IndexLabels
from comp.tasks.value_metrics import GRADE_METRICS, GradeMetric, get_grade_metric
from comp.tasks.shape import where
from comp.tasks.value_task import ValueTask, value_shape


class Ordinal(IndexLabels, ValueTask):
    name = "ordinal"
    label = "ordinal"
    what = "grades"
    acc_name = "acc"
    from_tables = False  # an ensemble's cut-points are refitted on the runs' held-out predictions
    shapes = ("grade",)
    losses = ("smooth_l1", "mse", "corn")
    cut_name = "cut-points"
    plain_cut = "at rounding"
    cut_file = "cutpoints.json"
    probabilities = "the expected grade (a continuous grade position)"
    decision = "grade"
    weights_hint = " (data.sampler=balanced draws grades equally)"

    # -- metrics and config

    def metric(self, name: str) -> GradeMetric:
        return get_grade_metric(name)

    def check(self, cfg, classes: list[str]) -> GradeMetric:
        self._check_common(cfg)
        check_grades(classes, "the grades")
        if cfg.train.loss == "corn" and (cfg.train.mixup > 0 or cfg.train.cutmix > 0):
            raise UserError("train.loss=corn trains on whole grades, which Mixup/CutMix blends are not; "
                            "set train.mixup=0 and train.cutmix=0, or use train.loss=smooth_l1")
        return self.metric(cfg.metric)

    # -- labels and splits

    def check_classes(self, classes, source) -> None:
        check_grades(classes, f"{source}: the grades")

    def columns(self, classes) -> list[str]:
        return ["grade"]

    def model_outputs(self, classes) -> int:
        return len(classes) - 1 if self.loss_kind == "corn" else 1

    # -- training

    def setup(self, split) -> "Ordinal":
        """A copy whose regression head learns the standardized grade index (the mean and std of
        `split`'s grades, unless recorded), as a regression's target: the head starts at the spread
        of the grades, and smooth_l1's quadratic zone is one standard deviation wide."""
        task = copy.copy(self)
        if task.target_scale is None and self.loss_kind != "corn":
            y = np.asarray(split.labels, dtype=np.float64)
            std = float(y.std()) if len(y) > 1 else 0.0
            task.target_scale = (float(y.mean()) if len(y) else 0.0, std if std > 0 else 1.0)
        return task

    def record(self, data) -> None:
        data.target_scale = self.target_scale

    def _scale(self) -> tuple[float, float]:
        return self.target_scale or (0.0, 1.0)  # unscaled: a task built without a training split (tests, old runs)

    def loss_weights(self, spec, split, classes) -> Optional[torch.Tensor]:
        return None  # refused by check: one output has no class to weigh

    def loss(self, t, num_classes, weight=None):
        """`ValueLoss` on the grade index (smooth_l1, mse), or `CornLoss` over `num_classes` grades;
        Mixup blends grade indices linearly (refused with corn)."""
        from comp.tasks.value_losses import CornLoss, ValueLoss

        kind = self.kind_of(t.loss)
        if kind == "corn":
            return CornLoss(num_classes), None
        return ValueLoss(kind, *self._scale()), self._mixup(t)

    def value_loss(self):
        from comp.tasks.value_losses import ValueLoss

        return ValueLoss(self.loss_kind, *self._scale())

    def decided(self, soft):
        return self._rounded(soft[:, 0].float()).long()

    def confidence(self, soft):
        """1 at a whole grade, 0 half-way between two."""
        v = soft[:, 0].float()
        return 1 - 2 * (v - v.round()).abs()

    def flagged(self, soft, targets, sure):
        """A teacher at least one whole grade away from the label (`sure` does not apply to grades)."""
        gap = (soft[:, 0].float() - targets.float()).abs()
        return gap >= 1, gap

    def activation(self, logits):
        """(B, 1) regression logits un-standardized to the grade index, or (B, K - 1) CORN logits -> (B, 1) expected grade index."""
        from comp.tasks.value_losses import corn_expected_grade

        if self.loss_kind == "corn":
            return corn_expected_grade(logits)
        mean, std = self._scale()
        return logits.float()[..., :1] * std + mean

    def eval_loss(self, logits, targets) -> float:
        """The squared error of the grade position, whatever the training loss (so runs compare)."""
        return ((self.activation(logits)[:, 0] - targets.float()) ** 2).sum().item()

    def _rounded(self, values: torch.Tensor) -> torch.Tensor:
        top = len(self.classes) - 1 if self.classes else None  # unknown grades: only the low end is clamped
        return values.round().clamp(0, top)

    def hits(self, logits, targets) -> float:
        return (self._rounded(self.activation(logits)[:, 0]) == targets.float()).sum().item()

    def accuracy(self, probs, targets) -> float:
        """Exact grades at plain rounding."""
        return (self._rounded(probs[:, 0].float()) == targets.float()).float().mean().item() if len(targets) else float("nan")

    # -- scores and post-processing

    def score(self, metric, probs, targets, classes, thresholds=None) -> float:
        """At the cut-points `thresholds` (default: plain rounding)."""
        return cp.score_cut(metric, probs[:, 0].double().numpy(), targets.numpy(), classes, thresholds)

    def resampler(self, metric, probs, targets, classes, thresholds=None):
        from comp.tasks.resample import grade_resampler

        cuts = cp.rounding_cuts(len(classes)) if thresholds is None else thresholds
        grades = cp.cut(probs[:, 0].double().numpy(), cuts)
        return grade_resampler(get_grade_metric(metric), targets.numpy().astype(np.int64), grades, cp.grade_values(classes))

    def fit_held_out(self, run_dir: Path, table: str, metric: str, classes) -> dict[str, Any]:
        fit = cp.fit_run_cutpoints(run_dir, self.metric(metric).name, classes, table)
        return {"score_cut": fit["score"], "cutpoints": fit["cuts"]}  # the raw score is the one at rounding

    def prediction_post(self, run_dirs, weights, metric, classes, shape, given=None):
        if given is not None:
            if len(given) != len(classes) - 1:
                raise UserError(f"{len(given)} cut-points for {len(classes)} grades; package the runs again")
            return [float(t) for t in given], None
        return cp.prediction_cutpoints(run_dirs, weights, self.metric(metric).name, classes)

    def refit_post(self, probs, targets, metric):
        fit = cp.fit_cutpoints(probs[:, 0].numpy(), targets.numpy(), metric, self.classes)
        return {**fit, "thresholds": fit["cuts"], "score_plain": fit["score_at_rounding"]}

    def run_post(self, run_dir, classes, metric):
        return cp.read_cutpoints(Path(run_dir), classes)

    def export_facts(self, run_dir, metric, classes) -> dict[str, str]:
        """The task, the grades and the cut-points predict applies (the output is the continuous grade position)."""
        cuts, _ = cp.prediction_cutpoints([Path(run_dir)], [1.0], self.metric(metric).name, classes)
        return {"task": self.name, "cutpoints": "\n".join(f"{c:.6g}" for c in cuts),
                "output": "expected grade index; grade k (classes[k]) when cutpoints[k-1] <= value < cutpoints[k]"}

    # -- the submission

    def resolve_shape(self, fmt, classes, metric="qwk", override="auto"):
        """One column of integer grades; the sample's placeholder grades must be grades training saw."""
        self.one_value_column(fmt, "grade", override)
        known = set(classes)
        for line, value in enumerate(fmt.sample_values or [], start=2):
            if value.strip() not in known:
                raise UserError(f"{where(fmt)}: line {line} holds grade {value.strip()!r}, which training never saw "
                                f"(grades {', '.join(classes)}); check the train.csv grades or data.task")
        return value_shape(fmt, "grade")

    def decode(self, probs, classes, shape, thresholds=None, clip=False) -> dict[str, Any]:
        """Each image's grade name: its continuous value cut at `thresholds` (default: rounding)."""
        return {shape.columns[1]: [classes[i] for i in self._decided(probs, thresholds, len(classes)).tolist()]}

    def _decided(self, values, thresholds, grades: Optional[int] = None):
        cuts = cp.rounding_cuts(grades or len(self.classes)) if thresholds is None else thresholds
        return torch.from_numpy(cp.cut(values[:, 0].double().numpy(), cuts))

    def guess_shape(self, df, fmt, classes):
        return value_shape(fmt, "grade")

    def check_values(self, path, df, shape, classes) -> None:
        column = shape.columns[1]
        bad = ~df[column].isin(classes)
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(f"{path}: line {row + 2}: {df[column].iloc[row]!r} is not a grade of the competition "
                            f"({', '.join(classes)}); write integer grades")

    def compared(self, values, shape, classes):
        return values if values.isin(classes).all() else None

    # -- data check

    def audit_lines(self, comp, limit) -> list[str]:
        return [f"task: ordinal (integer grades in column {comp.label_column!r}, scored in order; the cut-points between grades "
                "are fitted on held-out predictions)", f"grades: {len(comp.classes)}"]

    def imbalance_fix(self) -> str:
        return "consider --set data.sampler=balanced (grades drawn equally often); the fitted cut-points also correct the pull to the common grade"


def check_grades(classes, what: str) -> None:
    """Refuse grade names that are not integers (one line)."""
    bad = [c for c in classes if not _is_int(c)]
    if bad:
        raise UserError(f"{what} must be integers (0, 1, 2, ...) for data.task=ordinal; {bad[0]!r} is not one: map the "
                        "grades to integers in train.csv, or use data.task=single")


def _is_int(s: str) -> bool:
    try:
        int(str(s).strip())
    except ValueError:
        return False
    return True


__all__ = ["GRADE_METRICS", "Ordinal", "check_grades"]
