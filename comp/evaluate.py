"""`comp evaluate`: the competition metric of runs, each TTA view, and their ensemble, on held-out images.

A single run is scored on its validation images, a k-fold run on its out-of-fold images (each
image predicted by the fold that did not train on it); both lists come from the runs'
`val_probs.csv`. With several runs, the ensemble is scored on the images all of them hold out.
Scores are in the runs' metric (`metric` in their config; accuracy is shown beside it).

Everything is combined as `comp predict` combines it, so a score here is the score of the file
predict would write: views (and runs) merged by the runs' `tta.merge` rule (or `merge_rule`, as
`comp predict --merge`), then each run's temperature (log loss; `comp.calibration`) applied to its
merged prediction, with the log loss before and after reported. With `fit=True`, run weights are
chosen by greedy forward selection with repeats on the metric itself (comp.ensemble.greedy_weights)
and then a subset of views (forward selection without repeats, since predict weighs the views it
is given equally), each scored exactly as `comp predict --weights ... --tta-views ...` would
predict; the gains over equal weights and all views are reported with those options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from comp.calibration import apply_temperature, nll, run_temperature
from comp.device import resolve_device
from comp.engine.infer import find_model_dirs, load_member, predict_views, shared_classes
from comp.ensemble import accuracy, forward_selection, greedy_weights, merge
from comp.errors import Log, UserError
from comp.metrics import get_metric, score
from comp.predict import check_options
from comp.probs import label_indices, read_probs, tag_targets
from comp.report import check_report_dir, write_report
from comp.tta import parse_views


@dataclass
class HeldOut:
    """A run's held-out predictions: ids (N) and their files, probs (V, N, C) per view, labels (N,),
    and the run's temperature (1 = none)."""

    ids: list[str]
    paths: list[Path]
    probs: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    temperature: float
    metric: str
    positive_class: Optional[str]
    merge: str

    def predicted(self, views: Optional[Sequence[int]] = None, calibrate: bool = True) -> torch.Tensor:
        """(N, C): the `views` (default all) merged by the run's rule, then its temperature, as comp predict does."""
        p = self.probs if views is None else self.probs[list(views)]
        return apply_temperature(merge(p, rule=self.merge), self.temperature if calibrate else 1.0)


def held_out_predictions(
    run: Path, views: list[str], data: Optional[Path], device: torch.device, batch_size: int = 64, workers: int = 2,
    merge_rule: Optional[str] = None,
) -> HeldOut:
    """Re-predict a run's held-out images (val, or out-of-fold for k folds) under `views`."""
    ids, files, probs, labels = [], [], [], []
    members = [load_member(d, device) for d in find_model_dirs(run)]
    classes = shared_classes(members)
    temperature = run_temperature(run)  # before any model runs
    for member in members:
        table = member.run_dir / "val_probs.csv"
        if not table.is_file():
            if member.cfg.data.train_on_val:
                why, fix = "it trained on every labelled image (data.train_on_val)", "--set data.train_on_val=false or --folds K"
            else:
                why, fix = "it has no validation images", "--folds K"
            raise UserError(f"{table} not found: {why}; retrain with {fix} to score it")
        m_ids, _, _, meta = read_probs(table)
        root = Path(data or member.cfg.data.dir or ".")
        paths = [root / i for i in m_ids]
        p, ok = predict_views([member], [views], paths, device=device, batch_size=batch_size, workers=workers, on_bad="skip")
        keep = ok.nonzero().flatten().tolist()
        ids += [m_ids[k] for k in keep]
        files += [paths[k] for k in keep]
        probs.append(p[0][:, keep])
        kept = [meta["label"][k] for k in keep]
        labels.append(tag_targets(kept, classes, table) if member.multilabel else label_indices(kept, classes, table))
    cfg = members[0].cfg
    return HeldOut(ids, files, torch.cat(probs, 1), torch.cat(labels), classes, temperature, cfg.metric, cfg.data.positive_class,
                   merge_rule or cfg.tta.merge)


