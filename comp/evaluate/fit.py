"""`comp evaluate --fit`: the run weights, views and thresholds that score best on held-out images.

Run weights come from greedy forward selection with repeats on the metric itself
(`comp.predict.ensemble.greedy_weights`), then a subset of views (forward selection without
repeats, since predict weighs the views it is given equally), each scored exactly as `comp predict
--weights ... --tta-views ...` would predict; where the task cuts probabilities, the combination is
scored at the thresholds predict applies to it, with what refitting them would give beside. The
gains are reported with the options that give them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from comp.errors import Log
from comp.predict.ensemble import forward_selection, greedy_weights, merge
from comp.tasks import Task


def fit_combination(result: dict[str, Any], aligned: list, labels: torch.Tensor, views: list[str], rule: str, metric, task: Task,
                    value: Callable[..., float], log: Log,
                    applied: Callable[[Optional[list[float]]], Optional[list[float]]]) -> tuple[torch.Tensor, Optional[list[float]]]:
    """Weights (several runs), then views (several views), then thresholds; entries added to `result`.

    `aligned` are the runs' `HeldOut` predictions on the same images (targets `labels`); `value(p,
    cut)` the metric of (N, C) probabilities (cut at `cut` where given); `applied(weights)` the
    thresholds comp predict applies to the runs with those weights. Returns the chosen
    combination's (N, C) probabilities and the thresholds predict applies to it (None where the
    task cuts nothing): what the report describes is what predict writes. Thresholds refitted on
    the chosen combination are reported beside them, not used.
    """
    sign = 1.0 if metric.higher_is_better else -1.0  # hill-climb on the metric, oriented so that higher is better
    at = f" {task.plain_cut}" if metric.thresholded else ""
    weights = None
    if len(aligned) > 1:
        per_run = torch.stack([h.predicted() for h in aligned])
        weights = greedy_weights(per_run, labels, rule=rule, objective=lambda p: sign * value(p),
                                 tiebreak=lambda p: -task.log_loss(p, labels))
        fitted = value(merge(per_run, weights, rule))
        result.update(weights=weights, fitted_score=fitted)
        option = ",".join(f"{x:.3g}" for x in weights)
        log(f"fitted run weights {option}: {metric.name} {fitted:.4f}{at} ({fitted - result['ensemble_score']:+.4f} vs equal weights)"
            f"  -> comp predict ... --weights {option}")

    def predicted(chosen: Sequence[int]) -> torch.Tensor:
        return merge(torch.stack([h.predicted(chosen) for h in aligned]), weights, rule)

    keep = list(range(len(views)))
    if len(views) > 1:
        counts = forward_selection(len(views), lambda c: (sign * value(predicted([i for i, n in enumerate(c) if n])),), repeats=False)
        keep = [i for i, n in enumerate(counts) if n]
        chosen = [views[i] for i in keep]
        chosen_score, base = value(predicted(keep)), value(predicted(range(len(views))))
        result.update(views_selected=chosen, views_score=chosen_score)
        log(f"selected views {','.join(chosen)}: {metric.name} {chosen_score:.4f}{at} ({chosen_score - base:+.4f} vs all views"
            f"{' with these weights' if weights else ''})  -> comp predict ... --tta-views {','.join(chosen)}")
    probs = predicted(keep)
    refit = task.refit_post(probs, labels, metric.name)
    if refit is None:
        return probs, None
    cut = applied(weights)
    result.update(thresholds=cut, thresholded_score=value(probs, cut), fitted_thresholds=refit["thresholds"],
                  fitted_thresholded_score=refit["score"])
    name = task.cut_name
    log(f"at the {name} comp predict applies to that combination: {metric.name} {result['thresholded_score']:.4f}; "
        f"{name} fitted for that combination would give {refit['score']:.4f} ({task.plain_cut}: {refit['score_plain']:.4f}), "
        f"but predict fits them on the runs' held-out predictions as training wrote them (one run: its own)")
    return probs, cut
