"""`comp evaluate`: the competition metric of runs, each TTA view, and their ensemble, on held-out images.

A single run is scored on its validation images, a k-fold run on its out-of-fold images (each
image predicted by the fold that did not train on it); both lists come from the runs'
`val_probs.csv`. With several runs, the ensemble is scored on the images all of them hold out.
Scores are in the runs' metric (`metric` in their config; accuracy is shown beside it). A run with
a fitted temperature (log loss) is scored calibrated, as `comp predict` would predict, and its log
loss before and after calibration is reported. With `fit=True`, run weights and a subset of TTA
views are chosen by greedy hill-climbing on the metric itself (comp.ensemble.greedy_weights) and
the gain over equal weights is reported; pass them on to `comp predict --weights ... --tta-views ...`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from comp.calibration import apply_temperature, nll, run_temperature
from comp.device import resolve_device
from comp.engine.infer import find_model_dirs, load_member, predict_views, shared_classes
from comp.ensemble import accuracy, greedy_weights, merge
from comp.errors import Log, UserError
from comp.metrics import get_metric, score
from comp.probs import label_indices, read_probs
from comp.report import check_report_dir, write_report
from comp.tta import parse_views


@dataclass
class HeldOut:
    """A run's held-out predictions: ids (N) and their files, probs (V, N, C) per view, labels (N,),
    and per image the temperature of the model that predicted it (1 = none)."""

    ids: list[str]
    paths: list[Path]
    probs: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    temperature: torch.Tensor
    metric: str
    positive_class: Optional[str]

    def calibrated(self) -> torch.Tensor:
        """probs (V, N, C) with each image's temperature applied to every view, as comp predict does."""
        if bool((self.temperature == 1).all()):
            return self.probs
        return apply_temperature(self.probs, self.temperature.view(1, -1, 1))


def held_out_predictions(
    run: Path, views: list[str], data: Optional[Path], device: torch.device, batch_size: int = 64, workers: int = 2
) -> HeldOut:
    """Re-predict a run's held-out images (val, or out-of-fold for k folds) under `views`."""
    ids, files, probs, labels, temps = [], [], [], [], []
    members = [load_member(d, device) for d in find_model_dirs(run)]
    classes = shared_classes(members)
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
        labels.append(label_indices([meta["label"][k] for k in keep], classes, table))
        temps.append(torch.full((len(keep),), run_temperature(member.run_dir), dtype=torch.float64))
    cfg = members[0].cfg
    return HeldOut(ids, files, torch.cat(probs, 1), torch.cat(labels), classes, torch.cat(temps), cfg.metric, cfg.data.positive_class)


