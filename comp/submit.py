"""`comp submit`: validate a prediction CSV against the competition, archive it, optionally upload.

Validation: the columns of the sample submission (or the NYCU default), one row per test id,
every id present once, every label a known class name, no empty value. On success the file is
copied to `submissions/<UTC time>_<name>.csv` (never overwriting), zipped as `prediction.csv` for
CodaBench-style upload, and a line is appended to `submissions/history.csv`: time, file, sha256,
runs, CV score, message, and agreement with the previous submission.
"""

from __future__ import annotations

import csv
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

HISTORY_COLUMNS = ("time_utc", "file", "sha256", "runs", "cv_score", "message", "agreement_with_previous")


def validate_prediction(path: Path, competition: Competition) -> pd.DataFrame:
    """Check `path` against the competition's submission format; return it as a DataFrame.

    Raises:
        UserError: naming the first problem found and how to fix it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prediction file not found: {path}; write one with comp predict")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable CSV ({e}); regenerate it with comp predict") from e
    fmt = competition.submission
    if list(df.columns) != fmt.columns:
        raise UserError(f"{path}: columns {list(df.columns)} but the competition expects {fmt.columns}")
    # One normalization for checking, comparing and archiving: surrounding spaces are not part of a value.
    df = df.apply(lambda col: col.str.strip())
    ids, labels = df[fmt.id_column], df[fmt.label_column]
    if (ids == "").any() or (labels == "").any():
        row = int(((ids == "") | (labels == "")).to_numpy().nonzero()[0][0]) + 2
        raise UserError(f"{path}: empty value on line {row}; every row needs an id and a label")
    dupes = ids[ids.duplicated()]
    if len(dupes):
        raise UserError(f"{path}: id {dupes.iloc[0]!r} appears more than once; each test id must appear once")
    expected = set(competition.test_ids)
    unknown = [i for i in ids if i not in expected]
    if unknown:
        raise UserError(f"{path}: id {unknown[0]!r} is not a test id ({len(unknown)} unknown); check the id style ({fmt.id_style})")
    missing = expected - set(ids)
    if missing:
        raise UserError(f"{path}: {len(df)} rows for {len(expected)} test ids; {len(missing)} missing, e.g. {sorted(missing)[0]!r}")
    bad = labels[~labels.isin(competition.classes)]
    if len(bad):
        raise UserError(f"{path}: label {bad.iloc[0]!r} is not a class of the competition ({len(bad)} rows); write class names")
    return df


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
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--dir {directory} is a file; pass a folder for the archive")
    meta = _read_meta(prediction)
    data = data or (Path(meta["data"]) if meta.get("data") else None)
    if data is None:
        raise UserError("no data folder: pass --data DIR (the competition the prediction is for)")
    competition = open_competition(data, id_column or meta.get("id_column"), label_column or meta.get("label_column"))
    competition.require_test()
    df = validate_prediction(prediction, competition)
    check_probabilities(prediction, meta)

    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc)
    archived = _unique(directory / f"{stamp:%Y%m%d-%H%M%S}_{prediction.stem}.csv")
    df.to_csv(archived, index=False)  # the validated values, without stray spaces
    with zipfile.ZipFile(archived.with_suffix(".zip"), "w", zipfile.ZIP_DEFLATED) as z:
        z.write(archived, "prediction.csv")
    history = directory / "history.csv"
    row = {
        "time_utc": stamp.isoformat(timespec="seconds"),
        "file": archived.name,
        "sha256": hashlib.sha256(archived.read_bytes()).hexdigest(),
        "runs": " ".join(meta.get("runs", [])),
        "cv_score": "" if meta.get("cv_score") is None else f"{meta['cv_score']:.4f}",
        "message": message,
        "agreement_with_previous": _agreement(history, directory, df, competition),
    }
    new = not history.is_file()
    with open(history, "a", newline="") as f:
        w = csv.DictWriter(f, HISTORY_COLUMNS)
        if new:
            w.writeheader()
        w.writerow(row)
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


def _agreement(history: Path, directory: Path, df: pd.DataFrame, competition: Competition) -> str:
    """Share of ids with the same label as the previous archived submission ('' for the first)."""
    if not history.is_file():
        return ""
    with open(history, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not (directory / rows[-1]["file"]).is_file():
        return ""
    prev = pd.read_csv(directory / rows[-1]["file"], dtype=str, keep_default_na=False)
    fmt = competition.submission
    if list(prev.columns) != fmt.columns:
        return ""
    prev = prev.apply(lambda col: col.str.strip())  # as validate_prediction normalizes
    a = df.set_index(fmt.id_column)[fmt.label_column]
    b = prev.set_index(fmt.id_column)[fmt.label_column].reindex(a.index)
    return f"{float((a == b).mean()):.4f}"


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
