"""`comp evaluate` of multi-label runs: scores at 0.5 and at the thresholds comp predict applies.

Called by `comp.evaluate.evaluate` with the runs' held-out predictions (each view, (V, N, C)
per-tag probabilities) once it sees tag targets. Per run: the metric of each view and of the
merged views at 0.5, and, for an F metric, at the run's own thresholds (thresholds.json, fitted on
its identity-view held-out predictions): the score of what `comp predict` writes for that run.
Several runs: the equal-weight ensemble on the images all of them hold out, at 0.5 and at
thresholds fitted on its merged predictions (as `comp predict` fits an ensemble's). With `fit`:
run weights (forward selection with repeats) and a subset of views (without repeats) chosen on
the metric at 0.5, then the thresholds fitted again for the chosen combination. With `report`:
`comp.report.tags`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from comp.calibration import apply_tag_temperature
from comp.ensemble import forward_selection, merge, tag_accuracy
from comp.errors import Log, UserError
from comp.metrics_multilabel import get_tag_metric, tag_score
from comp.thresholds import fit_thresholds, read_thresholds


def evaluate_tags(runs: Sequence[Path], held: dict, views: list[str], *, fit: bool, report: Optional[Path], top_losses: int,
                  log: Log) -> dict[str, Any]:
    """Score multi-label runs (their `HeldOut` predictions in `held`, keyed by run); see the module docstring."""
    first = next(iter(held.values()))
    metric, classes = get_tag_metric(first.metric), first.classes
    if first.merge != "mean":
        raise UserError("multi-label runs merge per-tag probabilities with --merge mean")
    result: dict[str, Any] = {"metric": metric.name, "runs": {}, "views": views, "merge": "mean", "task": "multilabel"}

    from comp.engine.rundir import saved_config

    cfg = saved_config(Path(next(iter(held))))
    one = cfg.data.at_least_one_tag if cfg is not None else True  # as the runs were scored and predict writes

    def at(p: torch.Tensor, y: torch.Tensor, t=0.5) -> float:
        return tag_score(metric.name, p, y, t, ensure_one=one)

    calibrated = metric.name == "log_loss"  # predict applies each run's sigmoid temperature for log loss
    for run, h in held.items():
        merged = apply_tag_temperature(merge(h.probs), h.temperature if calibrated else 1.0)
        entry: dict[str, Any] = {"views": {v: at(h.probs[i], h.labels) for i, v in enumerate(views)},
                                 "tta_score": at(merged, h.labels), "tta_acc": tag_accuracy(merged, h.labels), "images": len(h.ids)}
        log(f"{run}: {len(h.ids)} held-out images, {metric.name} at 0.5 (tag accuracy)")
        for i, v in enumerate(views):
            log(f"  {v:<14} {entry['views'][v]:.4f}  ({tag_accuracy(h.probs[i], h.labels):.4f})")
        if len(views) > 1:
            log(f"  {'all views':<14} {entry['tta_score']:.4f}  ({entry['tta_acc']:.4f})")
        own = read_thresholds(Path(run), classes) if metric.thresholded else None
        if own is not None:
            entry["thresholded_score"] = at(merged, h.labels, own)
            log(f"  at the run's thresholds ({Path(run) / 'thresholds.json'}): {metric.name} {entry['thresholded_score']:.4f}, "
                "what comp predict writes")
        result["runs"][str(run)] = entry

    order, index, labels = _shared(held)

    def run_probs(h, keep: Optional[Sequence[int]] = None) -> torch.Tensor:
        """A run's `keep` views (default all) merged, its temperature for log loss, on the shared images in `order`."""
        p = merge(h.probs if keep is None else h.probs[list(keep)])
        return apply_tag_temperature(p, h.temperature if calibrated else 1.0)[index[id(h)]]

    per_run = torch.stack([run_probs(h) for h in held.values()])  # (R, N, C)
    ensemble = merge(per_run)
    result.update(ensemble_score=at(ensemble, labels), ensemble_acc=tag_accuracy(ensemble, labels), ensemble_images=len(order))
    thresholds = _thresholds(ensemble, labels, metric, held, classes, one)
    if thresholds is not None:
        result["ensemble_thresholded_score"] = at(ensemble, labels, thresholds)
    if len(held) > 1:
        log(f"ensemble of {len(held)} runs (equal weights) on {len(order)} shared images: {metric.name} {result['ensemble_score']:.4f} at 0.5"
            + (f", {result['ensemble_thresholded_score']:.4f} at thresholds fitted on these predictions" if thresholds is not None else ""))
    if fit:
        ensemble, thresholds = _fit(result, held, per_run, run_probs, labels, views, metric, one, log)
    if report is not None:
        from comp.report.tags import write_tag_report

        by_id = {i: p for h in held.values() for i, p in zip(h.ids, h.paths)}
        title = {"runs": ", ".join(str(r) for r in runs) + (" (equal-weight ensemble)" if len(runs) > 1 and not fit else ""),
                 "images": f"{len(order)} held-out", "views": ", ".join(views),
                 "thresholds": "per tag, as comp predict applies them" if thresholds is not None else "0.5",
                 "metric": f"{metric.name} {at(ensemble, labels, thresholds if thresholds is not None else 0.5):.4f}"}
        written = write_tag_report(report, ensemble, labels, classes, thresholds if thresholds is not None else [0.5] * len(classes),
                                   order, [by_id[i] for i in order], title=title, top=top_losses, ensure_one=one, log=log)
        result["report"] = {"dir": str(report), "files": written["files"]}
    return result


