"""`comp evaluate`: the competition metric of runs, each TTA view, and their ensemble, on held-out images.

A single run is scored on its validation images, a k-fold run on its out-of-fold images (each
image predicted by the fold that did not train on it); both lists come from the runs'
`val_probs.csv`. With several runs, the ensemble is scored on the images all of them hold out.
Scores are in the runs' metric (`metric` in their config; the task's accuracy is shown beside it).

Everything is combined as `comp predict` combines it, so a score here is the score of the file
predict would write: views (and runs) merged by the runs' `tta.merge` rule (or `merge_rule`, as
`comp predict --merge`), then each run's temperature (log loss; `comp.tasks.calibration`) applied to
its merged prediction, with the log loss before and after reported; where the task cuts
probabilities (multi-label F metrics), also at the thresholds predict applies: one run's own
(thresholds.json), several runs' fitted again on their merged held-out predictions. With
`fit=True` (`comp.evaluate.fit`), run weights and then a subset of views are chosen on the metric
itself, each scored exactly as `comp predict --weights ... --tta-views ...` would predict, at the
thresholds predict applies (what refitting them on that combination would give is reported beside).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from comp.tta import parse_views
from comp.device import resolve_device
from comp.engine.infer import find_model_dirs, load_member, predict_views, shared_classes
from comp.errors import Log, UserError
from comp.evaluate.fit import fit_combination
from comp.evaluate.report import check_report_dir, write_report
from comp.predict.combine import check_options
from comp.predict.ensemble import merge
from comp.probs import read_probs
from comp.tasks import Task
from comp.tasks.calibration import run_temperature


@dataclass
class HeldOut:
    """A run's held-out predictions: ids (N) and their files, probs (V, N, C) per view, the task's
    targets, and the run's temperature (1 = none, or not applied)."""

    ids: list[str]
    paths: list[Path]
    probs: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    temperature: float
    metric: str
    merge: str
    task: Task

    def predicted(self, views: Optional[Sequence[int]] = None) -> torch.Tensor:
        """(N, C): the `views` (default all) merged by the run's rule, then its temperature, as comp predict does."""
        p = self.probs if views is None else self.probs[list(views)]
        return self.task.apply_temperature(merge(p, rule=self.merge), self.temperature)

    def subset(self, idx: Sequence[int], temperature: float) -> "HeldOut":
        """The images `idx`, in that order."""
        idx = list(idx)
        return HeldOut([self.ids[k] for k in idx], [self.paths[k] for k in idx], self.probs[:, idx], self.labels[idx], self.classes,
                       temperature, self.metric, self.merge, self.task)