def evaluate(
    runs: Sequence[Path],
    *,
    data: Optional[Path] = None,
    tta: bool = False,
    views: Optional[Sequence[str]] = None,
    fit: bool = False,
    calibrate: bool = True,
    merge_rule: Optional[str] = None,
    report: Optional[Path] = None,
    top_losses: int = 16,
    device: str = "auto",
    log: Log = print,
) -> dict[str, Any]:
    """Score runs, their views and their ensemble on held-out images. See the module docstring.

    With `report`, also writes the error analysis of `comp.report` (per-class table, confusion
    matrix, `top_losses` top-loss images, reliability diagram, report.md) of the equal-weight
    ensemble's merged, calibrated predictions to that folder.

    Args:
        merge_rule: how views and runs are merged ("mean", "geometric" / "logit"); default the
            first run's `tta.merge`, as `comp predict`.

    Returns:
        {"metric", "views", "merge", "runs": {run: {"views": {view: score}, "tta_score", "tta_acc", "images",
        and with a temperature "temperature", "log_loss_raw", "log_loss_calibrated"}}, "ensemble_score",
        "ensemble_acc", "ensemble_images", and with `fit`: "weights", "fitted_score" (several runs),
        "views_selected", "views_score" (several views)}.
    """
    if not runs:
        raise UserError("no runs given; pass one or more run directories")
    if views is not None and not tta:
        raise UserError("--tta-views needs --tta (the views are what --tta scores)")
    check_options(len(runs), None, True, None, merge_rule, "auto")
    if report is not None:
        check_report_dir(report)
    dev = resolve_device(device)
    if tta:
        view_list = parse_views(views) if views else _configured_views(runs, dev)
    else:
        view_list = ["identity"]
    held: dict[str, HeldOut] = {}
    for run in runs:
        held[str(run)] = h = held_out_predictions(Path(run), view_list, data, dev, merge_rule=merge_rule)
        merge_rule = h.merge  # one rule for every run: the first run's tta.merge unless given, as comp predict
    if any(h.labels.ndim == 2 for h in held.values()):  # tag targets: a multi-label evaluation
        if not all(h.labels.ndim == 2 for h in held.values()):
            raise UserError("some runs are multi-label and some are not; evaluate runs of one competition")
        from comp.evaluate_tags import evaluate_tags

        return evaluate_tags(runs, held, view_list, fit=fit, report=report, top_losses=top_losses, log=log)
    first = next(iter(held.values()))
    metric, classes, positive, rule = get_metric(first.metric), first.classes, first.positive_class, first.merge
    other = {h.metric for h in held.values()} - {metric.name}
    if other:
        log(f"note: the runs were trained for different metrics; scoring all in {metric.name} (also {', '.join(sorted(other))})")

    def value(p: torch.Tensor, y: torch.Tensor) -> float:
        return score(metric.name, p, y, classes, positive)

    result: dict[str, Any] = {"metric": metric.name, "runs": {}, "views": view_list, "merge": rule}
    if len(view_list) > 1 or len(runs) > 1:
        log(f"views and runs merged by {rule} (--merge to change)")
    preds = {}
    for run, h in held.items():
        calibrated = calibrate and h.temperature != 1.0
        t = h.temperature if calibrate else 1.0
        per_view = {v: value(apply_temperature(h.probs[i], t), h.labels) for i, v in enumerate(view_list)}
        predicted = h.predicted(calibrate=calibrate)
        entry = {"views": per_view, "tta_score": value(predicted, h.labels), "tta_acc": accuracy(predicted, h.labels),
                 "images": len(h.ids)}
        log(f"{run}: {len(h.ids)} held-out images, {metric.name}" + (" (acc)" if metric.name != "accuracy" else ""))
        if calibrated:
            raw, cal = nll(h.predicted(calibrate=False), h.labels), nll(predicted, h.labels)
            entry.update(temperature=h.temperature, log_loss_raw=raw, log_loss_calibrated=cal)
            log(f"  calibrated by the run's temperature {h.temperature:.3f}: log loss {raw:.4f} -> {cal:.4f} (--no-calibrate to score raw)")
        result["runs"][run] = entry
        preds[run] = (h.ids, h.labels, h.paths)
        for i, (v, a) in enumerate(per_view.items()):
            acc = f"  ({accuracy(h.probs[i], h.labels):.4f})" if metric.name != "accuracy" else ""
            log(f"  {v:<14} {a:.4f}{acc}")
        if len(view_list) > 1:
            acc = f"  ({entry['tta_acc']:.4f})" if metric.name != "accuracy" else ""
            log(f"  {'all views':<14} {entry['tta_score']:.4f}{acc}")

    common = set.intersection(*(set(p[0]) for p in preds.values()))
    if len(runs) > 1 and not common:
        raise UserError("the runs share no held-out image; ensemble runs trained on the same folds/split and data")
    order = [i for i in next(iter(preds.values()))[0] if i in common]
    aligned: list[HeldOut] = []  # each run's held-out predictions on the shared images, in `order`
    labels = None
    for run, (ids, lab, _) in preds.items():
        pos = {i: k for k, i in enumerate(ids)}
        idx = [pos[i] for i in order]
        h = held[run]
        aligned.append(HeldOut(order, [h.paths[k] for k in idx], h.probs[:, idx], lab[idx], h.classes,
                               h.temperature if calibrate else 1.0, h.metric, h.positive_class, rule))
        labels = lab[idx]
    per_run = torch.stack([h.predicted() for h in aligned])  # (R, N, C)
    ensemble = merge(per_run, rule=rule)
    result.update(ensemble_score=value(ensemble, labels), ensemble_acc=accuracy(ensemble, labels), ensemble_images=len(order))
    if len(runs) > 1:
        log(f"ensemble of {len(runs)} runs (equal weights) on {len(order)} shared images: {metric.name} {result['ensemble_score']:.4f}")
    if report is not None:
        kind = "out-of-fold" if any(len(find_model_dirs(Path(r))) > 1 for r in runs) else "validation"
        title = {
            "runs": ", ".join(str(r) for r in runs) + (" (equal-weight ensemble)" if len(runs) > 1 else ""),
            "images": f"{len(order)} held-out ({kind})",
            "views": ", ".join(view_list) + (f" (merged by {rule})" if len(view_list) > 1 else ""),
            "probabilities": "calibrated by each run's temperature" if any(h.temperature != 1.0 for h in aligned)
            else "as the models give them",
            "metric": f"{metric.name} {result['ensemble_score']:.4f}",
            "accuracy": f"{result['ensemble_acc']:.4f}",
        }
        written = write_report(report, ensemble, labels, classes, order, aligned[0].paths, title=title, top=top_losses, log=log)
        result["report"] = {"dir": str(report), "ece": written["ece"]}
    if fit:
        # Hill-climb on the metric itself, oriented so that higher is better.
        sign = 1.0 if metric.higher_is_better else -1.0
        _fit(result, aligned, labels, view_list, rule, lambda p: value(p, labels), lambda p: sign * value(p, labels), log)
    return result


