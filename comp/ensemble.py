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


def log_loss(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true class: (N, C) probabilities, (N,) labels (float64 sums)."""
    return -probs.double().gather(1, labels.view(-1, 1)).clamp_min(EPS).log().mean().item()


def greedy_weights(
    probs: torch.Tensor, labels: torch.Tensor, rule: str = "mean", max_steps: int = 50,
    objective: Optional[Callable[[torch.Tensor], float]] = None,
) -> list[float]:
    """Caruana-style forward selection with replacement on out-of-fold predictions.

    Starting from the best single member, repeatedly add the member (repeats allowed) whose
    inclusion gives the best objective of the merged prediction; stop when nothing improves.
    Weights are how often each member was picked.

    Args:
        probs: (M, N, C) out-of-fold probabilities of M members on the same N labelled images.
        labels: (N,) class indices.
        objective: higher-is-better score of (N, C) merged probabilities (e.g. the competition
            metric, negated for log loss); default accuracy, ties broken by lower log loss.

    Returns:
        M weights summing to 1 (zero for members never picked).
    """
    m = probs.shape[0]

    def score(counts: torch.Tensor) -> tuple[float, float]:
        p = merge(probs, counts.tolist(), rule)
        if objective is not None:
            return objective(p), -log_loss(p, labels)
        return accuracy(p, labels), -log_loss(p, labels)

    counts = torch.zeros(m)
    best_score = (-1.0, -float("inf"))
    for _ in range(max_steps):
        trials = []
        for i in range(m):
            c = counts.clone()
            c[i] += 1
            trials.append((score(c), i))
        (s, i) = max(trials, key=lambda t: t[0])
        if s <= best_score:
            break
        counts[i] += 1
        best_score = s
    return (counts / counts.sum()).tolist()