def evaluate(
    runs: Sequence[Path],
    *,
    data: Optional[Path] = None,
    tta: bool = False,
    views: Optional[Sequence[str]] = None,
    fit: bool = False,
    calibrate: bool = True,
    report: Optional[Path] = None,
    top_losses: int = 16,
    device: str = "auto",
    log: Log = print,
) -> dict[str, Any]:
    """Score runs, their views and their ensemble on held-out images. See the module docstring.

    With `report`, also writes the error analysis of `comp.report` (per-class table, confusion
    matrix, `top_losses` top-loss images, reliability diagram, report.md) of the equal-weight
    ensemble's merged, calibrated predictions to that folder.

    Returns:
        {"metric", "views", "runs": {run: {"views": {view: score}, "tta_score", "tta_acc", "images",
        and with a temperature "log_loss_raw", "log_loss_calibrated"}}, "ensemble_score",
        "ensemble_acc", "ensemble_images", and with `fit`: "weights", "fitted_score",
        "views_selected", "views_score"}.
    """
    if not runs:
        raise UserError("no runs given; pass one or more run directories")
    if views is not None and not tta:
        raise UserError("--tta-views needs --tta (the views are what --tta scores)")
    if report is not None:
        check_report_dir(report)
    dev = resolve_device(device)
    if tta:
        view_list = parse_views(views) if views else _configured_views(runs, dev)
    else:
        view_list = ["identity"]
    held = {str(run): held_out_predictions(Path(run), view_list, data, dev) for run in runs}
    first = next(iter(held.values()))
    metric, classes, positive = get_metric(first.metric), first.classes, first.positive_class
    other = {h.metric for h in held.values()} - {metric.name}
    if other:
        log(f"note: the runs were trained for different metrics; scoring all in {metric.name} (also {', '.join(sorted(other))})")

    def value(p: torch.Tensor, y: torch.Tensor) -> float:
        return score(metric.name, p, y, classes, positive)

    result: dict[str, Any] = {"metric": metric.name, "runs": {}, "views": view_list}
    preds = {}
    for run, h in held.items():
        probs = h.calibrated() if calibrate else h.probs
        per_view = {v: value(probs[i], h.labels) for i, v in enumerate(view_list)}
        entry = {"views": per_view, "tta_score": value(merge(probs), h.labels), "tta_acc": accuracy(merge(probs), h.labels),
                 "images": len(h.ids)}
        log(f"{run}: {len(h.ids)} held-out images, {metric.name}" + (" (acc)" if metric.name != "accuracy" else ""))
        if calibrate and not bool((h.temperature == 1).all()):
            raw, cal = nll(merge(h.probs), h.labels), nll(merge(probs), h.labels)
            entry.update(log_loss_raw=raw, log_loss_calibrated=cal)
            log(f"  calibrated by temperature: log loss {raw:.4f} -> {cal:.4f} (--no-calibrate to score raw)")
        result["runs"][run] = entry
        preds[run] = (h.ids, probs, h.labels, h.paths)
        for i, (v, a) in enumerate(per_view.items()):
            acc = f"  ({accuracy(probs[i], h.labels):.4f})" if metric.name != "accuracy" else ""
            log(f"  {v:<14} {a:.4f}{acc}")
        if len(view_list) > 1:
            acc = f"  ({entry['tta_acc']:.4f})" if metric.name != "accuracy" else ""
            log(f"  {'all views':<14} {entry['tta_score']:.4f}{acc}")

    common = set.intersection(*(set(p[0]) for p in preds.values()))
    if len(runs) > 1 and not common:
        raise UserError("the runs share no held-out image; ensemble runs trained on the same folds/split and data")
    order = [i for i in next(iter(preds.values()))[0] if i in common]
    stacked, labels = [], None
    for ids, probs, lab, _ in preds.values():
        pos = {i: k for k, i in enumerate(ids)}
        idx = [pos[i] for i in order]
        stacked.append(probs[:, idx])  # (V, N, C)
        labels = lab[idx]
    per_run = torch.stack([merge(p) for p in stacked])  # (R, N, C)
    result.update(ensemble_score=value(merge(per_run), labels), ensemble_acc=accuracy(merge(per_run), labels),
                  ensemble_images=len(order))
    if len(runs) > 1:
        log(f"ensemble of {len(runs)} runs (equal weights) on {len(order)} shared images: {metric.name} {result['ensemble_score']:.4f}")
    if report is not None:
        first_ids, _, _, first_paths = next(iter(preds.values()))
        where = dict(zip(first_ids, first_paths))
        kind = "out-of-fold" if any(len(find_model_dirs(Path(r))) > 1 for r in runs) else "validation"
        title = {
            "runs": ", ".join(str(r) for r in runs) + (" (equal-weight ensemble)" if len(runs) > 1 else ""),
            "images": f"{len(order)} held-out ({kind})",
            "views": ", ".join(view_list) + (" (merged)" if len(view_list) > 1 else ""),
            "probabilities": "calibrated by each model's temperature" if calibrate and any(
                not bool((h.temperature == 1).all()) for h in held.values()) else "as the models give them",
            "metric": f"{metric.name} {result['ensemble_score']:.4f}",
            "accuracy": f"{result['ensemble_acc']:.4f}",
        }
        written = write_report(report, merge(per_run), labels, classes, order, [where[i] for i in order], title=title,
                               top=top_losses, log=log)
        result["report"] = {"dir": str(report), "ece": written["ece"]}
    if fit:
        # Hill-climb on the metric itself, oriented so that higher is better.
        sign = 1.0 if metric.higher_is_better else -1.0
        _fit(result, stacked, per_run, labels, view_list, lambda p: value(p, labels), lambda p: sign * value(p, labels), log)
    return result


def _configured_views(runs: Sequence[Path], device: torch.device) -> list[str]:
    names: list[str] = []
    for run in runs:
        member = load_member(find_model_dirs(Path(run))[0], device)
        names += [v for v in member.cfg.tta.views if v not in names]
    return parse_views(names)


def _fit(
    result: dict, stacked: list[torch.Tensor], per_run: torch.Tensor, labels: torch.Tensor, views: list[str],
    value: Callable[[torch.Tensor], float], objective: Callable[[torch.Tensor], float], log: Log,
) -> None:
    name = result["metric"]
    if per_run.shape[0] > 1:
        w = greedy_weights(per_run, labels, objective=objective)
        fitted = value(merge(per_run, w))
        result.update(weights=w, fitted_score=fitted)
        log(f"fitted run weights {','.join(f'{x:.3g}' for x in w)}: {name} {fitted:.4f} "
            f"({fitted - result['ensemble_score']:+.4f} vs equal weights)  -> comp predict ... --weights {','.join(f'{x:.3g}' for x in w)}")
    if len(views) > 1:
        per_view = torch.stack(stacked).mean(0)  # (V, N, C): each view averaged over runs
        vw = greedy_weights(per_view, labels, objective=objective)
        keep = [i for i, x in enumerate(vw) if x > 0]
        chosen = [views[i] for i in keep]
        chosen_score = value(merge(per_view[keep]))  # predict weighs the chosen views equally
        base = value(merge(per_view))
        result.update(views_selected=chosen, views_score=chosen_score)
        log(f"selected views {','.join(chosen)}: {name} {chosen_score:.4f} ({chosen_score - base:+.4f} vs all views equally)"
            f"  -> comp predict ... --tta-views {','.join(chosen)}")
