"""`comp submit`: validate a prediction CSV against the competition, archive it, optionally upload.

Validation: the columns of the sample submission (or the NYCU default), one row per test id,
every id present once, no empty value, and values of the submission's shape (class names,
probabilities, or top-k names; see `validate_prediction`). On success the file is written to
`submissions/<UTC time>_<name>.csv` (never overwriting), zipped as `prediction.csv` for
CodaBench-style upload, and a line is appended to `submissions/history.csv`: time, file, sha256,
runs, metric, CV score, message, and agreement with the previous submission (`comp.ledger`; `comp lb`
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

import numpy as np
import pandas as pd
import torch

from comp.data.competition import Competition, Shape, open_competition, resolve_shape
from comp.data.labels import check_tags
from comp.metrics import positive_index
from comp.errors import UserError
from comp.ledger import append_row, read_ledger
from comp.probs import read_probs



def validate_prediction(path: Path, competition: Competition, shape: Optional[Shape] = None) -> pd.DataFrame:
    """Check `path` against the competition's submission format and `shape`; return it as a DataFrame.

    Every shape: the sample's columns, one row per test id, no empty value. Then, by shape: label
    = a class name per row; probs = numbers in [0, 1] whose rows sum to 1 (multi-label: each in
    [0, 1]); positive = numbers in [0, 1]; topk = k different class names per row; tags = known
    tags, none twice; onehot = 0 or 1. `shape` defaults to what the sample and the file's values
    say (`_guess_shape`).

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
    expected_columns = shape.columns if shape is not None else fmt.columns
    if list(df.columns) != expected_columns:
        raise UserError(f"{path}: columns {list(df.columns)} but the competition expects {expected_columns}")
    # One normalization for checking, comparing and archiving: surrounding spaces are not part of a value.
    df = df.apply(lambda col: col.str.strip())
    ids = df[fmt.id_column]
    # a multi-label tags cell may be empty (data.at_least_one_tag: false): an image with no tag
    required = df[[fmt.id_column]] if competition.task == "multilabel" and len(fmt.columns) == 2 else df
    empty = (required == "").any(axis=1)
    if empty.any():
        row = int(empty.to_numpy().nonzero()[0][0]) + 2
        raise UserError(f"{path}: empty value on line {row}; every row needs an id and a value in every column")
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
    shape = shape or _guess_shape(df, competition)
    _check_values(path, df, shape, competition.classes, multilabel=competition.task == "multilabel")
    return df


def _guess_shape(df: pd.DataFrame, competition: Competition) -> Shape:
    """The shape of a prediction without a `_meta.json`: from the sample's columns and the file's values.

    Class columns are probabilities; a single column named after a class of a binary competition
    is that class's probability (`resolve_shape`). A single other column holds, by its values:
    class names (label); numbers, in a binary competition (the positive class's probability,
    e.g. `id,target`); or space-separated names (top-k, with k from the sample's values when they
    are names, else the count most rows hold, so the line that differs is the one named).
    """
    fmt = competition.submission
    classes = competition.classes
    if competition.task == "multilabel":
        if len(fmt.columns) == 2:
            return Shape("tags", list(fmt.columns))
        values = df[fmt.columns[1:]]
        kind = "onehot" if values.isin(["0", "1"]).all().all() else "probs"
        return resolve_shape(fmt, classes, "f2_samples" if kind == "onehot" else "roc_auc", override=kind, task="multilabel")
    shape = resolve_shape(fmt, classes)
    if shape.kind != "label":
        return shape
    values = df[fmt.label_column]
    if values.isin(classes).all():
        return shape
    if len(classes) == 2 and pd.to_numeric(values, errors="coerce").notna().all():
        return Shape("positive", list(fmt.columns), positive=positive_index(classes, None))
    k = _sample_k(fmt) or int(values.str.split().str.len().mode().iloc[0])
    if k > 1:
        return Shape("topk", list(fmt.columns), k=k)
    return shape  # names, one per row: the label check names the first line that is not a class


def _sample_k(fmt) -> Optional[int]:
    """K of a top-k sample submission whose value column holds space-separated names, else None."""
    if fmt.sample is None:
        return None
    from comp.data.competition import read_table

    counts = read_table(fmt.sample).iloc[:, 1].astype(str).str.split().str.len()
    return int(counts.mode().iloc[0]) if len(counts) and (counts > 1).any() else None


def _line(mask: "pd.Series | np.ndarray") -> int:
    """The file line (header = 1) of the first True row of `mask`."""
    return int(np.asarray(mask).nonzero()[0][0]) + 2


def _check_values(path: Path, df: pd.DataFrame, shape: Shape, classes: list[str], multilabel: bool = False) -> None:
    """Each row's values fit `shape`; a failure names the first bad line and its value as written."""
    cols = shape.columns[1:]
    if shape.kind == "tags":
        check_tags(df[cols[0]], classes, str(path))
        return
    if shape.kind == "onehot":
        bad = ~df[cols].isin(["0", "1"]).to_numpy()
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise UserError(f"{path}: line {row + 2}, column {cols[col]!r}: {df[cols[col]].iloc[row]!r} is not 0 or 1")
        return
    if shape.kind == "label":
        labels = df[cols[0]]
        bad = ~labels.isin(classes)
        if bad.any():
            raise UserError(f"{path}: line {_line(bad)}: label {labels[bad].iloc[0]!r} is not a class of the competition "
                            f"({int(bad.sum())} rows); write class names")
        return
    if shape.kind == "topk":
        for line, value in enumerate(df[cols[0]], start=2):
            names = value.split()
            if len(names) != shape.k or len(set(names)) != len(names) or not set(names) <= set(classes):
                raise UserError(f"{path}: line {line} holds {value!r}; each row needs {shape.k} different class names, best first")
        return
    arr = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(arr) & (arr >= 0) & (arr <= 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UserError(f"{path}: line {row + 2}, column {cols[col]!r}: {df[cols[col]].iloc[row]!r} is not a probability; "
                        "write numbers in [0, 1]")
    if shape.kind == "probs" and not multilabel:  # per-tag probabilities need not sum to 1
        sums = arr.sum(1)
        off = np.abs(sums - 1) > 1e-3
        if off.any():
            raise UserError(f"{path}: the class probabilities on line {_line(off)} sum to {float(sums[off][0]):.4f}, not 1")


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
                                   meta.get("task", "auto"))
    competition.require_test()
    shape = None
    if meta.get("shape"):  # what comp predict wrote, with the metric it wrote it for
        shape = resolve_shape(competition.submission, competition.classes, meta.get("metric", "accuracy"),
                              meta.get("positive_class"), meta["shape"], competition.task)
    df = validate_prediction(prediction, competition, shape)
    shape = shape or _guess_shape(df, competition)
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
    the previous file holds no class names in that column (another shape with the same header).
    """
    ledger = read_ledger(directory)
    if ledger.empty or not (directory / ledger["file"].iloc[-1]).is_file():
        return ""
    prev = pd.read_csv(directory / ledger["file"].iloc[-1], dtype=str, keep_default_na=False)
    fmt = competition.submission
    if list(prev.columns) != fmt.columns:
        return ""
    prev = prev.apply(lambda col: col.str.strip())  # as validate_prediction normalizes
    if shape.kind not in ("label", "topk"):
        return ""
    a = df.set_index(fmt.id_column)[fmt.label_column].str.split().str[0]
    b = prev.set_index(fmt.id_column)[fmt.label_column].str.split().str[0]
    if not b.isin(competition.classes).all():  # e.g. probabilities under the same header: nothing to compare
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
