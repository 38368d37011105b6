"""`comp runs`: a leaderboard of the user's own runs, and what differs among them.

Every run directory under the given folders is one row: single runs, k-fold runs (their folds are
not listed again) and `comp tune` trials alike. A row holds the run's name, its state (finished,
or where an unfinished one stands), the metric and its held-out score (`best_val_score`, or the
k-fold run's `cv_score`; calibrated for log loss, as `comp predict` scores what it writes), the
accuracy, the epochs trained (per fold for a k-fold run), the model, the image size, the training
time and the date, the teachers of a second round (`pseudo: NAME`, `distill: NAME`, `oof: NAME`, when any
run has them; paths and hashes are in its summary.json), and then one column per config key whose value differs among the listed runs, so the table shows what
changed from run to run. Rows are sorted by score in the metric's direction (runs of another
metric in their own group; runs without a score last); unfinished runs are marked, not hidden.
A run of seeds (`comp train --seeds N`) is one row: its seeds' ensemble, and `train.seeds` N.
`--vs RUN` and `--ci` add intervals (`comp.evaluate.intervals`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from comp.engine.rundir import ENVIRONMENT_KEYS, flat, resolved_config, run_state, seed_state, seed_runs
from comp.errors import Log, UserError
from comp.evaluate.intervals import difference, held_out, score_interval
from comp.files import read_json
from comp.tasks import find_metric
from comp.tasks.base import POST_MISSING
from comp.evaluate.report.tables import text_table

COLUMNS = ["run", "state", "metric", "score", "acc", "epochs", "model", "size", "seconds", "date"]
# Keys that say where or how a run ran, not what it is (or what training fitted, as a regression's
# target scale): never shown as a difference.
QUIET_KEYS = ENVIRONMENT_KEYS + ("data.mean", "data.std", "data.target_scale",
                               "pseudo.from", "distill.from", "train.oof_targets")  # these three: the `teachers` column


def find_runs(folders: Sequence[Path]) -> list[Path]:
    """The run directories under `folders`: single runs and k-fold runs (not their folds), tune trials included."""
    found: list[Path] = []

    def walk(d: Path) -> None:
        if (d / "config.yaml").is_file() and _is_run(d):
            found.append(d)
            return  # a run's folds are part of it
        for child in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            walk(child)

    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder; pass folders that hold run directories (default: runs)")
        walk(folder)
    return found


def _is_run(d: Path) -> bool:
    return (any((d / f).exists() for f in ("best.pt", "last.pt", "summary.json", "cv.json", "seeds.json"))
            or any(d.glob("fold_*/config.yaml")) or any(d.glob("seed_*/config.yaml")))


def run_row(run: Path, cfg) -> dict[str, Any]:
    """One leaderboard row for the run directory `run` (named as given), trained with `cfg` (`resolved_config`)."""
    from comp.predict import run_score

    seeds = seed_runs(run)
    kfold = cfg is not None and cfg.train.folds > 1
    where = seeds or [run]
    summaries = [read_json(f) or {} for d in where for f in (sorted(d.glob("fold_*/summary.json")) if kfold else [d / "summary.json"])]
    summaries = [s for s in summaries if s]
    if seeds:
        saved = read_json(run / "seeds.json")
        done = sum(seed_state(d)[0] for d in seeds)
        state = "finished" if saved and done == len(seeds) else f"{done}/{len(seeds)} seeds"
        acc = saved.get("acc") if saved else None
        summaries = summaries if saved else []  # a score only once the seeds' ensemble is written
    elif kfold:
        cv = read_json(run / "cv.json") or {}
        done = len(summaries)
        state = "finished" if done == cfg.train.folds and cv.get("folds_done") == cfg.train.folds else f"{done}/{cfg.train.folds} folds"
        acc = cv.get("cv_acc")
    else:
        finished, words = run_state(run)
        state = "finished" if finished else words
        acc = summaries[0].get("best_val_acc") if summaries else None
    if summaries:
        score = run_score(run)
    elif seeds:
        score = None
    else:  # unfinished: the best epoch so far, scored before the post-fit a finished run gets
        score, acc = _best_so_far(run, cfg)
        if score is not None and cfg is not None:
            state += _raw_note(cfg)
    when = max((s.get("finished_utc", "") for s in summaries), default="") or _modified(run)
    return {
        "run": str(run),  # as the folder was given, so that runs of several folders stay apart
        "state": state,
        "metric": (summaries[0].get("metric") if summaries else None) or (cfg.metric if cfg else "accuracy"),
        "score": score,
        "acc": acc,
        # per fold for a k-fold run (the most any fold ran), so runs of 1 and of k folds compare
        "epochs": max(int(s.get("epochs_run", 0)) for s in summaries) if summaries else _epochs_so_far(run),
        "model": cfg.model.name if cfg else None,
        "size": cfg.data.image_size if cfg else None,
        "seconds": round(sum(float(s.get("seconds", 0)) for s in summaries), 1) if summaries else None,
        "date": when[:16].replace("T", " "),
        "teachers": teachers_text(cfg),
    }


def shown_config(run: Path):
    """`resolved_config`, with a run of seeds' `train.seeds` (its seeds' configs say 1) and a
    `data.split_seed` equal to `train.seed` shown as unset (the same split either way)."""
    cfg = resolved_config(run)
    if cfg is None:
        return None
    cfg = cfg.model_copy(deep=True)
    cfg.train.seeds = max(1, len(seed_runs(run)))  # the first seed's config: its train.seed is the run's first seed
    if cfg.data.split_seed == cfg.train.seed:
        cfg.data.split_seed = None
    return cfg


def teachers_text(cfg) -> str:
    """The teachers a run learned from, by folder name: `pseudo: a, b`, `distill: a`, `oof: a` ("" for none)."""
    if cfg is None:
        return ""
    oof = cfg.train.oof_targets
    parts = [(word, [Path(p).name for p in paths]) for word, paths in (
        ("pseudo", cfg.pseudo.from_), ("distill", cfg.distill.from_), ("oof", [oof.from_] if oof is not None else []))]
    return "; ".join(f"{word}: {', '.join(names)}" for word, names in parts if names)


def _best_so_far(run: Path, cfg) -> tuple[Optional[float], Optional[float]]:
    """An unfinished single run's best val score so far and that epoch's val accuracy, from its metrics.csv."""
    try:
        rows = pd.read_csv(run / "metrics.csv").dropna(subset=["val_score"])
    except (OSError, KeyError, pd.errors.EmptyDataError):
        return None, None
    if rows.empty or cfg is None:
        return None, None
    scores = rows["val_score"]
    best = scores.idxmax() if find_metric(cfg.metric, cfg.data.task).higher_is_better else scores.idxmin()
    acc = rows.at[best, "val_acc"] if "val_acc" in rows else None
    return float(scores[best]), (float(acc) if pd.notna(acc) else None)


def _raw_note(cfg) -> str:
    """What an unfinished run's score lacks that a finished run's has (its metric's `post_suffix`)."""
    suffix = find_metric(cfg.metric, cfg.data.task).post_suffix
    return f" ({POST_MISSING[suffix]})" if suffix else ""


def _epochs_so_far(run: Path) -> int:
    try:
        return len(pd.read_csv(run / "metrics.csv"))
    except (OSError, pd.errors.EmptyDataError):
        return 0


def _modified(run: Path) -> str:
    stamp = max((p.stat().st_mtime for p in run.rglob("*") if p.is_file()), default=run.stat().st_mtime)
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="minutes")


