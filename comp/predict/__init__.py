"""`comp predict`: an ensemble of runs (and their folds) x TTA views -> prediction CSV + probabilities.

Inputs are run directories (a k-fold run expands to its folds, a fold directory is a run of its
own) or probability tables written by an earlier `comp predict` (`*_probs.csv`), so runs can be
re-ensembled without running the models again. Within a run, its folds and its TTA views are
merged with equal weight; across runs, with `weights` (default equal). What differs by competition
type (merge rules, temperature, thresholds, the values of each shape) is the task's (`comp.tasks`).
Outputs, next to `out`:

- `prediction.csv`: the sample submission's columns and id style, class *names* as labels;
- `prediction_probs.csv`: `id` + one probability column per class, in the model's class order;
- `prediction_meta.json`: runs, views, weights, merge rule, temperatures, thresholds and the runs'
  held-out scores (`cv_score` of what is written: calibrated and thresholded as it is; `cv_score_raw` before).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from comp.data.competition import Competition, open_competition
from comp.device import resolve_device
from comp.engine import distributed as dist
from comp.engine.infer import Member, find_model_dirs, load_member, predict_views, shared_classes
from comp.engine.logbook import LiveProgress
from comp.errors import Log, UserError
from comp.files import read_json, write_json
from comp.predict.combine import check_options, combine_members, member_views
from comp.predict.ensemble import merge
from comp.predict.write import output_paths, write_prediction_csv
from comp.probs import read_probs, write_probs
from comp.tasks import final_score_key, recorded_settings
from comp.tasks.calibration import run_temperature
from comp.tasks.shape import Shape


def run_score(run: Path, calibrated: bool = True, raw: bool = False) -> Optional[float]:
    """A run's held-out score in its metric: the k-fold run's out-of-fold `cv_score`, a single run's
    `best_val_score`, or a run of seeds' ensemble `score` (seeds.json, `comp.seeds`).

    The score of what `comp predict` writes (`comp.tasks.final_score_key`): after the run's
    temperature (log loss) unless not `calibrated`, and at its fitted thresholds (a multi-label F
    metric), which predict applies either way; `raw`: before any of them. Runs of older versions
    without a metric score give their accuracy.
    """
    for name, key, acc in (("seeds.json", "score", "acc"), ("cv.json", "cv_score", "cv_acc"), ("summary.json", "best_val_score", "best_val_acc")):
        saved = read_json(Path(run) / name)
        if saved is not None:
            chosen = (key if key in saved else None) if raw else final_score_key(saved, key, calibrated)
            value = saved.get(chosen or acc)
            return float(value) if value is not None else None
    return None


@dataclass
class _Ensemble:
    """What `predict` resolved before any model runs."""

    members: dict[Path, list[Member]]
    tables: list[Path]
    run_dirs: list[Path]
    competition: Competition
    classes: list[str]
    rule: str
    metric: str
    shape: Shape
    thresholds: Optional[list[float]]
    settings: Any  # the data settings the competition was opened with (config data section or recorded)

    @property
    def all_members(self) -> list[Member]:
        return [m for ms in self.members.values() for m in ms]


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
        shape: the prediction CSV's shape (the task's `resolve_shape`): auto (from the sample
            submission and the runs' metric), label, probs, positive, topk, tags or onehot; default
            the first run's `data.submission`.
        calibrate: apply each run's temperature (its calibration.json, if any) to the run's merged
            views and folds (`run_probabilities`).
        sidecars: also write `<out stem>_probs.csv` and `_meta.json`; False writes `out` alone.
        disk_cache: allow the decode-once cache on disk (`data.cache`); False decodes in memory.
        thresholds: the (C,) per-tag thresholds to apply (a bundle's, fixed when it was packaged);
            default the runs' own (the task's `prediction_post`).

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
    weights = list(weights) if weights is not None else [1.0] * len(runs)
    ens = _resolve(runs, data, dev, weights, merge_rule, id_column, label_column, shape, thresholds, log)
    temperatures = {r: run_temperature(r) if calibrate else 1.0 for r in ens.run_dirs}
    per_run, used_views = _predict_runs(ens, tta, views, temperatures, dev, batch_size, workers, disk_cache)
    for table in ens.tables:
        per_run[table] = _aligned_table(table, ens.competition, ens.competition.task.columns(ens.classes))
    final = merge(torch.stack([per_run[Path(r)] for r in runs]), weights, ens.rule)
    if not dist.is_main():
        return {}
    return _write_outputs(ens, runs, out, final, weights, used_views, temperatures, calibrate, sidecars, log)


def _resolve(runs: Sequence[Path], data: Optional[Path], dev: torch.device, weights: list[float], merge_rule: Optional[str],
             id_column: Optional[str], label_column: Optional[str], shape: str, thresholds: Optional[Sequence[float]], log: Log) -> _Ensemble:
    """The runs loaded, their competition opened and checked against them, the merge rule, shape and thresholds."""
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
    settings = first_cfg.data if first_cfg else recorded_settings(recorded)
    competition = open_competition(
        data,
        id_column or (first_cfg.data.id_column if first_cfg else recorded.get("id_column")),
        label_column or (first_cfg.data.label_column if first_cfg else recorded.get("label_column")),
        first_cfg.data.task if first_cfg else recorded.get("task", "auto"),
        settings=settings,
    )
    task = competition.task
    if any(m.task.name != task.name for m in all_members):
        other = next(m for m in all_members if m.task.name != task.name)
        raise UserError(f"the runs were trained as {other.task.label}, but {data} is {task.label}; "
                        "pass the competition they were trained on")
    competition.require_test()
    classes = shared_classes(all_members) if all_members else competition.classes
    if classes != competition.classes:
        raise UserError(f"the runs were trained on classes {classes[:5]}..., not those of {data}; pass the right --data")
    rule = merge_rule or (first_cfg.tta.merge if first_cfg else "mean")
    task.check_merge(rule)
    metric = first_cfg.metric if first_cfg else recorded.get("metric", "accuracy")
    if shape == "auto" and first_cfg is not None:
        shape = first_cfg.data.submission
    out_shape = task.resolve_shape(competition.submission, classes, metric, shape)  # before any model runs
    if tables and not task.from_tables:
        raise UserError(f"{task.label} predictions are made from run directories (their post-processing is fitted on the runs' "
                        "held-out predictions); pass the runs, not *_probs.csv tables")
    cut, source = task.prediction_post(run_dirs, weights, metric, classes, out_shape, thresholds)
    if source:
        log(f"{task.cut_name}: {source}")
    return _Ensemble(members, tables, run_dirs, competition, classes, rule, metric, out_shape, cut, settings)


def _predict_runs(ens: _Ensemble, tta: bool, views: Optional[Sequence[str]], temperatures: dict[Path, float], dev: torch.device,
                  batch_size: int, workers: int, disk_cache: bool) -> tuple[dict[Path, torch.Tensor], dict[str, list[str]]]:
    """Each run's (N, C) test prediction (views and folds merged, its temperature applied) and the views it used."""
    all_members = ens.all_members
    if not all_members:
        return {}, {}
    views_per_member = [member_views(m, tta, views) for m in all_members]
    test_paths = ens.competition.test_paths
    # Under torchrun each rank predicts every world-th test image; rank 0 gathers and writes.
    rank, world = dist.rank(), dist.world_size()
    with LiveProgress(enabled=None if rank == 0 else False) as progress:
        probs, _ = predict_views(all_members, views_per_member, test_paths[rank::world], device=dev, batch_size=batch_size,
                                 workers=workers, on_bad="raise", progress=progress, disk_cache=disk_cache)
    if world > 1:
        probs = _gathered(probs, len(test_paths))
    used_views, k = {}, 0
    for run, ms in ens.members.items():
        used_views[str(run)] = views_per_member[k]
        k += len(ms)
    return combine_members(ens.members, probs, temperatures, ens.rule), used_views


