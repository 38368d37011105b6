"""How sure a held-out score is, and a difference of two: `comp compare`, `comp runs --vs/--ci`, `comp lb`.

A run's held-out predictions are read from its tables as training wrote them (`val_probs.csv`, a
k-fold run's `oof.csv`; no model runs), then post-processed as `comp predict` post-processes what
it writes: the run's temperature (log loss), its thresholds (multi-label F metrics) or cut-points
(ordinal). A run of several seeds (`comp train --seeds N`) is its seeds' ensemble: its own merged
table and what was fitted on it (`comp.seeds`). So a run's score here is its final score in
`comp runs` (and its summary), and the interval is the paired bootstrap of `comp.stats` over the images.

Thresholds and cut-points were fitted on these same images; they are held fixed in every
resample, as predict holds them fixed on the test set, so the interval is of the score of what
predict writes, not of the fitting (which makes both runs' scores slightly optimistic alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from comp.engine.infer import find_model_dirs
from comp.engine.rundir import resolved_config
from comp.errors import UserError
from comp.files import read_json
from comp.probs import read_probs
from comp.stats import RESAMPLES, Bootstrap, Interval, bootstrap
from comp.tasks import Task, get_task
from comp.tasks.calibration import run_temperature
from comp.tasks.held_out import held_out_table
from comp.tasks.resample import scorer


@dataclass
class Scored:
    """A run's held-out predictions as predict post-processes them: ids (N), probs (N, D) after the
    temperature (and the seeds' merge), the task's targets, and the cut (thresholds, cut-points) applied."""

    run: Path
    ids: list[str]
    labels: list[str]
    probs: torch.Tensor
    targets: torch.Tensor
    classes: list[str]
    task: Task
    metric: str
    cut: Optional[list[float]]
    kind: str  # "validation" or "out-of-fold"

    def on(self, ids: Sequence[str]) -> "Scored":
        """The same run on the images `ids` (a subset of its own), in that order."""
        pos = {i: k for k, i in enumerate(self.ids)}
        idx = [pos[i] for i in ids]
        return Scored(self.run, list(ids), [self.labels[k] for k in idx], self.probs[idx], self.targets[idx], self.classes, self.task,
                      self.metric, self.cut, self.kind)

    def score(self, metric: Optional[str] = None) -> float:
        return self.task.score(metric or self.metric, self.probs, self.targets, self.classes, self.cut)

    def resampled(self, metric: Optional[str] = None):
        """(B, N) counts -> (B,) scores (`comp.tasks.resample.scorer`)."""
        return scorer(self.task, metric or self.metric, self.probs, self.targets, self.classes, self.cut)


def held_out(run: Path, metric: Optional[str] = None) -> Scored:
    """`run`'s held-out predictions, post-processed as `comp predict` writes them, in `metric`
    (default the run's own). A run without held-out images, or an unfinished one, is a UserError."""
    run = Path(run)
    models = find_model_dirs(run)  # refuses an unfinished run, k-fold run or seed
    cfg = resolved_config(run)
    table = held_out_table(run)
    if cfg is None or not table.is_file():
        why = "it trained on every labelled image (data.train_on_val)" if cfg is not None and cfg.data.train_on_val else "it has no held-out predictions"
        raise UserError(f"{table} not found: {why}; compare runs trained with a validation split or --folds K")
    ids, probs, columns, meta = read_probs(table)
    classes = (read_json(models[0] / "summary.json") or {}).get("classes") or columns
    task = get_task(cfg.data.task, cfg.data, cfg.train.loss, classes)
    name = task.metric(metric or cfg.metric).name  # an unknown metric for this task is one line
    probs = task.apply_temperature(probs, run_temperature(run))
    kind = "out-of-fold" if table.name == "oof.csv" else "validation"
    return Scored(run, ids, list(meta["label"]), probs, task.targets(meta["label"], classes, table), list(classes), task, name,
                  _cut(task, run, name, classes), kind)


def _cut(task: Task, run: Path, metric: str, classes: list[str]) -> Optional[list[float]]:
    """The thresholds or cut-points predict applies to `run` for `metric` (None: none)."""
    if task.metric(metric).post_suffix not in ("_thresholded", "_cut"):
        return None
    return task.prediction_post([run], [1.0], metric, classes, None)[0]


def shared(a: Scored, b: Scored) -> list[str]:
    """The images both runs hold out, in `a`'s order; refused (one line) when there are none, when
    the runs are of different competitions, or when their labels of a shared image differ."""
    if a.task.name != b.task.name or a.classes != b.classes:
        raise UserError(f"{a.run} and {b.run} are of different competitions ({a.task.label}, {len(a.classes)} {a.task.what} vs "
                        f"{b.task.label}, {len(b.classes)}); compare runs of one competition")
    theirs = dict(zip(b.ids, b.labels))
    common = [i for i in a.ids if i in theirs]
    if not common:
        raise UserError(f"{a.run} and {b.run} share no held-out image (different data or different ids), so they cannot be "
                        "compared on the same images; compare runs of one competition with validation splits or folds that overlap")
    mine = dict(zip(a.ids, a.labels))
    differ = [i for i in common if mine[i] != theirs[i]]
    if differ:
        raise UserError(f"{a.run} and {b.run} label {len(differ)} shared held-out image(s) differently (e.g. {differ[0]}: "
                        f"{mine[differ[0]]!r} vs {theirs[differ[0]]!r}); compare runs trained on the same labels")
    return common


@dataclass
class Difference:
    """B - A on the images both hold out, its paired bootstrap, and who is better how often."""

    a: Scored
    b: Scored
    images: int
    score_a: float
    score_b: float
    boot: Bootstrap
    higher_is_better: bool

    @property
    def interval(self) -> Interval:
        return self.boot.interval

    @property
    def b_better_share(self) -> float:
        """The share of resamples in which B beats A (ties half)."""
        share = self.boot.share_above(0.0)
        return share if self.higher_is_better else 1.0 - share

    @property
    def real(self) -> bool:
        """Whether the interval excludes 0: the difference is outside the noise of these images."""
        return self.interval.excludes(0.0)

    def sentence(self, a_name: str = "A", b_name: str = "B") -> str:
        """One plain sentence: who is better by how much, or that it is inside the noise."""
        d, iv = self.interval.value, self.interval
        if not self.real:
            return f"the difference is inside the noise of {self.images:,} held-out images: {b_name} - {a_name} = {iv.signed()}"
        better, worse = (b_name, a_name) if (d > 0) == self.higher_is_better else (a_name, b_name)
        lo, hi = sorted((abs(iv.low), abs(iv.high)))
        return f"{better} is better than {worse} by {abs(d):.4f} [{lo:.4f}, {hi:.4f}] in {self.a.metric}"

    def record(self) -> dict:
        iv = self.interval
        return {"a": str(self.a.run), "b": str(self.b.run), "metric": self.a.metric, "images": self.images, "score_a": self.score_a,
                "score_b": self.score_b, "difference": iv.value, "low": iv.low, "high": iv.high, "method": self.boot.method,
                "b_better_share": self.b_better_share, "outside_noise": self.real}


def difference(a: Scored, b: Scored, *, resamples: int = RESAMPLES, seed: int = 0) -> Difference:
    """The paired bootstrap of B's score minus A's on the images both hold out (in A's metric)."""
    common = shared(a, b)
    a, b = a.on(common), b.on(common)
    b.metric = a.metric
    fa, fb = a.resampled(), b.resampled()
    try:
        boot = bootstrap(lambda w: fb(w) - fa(w), len(common), resamples=resamples, seed=seed)
    except ValueError as e:
        raise UserError(f"{a.run} vs {b.run}: {a.metric} {e} of {len(common)} shared images; compare on a metric defined "
                        "on every resample (--metric) or with more held-out images") from None
    return Difference(a, b, len(common), a.score(), b.score(), boot, a.task.metric(a.metric).higher_is_better)


def score_interval(runs: Sequence[Path], *, resamples: int = RESAMPLES, seed: int = 0) -> Optional[Interval]:
    """The bootstrap interval of the mean of `runs`' held-out scores (`comp lb`'s CV; one run: its
    own score), resampling the images they all hold out; None when their held-out images differ."""
    scored = [held_out(Path(r)) for r in runs]
    first = scored[0]
    if any(sorted(s.ids) != sorted(first.ids) or s.metric != first.metric for s in scored[1:]):
        return None
    fns = [s.on(first.ids).resampled() for s in scored]  # every run's images in the first run's order
    try:
        return bootstrap(lambda w: np.mean([f(w) for f in fns], axis=0), len(first.ids), resamples=resamples, seed=seed).interval
    except ValueError:
        return None