def held_out_predictions(
    run: Path, views: list[str], data: Optional[Path], device: torch.device, batch_size: int = 64, workers: int = 2,
    merge_rule: Optional[str] = None, calibrate: bool = True,
) -> HeldOut:
    """Re-predict a run's held-out images (val, or out-of-fold for k folds) under `views`; with
    `calibrate` the run's temperature comes along (`--no-calibrate`: none, and an older run's
    per-fold temperatures are not asked about)."""
    ids, files, probs, labels = [], [], [], []
    members = [load_member(d, device) for d in find_model_dirs(run)]
    classes = shared_classes(members)
    task = members[0].task
    temperature = run_temperature(run) if calibrate else 1.0  # before any model runs
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
        labels.append(task.targets([meta["label"][k] for k in keep], classes, table))
    cfg = members[0].cfg
    rule = merge_rule or cfg.tta.merge
    probs_all, labels_all = torch.cat(probs, 1), torch.cat(labels)
    if len(set(ids)) < len(ids):  # a run of seeds: every seed holds out the same images; each is their merge, as predict merges them
        where: dict[str, list[int]] = {}
        for k, i in enumerate(ids):
            where.setdefault(i, []).append(k)
        if len({len(v) for v in where.values()}) != 1:
            raise UserError(f"{run}: its models hold out overlapping but different images; evaluate its seeds or folds one by one")
        idx = torch.tensor(list(where.values()))  # (U, M): the M models' predictions of each image
        probs_all = torch.stack([merge(probs_all[v][idx].transpose(0, 1), rule=rule) for v in range(probs_all.shape[0])])
        keep = idx[:, 0].tolist()
        ids, files, labels_all = [ids[k] for k in keep], [files[k] for k in keep], labels_all[keep]
    return HeldOut(ids, files, probs_all, labels_all, classes, temperature, cfg.metric, rule, task)


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

    With `report`, also writes the error analysis of `comp.evaluate.report` (per-class or per-tag
    table, figures, `top_losses` top-loss images, report.md) of the ensemble's merged, calibrated
    predictions (the fitted combination with `fit`) to that folder.

    Args:
        merge_rule: how views and runs are merged ("mean", "geometric" / "logit"); default the
            first run's `tta.merge`, as `comp predict`.
        calibrate: apply each run's temperature, as predict does (False: `--no-calibrate`).

    Returns:
        {"metric", "task", "views", "merge", "runs": {run: {"views": {view: score}, "tta_score", "tta_acc",
        "images", with a temperature "temperature", "log_loss_raw", "log_loss_calibrated", with thresholds
        "thresholded_score"}}, "ensemble_score", "ensemble_acc", "ensemble_images", with thresholds
        "ensemble_thresholded_score", and with `fit`: "weights", "fitted_score" (several runs),
        "views_selected", "views_score" (several views), "fitted_thresholds", "fitted_thresholded_score"}.
    """
    if not runs:
        raise UserError("no runs given; pass one or more run directories")
    if views is not None and not tta:
        raise UserError("--tta-views needs --tta (the views are what --tta scores)")
    check_options(len(runs), None, True, None, merge_rule, "auto")
    if report is not None:
        check_report_dir(report)
    dev = resolve_device(device)
    view_list = (parse_views(views) if views else _configured_views(runs, dev)) if tta else ["identity"]
    held: dict[str, HeldOut] = {}
    for run in runs:
        held[str(run)] = h = held_out_predictions(Path(run), view_list, data, dev, merge_rule=merge_rule, calibrate=calibrate)
        merge_rule = h.merge  # one rule for every run: the first run's tta.merge unless given, as comp predict
    first = next(iter(held.values()))
    task, rule = first.task, first.merge
    if any(h.task.name != task.name for h in held.values()):
        raise UserError("the runs are of different competition types (single- and multi-label); evaluate runs of one competition")
    task.check_merge(rule)
    metric = task.metric(first.metric)
    other = {h.metric for h in held.values()} - {metric.name}
    if other:
        log(f"note: the runs were trained for different metrics; scoring all in {metric.name} (also {', '.join(sorted(other))})")
    result: dict[str, Any] = {"metric": metric.name, "task": task.name, "runs": {}, "views": view_list, "merge": rule}
    if len(view_list) > 1 or len(runs) > 1:
        log(f"views and runs merged by {rule} (--merge to change)")
    for run, h in held.items():
        result["runs"][run] = _score_run(run, h, view_list, metric, log)

    aligned, order, labels = _aligned(held)
    per_run = torch.stack([h.predicted() for h in aligned])  # (R, N, C)
    ensemble = merge(per_run, rule=rule)
    classes = first.classes

    def value(p: torch.Tensor, cut: Optional[Sequence[float]] = None) -> float:
        return task.score(metric.name, p, labels, classes, cut)

    result.update(ensemble_score=value(ensemble), ensemble_acc=task.accuracy(ensemble, labels), ensemble_images=len(order))

    def applied(weights: Optional[Sequence[float]] = None) -> Optional[list[float]]:
        """The thresholds comp predict applies to these runs with `weights`: one run's own, several
        runs' fitted on their held-out predictions as training wrote them (`Task.prediction_post`)."""
        if not metric.thresholded:
            return None
        return task.prediction_post([Path(r) for r in held], list(weights or [1.0] * len(held)), metric.name, classes, None)[0]

    cut = applied()
    if cut is not None:
        result["ensemble_thresholded_score"] = value(ensemble, cut)
    if len(runs) > 1:
        log(f"ensemble of {len(runs)} runs (equal weights) on {len(order)} shared images: {metric.name} {result['ensemble_score']:.4f}"
            + (f" {task.plain_cut}, {result['ensemble_thresholded_score']:.4f} at the {task.cut_name} comp predict fits for it"
               if cut is not None else ""))
    if fit:
        ensemble, cut = fit_combination(result, aligned, labels, view_list, rule, metric, task, value, log, applied)
    if report is not None:
        result["report"] = _report(report, task, ensemble, labels, classes, cut, order, aligned, runs, view_list, rule, fit, value,
                                   top_losses, log)
    return result


