"""The submission ledger, `submissions/history.csv`: one row per archived submission.

`comp submit` appends a row; `comp lb` fills in the leaderboard scores. Columns: `HISTORY_COLUMNS`.
A ledger written before a column existed (the first ledgers had no `metric`, `public_score` or
`private_score`) is read with those cells empty and is rewritten in the current columns the next
time either command changes it; a column a user added by hand is kept, after ours. Every rewrite
goes through a temp file and a rename, so an interrupted command never leaves half a ledger.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from comp.errors import UserError

HISTORY_COLUMNS = ("time_utc", "file", "sha256", "runs", "metric", "cv_score", "message", "agreement_with_previous",
                   "public_score", "private_score")
LEDGER = "history.csv"


def read_ledger(directory: Path) -> pd.DataFrame:
    """`directory`/history.csv as strings (empty cells ""), in `HISTORY_COLUMNS` order; empty when absent."""
    path = Path(directory) / LEDGER
    if not path.is_file():
        return pd.DataFrame(columns=list(HISTORY_COLUMNS), dtype=str)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: not a readable CSV ({str(e).splitlines()[0]}); restore it from a copy or move it away") from e
    if "file" not in table.columns:
        raise UserError(f"{path}: no 'file' column, so not a comp submission ledger; move it away or pass another --dir")
    for column in HISTORY_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    extra = [c for c in table.columns if c not in HISTORY_COLUMNS]
    return table[list(HISTORY_COLUMNS) + extra]


def write_ledger(table: pd.DataFrame, directory: Path) -> None:
    """Replace `directory`/history.csv with `table`, atomically."""
    path = Path(directory) / LEDGER
    tmp = path.with_name(f".{LEDGER}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)


def append_row(row: dict[str, Any], directory: Path) -> None:
    """Add one submission's row (missing columns empty) at the end of the ledger."""
    table = read_ledger(directory)
    new = pd.DataFrame([{c: "" if row.get(c) is None else str(row.get(c, "")) for c in table.columns}])
    write_ledger(pd.concat([table, new], ignore_index=True) if len(table) else new, directory)
