"""`comp evaluate`: validation / out-of-fold accuracy of runs, each TTA view, and their ensemble.

A single run is scored on its validation images, a k-fold run on its out-of-fold images (each
image predicted by the fold that did not train on it); both lists come from the runs'
`val_probs.csv`. With several runs, the ensemble is scored on the images all of them hold out.
With `fit=True`, run weights and a subset of TTA views are chosen by greedy hill-climbing on those
predictions (comp.ensemble.greedy_weights) and the gain over equal weights is reported; pass them
on to `comp predict --weights ... --tta-views ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from comp.engine.epoch import resolve_device
from comp.engine.fit import Log
from comp.engine.infer import find_model_dirs, load_member, predict_views, shared_classes
from comp.ensemble import accuracy, greedy_weights, merge
from comp.errors import UserError
from comp.probs import label_indices, read_probs
from comp.tta import parse_views


def held_out_predictions(
    run: Path, views: list[str], data: Optional[Path], device: torch.device, batch_size: int = 64, workers: int = 2
) -> tuple[list[str], torch.Tensor, torch.Tensor, list[str]]:
    """Re-predict a run's held-out images under `views`.

    Returns:
        (ids, probs (V, N, C), labels (N,), classes) over the run's val (or out-of-fold) images.
    """
    ids, probs, labels = [], [], []
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
        probs.append(p[0][:, keep])
        labels.append(label_indices([meta["label"][k] for k in keep], classes, table))
    return ids, torch.cat(probs, 1), torch.cat(labels), classes


def evaluate(
    runs: Sequence[Path],
    *,
    data: Optional[Path] = None,
    tta: bool = False,
    views: Optional[Sequence[str]] = None,
    fit: bool = False,
    device: str = "auto",
    log: Log = print,
) -> dict[str, Any]:
    """Score runs, their views and their ensemble on held-out images. See the module docstring.

    Returns:
        {"runs": {run: {"views": {view: acc}, "tta_acc", "images"}}, "ensemble_acc", and with `fit`:
        "weights", "fitted_acc", "views_selected", "views_acc"}.
    """
    if not runs:
        raise UserError("no runs given; pass one or more run directories")
    if views is not None and not tta:
        raise UserError("--tta-views needs --tta (the views are what --tta scores)")
    dev = resolve_device(device)
    if tta:
        view_list = parse_views(views) if views else _configured_views(runs, dev)
    else:
        view_list = ["identity"]
    result: dict[str, Any] = {"runs": {}, "views": view_list}
    preds = {}
    for run in runs:
        ids, probs, labels, classes = held_out_predictions(Path(run), view_list, data, dev)
        per_view = {v: accuracy(probs[i], labels) for i, v in enumerate(view_list)}
        tta_acc = accuracy(merge(probs), labels)
        result["runs"][str(run)] = {"views": per_view, "tta_acc": tta_acc, "images": len(ids)}
        preds[str(run)] = (ids, probs, labels, classes)
        log(f"{run}: {len(ids)} held-out images")
        for v, a in per_view.items():
            log(f"  {v:<14} {a:.4f}")
        if len(view_list) > 1:
            log(f"  {'all views':<14} {tta_acc:.4f}")

    common = set.intersection(*(set(p[0]) for p in preds.values()))
    if len(runs) > 1 and not common:
        raise UserError("the runs share no held-out image; ensemble runs trained on the same folds/split and data")
    first = next(iter(preds.values()))
    order = [i for i in first[0] if i in common]
    stacked, labels = [], None
    for ids, probs, lab, _ in preds.values():
        pos = {i: k for k, i in enumerate(ids)}
        idx = [pos[i] for i in order]
        stacked.append(probs[:, idx])  # (V, N, C)
        labels = lab[idx]
    per_run = torch.stack([merge(p) for p in stacked])  # (R, N, C)
    result["ensemble_acc"] = accuracy(merge(per_run), labels)
    result["ensemble_images"] = len(order)
    if len(runs) > 1:
        log(f"ensemble of {len(runs)} runs (equal weights) on {len(order)} shared images: {result['ensemble_acc']:.4f}")
    if fit:
        _fit(result, stacked, per_run, labels, view_list, log)
    return result


def _configured_views(runs: Sequence[Path], device: torch.device) -> list[str]:
    names: list[str] = []
    for run in runs:
        member = load_member(find_model_dirs(Path(run))[0], device)
        names += [v for v in member.cfg.tta.views if v not in names]
    return parse_views(names)


def _fit(result: dict, stacked: list[torch.Tensor], per_run: torch.Tensor, labels: torch.Tensor, views: list[str], log: Log) -> None:
    if per_run.shape[0] > 1:
        w = greedy_weights(per_run, labels)
        acc = accuracy(merge(per_run, w), labels)
        result.update(weights=w, fitted_acc=acc)
        log(f"fitted run weights {','.join(f'{x:.3g}' for x in w)}: {acc:.4f} "
            f"({acc - result['ensemble_acc']:+.4f} vs equal weights)  -> comp predict ... --weights {','.join(f'{x:.3g}' for x in w)}")
    if len(views) > 1:
        per_view = torch.stack(stacked).mean(0)  # (V, N, C): each view averaged over runs
        vw = greedy_weights(per_view, labels)
        keep = [i for i, x in enumerate(vw) if x > 0]
        chosen = [views[i] for i in keep]
        acc = accuracy(merge(per_view[keep]), labels)  # predict weighs the chosen views equally
        base = accuracy(merge(per_view), labels)
        result.update(views_selected=chosen, views_acc=acc)
        log(f"selected views {','.join(chosen)}: {acc:.4f} ({acc - base:+.4f} vs all views equally)"
            f"  -> comp predict ... --tta-views {','.join(chosen)}")
