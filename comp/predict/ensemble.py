"""Ensemble arithmetic: merging probabilities, scoring, and greedy weight fitting.

Probabilities are kept as (members, N, C) tensors. The geometric mean, renormalized, equals the
softmax of the mean logits (log-softmax differs from the logits by a per-sample constant), so
"geometric" also covers logit averaging.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from comp.errors import UserError
from comp.tasks.calibration import nll as log_loss  # greedy_weights' default tie-break

EPS = 1e-12


def check_weights(weights: Sequence[float], n: int, what: str = "--weights") -> list[float]:
    """`weights` as floats, refused unless there are `n` of them, finite, >= 0, with a positive sum.

    NaN or inf weights would turn every probability into NaN (and every label into class 0).
    """
    w = [float(x) for x in weights]
    if len(w) != n:
        raise UserError(f"{what} has {len(w)} values for {n} runs; give one per run")
    if not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
        raise UserError(f"{what} {','.join(f'{x:g}' for x in w)}: weights must be finite, >= 0 and not all 0")
    return w


def merge(probs: torch.Tensor, weights: Optional[Sequence[float]] = None, rule: str = "mean") -> torch.Tensor:
    """Combine member probabilities.

    Args:
        probs: (M, N, C) probabilities of M members (models, views or both flattened).
        weights: M non-negative weights (default equal); normalized to sum 1.
        rule: "mean" (arithmetic mean of probabilities), or "geometric" / "logit" (the same thing:
            renormalized geometric mean = softmax of the mean logits).

    Returns:
        (N, C) probabilities, rows summing to 1.
    """
    m = probs.shape[0]
    w = torch.ones(m, dtype=probs.dtype) if weights is None else torch.as_tensor(check_weights(weights, m), dtype=probs.dtype)
    w = (w / w.sum()).to(probs.device).view(m, 1, 1)
    if rule == "mean":
        return (probs * w).sum(0)
    if rule in ("geometric", "logit"):
        return torch.softmax((probs.clamp_min(EPS).log() * w).sum(0), dim=1)
    raise ValueError(f"unknown merge rule {rule!r}")


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of (N, C) probabilities against (N,) class indices."""
    return (probs.argmax(1) == labels).float().mean().item() if len(labels) else float("nan")


def _orderable(value: float) -> float:
    """A score that sorts: NaN (a metric that cannot score these predictions) ranks below every number."""
    return -math.inf if math.isnan(value) else value


def forward_selection(
    candidates: int, score: Callable[[list[int]], tuple[float, ...]], *, repeats: bool = True, max_steps: int = 50,
) -> list[int]:
    """Caruana-style forward selection: how often each candidate is picked.

    The first step always picks the best single candidate, whatever its score (a log loss of 2.3
    is a fine start); each later step adds the candidate (again, with `repeats`) whose inclusion
    gives the best score and stops when none improves it. So the selection scores no worse than
    the best single candidate. `score(counts)` is higher-is-better and may be a tuple (ties broken
    by the later entries); NaN entries rank below every number.

    Returns:
        `candidates` counts, at least one of them positive.
    """
    counts = [0] * candidates
    best: Optional[tuple[float, ...]] = None
    for _ in range(max_steps):
        trials = []
        for i in range(candidates):
            if counts[i] and not repeats:
                continue
            c = list(counts)
            c[i] += 1
            trials.append((tuple(_orderable(v) for v in score(c)), i))
        if not trials:
            break
        s, i = max(trials, key=lambda t: t[0])  # the first of equals: the earlier candidate
        if best is not None and s <= best:
            break
        counts[i] += 1
        best = s
    return counts


def greedy_weights(
    probs: torch.Tensor, labels: torch.Tensor, rule: str = "mean", max_steps: int = 50,
    objective: Optional[Callable[[torch.Tensor], float]] = None, tiebreak: Optional[Callable[[torch.Tensor], float]] = None,
) -> list[float]:
    """Ensemble weights by forward selection with replacement on held-out predictions (`forward_selection`).

    Args:
        probs: (M, N, C) held-out probabilities of M members on the same N labelled images.
        labels: (N,) class indices.
        rule: how members are merged (`merge`): the rule the ensemble will be predicted with.
        objective: higher-is-better score of (N, C) merged probabilities (e.g. the competition
            metric, negated for log loss); default accuracy.
        tiebreak: higher-is-better score that breaks ties; default minus the log loss of class
            indices `labels` (a task's own, e.g. the per-tag log loss, for other targets).

    Returns:
        M finite weights summing to 1 (zero for members never picked); the merged prediction
        scores no worse than the best single member.
    """
    def score(counts: list[int]) -> tuple[float, float]:
        p = merge(probs, counts, rule)
        return (objective(p) if objective is not None else accuracy(p, labels)), (tiebreak(p) if tiebreak is not None else -log_loss(p, labels))

    counts = forward_selection(probs.shape[0], score, max_steps=max_steps)
    return [c / sum(counts) for c in counts]