def _shared(held: dict) -> tuple[list[str], dict, torch.Tensor]:
    """The ids every run holds out (in the first run's order), each run's row indices of them (keyed
    by `id()` of its `HeldOut`), and their (N, C) targets."""
    common = set.intersection(*(set(h.ids) for h in held.values()))
    if len(held) > 1 and not common:
        raise UserError("the runs share no held-out image; ensemble runs trained on the same folds/split and data")
    order = [i for i in next(iter(held.values())).ids if i in common]
    index = {}
    for h in held.values():
        pos = {i: k for k, i in enumerate(h.ids)}
        index[id(h)] = [pos[i] for i in order]
    first = next(iter(held.values()))
    return order, index, first.labels[index[id(first)]]


def _thresholds(probs: torch.Tensor, labels: torch.Tensor, metric, held: dict, classes: list[str], one: bool) -> Optional[list[float]]:
    """What comp predict applies: one run's own thresholds, several runs' fitted on their merged predictions."""
    if not metric.thresholded:
        return None
    if len(held) == 1:
        return read_thresholds(Path(next(iter(held))), classes)
    return fit_thresholds(probs.numpy(), labels.numpy(), metric.name, ensure_one=one)["thresholds"]


def _fit(result: dict, held: dict, per_run: torch.Tensor, run_probs, labels: torch.Tensor, views: list[str], metric, one: bool,
         log: Log):
    """Run weights, then views, on the metric at 0.5; then thresholds for what was chosen. Returns (probs, thresholds).

    `per_run` is (R, N, C), every run's views merged; `run_probs(h, keep)` one run's `keep` views merged.
    """
    sign = 1.0 if metric.higher_is_better else -1.0
    weights = None
    if len(held) > 1:
        counts = forward_selection(len(held), lambda c: (sign * tag_score(metric.name, merge(per_run, c), labels, ensure_one=one),))
        weights = [c / sum(counts) for c in counts]
        option = ",".join(f"{x:.3g}" for x in weights)
        result.update(weights=weights, fitted_score=tag_score(metric.name, merge(per_run, weights), labels, ensure_one=one))
        log(f"fitted run weights {option}: {metric.name} {result['fitted_score']:.4f} at 0.5  -> comp predict ... --weights {option}")
    chosen = list(range(len(views)))
    if len(views) > 1:
        def predicted(keep: Sequence[int]) -> torch.Tensor:
            return merge(torch.stack([run_probs(h, keep) for h in held.values()]), weights)

        counts = forward_selection(len(views), lambda c: (sign * tag_score(metric.name, predicted([i for i, n in enumerate(c) if n]), labels,
                                                                            ensure_one=one),), repeats=False)
        chosen = [i for i, n in enumerate(counts) if n]
        result.update(views_selected=[views[i] for i in chosen], views_score=tag_score(metric.name, predicted(chosen), labels, ensure_one=one))
        log(f"selected views {','.join(views[i] for i in chosen)}: {metric.name} {result['views_score']:.4f} at 0.5"
            f"  -> comp predict ... --tta-views {','.join(views[i] for i in chosen)}")
        probs = predicted(chosen)
    else:
        probs = merge(per_run, weights)
    thresholds = None
    if metric.thresholded:
        fitted = fit_thresholds(probs.numpy(), labels.numpy(), metric.name, ensure_one=one)
        thresholds = fitted["thresholds"]
        result.update(fitted_thresholds=thresholds, fitted_thresholded_score=fitted["score"])
        log(f"thresholds fitted for that combination: {metric.name} {fitted['score']:.4f} (at 0.5: {fitted['score_at_0.5']:.4f}); "
            "comp predict fits them the same way on the runs' out-of-fold predictions")
    return probs, thresholds
