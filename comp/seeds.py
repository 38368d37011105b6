"""Runs of several seeds (`comp train --seeds N`): one recipe trained N times, differing only in the seed.

RUN/ holds:
- `config.yaml`: the recipe, with `train.seeds: N` and `train.seed`: the first seed s;
- `seed_<s>/ ... seed_<s+N-1>/`: each a complete run (a k-fold run with `--folds K`) whose
  `train.seed` is its own and whose `data.split_seed` is s, so every seed holds out the same
  images and only the training's randomness (init, data order, augmentation) differs;
- once every seed has finished: the seeds' held-out predictions merged as `comp predict` merges
  runs (`val_probs.csv`, or `oof.csv` with folds), the task's post-processing fitted on them
  (`calibration.json`, `thresholds.json`, `cutpoints.json`: what predict applies to the seeds'
  ensemble), and `seeds.json`: each seed's final score, their mean with its 95% t-interval and
  standard deviation, and the ensemble's held-out score (`score` as merged, `score_calibrated` /
  `_thresholded` / `_cut` after what was fitted, `final_score`: what predict writes).

`comp predict RUN` ensembles the N (or K x N) models like a k-fold run's folds. `--resume` skips
finished seeds, continues an interrupted one from its last.pt and starts the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from comp.config import Config, save_config
from comp.engine import distributed as dist
from comp.engine.rundir import check_new_run_dir, clear_run_dir, resolved_config, seed_state
from comp.errors import Log
from comp.files import read_json, write_json
from comp.predict.ensemble import merge
from comp.probs import write_probs
from comp.stats import t_interval
from comp.tasks import final_score, get_task
from comp.tasks.held_out import aligned_held_out, held_out_table

FILE = "seeds.json"
FitOne = Callable[..., dict]  # (cfg, out_dir, resume=, overwrite=, on_accept=) -> summary


def seed_config(cfg: Config, seed: int) -> Config:
    """The config of one seed's run: `train.seed` = `seed`, one seed, and the split of the first seed."""
    out = cfg.model_copy(deep=True)
    out.data.split_seed = cfg.data.split_seed if cfg.data.split_seed is not None else cfg.train.seed
    out.train.seed, out.train.seeds = seed, 1
    return out


def fit_seeds(cfg: Config, out_dir: Path, fit_one: FitOne, *, resume: bool = False, overwrite: bool = False,
              log: Log = print) -> dict[str, Any]:
    """Train `cfg.train.seeds` runs of `cfg` into `out_dir`/seed_<s> with `fit_one` (single or
    k-fold), then merge their held-out predictions and write seeds.json (module docstring).

    Returns:
        seeds.json's content.
    """
    out_dir = Path(out_dir)
    seeds = [cfg.train.seed + i for i in range(cfg.train.seeds)]
    if dist.is_main() and not resume:
        check_new_run_dir(out_dir, overwrite)
    written = resume

    def accepted() -> None:  # the first seed's checks have passed; nothing was written before
        nonlocal written
        if written or not dist.is_main():
            return
        clear_run_dir(out_dir, keep=f"seed_{seeds[0]}")  # an old run's files (--overwrite); the first seed has cleared its own
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        written = True

    for i, s in enumerate(seeds):
        run = out_dir / f"seed_{s}"
        done, words = seed_state(run)
        if resume and done:
            log(f"seed {s}: finished earlier, skipped")
            continue
        started = resume and run.is_dir() and any(run.iterdir())
        log(f"seed {s} ({i + 1}/{len(seeds)})" + (f": {words}, resumed" if started else ""))
        fit_one(seed_config(cfg, s), run, resume=started, overwrite=overwrite or (resume and not started), on_accept=accepted)
    if not dist.is_main():
        return {}
    summary = combine_seeds(out_dir, cfg, seeds)
    _print(summary, log)
    return summary


def combine_seeds(out_dir: Path, cfg: Config, seeds: list[int]) -> dict[str, Any]:
    """Merge the finished seeds' held-out tables into `out_dir`, fit the task's post-processing on
    the merge and write seeds.json."""
    runs = [out_dir / f"seed_{s}" for s in seeds]
    rc = resolved_config(runs[0])
    kfold = cfg.train.folds > 1
    key = "cv_score" if kfold else "best_val_score"
    saved = [read_json(r / ("cv.json" if kfold else "summary.json")) or {} for r in runs]
    scores = [final_score(s, key) for s in saved]
    summary: dict[str, Any] = {"metric": cfg.metric, "seeds": seeds, "seed_scores": {str(s): v for s, v in zip(seeds, scores)}}
    if all(v is not None for v in scores):
        interval, sd = t_interval(scores)
        summary.update(mean=interval.value, low=interval.low, high=interval.high, sd=sd)
    tables = [held_out_table(r) for r in runs]
    if all(t.is_file() for t in tables):
        ids, stacked, columns, meta = aligned_held_out(runs, None, lambda r: (
            f"{held_out_table(r)}: holds out other images than {tables[0]}; the seeds of one run share a split (data.split_seed)"))
        first = next(iter(sorted(runs[0].glob("**/summary.json"))), None)
        classes = ((read_json(first) or {}).get("classes") if first else None) or columns
        task = get_task(rc.data.task, rc.data, rc.train.loss, classes)
        merged = merge(stacked, rule=cfg.tta.merge)
        extra = {k: meta[k] for k in ("label", "fold") if k in meta}
        write_probs(out_dir / tables[0].name, ids, merged, columns, unit=task.unit_rows, **extra)
        y = task.targets(meta["label"], classes, tables[0])
        raw = task.score(cfg.metric, merged, y, classes)
        fits = task.fit_held_out(out_dir, tables[0].name, cfg.metric, classes)  # score_calibrated, ..._thresholded or ..._cut
        summary.update(score=raw, acc=task.accuracy(merged, y), images=len(ids), held_out=tables[0].name, **fits)
        summary["final_score"] = final_score(summary, "score")  # what predict writes (`comp.tasks.final_score_key`)
    write_json(summary, out_dir / FILE)
    return summary


def _print(summary: dict[str, Any], log: Log) -> None:
    metric = summary["metric"]
    for s, v in summary["seed_scores"].items():
        log(f"seed {s}: {metric} {v:.4f}" if v is not None else f"seed {s}: no held-out score")
    if summary.get("sd") is not None:
        log(f"{len(summary['seeds'])} seeds: mean {metric} {summary['mean']:.4f} [{summary['low']:.4f}, {summary['high']:.4f}] "
            f"(95% t-interval), sd {summary['sd']:.4f}")
    if summary.get("final_score") is not None:
        log(f"the seeds' ensemble on the same {summary['images']:,} held-out images: {metric} {summary['final_score']:.4f}, "
            "what comp predict writes")
