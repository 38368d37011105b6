"""`comp predict`: an ensemble of runs (and their folds) x TTA views -> prediction CSV + probabilities.

Inputs are run directories (a k-fold run expands to its folds, a fold directory is a run of its
own) or probability tables written by an earlier `comp predict` (`*_probs.csv`), so runs can be
re-ensembled without running the models again. Within a run, its folds and its TTA views are
merged with equal weight; across runs, with `weights` (default equal). Outputs, next to `out`:

- `prediction.csv`: the sample submission's columns and id style, class *names* as labels;
- `prediction_probs.csv`: `id` + one probability column per class, in the model's class order;
- `prediction_meta.json`: runs, views, weights, merge rule, temperatures and the runs' held-out
  scores (`cv_score` of what is written, i.e. calibrated for log loss; `cv_score_raw` before).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import torch

from comp.data.competition import Competition, Shape, open_competition, resolve_shape
from comp.calibration import apply_tag_temperature, apply_temperature, run_temperature
from comp.engine import distributed as dist
from comp.device import resolve_device
from comp.engine.infer import Member, find_model_dirs, load_member, predict_views, shared_classes
from comp.engine.logbook import LiveProgress
from comp.files import read_json, write_json
from comp.ensemble import check_weights, merge
from comp.errors import Log, UserError
from comp.probs import FLOAT_FORMAT, read_probs, unit_rows, write_probs
from comp.thresholds import prediction_thresholds
from comp.metrics_multilabel import predict_tags
from comp.tta import parse_views


def output_paths(out: Path) -> tuple[Path, Path, Path]:
    """(prediction.csv, prediction_probs.csv, prediction_meta.json) for `out`."""
    out = Path(out)
    return out, out.with_name(out.stem + "_probs.csv"), out.with_name(out.stem + "_meta.json")


def member_views(member: Member, tta: bool, views: Optional[Sequence[str]]) -> list[str]:
    """The views a member is evaluated with: identity without TTA, else the CLI's or its config's."""
    if not tta:
        return ["identity"]
    return parse_views(views if views else member.cfg.tta.views)


def run_score(run: Path, calibrated: bool = True) -> Optional[float]:
    """A run's held-out score in its metric: the k-fold run's out-of-fold `cv_score`, or a single run's `best_val_score`.

    With `calibrated` (what `comp predict` writes by default), a log-loss run's score after its
    temperature (`cv_score_calibrated` / `best_val_score_calibrated`) where it has one. Runs of
    older versions without a metric score give their accuracy.
    """
    for name, key in (("cv.json", "cv_score"), ("summary.json", "best_val_score")):
        saved = read_json(Path(run) / name)
        if saved is not None:
            keys = ([f"{key}_calibrated", f"{key}_thresholded"] if calibrated else []) + [key, "cv_acc" if name == "cv.json" else "best_val_acc"]
            value = next((saved[k] for k in keys if k in saved), None)
            return float(value) if value is not None else None
    return None


def run_probabilities(member_probs: Sequence[torch.Tensor], rule: str, temperature: float = 1.0, multilabel: bool = False) -> torch.Tensor:
    """What one run predicts: each member's (fold's) views merged, then the members, then the run's temperature.

    Args:
        member_probs: per member (fold) of the run, its (V, N, C) probabilities under its views.
        rule: the merge rule ("mean" or "geometric") for views and folds alike.
        temperature: the run's temperature (`comp.calibration.run_temperature`; 1 = none), applied
            last, so it never changes the class the run ranks first (multi-label: on each tag's
            logit, `comp.calibration.apply_tag_temperature`).

    Returns:
        (N, C) probabilities.
    """
    merged = merge(torch.stack([merge(p, rule=rule) for p in member_probs]), rule=rule)
    return apply_tag_temperature(merged, temperature) if multilabel else apply_temperature(merged, temperature)


def combine_members(
    members: dict[Path, list[Member]], probs: Sequence[torch.Tensor], temperatures: dict[Path, float], rule: str,
) -> dict[Path, torch.Tensor]:
    """Each run's (N, C) prediction (`run_probabilities`) from `probs`, its members' (V, N, C) in `members` order."""
    out, k = {}, 0
    for run, ms in members.items():
        out[run] = run_probabilities(probs[k : k + len(ms)], rule, temperatures.get(run, 1.0), ms[0].multilabel)
        k += len(ms)
    return out


def check_options(
    n_runs: int, weights: Optional[Sequence[float]], tta: bool, views: Optional[Sequence[str]], merge_rule: Optional[str], shape: str,
) -> tuple[Optional[list[float]], Optional[list[str]]]:
    """The ensemble options of `predict` (and `comp package`) checked; returns (weights, views) normalized."""
    from comp.data.competition import SHAPES

    if weights is not None:
        weights = check_weights(weights, n_runs)
    if views is not None:
        if not tta:
            raise UserError("--tta-views needs TTA; drop --no-tta (or the views)")
        views = parse_views(views)
    if merge_rule not in (None, "mean", "geometric", "logit"):
        raise UserError(f"--merge {merge_rule!r}: use mean, geometric or logit (geometric = logit mean)")
    if shape not in ("auto", *SHAPES):
        raise UserError(f"--shape {shape!r}: use auto, {', '.join(SHAPES)}")
    return weights, views


def predict(
    runs: Sequence[Path],
    *,
    data: Optional[Path] = None,
    tta: bool = True,
    views: Optional[Sequence[str]] = None,
    out: Path = Path("prediction.csv"),
    weights: Optional[Sequence[float]] = None,
    merge_rule: Optional[str] = None,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 2,
    id_column: Optional[str] = None,
    label_column: Optional[str] = None,
    shape: str = "auto",
    calibrate: bool = True,
    sidecars: bool = True,
    disk_cache: bool = True,
    thresholds: Optional[Sequence[float]] = None,
    log: Log = print,
) -> dict[str, Any]:
    """Predict the competition's test set with an ensemble; write CSV, probabilities and metadata.

    Args:
        runs: run directories or `*_probs.csv` tables.
        data: competition folder (default: the first run's data.dir).
        tta: use each run's configured views (or `views`); False = identity only.
        weights: one weight per entry of `runs`.
        merge_rule: "mean" or "geometric"; default the first run's `tta.merge`.
        id_column, label_column: train.csv columns (CSV layout); default the first run's config, or
            for probability tables the columns recorded in their `_meta.json`.
        shape: the prediction CSV's shape (`comp.data.competition.resolve_shape`): auto (from the
            sample submission and the runs' metric), label, probs, positive or topk; default the
            first run's `data.submission`.
        calibrate: apply each run's temperature (its calibration.json, if any) to the run's merged
            views and folds (`run_probabilities`).
        sidecars: also write `<out stem>_probs.csv` and `_meta.json`; False writes `out` alone.
        disk_cache: allow the decode-once cache on disk (`data.cache`); False decodes in memory.
        thresholds: multi-label: the (C,) per-tag thresholds to apply (a bundle's, fixed when it was
            packaged); default the runs' own (`comp.thresholds.prediction_thresholds`).

    Returns:
        The metadata written to `<out stem>_meta.json`.
    """
    if not runs:
        raise UserError("no runs given; pass one or more run directories, e.g. comp predict runs/demo-1")
    # Everything a user typed is checked before any model runs.
    weights, views = check_options(len(runs), weights, tta, views, merge_rule, shape)
    if Path(out).is_dir():
        raise UserError(f"--out {out} is a folder; pass a file name, e.g. {Path(out) / 'prediction.csv'}")
    dev = resolve_device(device)
    if dist.setup(dev.type) and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank())
    tables = [Path(r) for r in runs if Path(r).suffix == ".csv"]
    run_dirs = [Path(r) for r in runs if Path(r).suffix != ".csv"]
    members = {r: [load_member(d, dev) for d in find_model_dirs(r)] for r in run_dirs}
    all_members = [m for ms in members.values() for m in ms]
    first_cfg = all_members[0].cfg if all_members else None
    recorded = _table_meta(tables[0]) if tables else {}
    data = data or (Path(first_cfg.data.dir) if first_cfg and first_cfg.data.dir else None) or (
        Path(recorded["data"]) if recorded.get("data") else None)
    if data is None:
        raise UserError("no data folder: pass --data DIR (the competition the runs were trained on)")
    competition = open_competition(
        data,
        id_column or (first_cfg.data.id_column if first_cfg else recorded.get("id_column")),
        label_column or (first_cfg.data.label_column if first_cfg else recorded.get("label_column")),
        first_cfg.data.task if first_cfg else recorded.get("task", "auto"),
    )
    multilabel = competition.task == "multilabel"
    ensure_one = first_cfg.data.at_least_one_tag if first_cfg else True
    if all_members and any(m.multilabel != multilabel for m in all_members):
        raise UserError(f"the runs were trained as {'single' if multilabel else 'multi'}-label, but {data} is "
                        f"{'multi' if multilabel else 'single'}-label; pass the competition they were trained on")
    competition.require_test()
    classes = shared_classes(all_members) if all_members else competition.classes
    if classes != competition.classes:
        raise UserError(f"the runs were trained on classes {classes[:5]}..., not those of {data}; pass the right --data")
    rule = merge_rule or (first_cfg.tta.merge if first_cfg else "mean")
    metric = first_cfg.metric if first_cfg else recorded.get("metric", "accuracy")
    positive_class = first_cfg.data.positive_class if first_cfg else recorded.get("positive_class")
    if shape == "auto" and first_cfg is not None:
        shape = first_cfg.data.submission
    out_shape = resolve_shape(competition.submission, classes, metric, positive_class, shape, competition.task)  # before any model runs
    if multilabel:
        if rule != "mean":
            raise UserError("multi-label runs merge per-tag probabilities with --merge mean; geometric is for class distributions")
        if tables:
            raise UserError("multi-label predictions are made from run directories; pass the runs, not *_probs.csv tables")
        if out_shape.kind in ("tags", "onehot") and thresholds is None:
            thresholds, source = prediction_thresholds(run_dirs, list(weights) if weights is not None else [1.0] * len(runs),
                                                       metric, classes, ensure_one)
            log(f"thresholds: {source}")
        elif thresholds is not None and len(thresholds) != len(classes):
            raise UserError(f"{len(thresholds)} thresholds for {len(classes)} tags; package the runs again")
    run_temperatures = {r: run_temperature(r) if calibrate else 1.0 for r in run_dirs}

    per_run: dict[Path, torch.Tensor] = {}
    used_views: dict[str, list[str]] = {}
    temperatures: dict[str, float] = {}
    if all_members:
        views_per_member = [member_views(m, tta, views) for m in all_members]
        # Under torchrun each rank predicts every world-th test image; rank 0 gathers and writes.
        rank, world = dist.rank(), dist.world_size()
        with LiveProgress(enabled=None if rank == 0 else False) as progress:
            probs, _ = predict_views(
                all_members, views_per_member, competition.test_paths[rank::world], device=dev, batch_size=batch_size,
                workers=workers, on_bad="raise", progress=progress, disk_cache=disk_cache,
            )
        if world > 1:
            probs = _gathered(probs, len(competition.test_paths))
        per_run.update(combine_members(members, probs, run_temperatures, rule))
        temperatures = {str(r): t for r, t in run_temperatures.items() if t != 1.0}
        k = 0
        for run, ms in members.items():
            used_views[str(run)] = views_per_member[k]
            k += len(ms)
    for table in tables:
        per_run[table] = _aligned_table(table, competition, classes)
    ordered = [per_run[Path(r)] for r in runs]
    final = merge(torch.stack(ordered), weights, rule)

    if not dist.is_main():
        return {}
    csv_path, probs_path, meta_path = output_paths(out)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    write_prediction_csv(csv_path, competition.test_ids, final, classes, out_shape, clip=metric == "log_loss" and not multilabel,
                         thresholds=thresholds, multilabel=multilabel, ensure_one=ensure_one)
    scores = [s for s in (run_score(r, calibrated=calibrate) for r in run_dirs) if s is not None]
    raw_scores = [s for s in (run_score(r, calibrated=False) for r in run_dirs) if s is not None]
    meta = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [str(r) for r in runs],
        "models": len(all_members),
        "views": used_views,
        "weights": list(weights) if weights is not None else [1.0] * len(runs),
        "merge": rule,
        "cv_score": sum(scores) / len(scores) if scores else None,  # of what is written: calibrated when it is
        "cv_score_raw": sum(raw_scores) / len(raw_scores) if raw_scores else None,
        "images": len(competition.test_ids),
        "data": str(Path(data).resolve()),
        "id_column": competition.id_column,  # the train.csv columns (CSV layout), for comp submit
        "label_column": competition.label_column,
        "task": competition.task,
        "metric": metric,
        "positive_class": positive_class,
        "shape": out_shape.kind,
        "k": out_shape.k,
        "temperatures": temperatures,
        "thresholds": thresholds,
    }
    if sidecars:
        write_probs(probs_path, competition.test_ids, final, classes, unit=not multilabel)
        write_json(meta, meta_path)
    log(f"wrote {csv_path} ({len(competition.test_ids)} rows){f', {probs_path.name}, {meta_path.name}' if sidecars else ''} "
        f"from {len(all_members)} models x views {sorted({v for vs in used_views.values() for v in vs}) or '-'}")
    return meta


def _table_meta(table: Path) -> dict[str, Any]:
    """The `_meta.json` written beside a `*_probs.csv` table, or {}."""
    if not table.name.endswith("_probs.csv"):
        return {}
    return read_json(table.with_name(table.name[: -len("_probs.csv")] + "_meta.json")) or {}


def _gathered(probs: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """Reassemble every rank's [(V, N_r, C)] shard (images rank, rank + world, ...) into (V, n, C)."""
    parts = dist.gather_objects([p.cpu() for p in probs])
    world = len(parts)
    full = []
    for m, first in enumerate(parts[0]):
        t = torch.empty(first.shape[0], n, first.shape[2], dtype=first.dtype)
        for r in range(world):
            t[:, r::world] = parts[r][m]
        full.append(t)
    return full


# Log-loss scorers clip at 1e-15; a probability of 0 for the true class would cost 34.5 for one
# image. Writing at least this much bounds that cost at 13.8 and changes confident rows by < 1e-5.
LOG_LOSS_FLOOR = 1e-6


def write_prediction_csv(path: Path, ids: Sequence[str], probs: torch.Tensor, classes: Sequence[str], shape: Shape, clip: bool = False,
                         thresholds: Optional[Sequence[float]] = None, multilabel: bool = False, ensure_one: bool = True) -> None:
    """The submission in `shape`: the sample's columns, its ids in its order, and for each row a class
    name, the class probabilities, the positive class's probability or the top-k names; for a
    multi-label competition its tags, per-tag probabilities or 0/1 columns.

    Args:
        probs: (N, C) merged probabilities, rows in `ids` order, columns in `classes` order.
        clip: floor probabilities at `LOG_LOSS_FLOOR` (rows renormalized), for log-loss metrics.
        thresholds: (C,) per-tag thresholds of the tags and onehot shapes (an image with no tag
            above its threshold gets its most probable one).
        multilabel: `probs` are per-tag probabilities (written as they are, not renormalized).
        ensure_one: multi-label, data.at_least_one_tag: a row left with no tag gets its most probable one.
    """
    if multilabel:
        _write_tags(path, ids, probs, classes, shape, thresholds, ensure_one)
        return
    if clip:
        probs = probs.double().clamp_min(LOG_LOSS_FLOOR)
    rows = unit_rows(probs)  # float64, summing to 1 as written (comp.probs.FLOAT_FORMAT)
    cols = shape.columns
    table = {cols[0]: list(ids)}
    if shape.kind == "label":
        table[cols[1]] = [classes[i] for i in probs.argmax(1).tolist()]
    elif shape.kind == "probs":
        for col, c in zip(cols[1:], shape.class_index):
            table[col] = rows[:, c]
    elif shape.kind == "positive":
        table[cols[1]] = rows[:, shape.positive]
    else:  # topk
        top = probs.topk(min(shape.k, probs.shape[1]), dim=1).indices.tolist()
        table[cols[1]] = [" ".join(classes[i] for i in row) for row in top]
    pd.DataFrame(table).to_csv(path, index=False, float_format=FLOAT_FORMAT)


def _write_tags(path: Path, ids: Sequence[str], probs: torch.Tensor, classes: Sequence[str], shape: Shape,
                thresholds: Optional[Sequence[float]], ensure_one: bool = True) -> None:
    """A multi-label submission: tags (space-separated, class order), onehot (0/1) or probs columns."""
    p = probs.detach().double().cpu().numpy()
    cols = shape.columns
    table = {cols[0]: list(ids)}
    if shape.kind == "probs":
        for col, c in zip(cols[1:], shape.class_index):
            table[col] = p[:, c]
    else:
        on = predict_tags(p, thresholds if thresholds is not None else 0.5, ensure_one)
        if shape.kind == "tags":
            table[cols[1]] = [" ".join(c for c, flag in zip(classes, row) if flag) for row in on]
        else:
            for col, c in zip(cols[1:], shape.class_index):
                table[col] = on[:, c].astype(int)
    pd.DataFrame(table).to_csv(path, index=False, float_format=FLOAT_FORMAT)


def _aligned_table(path: Path, competition: Competition, classes: list[str]) -> torch.Tensor:
    ids, probs, table_classes, _ = read_probs(path)
    if table_classes != classes:
        raise UserError(f"{path}: its class columns differ from the runs' classes; ensemble tables of one competition")
    row = {i: k for k, i in enumerate(ids)}
    missing = [i for i in competition.test_ids if i not in row]
    if missing:
        raise UserError(f"{path}: no row for test id {missing[0]!r} ({len(missing)} missing); predict the same test set")
    return probs[[row[i] for i in competition.test_ids]]
