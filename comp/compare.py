"""`comp compare RUN_A RUN_B [...]`: is B's gain over A real, or noise of the held-out images?

Each run's held-out predictions (validation, or out-of-fold for k-fold runs; a run of seeds: its
seeds' ensemble) are scored as `comp predict` writes them (`comp.evaluate.intervals`). Every later
run is compared with the first on the images both hold out: the difference in the metric (A's
unless `metric` is given), its 95% paired bootstrap interval (`comp.stats.bootstrap`: images
resampled with replacement, both runs scored on each resample), the share of resamples in which
the later run is better, and one plain sentence. Runs of other competitions, runs that share no
held-out image and runs that label a shared image differently are refused with one line.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Optional, Sequence

from comp.errors import Log, UserError
from comp.evaluate.intervals import difference, held_out
from comp.stats import RESAMPLES


def compare(runs: Sequence[Path], *, metric: Optional[str] = None, resamples: int = RESAMPLES, seed: int = 0,
            log: Log = print) -> dict[str, Any]:
    """Compare every run after the first with the first (module docstring).

    Returns:
        {"metric", "runs": {run: {"name", "score", "images", "held_out"}}, "comparisons": [Difference.record() + "sentence"]}.
    """
    if len(runs) < 2:
        raise UserError("comp compare needs two or more runs: comp compare RUN_A RUN_B [...]")
    if resamples < 100:
        raise UserError(f"--resamples {resamples}: use 100 or more (2,000 by default)")
    scored = [held_out(Path(runs[0]), metric)]
    scored += [held_out(Path(r), scored[0].metric) for r in runs[1:]]  # every run in the first run's metric
    names = list(string.ascii_uppercase[:len(scored)]) if len(scored) <= 26 else [f"R{i + 1}" for i in range(len(scored))]
    own = {s.task.metric(s.metric).name for s in scored}
    a = scored[0]
    out: dict[str, Any] = {"metric": a.metric, "runs": {}, "comparisons": []}
    for name, s in zip(names, scored):
        out["runs"][str(s.run)] = {"name": name, "score": s.score(), "images": len(s.ids), "held_out": s.kind}
        log(f"{name}  {s.run}: {a.metric} {s.score():.4f} on {len(s.ids):,} {s.kind} images")
    if len(own) > 1:
        log(f"note: scoring every run in {a.metric}, the first run's metric")
    for name, b in zip(names[1:], scored[1:]):
        d = difference(a, b, resamples=resamples, seed=seed)
        if d.images < max(len(a.ids), len(b.ids)):
            log(f"note: {name} and A share {d.images:,} of their held-out images ({len(a.ids):,} and {len(b.ids):,}); compared on those")
        iv = d.interval
        log(f"{name} - A: {iv.signed()}  (95% paired bootstrap, {d.boot.method}, {resamples:,} resamples of {d.images:,} images; "
            f"{name} better in {d.b_better_share:.1%} of them)")
        sentence = d.sentence("A", name)
        log(sentence[0].upper() + sentence[1:] + ".")
        out["comparisons"].append({**d.record(), "a_name": "A", "b_name": name, "sentence": sentence})
    return out
