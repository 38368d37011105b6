"""A second round's training rows: what each image of a run (or fold) learns, from its label and its teachers.

Three recipes, each a config section, combined into one `Teaching` per run or fold
(`comp.tasks.soft_targets` packs the rows and weighs the losses):

- `pseudo` (`comp train --pseudo RUN...`): the competition's test images join training with the
  teachers' predictions as soft targets (`pseudo.hard`: their decisions), weighted by
  `pseudo.weight`, filtered by `pseudo.threshold`; the last `pseudo.final_epochs` epochs drop them.
  A fold learns only from teacher models that held out all of its validation images
  (`Teacher.clean_models`); otherwise the run is refused unless `pseudo.leak_ok`.
- `train.oof_targets` (`{from: KFOLD_RUN, mix}`): each training image's target becomes
  `(1 - mix) * label + mix * oof`, from the k-fold run's oof.csv over the same images.
- `distill` (`comp distill`): every training image learns `(1 - alpha) * task loss + alpha * T^2 *
  KL(teacher_T || student_T)` against the teachers' merged prediction, and with `distill.test` the
  test images the KL term alone. The teachers' predictions are made once per image, under their
  TTA views, not per training step on the augmented view (timm's `LogitDistillationTask` runs the
  teacher every step): on a CPU a k-fold teacher would cost K forward passes per student step, and
  the flip-merged target fits both flips the student sees; only the random crop goes unmatched.

Every teacher prediction a run learns from is written to its `teacher_targets.csv` and hashed in
its summary; `--resume` reads them back instead of predicting again, so a resumed run is the run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Optional

import torch

from comp.config import Config
from comp.data.competition import Competition, Split
from comp.data.folds import merged_labelled
from comp.device import resolve_device
from comp.engine.infer import relative_id
from comp.engine.rundir import saved_config
from comp.errors import Log, UserError
from comp.probs import read_probs, write_probs
from comp.tasks.soft_targets import Packing, Teaching
from comp.teach.teachers import Teacher, open_teachers, predictions, sha256

TABLE = "teacher_targets.csv"  # in the run (or fold) folder: every teacher prediction it learns from


def active(cfg: Config) -> bool:
    """Whether `cfg` trains a second round."""
    return bool(cfg.pseudo.from_ or cfg.distill.from_ or cfg.train.oof_targets is not None)


class Planner:
    """Builds the `Teaching` of each run or fold of `cfg`; every check runs when it is made, before training."""

    def __init__(self, cfg: Config, competition: Competition, log: Log = print):
        self.cfg, self.competition, self.log = cfg, competition, log
        self.task = competition.task
        _check_settings(cfg, competition)
        self.pseudo = open_teachers(cfg.pseudo.from_, competition, "pseudo.from")
        self.distill = open_teachers(cfg.distill.from_, competition, "distill.from")
        self.oof = _read_oof(cfg, competition) if cfg.train.oof_targets is not None else None
        self.device = resolve_device(cfg.train.device)
        self.pool = merged_labelled(competition).paths  # the labelled images' cache, which training shares

    def check(self, train: Split, val: Split) -> None:
        """Refuse now what this split's training would refuse (a leaking teacher, OOF rows missing)."""
        self._pseudo_models(_ids(val, self.competition))
        if self.oof is not None:
            self._oof_rows(_ids(train, self.competition))

    def __call__(self, train: Split, val: Split, out_dir: Path, resume: bool) -> Teaching:
        """The rows of a run training on `train` and validating on `val`, into `out_dir` (read back from it on --resume)."""
        cfg, task, classes = self.cfg, self.task, self.competition.classes
        train_ids, val_ids = _ids(train, self.competition), _ids(val, self.competition)
        picks = self._pseudo_models(val_ids)
        hard = task.split_targets(train)
        n = len(train)
        width = len(task.columns(classes))
        soft, w_hard, w_soft = torch.zeros(n, width), torch.ones(n), torch.zeros(n)
        record: dict = {}
        notes: list[str] = []
        stored = _stored(out_dir) if resume else None
        taught: dict[str, tuple[list[str], torch.Tensor]] = {}  # table part -> (ids, values) as written

        def teacher_values(ids: list[str], paths: list, picked, pool=None) -> torch.Tensor:
            """The teachers' values of these images: as a resumed run stored them, else predicted (`pool`: the cache to read)."""
            if stored is not None and all(i in stored for i in ids):
                return torch.stack([stored[i] for i in ids]) if ids else torch.zeros(0, width)
            raw = predictions(picked, paths, self.competition, self.device, cfg.data.batch_size * 2, cfg.data.workers,
                              pool=pool, option="teachers")
            return _round_trip(ids, raw, task.columns(classes), task.unit_rows)

        if self.oof is not None:
            mix = cfg.train.oof_targets.mix
            values = (1 - mix) * task.soft_of(hard, classes) + mix * self._oof_rows(train_ids)
            soft = _round_trip(train_ids, values, task.columns(classes), task.unit_rows)  # recomputed on resume: the same arithmetic
            w_hard, w_soft = torch.zeros(n), torch.ones(n)
            taught["train"] = (train_ids, soft)
            record["oof_targets"] = {"from": str(self.oof[0]), "mix": mix, "sha256": sha256(self.oof[0] / "oof.csv")}
        extra_paths: list = []
        extra = (torch.zeros(0, *hard.shape[1:], dtype=hard.dtype), torch.zeros(0, width), torch.zeros(0), torch.zeros(0))
        if self.distill:
            alpha = cfg.distill.alpha
            picked = [(t, t.models) for t in self.distill]
            soft = teacher_values(train_ids, list(train.paths), picked, self.pool)
            w_hard, w_soft = torch.full((n,), 1 - alpha), torch.full((n,), alpha)
            taught["train"] = (train_ids, soft)
            leaked = sum(t.trained_on(set(val_ids)) for t in self.distill)
            if leaked:
                notes.append("note: the teachers trained on this run's validation images; its val score is optimistic (the "
                             "teachers' knowledge of them reaches the student): judge the student on the test set or the teachers' CV")
            if cfg.distill.test and self.competition.test_paths:
                extra_paths, extra, taught["test"] = self._test_rows(picked, teacher_values, weight_hard=0.0, weight_soft=alpha,
                                                                     threshold=None)
            elif cfg.distill.test:
                notes.append(f"note: {self.competition.root} has no test images; the student learns the teachers on the labelled images only")
            record["distill"] = {"alpha": alpha, "temperature": cfg.distill.temperature, "test_images": len(extra_paths),
                                 "leaky": bool(leaked), "teachers": _teacher_records(picked)}
            scores = [t.score for t in self.distill if t.score is not None]
            record["teacher_score"] = sum(scores) / len(scores) if scores else None
        if picks is not None:
            p = cfg.pseudo
            w = p.weight
            extra_paths, extra, taught["test"] = self._test_rows(picks, teacher_values, weight_hard=w if p.hard else 0.0,
                                                                 weight_soft=0.0 if p.hard else w, threshold=p.threshold)
            leaky = any(models is None for _, models in self._leaks(val_ids))
            if leaky:
                notes.append("warning: pseudo.leak_ok: the teachers trained on this run's validation images; its CV score is optimistic")
            record["pseudo"] = {"test_images": len(self.competition.test_paths), "kept": len(extra_paths), "hard": p.hard,
                                "weight": w, "threshold": p.threshold, "final_epochs": p.final_epochs, "leaky": leaky,
                                "teachers": _teacher_records(picks)}
        packing = Packing.of(hard, width)
        rows = packing.pack(torch.cat([hard, extra[0]]), torch.cat([soft, extra[1]]), torch.cat([w_hard, extra[2]]),
                            torch.cat([w_soft, extra[3]]))
        tables = {}
        if taught:
            ids = [i for part in taught.values() for i in part[0]]
            values = torch.cat([part[1] for part in taught.values()])
            tables[TABLE] = (ids, values, task.columns(classes))
            record["targets"] = TABLE
        teaching = Teaching(rows, packing, extra_paths, cfg.distill.temperature if self.distill else 1.0,
                            cfg.pseudo.final_epochs if picks is not None else 0, tables, record, notes)
        if tables:
            record["targets_sha256"] = _table_digest(teaching)
        return teaching

    # -- pseudo-labels

    def _leaks(self, val_ids: list[str]) -> list[tuple[Teacher, Optional[list]]]:
        return [(t, t.clean_models(set(val_ids))) for t in self.pseudo]

    def _pseudo_models(self, val_ids: list[str]) -> Optional[list[tuple[Teacher, list]]]:
        """Each pseudo teacher with the models this split may learn from; refuses a leaking teacher (unless leak_ok)."""
        if not self.pseudo:
            return None
        picks = []
        for teacher, models in self._leaks(val_ids):
            if models is None:
                if not self.cfg.pseudo.leak_ok:
                    what = ("is a prediction table, whose models may have trained on any labelled image" if teacher.table else
                            f"trained on {teacher.trained_on(set(val_ids))} of this run's {len(val_ids)} validation images: it is no "
                            "k-fold run with this run's folds (the same data, train.folds and train.seed)")
                    raise UserError(f"pseudo.from: {teacher.path} {what}; train the teacher with the student's folds, or set "
                                    "pseudo.leak_ok=true (the CV will be optimistic)")
                models = teacher.models
            picks.append((teacher, models))
        return picks

    def _test_rows(self, picks, teacher_values, weight_hard: float, weight_soft: float, threshold: Optional[float]):
        """The test images kept at `threshold`, their packed parts (hard, soft, w_hard, w_soft), and every test
        image's (ids, teacher values) for the run's table (kept or not)."""
        paths = list(self.competition.test_paths)
        ids = _ids(Split(paths, []), self.competition)
        every = teacher_values(ids, paths, picks)
        keep = torch.ones(len(paths), dtype=torch.bool) if threshold is None else self.task.confidence(every) >= threshold
        keep &= torch.isfinite(every).all(1)
        idx = keep.nonzero().flatten()
        soft = every[idx]
        m = len(idx)
        if threshold is not None:
            self.log(f"pseudo.threshold {threshold}: {m} of {len(paths)} test images kept")
        parts = (self.task.decided(soft), soft, torch.full((m,), weight_hard), torch.full((m,), weight_soft))
        return [paths[i] for i in idx.tolist()], parts, (ids, every)

    # -- out-of-fold targets

    def _oof_rows(self, ids: list[str]) -> torch.Tensor:
        run, table_ids, values = self.oof
        row = {i: k for k, i in enumerate(table_ids)}
        missing = [i for i in ids if i not in row]
        if missing:
            raise UserError(f"train.oof_targets: {run}/oof.csv has no row for {missing[0]!r} ({len(missing)} of {len(ids)} training "
                            "images missing); use a k-fold run over the same labelled images")
        return values[[row[i] for i in ids]]


