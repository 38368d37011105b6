"""Competition types: one `Task` object per type, chosen once and handed to every stage.

`get_task(name, data)` returns the task a run's `data.task` names (after `comp.data.labels` has
resolved `auto` from train.csv), set up with the data section's task settings
(`data.positive_class`, `data.at_least_one_tag`). See `comp.tasks.base` for the interface and how to
add a task, and `final_score` for which summary key is a run's score.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

from comp.errors import UserError
from comp.tasks.base import POST_SUFFIXES, POST_WORDS, Task, final_score, final_score_key, tracked_keys
from comp.tasks.multilabel import MultiLabel
from comp.tasks.ordinal import Ordinal
from comp.tasks.regression import Regression
from comp.tasks.single import SingleLabel

TASKS: dict[str, type[Task]] = {"single": SingleLabel, "multilabel": MultiLabel, "ordinal": Ordinal, "regression": Regression}
CHOICES = ("auto", *TASKS)  # what data.task and comp data check --task take


def get_task(name: str, data=None, loss: str = "auto", classes: Optional[list[str]] = None) -> Task:
    """The task called `name` ("single", "multilabel", "ordinal", "regression"), with the settings
    of the config's `data` section, `train.loss` (`loss`: which head an ordinal model has) and the
    competition's `classes` where known (an ordinal task's grades).

    Raises:
        UserError: an unknown name ("auto" must be resolved from the data first).
    """
    if name not in TASKS:
        raise UserError(f"data.task {name!r}: use {', '.join(CHOICES)}")
    positive_class: Optional[str] = getattr(data, "positive_class", None) if data is not None else None
    ensure_one = getattr(data, "at_least_one_tag", True) if data is not None else True
    return TASKS[name](positive_class=positive_class, ensure_one=ensure_one, loss=loss,
                       target_range=getattr(data, "target_range", None), target_scale=getattr(data, "target_scale", None),
                       classes=classes)


def find_metric(name: str, task: str = "auto"):
    """The metric `name` of the task called `task`; with "auto" (a config read before its data) the
    first task whose registry has it. An unknown name is one line listing every task's metrics."""
    if task in TASKS:
        return TASKS[task]().metric(name)
    for kind in TASKS.values():
        try:
            return kind().metric(name)
        except UserError:
            continue
    return SingleLabel().metric(name)  # raises, naming the single-label metrics and the others


def known_metric(name: str) -> str:
    """`name` normalised, when some task scores it (`data.task` picks whose registry applies when the run starts)."""
    return find_metric(name).name


def recorded_settings(meta: dict) -> SimpleNamespace:
    """The data settings a prediction's `_meta.json` or a bundle's settings recorded, as
    `open_competition` reads them: the task's (`get_task`) and the image folders'."""
    return SimpleNamespace(positive_class=meta.get("positive_class"), at_least_one_tag=meta.get("at_least_one_tag", True),
                           train_images=meta.get("train_images"), test_images=meta.get("test_images"),
                           target_range=meta.get("target_range"), target_scale=meta.get("target_scale"))


def check_choice(name: str, option: str = "data.task") -> str:
    """`name` if it is a task name or auto; else one line with the choices."""
    if name not in CHOICES:
        raise UserError(f"{option} {name!r}: use {', '.join(CHOICES)}")
    return name


__all__ = ["CHOICES", "POST_SUFFIXES", "POST_WORDS", "TASKS", "Task", "check_choice", "final_score", "final_score_key", "find_metric", "get_task",
           "known_metric", "recorded_settings", "tracked_keys"]
