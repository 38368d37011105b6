"""Multi-label classification: any number of tags per image (Planet, iMet, Plant Pathology 2020).

Targets are (N, C) 0/1 tag rows; outputs are per-tag sigmoids, trained with per-tag BCE, sigmoid
focal loss or timm's asymmetric loss (`comp.tasks.losses.TagLoss`); splits are stratified per tag
(iterative stratification); an F metric's per-tag thresholds are fitted on held-out predictions
(`comp.tasks.thresholds`, thresholds.json), a log-loss run's sigmoid temperature likewise; the
submission is the tags, one 0/1 column per tag or per-tag probabilities.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from comp.errors import UserError
from comp.probs import tag_targets
from comp.tasks import calibration, thresholds as thr
from comp.tasks.base import Task
from comp.tasks.shape import Shape, one_column, per_class_shape, where
from comp.tasks.single import check_probabilities
from comp.tasks.splits import tag_holdout_indices, tag_kfold_indices
from comp.tasks.tag_metrics import TAG_METRICS, TagMetric, get_tag_metric, predict_tags, tag_accuracy, tag_score


class MultiLabel(Task):
    name = "multilabel"
    label = "multi-label"
    from_tables = False  # an ensemble's thresholds are refitted on the runs' held-out predictions
    what = "tags"
    acc_name = "tag accuracy"
    unit_rows = False  # per-tag probabilities need not sum to 1
    merge_rules = ("mean",)
    merge_why = " (a geometric mean renormalises a class distribution, which per-tag probabilities are not)"
    shapes = ("tags", "probs", "onehot")
    temperature_kind = "sigmoid"
    losses = ("ce", "focal", "asl")

    # -- metrics and config

    def metric(self, name: str) -> TagMetric:
        return get_tag_metric(name)

    def check(self, cfg, classes: list[str]) -> TagMetric:
        if cfg.data.sampler == "balanced":
            raise UserError("data.sampler=balanced draws images by class; a multi-label run has tags: use train.class_weights=balanced "
                            "(each tag's positives weighed against its negatives) or train.loss=asl")
        if cfg.data.positive_class is not None:
            raise UserError("data.positive_class is for binary single-label competitions; unset it for a multi-label one")
        if cfg.train.loss == "asl" and cfg.train.class_weights != "none":
            raise UserError("train.class_weights with train.loss=asl: timm's asymmetric loss takes no weights (it down-weighs the "
                            "easy negatives itself); set train.class_weights=none or use train.loss=ce or focal")
        self.check_loss(cfg.train.loss)
        self.check_merge(cfg.tta.merge, "tta.merge")
        return self.metric(cfg.metric)

    # -- labels and splits

    def targets(self, labels, classes, source=None) -> torch.Tensor:
        return tag_targets(labels, classes, source)

    def split_targets(self, split) -> torch.Tensor:
        if split.targets is None:  # an empty split (data.train_on_val: no validation images)
            return torch.zeros(len(split), 0, dtype=torch.float32)
        return torch.as_tensor(split.targets, dtype=torch.float32)

    def label_texts(self, split, idx, classes) -> list[str]:
        return [" ".join(c for c, on in zip(classes, split.targets[i]) if on) for i in idx]

    def counts(self, split, classes) -> list[int]:
        return [int(n) for n in split.targets.sum(0)]

    def kfold(self, split, k, seed):
        return tag_kfold_indices(split.targets, k, seed)

    def holdout(self, split, fraction, seed):
        return tag_holdout_indices(split.targets, fraction, seed)

    # -- training

    def loss_weights(self, spec, split, classes) -> Optional[torch.Tensor]:
        from comp.tasks.losses import tag_pos_weights

        return tag_pos_weights(spec, split.targets, classes)

    def loss(self, t, num_classes, weight=None):
        """`TagLoss` on (B, C) tag targets (`weight`: each tag's positive weight) and a Mixup that
        blends tag targets (timm's `multi_label=True`)."""
        from timm.data import Mixup

        from comp.tasks.losses import TagLoss

        mixup = None
        if t.mixup > 0 or t.cutmix > 0:
            mixup = Mixup(mixup_alpha=t.mixup, cutmix_alpha=t.cutmix, prob=t.mix_prob, label_smoothing=t.label_smoothing,
                          num_classes=num_classes, multi_label=True)
        return TagLoss(num_classes, weight, label_smoothing=t.label_smoothing, kind=self.kind_of(t.loss), gamma=t.focal_gamma), mixup

    def soft_of(self, targets, classes):
        return targets.float()

    def soft_loss(self, logits, soft, temperature=1.0):
        """Per-tag binary KL at temperature T (teacher sigmoid(logit(p) / T)), T^2-scaled, mean over images and tags."""
        t = float(temperature)
        q = torch.sigmoid(torch.logit(soft.float().clamp(1e-6, 1 - 1e-6)) / t)
        entropy = -(q * q.log() + (1 - q) * (1 - q).log())
        return (F.binary_cross_entropy_with_logits(logits.float() / t, q, reduction="none") - entropy).mean() * t * t

    def decided(self, soft):
        return (soft >= 0.5).float()

    def decision_texts(self, soft, classes):
        return [" ".join(c for c, on in zip(classes, row) if on) for row in self.decided(soft).tolist()]

    def confidence(self, soft):
        """The least sure tag of each image: every tag must be sure for the image to be."""
        return torch.maximum(soft, 1 - soft).min(1).values

    def flagged(self, soft, targets, sure):
        """Any tag the teacher is sure of (p >= sure or p <= 1 - sure) against the label."""
        wrong = ((soft >= sure) & (targets < 0.5)) | ((soft <= 1 - sure) & (targets >= 0.5))
        how = torch.where(wrong, torch.maximum(soft, 1 - soft), torch.zeros_like(soft)).max(1).values
        return wrong.any(1), how

    def eval_loss(self, logits, targets) -> float:
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="sum").item() / targets.shape[1]

    def activation(self, logits):
        return logits.float().sigmoid()

    def hits(self, logits, targets) -> float:
        """The share of tags right at probability 0.5, per image (so accuracy is 1 - the Hamming loss)."""
        return ((logits > 0) == (targets > 0.5)).float().mean(1).sum().item()

    def accuracy(self, probs, targets) -> float:
        return tag_accuracy(probs, targets)

    def train_notes(self, cfg) -> list[str]:
        if cfg.aug.scale[0] < 1 or tuple(cfg.aug.ratio) != (1.0, 1.0):
            return [f"note: random crops (aug.scale {list(cfg.aug.scale)}, aug.ratio {list(cfg.aug.ratio)}) can cut a tagged object out "
                    "of an image while its tag stays; configs/multilabel.yaml trains multi-label competitions on whole images"]
        return []

    # -- scores and post-processing

    def score(self, metric, probs, targets, classes, thresholds=None) -> float:
        """At `thresholds` (default 0.5 for every tag), an image left with no tag given its most
        probable one unless data.at_least_one_tag is off."""
        return tag_score(metric, probs, targets, 0.5 if thresholds is None else thresholds, ensure_one=self.ensure_one)

    def resampler(self, metric, probs, targets, classes, thresholds=None):
        from comp.tasks.resample import tag_resampler

        m = self.metric(metric)
        p, y = probs.detach().double().cpu().numpy(), targets.cpu().numpy().astype(np.int64)
        cut = predict_tags(p, 0.5 if thresholds is None else thresholds, self.ensure_one) if m.thresholded else None
        return tag_resampler(m.name, p, y, cut)

    def apply_temperature(self, probs, temperature):
        return calibration.apply_tag_temperature(probs, temperature)

    def fit_temperature(self, probs, targets) -> float:
        return calibration.fit_tag_temperature(probs, targets)

    def log_loss(self, probs, targets) -> float:
        return tag_score("log_loss", probs, targets)

    def fit_held_out(self, run_dir: Path, table: str, metric: str, classes) -> dict[str, Any]:
        """For log loss the run's sigmoid temperature (`Task.fit_held_out`); for an F metric its per-tag thresholds."""
        m = self.metric(metric)
        if m.post_suffix != "_thresholded":
            return super().fit_held_out(run_dir, table, metric, classes)
        fit = thr.fit_run_thresholds(run_dir, m.name, table, ensure_one=self.ensure_one)
        return {"score_thresholded": fit["score"], "thresholds_global": fit["global"]}

    def prediction_post(self, run_dirs, weights, metric, classes, shape, given=None):
        """The thresholds of a tags or onehot submission: `given` (a bundle's), one run's own, or
        fitted again on an ensemble's merged held-out predictions (`comp.tasks.thresholds`)."""
        if shape is not None and shape.kind not in ("tags", "onehot"):  # None: not known yet (a bundle), fitted anyway
            return None, None
        if given is not None:
            if len(given) != len(classes):
                raise UserError(f"{len(given)} thresholds for {len(classes)} tags; package the runs again")
            return [float(t) for t in given], None
        return thr.prediction_thresholds(run_dirs, weights, metric, classes, self.ensure_one)

    def refit_post(self, probs, targets, metric):
        if not self.metric(metric).thresholded:
            return None
        fit = thr.fit_thresholds(probs.numpy(), targets.numpy(), metric, ensure_one=self.ensure_one)
        return {**fit, "score_plain": fit["score_at_0.5"]}

    def run_post(self, run_dir, classes, metric):
        return thr.read_thresholds(Path(run_dir), classes) if self.metric(metric).thresholded else None

    probabilities = "per-tag probabilities"

    def export_head(self, logits, inv_t, rule):
        """Per-tag sigmoids averaged over the models, then the run's temperature on each tag's logit."""
        p = torch.stack([torch.sigmoid(z) for z in logits]).mean(0).clamp(1e-12, 1 - 1e-12)
        return torch.sigmoid(torch.log(p / (1 - p)) * inv_t)

    def export_facts(self, run_dir, metric, classes) -> dict[str, str]:
        """The task, the thresholds predict would apply, and data.at_least_one_tag (the file's metadata)."""
        thresholds, _ = thr.prediction_thresholds([Path(run_dir)], [1.0], metric, classes, self.ensure_one)
        return {"task": self.name, "thresholds": "\n".join(f"{t:g}" for t in thresholds), "at_least_one_tag": str(self.ensure_one).lower()}

    # -- the submission

    def resolve_shape(self, fmt, classes, metric="f2_samples", override="auto") -> Shape:
        """Auto: the sample's value columns are the tags -> probs for a metric of probabilities
        (roc_auc, average_precision, log_loss), onehot for an F metric; one column -> tags, refused
        for a metric of probabilities (tags cannot hold them)."""
        m = self.metric(metric)
        values = fmt.columns[1:]
        if override not in ("auto", *self.shapes):
            raise UserError(f"data.submission={override} is for single-label competitions; a multi-label one takes {', '.join(self.shapes)}")
        one_value = fmt.sample is not None and len(values) == 1  # a sample of tag sets: `image_name,tags`
        kind = override
        if kind == "auto":
            if len(values) > 1:
                kind = "onehot" if m.thresholded else "probs"
            elif m.thresholded:
                kind = "tags"
            elif one_value:  # probability columns would be a file the sample does not describe, and Kaggle refuses
                raise UserError(
                    f"metric {m.name} scores per-tag probabilities, but {where(fmt)} has one column {values[0]!r} of tag sets, "
                    "which cannot hold probabilities; check the competition's metric (an F metric such as f2_samples scores "
                    "tags), or set data.submission=tags to submit tag sets"
                )
            else:
                raise UserError(
                    f"metric {m.name} scores per-tag probabilities, but {where(fmt)} has one column {values[0]!r}; "
                    "set data.submission=probs (one column per tag) or tags"
                )
        if kind in ("probs", "onehot") and one_value:
            raise UserError(f"data.submission={kind} writes one column per tag, but {where(fmt)} has one value column "
                            f"{values[0]!r}: the competition would refuse that file; use data.submission=tags (or auto)")
        if kind == "tags":
            one_column(fmt, "tags")
            if fmt.sample_values is not None:  # the sample's placeholder tags are tags the competition scores
                try:
                    check_tags(fmt.sample_values, classes, str(fmt.sample))
                except UserError as e:
                    raise UserError(f"{e}; training never saw it, so no prediction can hold it: check the train.csv tags") from None
            return Shape("tags", list(fmt.columns))
        return per_class_shape(kind, fmt, classes, "tags", "tag")

    def decode(self, probs, classes, shape, thresholds=None, clip=False) -> dict[str, Any]:
        """Tags (space-separated, class order; each at or above its threshold), 0/1 columns, or the
        per-tag probabilities as they are (rows not renormalised)."""
        p = probs.detach().double().cpu().numpy()
        cols = shape.columns
        if shape.kind == "probs":
            return {col: p[:, c] for col, c in zip(cols[1:], shape.class_index)}
        on = predict_tags(p, thresholds if thresholds is not None else 0.5, self.ensure_one)
        if shape.kind == "tags":
            return {cols[1]: [" ".join(c for c, flag in zip(classes, row) if flag) for row in on]}
        return {col: on[:, c].astype(int) for col, c in zip(cols[1:], shape.class_index)}

    def guess_shape(self, df, fmt, classes) -> Shape:
        if len(fmt.columns) == 2:
            return Shape("tags", list(fmt.columns))
        kind = "onehot" if df[fmt.columns[1:]].isin(["0", "1"]).all().all() else "probs"
        return per_class_shape(kind, fmt, classes, "tags", "tag")

    def check_values(self, path, df, shape, classes) -> None:
        cols = shape.columns[1:]
        if shape.kind == "tags":
            check_tags(df[cols[0]], classes, str(path))
        elif shape.kind == "onehot":
            bad = ~df[cols].isin(["0", "1"]).to_numpy()
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise UserError(f"{path}: line {row + 2}, column {cols[col]!r}: {df[cols[col]].iloc[row]!r} is not 0 or 1")
        else:
            check_probabilities(path, df, cols)  # each in [0, 1]; per-tag probabilities need not sum to 1

    def may_be_empty(self, shape) -> bool:
        return shape.kind == "tags"  # an image with no tag (data.at_least_one_tag: false)

    decision = "tag set"

    def same_decisions(self, a, b, thresholds=None):
        t = thresholds if thresholds is not None else 0.5
        same = predict_tags(a.double().numpy(), t, self.ensure_one) == predict_tags(b.double().numpy(), t, self.ensure_one)
        return torch.from_numpy(same.all(1))

    def compared(self, values, shape, classes):
        """The tag set of each image (order of the tags in a cell does not matter)."""
        if shape.kind != "tags":
            return None
        known = set(classes)
        sets = values.str.split()
        if not sets.map(lambda tags: set(tags) <= known).all():
            return None
        return sets.map(lambda tags: " ".join(sorted(tags)))

    # -- data check

    def audit_lines(self, comp, limit) -> list[str]:
        """The task, tags per image, how many images carry no tag, and the rarest tags."""
        y = comp.train.targets
        per_image = y.sum(1)
        source = f"space-separated in column {comp.label_column!r}" if comp.label_kind == "tags" else "one 0/1 column per tag"
        lines = [
            f"task: multi-label ({source})",
            f"tags per image: min {per_image.min()}, mean {per_image.mean():.2f}, max {per_image.max()}; "
            f"{len({tuple(r) for r in y})} distinct tag sets",
        ]
        empty = int((per_image == 0).sum())
        if empty:
            lines.append(f"images with no tag: {empty} (a negative for every tag)")
        counts = y.sum(0)
        rare = sorted(range(len(comp.classes)), key=lambda c: (counts[c], comp.classes[c]))[: min(5, limit)]
        lines.append("rarest tags: " + ", ".join(f"{comp.classes[c]} ({counts[c]})" for c in rare))
        lines.append(f"tags: {len(comp.classes)} (images carrying each)")
        return lines

    def count_note(self, n: int, images: int) -> str:
        return f"  {n / max(1, images):.1%} of images"  # a tag's share (tags need not add up to 100%)

    def imbalance_fix(self) -> str:
        # data.sampler=balanced draws by class, which tags do not have: training refuses it here
        return "consider --set train.class_weights=balanced (each tag's positives weighed against its negatives) or --set train.loss=asl"


def check_tags(values, classes: list[str], where: str) -> None:
    """Refuse tags of `values` (space-separated strings) that are not classes, or a repeated tag."""
    known = set(classes)
    for line, value in enumerate(values, start=2):
        tags = str(value).split()
        unknown = [t for t in tags if t not in known]
        if unknown:
            raise UserError(f"{where}: line {line}: tag {unknown[0]!r} is not one training knows ({', '.join(classes[:6])}, ...)")
        if len(set(tags)) < len(tags):
            raise UserError(f"{where}: line {line}: tag {Counter(tags).most_common(1)[0][0]!r} appears twice in {value!r}")


__all__ = ["MultiLabel", "TAG_METRICS", "check_tags"]