def planner(cfg: Config, competition: Competition, log: Log = print) -> Optional[Callable]:
    """The `Planner` of `cfg` (checked), or None when it trains no second round."""
    return Planner(cfg, competition, log) if active(cfg) else None


def _check_settings(cfg: Config, competition: Competition) -> None:
    """The one-line refusals of settings that cannot go together, before any teacher is opened."""
    task = competition.task
    if cfg.pseudo.from_ and cfg.distill.from_:
        raise UserError("pseudo.from and distill.from are both set: a distilled student learns the test images already "
                        "(distill.test: true); use one of them")
    if cfg.distill.from_ and cfg.train.oof_targets is not None:
        raise UserError("train.oof_targets and distill.from both set the training images' soft targets; use one of them")
    if cfg.data.sampler == "balanced":
        raise UserError("data.sampler=balanced draws labelled images by class; a second round's rows are not all labelled: "
                        "set data.sampler=uniform (or train.class_weights=balanced)")
    if cfg.pseudo.from_ and not competition.test_paths:
        raise UserError(f"--pseudo: {competition.root} has no test images to pseudo-label; use a competition with a test folder")
    soft = cfg.distill.from_ or cfg.train.oof_targets is not None or (cfg.pseudo.from_ and not cfg.pseudo.hard)
    if soft and task.kind_of(cfg.train.loss) == "corn":
        raise UserError("train.loss=corn learns whole grades, not soft targets (pseudo-labels, OOF targets, distillation); "
                        "set train.loss=smooth_l1, or pseudo.hard=true for pseudo-labels")
    if cfg.pseudo.from_ and cfg.pseudo.threshold is not None:
        task.confidence(torch.full((1, len(task.columns(competition.classes))), 0.5))  # a regression refuses a threshold
    if cfg.pseudo.final_epochs >= cfg.train.epochs and cfg.pseudo.from_:
        raise UserError(f"pseudo.final_epochs={cfg.pseudo.final_epochs} leaves no epoch with pseudo-labels in train.epochs="
                        f"{cfg.train.epochs}; lower it")