def _configured_views(runs: Sequence[Path], device: torch.device) -> list[str]:
    names: list[str] = []
    for run in runs:
        member = load_member(find_model_dirs(Path(run))[0], device)
        names += [v for v in member.cfg.tta.views if v not in names]
    return parse_views(names)


def _fit(
    result: dict, aligned: list[HeldOut], labels: torch.Tensor, views: list[str], rule: str,
    value: Callable[[torch.Tensor], float], objective: Callable[[torch.Tensor], float], log: Log,
) -> None:
    """Run weights (several runs), then a subset of views (several views), each scored as comp predict would predict."""
    name = result["metric"]
    weights = None
    if len(aligned) > 1:
        per_run = torch.stack([h.predicted() for h in aligned])
        weights = greedy_weights(per_run, labels, rule=rule, objective=objective)
        fitted = value(merge(per_run, weights, rule))
        result.update(weights=weights, fitted_score=fitted)
        option = ",".join(f"{x:.3g}" for x in weights)
        log(f"fitted run weights {option}: {name} {fitted:.4f} ({fitted - result['ensemble_score']:+.4f} vs equal weights)"
            f"  -> comp predict ... --weights {option}")
    if len(views) > 1:
        def predicted(chosen: Sequence[int]) -> torch.Tensor:
            return merge(torch.stack([h.predicted(chosen) for h in aligned]), weights, rule)

        counts = forward_selection(len(views), lambda c: (objective(predicted([i for i, n in enumerate(c) if n])),),
                                   repeats=False)
        keep = [i for i, n in enumerate(counts) if n]
        chosen = [views[i] for i in keep]
        chosen_score, base = value(predicted(keep)), value(predicted(range(len(views))))
        result.update(views_selected=chosen, views_score=chosen_score)
        log(f"selected views {','.join(chosen)}: {name} {chosen_score:.4f} ({chosen_score - base:+.4f} vs all views"
            f"{' with these weights' if weights else ''})  -> comp predict ... --tta-views {','.join(chosen)}")
