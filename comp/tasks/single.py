"""Single-label classification: one class per image, softmax outputs, a class name submitted.

Targets are (N,) class indices; the loss is cross-entropy or focal loss with class weights
(`comp.tasks.losses`); splits are stratified by class; a log-loss run fits one temperature on its
held-out predictions (`comp.tasks.calibration`); the submission is a label, per-class
probabilities, the positive class's probability or the top-k names (`resolve_shape`).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from comp.errors import UserError
from comp.probs import unit_rows
from comp.tasks import calibration, metrics
from comp.tasks.base import Task, sample_k
from comp.tasks.shape import Shape, one_column, per_class_shape, where
from comp.tasks.index_labels import IndexLabels

# Log-loss scorers clip at 1e-15; a probability of 0 for the true class would cost 34.5 for one
# image. Writing at least this much bounds that cost at 13.8 and changes confident rows by < 1e-5.
LOG_LOSS_FLOOR = 1e-6


class SingleLabel(IndexLabels, Task):
    name = "single"
    label = "single-label"
    what = "classes"
    unit_rows = True
    merge_rules = ("mean", "geometric", "logit")
    shapes = ("label", "probs", "positive", "topk")
    losses = ("ce", "focal")

    # -- metrics and config

    def metric(self, name: str) -> metrics.Metric:
        return metrics.get_metric(name)

    def check(self, cfg, classes: list[str]) -> metrics.Metric:
        if cfg.train.loss == "asl":
            raise UserError("train.loss=asl is the multi-label asymmetric loss; this competition has one class per image: use ce or focal")
        self.check_loss(cfg.train.loss)
        self.check_merge(cfg.tta.merge, "tta.merge")
        return metrics.check_metric(cfg.metric, classes, cfg.data.positive_class)

    # -- labels and splits

    # -- training

    def loss_weights(self, spec, split, classes) -> Optional[torch.Tensor]:
        from comp.tasks.losses import class_weights

        return class_weights(spec, list(split.labels), classes)

    def loss(self, t, num_classes, weight=None):
        """`ClassWeightedLoss` (cross-entropy, or focal with `train.loss: focal`) on (B,) class indices
        (smoothed by `t.label_smoothing`) or the (B, C) soft targets of timm's Mixup (smoothed by it)."""
        from timm.data import Mixup

        from comp.tasks.losses import ClassWeightedLoss

        mixup = None
        if t.mixup > 0 or t.cutmix > 0:
            mixup = Mixup(mixup_alpha=t.mixup, cutmix_alpha=t.cutmix, prob=t.mix_prob, label_smoothing=t.label_smoothing,
                          num_classes=num_classes)
        gamma = t.focal_gamma if self.kind_of(t.loss) == "focal" else 0.0
        return ClassWeightedLoss(num_classes, weight, label_smoothing=t.label_smoothing, gamma=gamma), mixup

    def train_notes(self, cfg) -> list[str]:
        if metrics.get_metric(cfg.metric).name == "qwk":
            return ["note: qwk scores the classes as ordered grades; data.task=ordinal trains one output on the grade and fits the "
                    "cut-points between grades to maximise kappa (docs/tasks.md)"]
        return []

    def eval_loss(self, logits, targets) -> float:
        return F.cross_entropy(logits.float(), targets, reduction="sum").item()

    def activation(self, logits):
        return logits.float().softmax(-1)

    def hits(self, logits, targets) -> float:
        return (logits.argmax(1) == targets).sum().item()

    def accuracy(self, probs, targets) -> float:
        """Top-1 accuracy of (N, C) probabilities against (N,) class indices."""
        return (probs.argmax(1) == targets).float().mean().item() if len(targets) else float("nan")

    # -- second rounds

    def soft_of(self, targets, classes):
        return F.one_hot(targets.long(), len(classes)).float()

    def soft_loss(self, logits, soft, temperature=1.0):
        """T^2 KL(teacher_T || student_T), batch mean; the teacher's tempered distribution is softmax(log p / T)."""
        t = float(temperature)
        teacher = (soft.float().clamp_min(1e-12).log() / t).log_softmax(1)
        student = (logits.float() / t).log_softmax(1)
        return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * t * t

    def decided(self, soft):
        return soft.argmax(1)

    def confidence(self, soft):
        return soft.max(1).values

    def flagged(self, soft, targets, sure):
        p = self.confidence(soft)
        return (p >= sure) & (self.decided(soft) != targets), p

    # -- scores and post-processing

    def score(self, metric, probs, targets, classes, thresholds=None) -> float:
        return metrics.score(metric, probs, targets, classes, self.positive_class)

    def resampler(self, metric, probs, targets, classes, thresholds=None):
        from comp.tasks.resample import single_resampler

        name = self.metric(metric).name
        p = probs.detach().double().cpu().numpy()
        return single_resampler(name, p / p.sum(1, keepdims=True), targets.cpu().numpy().astype(np.int64),
                                metrics.positive_index(classes, self.positive_class), metrics.top_k(name))

    temperature_kind = None  # softmax(log p / T)

    def apply_temperature(self, probs, temperature):
        return calibration.apply_temperature(probs, temperature)

    def fit_temperature(self, probs, targets) -> float:
        return calibration.fit_temperature(probs, targets)

    def log_loss(self, probs, targets) -> float:
        return calibration.nll(probs, targets)

    probabilities = "probabilities"

    def export_head(self, logits, inv_t, rule):
        """The models' (N, C) logits -> merged, calibrated probabilities in traceable ops."""
        if len(logits) == 1:  # softmax(log softmax(z) / T) = softmax(z / T): no log of a softmax
            return torch.softmax(logits[0] * inv_t, dim=1)
        logp = torch.stack([torch.log_softmax(z, dim=1) for z in logits])
        if rule in ("geometric", "logit"):  # log of the renormalised geometric mean, up to a per-row constant the softmax removes
            merged = logp.mean(0)
        else:
            merged = torch.log(logp.exp().mean(0).clamp_min(1e-12))
        return torch.softmax(merged * inv_t, dim=1)

    def export_facts(self, run_dir, metric, classes) -> dict[str, str]:
        return {}

    # -- the submission

    def resolve_shape(self, fmt, classes, metric="accuracy", override="auto") -> Shape:
        """Auto rules: the sample's value columns are the class names (any order) -> probs; a single
        column named after one of two classes -> positive (that class); a `map@K` metric -> topk; a
        binary competition with `data.positive_class` set or a probability metric -> positive;
        otherwise label. A probability metric (log_loss, roc_auc) with several classes and a single
        label column is ambiguous (the sample cannot give the class order) and is refused."""
        if override in ("tags", "onehot"):
            raise UserError(f"data.submission={override} is for multi-label competitions; this one has one class per image")
        m = self.metric(metric)
        k = metrics.top_k(m.name)
        values = fmt.columns[1:]
        index = {c: i for i, c in enumerate(classes)}
        binary = len(classes) == 2
        kind = override
        if kind == "auto":
            if len(values) > 1:
                kind = "probs"
            elif binary and values[0].strip() in index:
                kind = "positive"
            elif k is not None:
                kind = "topk"
            elif binary and (self.positive_class is not None or m.probabilistic):
                kind = "positive"
            elif m.probabilistic:
                raise UserError(
                    f"metric {m.name} scores probabilities, but {where(fmt)} has one column {values[0]!r}; "
                    "set data.submission=probs (one column per class) or label"
                )
            else:
                kind = "label"
        if kind == "probs":
            return per_class_shape("probs", fmt, classes)
        one_column(fmt, kind)
        if kind == "positive":
            if not binary:
                raise UserError(f"data.submission=positive is for binary competitions; this one has {len(classes)} classes")
            named = values[0].strip()
            if self.positive_class is None and named in index:
                return Shape("positive", list(fmt.columns), positive=index[named])
            return Shape("positive", list(fmt.columns), positive=metrics.positive_index(classes, self.positive_class))
        if kind == "topk":
            spaced = [c for c in classes if len(c.split()) != 1]
            if spaced:
                raise UserError(
                    f"class {spaced[0]!r} contains a space, so space-separated top-k names cannot hold it; "
                    "rename the classes (e.g. with underscores) for a map@K submission"
                )
            return Shape("topk", list(fmt.columns), k=k or 3)
        return Shape("label", list(fmt.columns))

    def decode(self, probs, classes, shape, thresholds=None, clip=False) -> dict[str, Any]:
        """Class names, per-class probabilities (rows summing to 1 as written), the positive
        class's probability or the top-k names; `clip` floors probabilities at `LOG_LOSS_FLOOR`."""
        if clip:
            probs = probs.double().clamp_min(LOG_LOSS_FLOOR)
        rows = unit_rows(probs)  # float64, summing to 1 as written (comp.probs.FLOAT_FORMAT)
        cols = shape.columns
        if shape.kind == "label":
            return {cols[1]: [classes[i] for i in probs.argmax(1).tolist()]}
        if shape.kind == "probs":
            return {col: rows[:, c] for col, c in zip(cols[1:], shape.class_index)}
        if shape.kind == "positive":
            return {cols[1]: rows[:, shape.positive]}
        top = probs.topk(min(shape.k, probs.shape[1]), dim=1).indices.tolist()
        return {cols[1]: [" ".join(classes[i] for i in row) for row in top]}

    def guess_shape(self, df, fmt, classes) -> Shape:
        """Class columns are probabilities; a single column named after a class of a binary
        competition is that class's probability. A single other column holds, by its values: class
        names (label); numbers, in a binary competition (the positive class's probability, e.g.
        `id,target`); or space-separated names (top-k, with k from the sample's values when they
        are names, else the count most rows hold, so the line that differs is the one named)."""
        shape = self.resolve_shape(fmt, classes)
        if shape.kind != "label":
            return shape
        values = df[fmt.label_column]
        if values.isin(classes).all():
            return shape
        if len(classes) == 2 and pd.to_numeric(values, errors="coerce").notna().all():
            return Shape("positive", list(fmt.columns), positive=metrics.positive_index(classes, None))
        k = sample_k(fmt) or int(values.str.split().str.len().mode().iloc[0])
        if k > 1:
            return Shape("topk", list(fmt.columns), k=k)
        return shape  # names, one per row: the label check names the first line that is not a class

    def check_values(self, path, df, shape, classes) -> None:
        cols = shape.columns[1:]
        if shape.kind == "label":
            labels = df[cols[0]]
            bad = ~labels.isin(classes)
            if bad.any():
                raise UserError(f"{path}: line {_line(bad)}: label {labels[bad].iloc[0]!r} is not a class of the competition "
                                f"({int(bad.sum())} rows); write class names")
            return
        if shape.kind == "topk":
            for line, value in enumerate(df[cols[0]], start=2):
                names = value.split()
                if len(names) != shape.k or len(set(names)) != len(names) or not set(names) <= set(classes):
                    raise UserError(f"{path}: line {line} holds {value!r}; each row needs {shape.k} different class names, best first")
            return
        arr = check_probabilities(path, df, cols)
        if shape.kind == "probs":
            sums = arr.sum(1)
            off = np.abs(sums - 1) > 1e-3
            if off.any():
                raise UserError(f"{path}: the class probabilities on line {_line(off)} sum to {float(sums[off][0]):.4f}, not 1")

    decision = "label"

    def same_decisions(self, a, b, thresholds=None):
        return a.argmax(1) == b.argmax(1)

    def compared(self, values, shape, classes):
        """The label (a whole class name, spaces and all), or a top-k row's first name."""
        if shape.kind == "label":
            picked = values
        elif shape.kind == "topk":
            picked = values.str.split().str[0]
        else:
            return None
        return picked if picked.isin(classes).all() else None

    # -- data check

    def audit_lines(self, comp, limit) -> list[str]:
        lines = [f"classes: {len(comp.classes)}"]
        if len(comp.classes) > 2 and all(c.lstrip("-").isdigit() for c in comp.classes):
            lines.append("note: the classes are integers; if they are grades scored in order (qwk), --task ordinal (data.task: ordinal) "
                         "trains one output and fits the cut-points between grades")
        return lines

    def imbalance_fix(self) -> str:
        return "consider --set data.sampler=balanced or --set train.class_weights=balanced (one of them, not both)"


def _line(mask) -> int:
    """The file line (header = 1) of the first True row of `mask`."""
    return int(np.asarray(mask).nonzero()[0][0]) + 2


def check_probabilities(path, df, cols) -> np.ndarray:
    """The columns `cols` of `df` as numbers, refused unless each is in [0, 1]."""
    arr = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(arr) & (arr >= 0) & (arr <= 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UserError(f"{path}: line {row + 2}, column {cols[col]!r}: {df[cols[col]].iloc[row]!r} is not a probability; "
                        "write numbers in [0, 1]")
    return arr