def _write_outputs(ens: _Ensemble, runs: Sequence[Path], out: Path, final: torch.Tensor, weights: list[float], used_views: dict,
                   temperatures: dict[Path, float], calibrate: bool, sidecars: bool, log: Log) -> dict[str, Any]:
    """prediction.csv, and with `sidecars` its `_probs.csv` and `_meta.json`; returns the metadata."""
    competition, task = ens.competition, ens.competition.task
    csv_path, probs_path, meta_path = output_paths(out)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    write_prediction_csv(csv_path, competition.test_ids, final, ens.classes, ens.shape, task, ens.thresholds,
                         clip=task.metric(ens.metric).name == "log_loss")
    scores = [s for s in (run_score(r, calibrated=calibrate) for r in ens.run_dirs) if s is not None]
    raw_scores = [s for s in (run_score(r, raw=True) for r in ens.run_dirs) if s is not None]
    unscored = None
    if not task.scored_as_written(ens.metric, ens.shape):  # the held-out score is of probabilities this file does not hold
        unscored = f"{ens.metric} scores probabilities; this file holds {ens.shape.describe(ens.classes)}"
        scores = raw_scores = []
        log(f"note: no cv_score recorded: {unscored}")
    meta = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [str(r) for r in runs],
        "models": len(ens.all_members),
        "views": used_views,
        "weights": weights,
        "merge": ens.rule,
        "cv_score": sum(scores) / len(scores) if scores else None,  # of what is written: calibrated and thresholded as it is
        "cv_score_raw": sum(raw_scores) / len(raw_scores) if raw_scores else None,
        "cv_score_missing": unscored,  # why cv_score is None although the runs have held-out scores
        # what cv_score scores: the runs' held-out predictions as training wrote them (val_probs.csv,
        # oof.csv), of the identity view alone; comp evaluate RUN --tta scores the views written here
        "cv_score_views": ["identity"],
        "images": len(competition.test_ids),
        "data": str(Path(competition.root).resolve()),
        "id_column": competition.id_column,  # the train.csv columns (CSV layout), for comp submit
        "label_column": competition.label_column,
        "train_images": ens.settings.train_images,  # the image folders, when named
        "test_images": ens.settings.test_images,
        "task": task.name,
        "metric": ens.metric,
        "positive_class": task.positive_class,
        "at_least_one_tag": task.ensure_one,
        "shape": ens.shape.kind,
        "k": ens.shape.k,
        "temperatures": {str(r): t for r, t in temperatures.items() if t != 1.0},
        "thresholds": ens.thresholds,  # the task's cut: per-tag thresholds, or an ordinal task's cut-points
        "target_range": task.target_range,  # regression: what values were clipped to
    }
    if sidecars:
        write_probs(probs_path, competition.test_ids, final, task.columns(ens.classes), unit=task.unit_rows)
        write_json(meta, meta_path)
    views = sorted({v for vs in used_views.values() for v in vs}) or "-"
    if scores and views not in ("-", ["identity"]):
        log(f"cv_score {meta['cv_score']:.4f} is the runs' held-out score of the identity view; comp evaluate RUN --tta "
            "scores the views used here")
    log(f"wrote {csv_path} ({len(competition.test_ids)} rows){f', {probs_path.name}, {meta_path.name}' if sidecars else ''} "
        f"from {len(ens.all_members)} models x views {views}")
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


def _aligned_table(path: Path, competition: Competition, classes: list[str]) -> torch.Tensor:
    ids, probs, table_classes, _ = read_probs(path)
    if table_classes != classes:
        raise UserError(f"{path}: its class columns differ from the runs' classes; ensemble tables of one competition")
    row = {i: k for k, i in enumerate(ids)}
    missing = [i for i in competition.test_ids if i not in row]
    if missing:
        raise UserError(f"{path}: no row for test id {missing[0]!r} ({len(missing)} missing); predict the same test set")
    return probs[[row[i] for i in competition.test_ids]]