def leaderboard(folders: Sequence[Path]) -> pd.DataFrame:
    """The table of `runs` (module docstring), unsorted: the fixed columns, then the config keys that differ."""
    rows, configs = [], []
    for folder in folders:
        for run in find_runs([folder]):
            cfg = shown_config(run)
            rows.append(run_row(run, cfg))
            configs.append({k: v for k, v in flat(cfg).items() if not _quiet(k)} if cfg else {})
    table = pd.DataFrame(rows, columns=COLUMNS)
    if any(r["teachers"] for r in rows):
        table["teachers"] = [r["teachers"] for r in rows]
    keys = sorted({k for c in configs for k in c})
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    for k in differing:
        table[k] = [_cell(c.get(k)) for c in configs]
    return table


def _quiet(key: str) -> bool:
    return any(key == q or (q.endswith(".") and key.startswith(q)) for q in QUIET_KEYS)


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return str(value)
    return value


def sort_runs(table: pd.DataFrame, key: Optional[str] = None) -> pd.DataFrame:
    """By score in each metric's direction (default; runs without a score last), or by `key` (date: newest first)."""
    if table.empty:
        return table
    if key in (None, "score"):
        sign = table["metric"].map(lambda m: -1.0 if find_metric(m).higher_is_better else 1.0)
        order = table.assign(_missing=table["score"].isna(), _key=table["score"].astype(float) * sign)
        return order.sort_values(["metric", "_missing", "_key", "run"], kind="stable").drop(columns=["_missing", "_key"])
    if key not in table.columns:
        raise UserError(f"--sort {key!r}: sort by one of {', '.join(table.columns)}")
    return table.sort_values([key, "run"], ascending=[key != "date", True], kind="stable", na_position="last")


