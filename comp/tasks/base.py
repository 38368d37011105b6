"""The `Task` interface: everything that differs between competition types, in one object.

A run's task is resolved once, from `data.task` and the data (`comp.data.labels` reads train.csv),
and handed to every stage: data (targets, splits), engine (loss, activation, accuracy, the epoch's
score, the post-fit on held-out predictions), predict (merge rules, decoding to the submission's
shape), evaluate (scores of what predict writes), submission (validating a file) and ship (the
exported graph's activation). Nothing outside `comp/tasks/` asks which task a run is; it calls the
task's methods. timm's `timm/task/` (`ClassificationTask`, `MultiLabelClassificationTask`) is the
model for the training half; ours also carries the competition half.

How to add a task: subclass `Task`, fill in every method that raises NotImplementedError, register
it in `comp/tasks/__init__.py`'s `TASKS`, and copy the tests of `tests/tasks/` for it (docs/contract.md).

Tensors: `probs` are (N, D) predictions, the task's activation of the model's outputs: D = C
probabilities (C = the number of classes or tags) or D = 1 continuous value (a grade's position,
a number); `columns(classes)` names the D columns of the tables that hold them (val_probs.csv,
oof.csv, `*_probs.csv`). `targets` are what the loss compares with ((N,) class or grade indices,
(N, C) 0/1 tag rows, or (N,) numbers).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch

from comp.errors import UserError

if TYPE_CHECKING:  # annotations only: tasks come before config, data and engine and import none of them at run time
    import pandas as pd
    import torch.nn as nn
    from timm.data import Mixup

    from comp.config import Config, TrainConfig
    from comp.tasks.shape import Shape


# The suffixes of a held-out score after the post-processing `comp predict` applies, in the order
# they are looked for: a temperature (`_calibrated`, log loss), per-tag thresholds (`_thresholded`).
# they are looked for: a temperature (`_calibrated`, log loss), per-tag thresholds (`_thresholded`),
# cut-points between grades (`_cut`, ordinal).
POST_SUFFIXES = ("_calibrated", "_thresholded", "_cut")
POST_WORDS = {"_calibrated": "calibrated", "_thresholded": "at the fitted thresholds",  # how logs name them
              "_cut": "at the fitted cut-points"}
POST_MISSING = {"_calibrated": "score uncalibrated: no temperature yet",  # an unfinished run's score lacks it (comp runs)
                "_thresholded": "score at 0.5: no fitted thresholds yet",
                "_cut": "score at plain rounding: no fitted cut-points yet"}
CALIBRATED = "_calibrated"


def final_score_key(saved: dict, key: str, calibrated: bool = True) -> Optional[str]:
    """Which entry of `saved` (a summary.json or cv.json) is a run's final score.

    `key` is the raw score's key (`best_val_score` or `cv_score`); the score of what `comp predict`
    writes is the first of `key` + `POST_SUFFIXES` present. `calibrated=False` (`--no-calibrate`)
    skips the temperature only: thresholds are still applied, so their score is still the final one.
    The one place predict, tune, runs, the CLI and the trackers learn which key that is.
    """
    for suffix in POST_SUFFIXES:
        if suffix == CALIBRATED and not calibrated:
            continue
        if saved.get(key + suffix) is not None:
            return key + suffix
    return key if key in saved else None


def final_score(saved: Optional[dict], key: str, calibrated: bool = True) -> Optional[float]:
    """The value of `final_score_key`, or None."""
    if not saved:
        return None
    name = final_score_key(saved, key, calibrated)
    value = saved.get(name) if name else None
    return float(value) if value is not None else None


def tracked_keys(keys: Sequence[str]) -> list[str]:
    """`keys` with each score key followed by its post-processed variants (what trackers log)."""
    out: list[str] = []
    for k in keys:
        out.append(k)
        if k.endswith("_score"):
            out += [k + s for s in POST_SUFFIXES]
    return out


class Task:
    """One competition type. Subclasses fill in every method; see the module docstring."""

    name: str = ""
    label: str = ""  # how messages name the type: single-label, multi-label
    what: str = "classes"  # how messages name the outputs: classes, tags (and which report comp evaluate writes)
    acc_name: str = "acc"  # how logs name its accuracy
    from_tables: bool = True  # comp predict can re-ensemble its *_probs.csv tables (nothing to refit on held-out images)
    unit_rows: bool = True  # probability rows are distributions (renormalised when written)
    merge_rules: tuple[str, ...] = ("mean",)
    shapes: tuple[str, ...] = ()
    losses: tuple[str, ...] = ("ce",)  # the train.loss values it trains with; the first is what `auto` means
    cut_name: str = "thresholds"  # what its post-processing cuts at, in messages (thresholds, cut-points)
    plain_cut: str = "at 0.5"  # how messages name a score before the cut is fitted
    cut_file: str = "thresholds.json"  # where a run stores what it cuts at

    def __init__(self, positive_class: Optional[str] = None, ensure_one: bool = True, loss: str = "auto",
                 target_range: Optional[Sequence[float]] = None, target_scale: Optional[Sequence[float]] = None,
                 classes: Optional[Sequence[str]] = None):
        self.positive_class = positive_class  # binary single-label competitions (data.positive_class)
        self.ensure_one = ensure_one  # multi-label: data.at_least_one_tag
        self.loss_name = loss  # train.loss as configured (auto: `losses[0]`)
        self.target_range = tuple(target_range) if target_range is not None else None  # regression: data.target_range
        self.target_scale = tuple(target_scale) if target_scale is not None else None  # regression: data.target_scale
        self.classes = list(classes) if classes is not None else None  # the competition's classes, where known (ordinal: its grades)

    def kind_of(self, loss: str) -> str:
        """A train.loss value with `auto` resolved to this task's default."""
        return self.losses[0] if loss == "auto" else loss

    @property
    def loss_kind(self) -> str:
        """The run's train.loss (`loss_name`), resolved: which head the model has (ordinal) and how its output maps (regression)."""
        return self.kind_of(self.loss_name)

    def check_loss(self, loss: str) -> None:
        """Refuse a train.loss this task does not train with (one line naming those it does)."""
        if loss != "auto" and loss not in self.losses:
            raise UserError(f"train.loss={loss} does not train {self.label} competitions; use {' or '.join(self.losses)} (or auto)")

    def columns(self, classes: Sequence[str]) -> list[str]:
        """The names of the D prediction columns (val_probs.csv, oof.csv, `*_probs.csv`): the classes."""
        return list(classes)

    def model_outputs(self, classes: Sequence[str]) -> int:
        """How many outputs the model's head has (one per class or tag)."""
        return len(classes)

    def check_classes(self, classes: Sequence[str], source) -> None:
        """Refuse a competition's classes this task cannot train on (ordinal: grades that are not integers)."""

    min_classes: int = 2  # a classifier needs two classes; a regression has one target
    counted: bool = True  # comp data check lists the images of each class (a regression has no classes to count)
    has_accuracy: bool = True  # an accuracy is printed beside the metric (a number is never exactly right)

    def for_run(self, loss: str, split=None) -> "Task":
        """A copy set up for one run: its train.loss, and fitted to its training `split` (`setup`) when given."""
        task = copy.copy(self)
        task.loss_name = loss
        return task.setup(split) if split is not None else task

    def for_data(self, split) -> "Task":
        """The task given the competition's labelled `split` (a regression's target range, where unset); by default itself."""
        return self

    def setup(self, split) -> "Task":
        """The task fitted to a run's training `split` (a regression's target scale); by default itself."""
        return self

    def record(self, data) -> None:
        """Write what `setup` fitted into the run's resolved `data` section, so predict rebuilds this task."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- metrics and config ----------------------------------------------------------------

    def metric(self, name: str):
        """The metric `name` of this task (its own registry); an unknown name is a UserError."""
        raise NotImplementedError

    def check(self, cfg: "Config", classes: list[str]):
        """The run's metric, refusing before any training the settings this task cannot use."""
        raise NotImplementedError

    merge_why: str = ""  # why the other rules do not apply, for the refusal

    def check_merge(self, rule: str, option: str = "--merge") -> None:
        """Refuse a merge rule (`option`: tta.merge, --merge) this task's probabilities cannot be merged by."""
        if rule not in self.merge_rules:
            raise UserError(f"{option}={rule}: {self.label} runs merge their probabilities by {' or '.join(self.merge_rules)}"
                            f"{self.merge_why}; set {option}={self.merge_rules[0]}")

    # -- labels and splits -----------------------------------------------------------------

    def targets(self, labels: Sequence[str], classes: Sequence[str], source: Optional[Path] = None) -> torch.Tensor:
        """Label texts (a CSV label column) -> targets."""
        raise NotImplementedError

    def split_targets(self, split) -> torch.Tensor:
        """The targets of a `comp.data.competition.Split`, as the loss compares with them."""
        raise NotImplementedError

    def label_texts(self, split, idx: Sequence[int], classes: Sequence[str]) -> list[str]:
        """The label text of images `idx` of `split` (what val_probs.csv's label column holds)."""
        raise NotImplementedError

    def counts(self, split, classes: Sequence[str]) -> list[int]:
        """Images per class (or tag) of `split`, in class order."""
        raise NotImplementedError

    def kfold(self, split, k: int, seed: int) -> list[tuple[list[int], list[int]]]:
        """K stratified (train_idx, val_idx) pairs whose val parts partition the split."""
        raise NotImplementedError

    def holdout(self, split, fraction: float, seed: int) -> tuple[list[int], list[int]]:
        """A stratified hold-out of about `fraction`: sorted (train_idx, val_idx)."""
        raise NotImplementedError

    # -- training --------------------------------------------------------------------------

    def loss_weights(self, spec, split, classes: Sequence[str]) -> Optional[torch.Tensor]:
        """The (C,) loss weights of `train.class_weights` for the training `split`, or None."""
        raise NotImplementedError

    def loss(self, t: "TrainConfig", num_classes: int, weight: Optional[torch.Tensor] = None) -> tuple["nn.Module", Optional["Mixup"]]:
        """(criterion(logits (B, C), targets), timm Mixup or None) of the train section `t`."""
        raise NotImplementedError

    def eval_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """The summed validation loss of a batch (no smoothing, no weights), per image."""
        raise NotImplementedError

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (..., C) -> probabilities (..., C): the one used in training, prediction and export."""
        raise NotImplementedError

    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Correct images in a batch (the epoch's accuracy counts them)."""
        raise NotImplementedError

    def accuracy(self, probs: torch.Tensor, targets: torch.Tensor) -> float:
        """The accuracy printed beside the metric; NaN without images."""
        raise NotImplementedError

    def train_notes(self, cfg: "Config") -> list[str]:
        """Lines the training log adds for settings that work but may surprise (e.g. crops and tags)."""
        return []

    # -- second rounds: soft targets (comp.teach) -------------------------------------------

    def soft_of(self, targets: torch.Tensor, classes: Sequence[str]) -> torch.Tensor:
        """Targets as (N, D) rows in the teachers' terms (the `columns`): one-hot rows, tag rows, or values."""
        raise NotImplementedError

    def soft_loss(self, logits: torch.Tensor, soft: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The mean loss of (B, C) logits against (B, D) soft targets (teachers' probabilities or values),
        at `temperature` (scaled by T^2, as in knowledge distillation; values ignore it)."""
        raise NotImplementedError

    def decided(self, soft: torch.Tensor) -> torch.Tensor:
        """The hard targets (as `split_targets` holds them) of (N, D) soft rows: what `pseudo.hard` learns."""
        raise NotImplementedError

    def confidence(self, soft: torch.Tensor) -> torch.Tensor:
        """(N,) how sure the soft rows are, in [0, 1]: what `pseudo.threshold` keeps."""
        raise NotImplementedError

    def decision_texts(self, soft: torch.Tensor, classes: Sequence[str]) -> list[str]:
        """The label texts of the decisions of (N, D) soft rows (a class name, a tag set, a grade)."""
        raise NotImplementedError

    def flagged(self, soft: torch.Tensor, targets: torch.Tensor, sure: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Images whose teacher prediction `soft` (N, D) is at least `sure` and disagrees with the label
        (`comp data check --teacher`): ((N,) bool, (N,) how sure the teacher is)."""
        raise NotImplementedError

    # -- scores and post-processing --------------------------------------------------------

    def score(self, metric: str, probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
              thresholds: Optional[Sequence[float]] = None) -> float:
        """The metric of `probs` against `targets` (at `thresholds` where the metric cuts); NaN without images."""
        raise NotImplementedError

    def resampler(self, metric: str, probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                  thresholds: Optional[Sequence[float]] = None):
        """`metric` on bootstrap resamples at once: a function (B, N) counts -> (B,) scores equal to
        `score` of each resample, or None where the task has no vectorised form
        (`comp.tasks.resample`; use `resample.scorer`, which checks it and falls back)."""
        return None

    temperature_kind: Optional[str] = None  # calibration.json's "kind" (None: softmax)

    def apply_temperature(self, probs: torch.Tensor, temperature: float) -> torch.Tensor:
        """Probabilities rescaled by a fitted temperature (1 = unchanged); never reorders a row."""
        raise NotImplementedError

    def fit_temperature(self, probs: torch.Tensor, targets: torch.Tensor) -> float:
        """The temperature minimising the log loss of held-out `probs` against `targets`."""
        raise NotImplementedError

    def log_loss(self, probs: torch.Tensor, targets: torch.Tensor) -> float:
        """The log loss calibration.json reports before and after the temperature."""
        raise NotImplementedError

    def fit_held_out(self, run_dir: Path, table: str, metric: str, classes: Sequence[str]) -> dict[str, Any]:
        """What a finished run fits on its held-out `table` (val_probs.csv or oof.csv), written into
        the run (calibration.json, thresholds.json). Returns the entries for summary.json/cv.json:
        `score_calibrated` or `score_thresholded` (the score of what predict writes) and what was fitted.

        Every task: for log loss, its temperature (`comp.tasks.calibration.calibrate_run`); a task
        that fits more (thresholds) extends this."""
        if self.metric(metric).post_suffix != CALIBRATED:
            return {}
        from comp.tasks.calibration import calibrate_run

        info = calibrate_run(run_dir, table, self)
        return {"score_calibrated": info["score_calibrated"], "temperature": info["temperature"]} if info else {}

    def prediction_post(self, run_dirs: list[Path], weights: list[float], metric: str, classes: list[str],
                        shape: Optional["Shape"], given: Optional[Sequence[float]] = None) -> tuple[Optional[list[float]], Optional[str]]:
        """The thresholds `comp predict` applies to an ensemble of `run_dirs` in `shape` (None: not
        known yet, as for a bundle; `given`: a bundle's, fixed when it was packaged), and where they
        come from; (None, None): none are cut."""
        return None, None

    def refit_post(self, probs: torch.Tensor, targets: torch.Tensor, metric: str) -> Optional[dict]:
        """Thresholds (or cut-points) fitted again on merged held-out predictions (`comp evaluate --fit`):
        {"thresholds", "score", "score_plain" (before any fit: at 0.5, at rounding)}, or None."""
        return None

    def run_post(self, run_dir: Path, classes: list[str], metric: str) -> Optional[list[float]]:
        """A run's own stored thresholds (None when the task or metric has none)."""
        return None

    # -- export ----------------------------------------------------------------------------

    probabilities: str = "probabilities"  # what the exported model outputs, in words

    def outputs_text(self, classes: Sequence[str]) -> str:
        """What the exported model outputs per image, for `comp export`'s line."""
        return f"{self.probabilities} of {len(classes)} classes"

    def export_head(self, logits: list[torch.Tensor], inv_t: torch.Tensor, rule: str) -> torch.Tensor:
        """The graph `comp export` writes after the models: each model's (N, C) logits through the
        activation, merged by `rule`, then the temperature (`inv_t` = 1 / T), as predict computes it."""
        raise NotImplementedError

    def export_facts(self, run_dir: Path, metric: str, classes: list[str]) -> dict[str, str]:
        """Metadata the exported file carries beyond classes and image size (e.g. thresholds)."""
        return {}

    # -- the submission --------------------------------------------------------------------

    def resolve_shape(self, fmt, classes: list[str], metric: str, override: str = "auto") -> "Shape":
        """The prediction CSV's shape from the sample's columns (`fmt`), the metric and the classes."""
        raise NotImplementedError

    def decode(self, probs: torch.Tensor, classes: Sequence[str], shape: "Shape", thresholds: Optional[Sequence[float]] = None,
               clip: bool = False) -> dict[str, Any]:
        """The value columns of the prediction CSV: {column: values}, rows as `probs`."""
        raise NotImplementedError

    def guess_shape(self, df: "pd.DataFrame", fmt, classes: list[str]) -> "Shape":
        """The shape of a prediction file written without a `_meta.json`, from the sample and its values."""
        raise NotImplementedError

    def check_values(self, path: Path, df: "pd.DataFrame", shape: "Shape", classes: list[str]) -> None:
        """Refuse values that do not fit `shape`, naming the first bad line."""
        raise NotImplementedError

    decision: str = "label"  # what one image's written prediction is called: label, tag set

    def same_decisions(self, a: torch.Tensor, b: torch.Tensor, thresholds: Optional[Sequence[float]] = None) -> torch.Tensor:
        """(N,) bool: whether two (N, C) predictions write the same `decision` for each image."""
        raise NotImplementedError

    def scored_as_written(self, metric: str, shape: "Shape") -> bool:
        """Whether the runs' held-out score is the score of a file in `shape`: not when the metric
        scores probabilities and the file holds only decisions (labels, top-k names, tags, 0/1)."""
        return not self.metric(metric).probabilistic or shape.kind in ("probs", "positive")

    def may_be_empty(self, shape: "Shape") -> bool:
        """Whether a value cell of `shape` may be empty (an image with no tag)."""
        return False

    def compared(self, values: "pd.Series", shape: "Shape", classes: list[str]) -> Optional["pd.Series"]:
        """What `comp submit` compares with the previous file (its agreement): one value per id, or
        None when the shape holds nothing comparable or `values` are not of it."""
        return None

    # -- data check ------------------------------------------------------------------------

    def audit_lines(self, comp, limit: int) -> list[str]:
        """`comp data check`'s lines about the task and its labels."""
        raise NotImplementedError

    def count_note(self, n: int, images: int) -> str:
        """What `comp data check` adds after a class's (or tag's) image count `n` of `images`."""
        return ""

    def imbalance_fix(self) -> str:
        """The settings `comp data check` suggests for a large imbalance (ones training accepts)."""
        raise NotImplementedError


def sample_k(fmt) -> Optional[int]:
    """K of a top-k sample submission whose value column holds space-separated names, else None."""
    values = getattr(fmt, "sample_values", None)
    if not values:
        return None
    counts = np.array([len(str(v).split()) for v in values])
    return int(np.bincount(counts).argmax()) if (counts > 1).any() else None
