"""`comp submit`: validate a prediction CSV against the competition, archive it, optionally upload.

Validation (`comp.submission.validate`): the columns of the sample submission (or the NYCU
default), one row per test id, every id present once, no empty value, and values of the
submission's shape, as the competition's task checks them. On success the file is written to
`submissions/<UTC time>_<name>.csv` (never overwriting), zipped as `prediction.csv` for
CodaBench-style upload, and a line is appended to `submissions/history.csv`: time, file, sha256,
runs, metric, CV score, message, and agreement with the previous submission (`comp.submission.ledger`; `comp lb`
adds the leaderboard scores).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch

from comp.data.competition import Competition, open_competition
from comp.errors import UserError
from comp.probs import read_probs
from comp.submission.ledger import append_row, read_ledger
from comp.submission.validate import validate_prediction
from comp.tasks import recorded_settings
from comp.tasks.shape import Shape



def check_probabilities(prediction: Path, meta: dict[str, Any]) -> None:
    """Refuse a prediction made from non-finite weights or probabilities (its labels would all be class 0)."""
    weights = meta.get("weights") or []
    if any(not isinstance(w, (int, float)) or not math.isfinite(w) for w in weights):
        raise UserError(f"{prediction}: made with weights {weights}; predict again with finite --weights")
    table = prediction.with_name(prediction.stem + "_probs.csv")
    if table.is_file():
        _, probs, _, _ = read_probs(table)
        if not torch.isfinite(probs).all():
            raise UserError(f"{table}: holds NaN or infinite probabilities; predict again (check --weights)")


def submit(
    prediction: Path,
    *,
    data: Optional[Path] = None,
    message: str = "",
    kaggle: Optional[str] = None,
    directory: Path = Path("submissions"),
    id_column: Optional[str] = None,
    label_column: Optional[str] = None,
) -> dict[str, Any]:
    """Validate, archive, zip and record `prediction`; upload with the Kaggle CLI when asked.

    Args:
        data: the competition folder (default: from `<prediction stem>_meta.json`).
        kaggle: competition slug for `kaggle competitions submit`.
        directory: archive folder (created; files in it are never overwritten).
        id_column, label_column: train.csv columns (CSV layout); default: those recorded in the
            prediction's `_meta.json` by comp predict.

    Returns:
        The history row that was appended.
    """
    prediction, directory = Path(prediction), Path(directory)
    if not prediction.is_file():  # before anything else: the data folder comes from its _meta.json
        raise UserError(f"prediction file not found: {prediction}; write one with comp predict")
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--dir {directory} is a file; pass a folder for the archive")
    meta = _read_meta(prediction)
    data = data or (Path(meta["data"]) if meta.get("data") else None)
    if data is None:
        raise UserError("no data folder: pass --data DIR (the competition the prediction is for)")
    competition = open_competition(data, id_column or meta.get("id_column"), label_column or meta.get("label_column"),
                                   meta.get("task", "auto"), settings=recorded_settings(meta))
    competition.require_test()
    task = competition.task
    shape = None
    if meta.get("shape"):  # what comp predict wrote, with the metric it wrote it for
        shape = task.resolve_shape(competition.submission, competition.classes, meta.get("metric", "accuracy"), meta["shape"])
    df = validate_prediction(prediction, competition, shape)
    shape = shape or task.guess_shape(df, competition.submission, competition.classes)
    check_probabilities(prediction, meta)
    read_ledger(directory)  # a damaged ledger is refused before anything is archived

    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc)
    archived = _unique(directory / f"{stamp:%Y%m%d-%H%M%S}_{prediction.stem}.csv")
    df.to_csv(archived, index=False)  # the validated values, without stray spaces
    with zipfile.ZipFile(archived.with_suffix(".zip"), "w", zipfile.ZIP_DEFLATED) as z:
        z.write(archived, "prediction.csv")
    row = {
        "time_utc": stamp.isoformat(timespec="seconds"),
        "file": archived.name,
        "sha256": hashlib.sha256(archived.read_bytes()).hexdigest(),
        "runs": " ".join(meta.get("runs", [])),
        "metric": meta.get("metric", ""),
        "cv_score": "" if meta.get("cv_score") is None else f"{meta['cv_score']:.4f}",
        "message": message,
        "agreement_with_previous": _agreement(directory, df, competition, shape),
    }
    append_row(row, directory)
    if kaggle:
        _kaggle_submit(kaggle, archived, message or archived.stem)
    return {**row, "path": str(archived), "zip": str(archived.with_suffix(".zip"))}


def _read_meta(prediction: Path) -> dict[str, Any]:
    meta = prediction.with_name(prediction.stem + "_meta.json")
    try:
        return json.loads(meta.read_text()) if meta.is_file() else {}
    except ValueError as e:
        raise UserError(f"{meta}: not valid JSON ({e}); predict again or delete it and pass --data") from e


def _unique(path: Path) -> Path:
    """`path`, or `path` with _2, _3, ... before the suffix if it (or its zip) exists."""
    candidate, n = path, 1
    while candidate.exists() or candidate.with_suffix(".zip").exists():
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    return candidate


def _agreement(directory: Path, df: pd.DataFrame, competition: Competition, shape: Shape) -> str:
    """Share of ids with the same (first) label as the previous archived submission.

    '' for the first submission, for probability shapes, which have no label to compare, and when
    the previous file holds no class names in that column (another shape with the same header);
    what is compared is the task's (`Task.compared`: the label, the top name, the tag set).
    """
    ledger = read_ledger(directory)
    if ledger.empty or not (directory / ledger["file"].iloc[-1]).is_file():
        return ""
    prev = pd.read_csv(directory / ledger["file"].iloc[-1], dtype=str, keep_default_na=False)
    fmt = competition.submission
    if list(prev.columns) != fmt.columns:
        return ""
    prev = prev.apply(lambda col: col.str.strip())  # as validate_prediction normalizes
    task = competition.task
    a = task.compared(df.set_index(fmt.id_column)[fmt.label_column], shape, competition.classes)
    b = task.compared(prev.set_index(fmt.id_column)[fmt.label_column], shape, competition.classes)
    if a is None or b is None:  # a shape with no label to compare, or another shape under the same header
        return ""
    return f"{float((a == b.reindex(a.index)).mean()):.4f}"


def _kaggle_submit(competition: str, file: Path, message: str) -> None:
    exe = shutil.which("kaggle")
    if exe is None:
        raise UserError(
            f"archived {file}, but the Kaggle CLI is not installed: pip install kaggle, set up ~/.kaggle/kaggle.json, "
            f"then: kaggle competitions submit {competition} -f {file} -m '{message}'"
        )
    proc = subprocess.run([exe, "competitions", "submit", competition, "-f", str(file), "-m", message], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"archived {file}, but kaggle competitions submit failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