def runs(folders: Sequence[Path] = (Path("runs"),), *, sort: Optional[str] = None, csv: Optional[Path] = None,
         vs: Optional[Path] = None, ci: bool = False, log: Log = print) -> pd.DataFrame:
    """`comp runs`: print the leaderboard of the run directories under `folders`; write it to `csv` when given.

    `vs` adds the column `vs <run>`: each run's score minus that run's on the held-out images both
    hold out, with its 95% paired bootstrap interval, `*` when it excludes 0 (`comp compare`); blank
    for a run that shares none or is unfinished. `ci` adds `score_ci`, each score's own 95% interval.
    """
    reference = held_out(Path(vs)) if vs is not None else None  # a bad --vs is one line before the table is built
    table = sort_runs(leaderboard(folders), sort)
    if table.empty:
        log(f"no run directories under {', '.join(str(f) for f in folders)}")
        return table
    if ci:
        table.insert(table.columns.get_loc("score") + 1, "score_ci", [_ci_text(Path(r)) for r in table["run"]])
    if reference is not None:
        column = f"vs {Path(vs).name}"
        table.insert(table.columns.get_loc("score") + 1 + ci, column, [_vs_text(reference, Path(r)) for r in table["run"]])
        log(f"{column}: the run's {reference.metric} minus {vs}'s on the held-out images both hold out, 95% paired bootstrap interval; "
            "* outside the noise")
    log(text_table(table, four_places=("score", "acc")))
    if csv is not None:
        table.to_csv(csv, index=False)
        log(f"wrote {csv} ({len(table)} runs)")
    return table


def _vs_text(reference, run: Path) -> str:
    """`+0.0041 [+0.0012, +0.0069] *` for `run` against the reference (blank: unfinished, or no shared images)."""
    if run.resolve() == Path(reference.run).resolve():
        return "(reference)"
    try:
        d = difference(reference, held_out(run, reference.metric))
    except UserError:
        return ""
    return d.interval.signed() + (" *" if d.real else "")


def _ci_text(run: Path) -> str:
    """`[0.8790, 0.8835]`: the 95% bootstrap interval of the run's score (blank where there is none)."""
    try:
        iv = score_interval([run])
    except UserError:
        return ""
    return "" if iv is None else f"[{iv.low:.4f}, {iv.high:.4f}]"
