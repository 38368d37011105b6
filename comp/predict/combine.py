"""How an ensemble's predictions are combined: each run's folds and views merged, then its
temperature; and the ensemble options `comp predict`, `comp evaluate` and `comp package` share."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from comp.tta import parse_views
from comp.engine.infer import Member
from comp.errors import UserError
from comp.predict.ensemble import check_weights, merge
from comp.tasks import Task
from comp.tasks.shape import SHAPES

MERGE_RULES = ("mean", "geometric", "logit")


def member_views(member: Member, tta: bool, views: Optional[Sequence[str]]) -> list[str]:
    """The views a member is evaluated with: identity without TTA, else the CLI's or its config's."""
    if not tta:
        return ["identity"]
    return parse_views(views if views else member.cfg.tta.views)


def run_probabilities(member_probs: Sequence[torch.Tensor], rule: str, temperature: float, task: Task) -> torch.Tensor:
    """What one run predicts: each member's (fold's) views merged, then the members, then the run's temperature.

    Args:
        member_probs: per member (fold) of the run, its (V, N, C) probabilities under its views.
        rule: the merge rule ("mean" or "geometric") for views and folds alike.
        temperature: the run's temperature (`comp.tasks.calibration.run_temperature`; 1 = none),
            applied last by `task`, so it never changes the order within a row.

    Returns:
        (N, C) probabilities.
    """
    merged = merge(torch.stack([merge(p, rule=rule) for p in member_probs]), rule=rule)
    return task.apply_temperature(merged, temperature)


def combine_members(
    members: dict[Path, list[Member]], probs: Sequence[torch.Tensor], temperatures: dict[Path, float], rule: str,
) -> dict[Path, torch.Tensor]:
    """Each run's (N, C) prediction (`run_probabilities`) from `probs`, its members' (V, N, C) in `members` order."""
    out, k = {}, 0
    for run, ms in members.items():
        out[run] = run_probabilities(probs[k : k + len(ms)], rule, temperatures.get(run, 1.0), ms[0].task)
        k += len(ms)
    return out


def check_options(
    n_runs: int, weights: Optional[Sequence[float]], tta: bool, views: Optional[Sequence[str]], merge_rule: Optional[str], shape: str,
) -> tuple[Optional[list[float]], Optional[list[str]]]:
    """The ensemble options of `predict` (and `comp package`) checked; returns (weights, views) normalized."""
    if weights is not None:
        weights = check_weights(weights, n_runs)
    if views is not None:
        if not tta:
            raise UserError("--tta-views needs TTA; drop --no-tta (or the views)")
        views = parse_views(views)
    if merge_rule not in (None, *MERGE_RULES):
        raise UserError(f"--merge {merge_rule!r}: use mean, geometric or logit (geometric = logit mean)")
    if shape not in ("auto", *SHAPES):
        raise UserError(f"--shape {shape!r}: use auto, {', '.join(SHAPES)}")
    return weights, views
