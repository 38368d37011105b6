"""The shape of a prediction CSV: which values its columns hold, resolved by a task.

A `Shape` is what a task's `resolve_shape` returns from the competition's sample submission (its
columns, `comp.data.competition.SubmissionFormat`), the metric and the classes; the task's `decode`
fills it and its `check_values` validates a file of it (`comp submit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from comp.errors import UserError

ShapeKind = Literal["label", "probs", "positive", "topk", "tags", "onehot", "grade", "value"]
SHAPES = ("label", "probs", "positive", "topk", "tags", "onehot", "grade", "value")


@dataclass
class Shape:
    """The kind of values the prediction CSV holds, resolved for a competition, metric and classes.

    - label: one column of class names;
    - probs: one probability column per class, in the sample's column order (`columns[i]` holds
      class `class_index[i]`'s probability);
    - positive: binary; one column with the probability of class `positive`;
    - topk: one column of `k` space-separated class names, best first (MAP@k);
    - tags (several tags per image): one column of space-separated tags, each at or above its
      threshold; onehot: one 0/1 column per tag; probs: one probability column per tag, not
      summing to 1;
    - grade (ordinal): one column of integer grades, cut from the continuous prediction;
    - value (regression): one column of numbers, clipped to the target range and written with
      `decimals` decimals (at least the sample's).
    """

    kind: ShapeKind
    columns: list[str]  # every column of the file, the id column first
    class_index: list[int] = field(default_factory=list)  # probs/onehot: the class of each value column
    positive: int = 1  # positive: the class whose probability is written
    k: int = 1  # topk: names per row
    decimals: Optional[int] = None  # value: the sample's decimals (None: no sample)

    def describe(self, classes: list[str]) -> str:
        if self.kind == "probs":
            return f"one probability column per class ({len(self.class_index)})"
        if self.kind == "positive":
            return f"the probability of {classes[self.positive]!r} in column {self.columns[1]!r}"
        if self.kind == "topk":
            return f"the top {self.k} class names, best first, in column {self.columns[1]!r}"
        if self.kind == "tags":
            return f"space-separated tags in column {self.columns[1]!r}"
        if self.kind == "onehot":
            return f"one 0/1 column per tag ({len(self.class_index)})"
        if self.kind == "grade":
            return f"integer grades in column {self.columns[1]!r}"
        if self.kind == "value":
            return f"numbers in column {self.columns[1]!r}"
        return f"class names in column {self.columns[1]!r}"


def where(fmt) -> str:
    """How messages name the submission format `fmt`: its sample file, or the prediction."""
    return f"{fmt.sample}" if fmt.sample else "the prediction"


def per_class_shape(kind: ShapeKind, fmt, classes: list[str], what: str = "classes", one: str = "class") -> Shape:
    """A shape with one value column per class: the sample's class columns in its order, or without
    such a sample one column per class in class order (`what` and `one` name them in the error)."""
    values = fmt.columns[1:]
    if len(values) <= 1:
        return Shape(kind, [fmt.id_column, *classes], list(range(len(classes))))
    index = {c: i for i, c in enumerate(classes)}
    stray = [c for c in values if c.strip() not in index]
    if stray or len(values) != len(classes):
        raise UserError(
            f"{where(fmt)}: columns {values} do not match the {what} {classes[:6]}"
            f"{' (no ' + one + ' ' + repr(stray[0]) + ')' if stray else ''}; fix the sample or set data.submission"
        )
    return Shape(kind, list(fmt.columns), [index[c.strip()] for c in values])


def one_column(fmt, kind: str) -> None:
    """Refuse a sample with several value columns for a shape that writes one."""
    values = fmt.columns[1:]
    if len(values) > 1:
        raise UserError(f"{where(fmt)}: {len(values)} value columns {values}, but data.submission={kind} writes one")
