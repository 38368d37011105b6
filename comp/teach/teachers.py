"""Teachers of a second round: finished runs (or `comp predict` tables) whose predictions become targets.

A teacher is a run directory (a k-fold run: each fold is one of its models) or a `*_probs.csv`
table written by `comp predict`. Each model knows which labelled images it did *not* train on:
the ids of its `val_probs.csv`. That is what keeps a student's validation honest
(`clean_models`): a student (or one of its folds) learns only from the teacher models that held
out all of its validation images; a k-fold teacher with the student's folds gives fold i its own
fold i. A table's models are unknown, so it counts as having trained on everything labelled.

Teacher predictions are made as `comp predict --tta` makes them: each model under its configured
TTA views (merged by its `tta.merge`), the models of one teacher merged the same way, its
temperature applied; several teachers are averaged with equal weight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from comp.data.competition import Competition
from comp.engine.infer import find_model_dirs, load_member, predict_views, relative_id
from comp.engine.rundir import saved_config
from comp.errors import UserError
from comp.files import read_json
from comp.predict.combine import member_views
from comp.predict.ensemble import merge
from comp.probs import read_probs
from comp.tasks import Task
from comp.tasks.calibration import run_temperature


@dataclass
class Model:
    """One model of a teacher: a run or fold folder (or the table itself) and the labelled ids it held out."""

    path: Path
    held_out: frozenset = frozenset()


@dataclass
class Teacher:
    """A teacher run or table, checked against the student's competition."""

    path: Path
    models: list[Model]
    table: bool = False
    score: Optional[float] = None  # its held-out score (cv_score or best_val_score) as comp predict records it
    rule: str = "mean"
    _memo: dict = field(default_factory=dict, repr=False)

    def clean_models(self, val_ids: set[str]) -> Optional[list[Model]]:
        """The models that held out every one of `val_ids` (all of them when there are none), or None."""
        if not val_ids:
            return list(self.models)
        clean = [m for m in self.models if val_ids <= m.held_out]
        return clean or None

    def trained_on(self, val_ids: set[str]) -> int:
        """How many of `val_ids` some model of this teacher trained on."""
        return len(val_ids) if self.table else len({i for i in val_ids if any(i not in m.held_out for m in self.models)})

    def files(self, models: Sequence[Model]) -> dict[str, str]:
        """sha256 of what `models` predict from (each best.pt, or the table)."""
        out = {}
        for m in models:
            f = m.path if self.table else m.path / "best.pt"
            out[str(f)] = sha256(f)
        return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def open_teachers(paths: Sequence[str], competition: Competition, option: str) -> list[Teacher]:
    """The teachers `paths` of `option` (pseudo.from, distill.from), each refused with one line when it
    is not a finished run or table of this competition's task and classes."""
    return [_open(Path(p), competition, option) for p in paths]


def _open(path: Path, competition: Competition, option: str) -> Teacher:
    task, classes = competition.task, competition.classes
    if path.suffix == ".csv":
        if not path.is_file():
            raise UserError(f"{option}: {path} not found; pass a run directory or a *_probs.csv from comp predict")
        ids, _, columns, _ = read_probs(path)
        meta = read_json(path.with_name(path.name[: -len("_probs.csv")] + "_meta.json")) if path.name.endswith("_probs.csv") else None
        if meta and meta.get("task") and meta["task"] != task.name:
            raise UserError(f"{option}: {path} predicts a {meta['task']} competition; this one is {task.label}: pass a teacher of this task")
        _check_columns(option, path, columns, task, classes)
        return Teacher(path, [Model(path)], table=True, score=(meta or {}).get("cv_score"))
    if not path.is_dir():
        raise UserError(f"{option}: {path} not found; pass a finished run directory (comp train) or a *_probs.csv (comp predict)")
    dirs = find_model_dirs(path)  # refuses unfinished runs and non-runs
    cfg = saved_config(dirs[0])
    if cfg is not None and cfg.data.task != task.name:
        raise UserError(f"{option}: {path} was trained as {cfg.data.task}; this competition is {task.label}: "
                        "a teacher must be of the same task")
    summary = read_json(dirs[0] / "summary.json") or {}
    if list(summary.get("classes", classes)) != list(classes):
        theirs = summary.get("classes", [])
        raise UserError(f"{option}: {path} was trained on other {task.what} ({', '.join(map(str, theirs[:4]))}, ...) than this "
                        f"competition's ({', '.join(classes[:4])}, ...): a teacher must come from the same competition")
    from comp.predict import run_score

    models = [Model(d, _held_out(d)) for d in dirs]
    return Teacher(path, models, score=run_score(path), rule=cfg.tta.merge if cfg is not None else "mean")