def _read_oof(cfg: Config, competition: Competition) -> tuple[Path, list[str], torch.Tensor]:
    """(run, ids, (N, D) values) of train.oof_targets' k-fold run, checked against this competition."""
    run = Path(cfg.train.oof_targets.from_)
    if not (run / "oof.csv").is_file():
        raise UserError(f"train.oof_targets: {run} has no oof.csv; give a finished k-fold run (comp train --folds K)")
    saved = saved_config(run)
    task, classes = competition.task, competition.classes
    if saved is not None and saved.data.task != task.name:
        raise UserError(f"train.oof_targets: {run} was trained as {saved.data.task}; this competition is {task.label}")
    ids, values, columns, _ = read_probs(run / "oof.csv")
    if columns != task.columns(classes):
        raise UserError(f"train.oof_targets: {run}/oof.csv holds columns {columns[:4]}..., not this competition's "
                        f"{task.columns(classes)[:4]}...: use a k-fold run of this competition")
    return run, ids, values


def _ids(split: Split, competition: Competition) -> list[str]:
    return [relative_id(p, competition.root) for p in split.paths]


def _teacher_records(picks) -> list[dict]:
    return [{"path": str(t.path), "models": [str(m.path) for m in models], "score": t.score, "sha256": t.files(models)}
            for t, models in picks]


def _round_trip(ids: list[str], values: torch.Tensor, columns: list[str], unit: bool) -> torch.Tensor:
    """`values` as `TABLE` stores them (ten digits), so a fresh run learns exactly what a resumed one reads back."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / TABLE
        write_probs(path, ids, values, columns, unit=unit)
        return read_probs(path)[1]


def _table_digest(teaching: Teaching) -> str:
    """sha256 of the table as `Teaching.write` writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        teaching.write(tmp)
        return sha256(Path(tmp) / TABLE)


def _stored(out_dir: Path) -> Optional[dict[str, torch.Tensor]]:
    """{id: values} of a resumed run's `TABLE`, or None."""
    path = Path(out_dir) / TABLE
    if not path.is_file():
        return None
    ids, values, _, _ = read_probs(path)
    return {i: values[k] for k, i in enumerate(ids)}