def _score_run(run: str, h: HeldOut, views: list[str], metric, log: Log) -> dict[str, Any]:
    """One run's entry: each view's score, its views merged (+ temperature), and at its own thresholds."""
    task = h.task

    def value(p: torch.Tensor, cut: Optional[Sequence[float]] = None) -> float:
        return task.score(metric.name, p, h.labels, h.classes, cut)

    per_view = {v: value(task.apply_temperature(h.probs[i], h.temperature)) for i, v in enumerate(views)}
    predicted = h.predicted()
    entry: dict[str, Any] = {"views": per_view, "tta_score": value(predicted), "tta_acc": task.accuracy(predicted, h.labels),
                             "images": len(h.ids)}
    at = f" {task.plain_cut}" if metric.thresholded else ""
    shown = metric.name != "accuracy" and task.has_accuracy
    log(f"{run}: {len(h.ids)} held-out images, {metric.name}{at}" + (f" ({task.acc_name})" if shown else ""))
    if h.temperature != 1.0:
        raw = task.log_loss(merge(h.probs, rule=h.merge), h.labels)
        cal = task.log_loss(predicted, h.labels)
        entry.update(temperature=h.temperature, log_loss_raw=raw, log_loss_calibrated=cal)
        log(f"  calibrated by the run's temperature {h.temperature:.3f}: log loss {raw:.4f} -> {cal:.4f} (--no-calibrate to score raw)")
    for i, (v, a) in enumerate(per_view.items()):
        acc = f"  ({task.accuracy(h.probs[i], h.labels):.4f})" if shown else ""
        log(f"  {v:<14} {a:.4f}{acc}")
    if len(views) > 1:
        acc = f"  ({entry['tta_acc']:.4f})" if shown else ""
        log(f"  {'all views':<14} {entry['tta_score']:.4f}{acc}")
    own = task.run_post(Path(run), h.classes, metric.name)
    if own is not None:
        entry["thresholded_score"] = value(predicted, own)
        log(f"  at the run's {task.cut_name} ({Path(run) / task.cut_file}): {metric.name} {entry['thresholded_score']:.4f}, "
            "what comp predict writes")
    return entry


def _aligned(held: dict[str, HeldOut]) -> tuple[list[HeldOut], list[str], torch.Tensor]:
    """Each run's held-out predictions on the images all of them hold out (in the first run's order),
    those ids, and their targets."""
    common = set.intersection(*(set(h.ids) for h in held.values()))
    if len(held) > 1 and not common:
        raise UserError("the runs share no held-out image; ensemble runs trained on the same folds/split and data")
    order = [i for i in next(iter(held.values())).ids if i in common]
    aligned = []
    for h in held.values():
        pos = {i: k for k, i in enumerate(h.ids)}
        aligned.append(h.subset([pos[i] for i in order], h.temperature))
    return aligned, order, aligned[0].labels


def _report(out: Path, task: Task, probs: torch.Tensor, labels: torch.Tensor, classes: list[str], cut: Optional[list[float]],
            order: list[str], aligned: list[HeldOut], runs: Sequence[Path], views: list[str], rule: str, fit: bool, value,
            top: int, log: Log) -> dict[str, Any]:
    """The error analysis of `probs` (the ensemble evaluated, cut at `cut` where the task cuts)."""
    kind = "out-of-fold" if any(len(find_model_dirs(Path(r))) > 1 for r in runs) else "validation"
    title = {
        "runs": ", ".join(str(r) for r in runs) + (" (equal-weight ensemble)" if len(runs) > 1 and not fit else ""),
        "images": f"{len(order)} held-out ({kind})",
        "views": ", ".join(views) + (f" (merged by {rule})" if len(views) > 1 else ""),
        "probabilities": "calibrated by each run's temperature" if any(h.temperature != 1.0 for h in aligned) else "as the models give them",
        "metric": f"{task.metric(aligned[0].metric).name} {value(probs, cut):.4f}",
    }
    if task.has_accuracy:
        title["accuracy"] = f"{task.accuracy(probs, labels):.4f}"
    if cut is not None:
        title[task.cut_name] = ", ".join(f"{c:.3g}" for c in cut) + ", as comp predict applies them"
    written = write_report(out, task, probs, labels, classes, order, aligned[0].paths, thresholds=cut, title=title, top=top, log=log)
    return {"dir": str(out), **{k: written[k] for k in ("ece", "files") if k in written}}


def _configured_views(runs: Sequence[Path], device: torch.device) -> list[str]:
    names: list[str] = []
    for run in runs:
        member = load_member(find_model_dirs(Path(run))[0], device)
        names += [v for v in member.cfg.tta.views if v not in names]
    return parse_views(names)