def _check_columns(option: str, path: Path, columns: list[str], task: Task, classes: list[str]) -> None:
    if columns != task.columns(classes):
        raise UserError(f"{option}: {path} holds columns {columns[:4]}..., not this competition's {task.columns(classes)[:4]}...: "
                        "a teacher must come from the same competition")


def _held_out(model_dir: Path) -> frozenset:
    """The ids `model_dir` did not train on: its val_probs.csv (none for a final fit on every image)."""
    table = model_dir / "val_probs.csv"
    return frozenset(read_probs(table)[0]) if table.is_file() else frozenset()


def predictions(
    picks: Sequence[tuple[Teacher, Sequence[Model]]], paths: Sequence[Path], competition: Competition, device: torch.device,
    batch_size: int = 64, workers: int = 2, pool: Optional[Sequence[Path]] = None, option: str = "teachers",
) -> torch.Tensor:
    """The teachers' merged (N, D) prediction of the images `paths` (see the module docstring).

    `picks`: each teacher with the models of it to use. A table must hold a row for every image.
    """
    ids = [relative_id(p, competition.root) for p in paths]
    per_teacher = []
    for teacher, models in picks:
        if teacher.table:
            per_teacher.append(_table_rows(teacher.path, ids, competition, option))
            continue
        probs = [_model_prediction(teacher, m, paths, device, batch_size, workers, pool) for m in models]
        merged = merge(torch.stack(probs), rule=teacher.rule) if len(probs) > 1 else probs[0]
        per_teacher.append(competition.task.apply_temperature(merged, run_temperature(teacher.path)))
    return torch.stack(per_teacher).mean(0)


def _model_prediction(teacher: Teacher, model: Model, paths, device, batch_size: int, workers: int, pool) -> torch.Tensor:
    """One model's (N, D) prediction, its TTA views merged; remembered per teacher (folds share a test set)."""
    key = (str(model.path), len(paths), hash(tuple(map(str, paths))))
    if key not in teacher._memo:
        member = load_member(model.path, device)
        views = member_views(member, True, None)
        out, ok = predict_views([member], [views], paths, device=device, batch_size=batch_size, workers=workers, on_bad="skip", pool=pool)
        teacher._memo[key] = merge(out[0], rule=member.cfg.tta.merge)  # unreadable images: NaN rows, which training skips
    return teacher._memo[key]


def _table_rows(path: Path, ids: list[str], competition: Competition, option: str) -> torch.Tensor:
    """The rows of a prediction table for `ids` (test ids by file stem, as comp predict writes them)."""
    table_ids, probs, _, _ = read_probs(path)
    row = {i: k for k, i in enumerate(table_ids)}
    by_test = dict(zip((relative_id(p, competition.root) for p in competition.test_paths), competition.test_ids))
    keys = [i if i in row else by_test.get(i, i) for i in ids]
    missing = [i for i in keys if i not in row]
    if missing:
        raise UserError(f"{option}: {path} has no prediction for {missing[0]!r} ({len(missing)} of {len(ids)} images missing); "
                        "a table teacher must cover the competition's test ids (comp predict on this competition)")
    return probs[[row[i] for i in keys]]
