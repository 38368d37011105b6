"""`comp lb`: leaderboard scores in the submission ledger, and CV against LB.

`record_score` writes a public (and/or private) score against one archived submission, named by its
row number in the ledger or its file name. `fetch_kaggle` asks the Kaggle CLI for your submissions
to a competition (`kaggle competitions submissions COMP -v`, CSV with fileName, description,
status, publicScore, privateScore) and matches each to the ledger by the file name `comp submit
--kaggle` uploaded, else by its message; a Kaggle submission that matches no row, or more than
one, is reported and left out rather than guessed. `show` prints the ledger with CV (and its 95%
bootstrap interval over the held-out images, where the runs are still there) beside LB,
the rank correlation (Spearman) of CV with the public (and private) scores, and draws
`cv_vs_lb.png`.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pandas as pd

from comp.errors import Log, UserError
from comp.evaluate.intervals import score_interval
from comp.submission.ledger import LEDGER, read_ledger, write_ledger
from comp.evaluate.report.tables import text_table

PLOT = "cv_vs_lb.png"
KAGGLE_COLUMNS = ("fileName", "description", "publicScore", "privateScore")


def _ledger(directory: Path) -> pd.DataFrame:
    table = read_ledger(directory)
    if table.empty:
        raise UserError(f"no submissions in {Path(directory) / LEDGER}; archive one with comp submit first (or pass --dir)")
    return table


def find_row(table: pd.DataFrame, submission: str) -> int:
    """The ledger row (0-based) `submission` names: a row number as `comp lb` prints it (1 = first),
    an archived file name (with or without .csv/.zip), or the name it was submitted under when only
    one archived file carries it."""
    text = submission.strip()
    if text.isdigit():
        n = int(text)
        if not 1 <= n <= len(table):
            raise UserError(f"submission {n}: the ledger has rows 1..{len(table)}; comp lb lists them")
        return n - 1
    stem = Path(text).stem if Path(text).suffix in (".csv", ".zip") else text
    files = table["file"].map(lambda f: Path(f).stem)
    hits = [i for i, f in enumerate(files) if f == stem]
    if not hits:  # the name it had before comp submit stamped it: <UTC time>_<name>.csv
        hits = [i for i, f in enumerate(files) if f.split("_", 1)[-1] == stem]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise UserError(f"no archived submission named {submission!r}; give its row number or file name as comp lb lists them")
    rows = ", ".join(f"{i + 1} ({table['file'].iloc[i]})" for i in hits[:5])
    raise UserError(f"{submission!r} names {len(hits)} archived submissions, rows {rows}; give the row number")


def _score_text(value, what: str) -> str:
    """A leaderboard score as the ledger stores it; a number typed as text (the CLI's) is parsed here,
    so that every bad value is one line: not a number, a decimal comma, NaN or infinity."""
    try:
        number = float(str(value).strip())
    except ValueError:
        comma = "," in str(value)
        raise UserError(f"{what} {value!r} is not a number; give the number the leaderboard shows"
                        + (" with a decimal point, e.g. " + str(value).replace(",", ".") if comma else "")) from None
    if not math.isfinite(number):
        raise UserError(f"{what} {value} is not a score; give the number the leaderboard shows")
    return f"{number:.10g}"


def record_score(directory: Path, submission: str, public: Optional[float] = None, private: Optional[float] = None,
                 log: Log = print) -> dict[str, str]:
    """Write the `public` / `private` leaderboard score of one archived submission; returns its row."""
    if public is None and private is None:
        raise UserError("give the public score (comp lb SUBMISSION SCORE) and/or --private SCORE")
    # every value is checked before a change is printed or written: a refused command changes nothing
    given = {column: _score_text(value, what) for column, value, what in
             (("public_score", public, "SCORE"), ("private_score", private, "--private")) if value is not None}
    table = _ledger(directory)
    i = find_row(table, submission)
    for column, new in given.items():
        old = table.at[i, column]
        if old and old != new:
            log(f"row {i + 1}: {column.replace('_', ' ')} {old} -> {new}")
        table.at[i, column] = new
    write_ledger(table, directory)
    log(f"row {i + 1} ({table.at[i, 'file']}): public {table.at[i, 'public_score'] or '-'}, private {table.at[i, 'private_score'] or '-'}")
    return table.iloc[i].to_dict()


def kaggle_submissions(competition: str) -> pd.DataFrame:
    """Your submissions to `competition` as the Kaggle CLI lists them (its CSV output)."""
    exe = shutil.which("kaggle")
    if exe is None:
        raise UserError("the Kaggle CLI is not installed: pip install kaggle and put your token in ~/.kaggle/kaggle.json")
    proc = subprocess.run([exe, "competitions", "submissions", competition, "-v"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no message"]
        raise UserError(f"kaggle competitions submissions {competition} failed: {last[0]}")
    text = proc.stdout.strip()
    if not text or text.startswith("No submissions"):
        return pd.DataFrame(columns=list(KAGGLE_COLUMNS))
    try:
        found = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as e:
        raise UserError(f"kaggle competitions submissions {competition}: output is not CSV ({e}); update the Kaggle CLI") from e
    missing = [c for c in KAGGLE_COLUMNS if c not in found.columns]
    if missing:
        raise UserError(f"kaggle competitions submissions {competition}: no {', '.join(missing)} column in its output; update the Kaggle CLI")
    return found


def _number(text: str) -> Optional[float]:
    """A Kaggle score cell as a float; None for a pending, failed or hidden score ('', 'None', 'nan')."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def fetch_kaggle(directory: Path, competition: str, log: Log = print) -> int:
    """Fill in the ledger's scores from Kaggle; returns how many rows changed."""
    table = _ledger(directory)
    found = kaggle_submissions(competition)
    files = table["file"].map(lambda f: Path(f).stem)
    messages = table["message"].where(table["message"] != "", files)  # comp submit --kaggle sends the stem when -m is empty
    scores: dict[int, list[tuple[Optional[float], Optional[float]]]] = {}
    unmatched, unscored = [], 0
    for sub in found.itertuples(index=False):
        name = Path(str(sub.fileName)).stem
        hits = [i for i, f in enumerate(files) if f == name] or [i for i, m in enumerate(messages) if m == sub.description]
        if len(hits) != 1:
            unmatched.append(f"{sub.fileName} ({'no' if not hits else len(hits)} ledger rows)")
            continue
        public, private = _number(sub.publicScore), _number(sub.privateScore)
        if public is None and private is None:
            unscored += 1
            continue
        scores.setdefault(hits[0], []).append((public, private))
    changed = 0
    for i, pairs in scores.items():
        if len(set(pairs)) > 1:  # the same file scored twice differently: not ours to pick
            log(f"row {i + 1} ({table.at[i, 'file']}): Kaggle lists {len(pairs)} scores for it, {sorted(set(pairs), key=str)}; left as it was")
            continue
        public, private = pairs[0]
        before = (table.at[i, "public_score"], table.at[i, "private_score"])
        if public is not None:
            table.at[i, "public_score"] = f"{public:.10g}"
        if private is not None:
            table.at[i, "private_score"] = f"{private:.10g}"
        changed += before != (table.at[i, "public_score"], table.at[i, "private_score"])
    write_ledger(table, directory)
    log(f"kaggle {competition}: {len(found)} submissions, {len(scores)} matched to the ledger, {changed} rows updated"
        + (f", {unscored} not scored yet" if unscored else ""))
    if unmatched:
        log(f"not in the ledger (submitted without comp submit, or renamed): {', '.join(unmatched[:5])}"
            + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""))
    return changed


def cv_lb_table(table: pd.DataFrame) -> pd.DataFrame:
    """The ledger as numbers: row (1-based), time, name (runs), metric, cv, public, private, message."""
    def name(runs: str, file: str) -> str:
        parts = runs.split()
        return (Path(parts[0]).name + (f" +{len(parts) - 1}" if len(parts) > 1 else "")) if parts else Path(file).stem

    return pd.DataFrame({
        "#": range(1, len(table) + 1),
        "time_utc": table["time_utc"].str.slice(0, 16),
        "runs": [name(r, f) for r, f in zip(table["runs"], table["file"])],
        "metric": table["metric"].replace("", "-"),
        "cv": pd.to_numeric(table["cv_score"], errors="coerce"),
        "public": pd.to_numeric(table["public_score"], errors="coerce"),
        "private": pd.to_numeric(table["private_score"], errors="coerce"),
        "message": table["message"],
    })


def cv_interval_text(runs: str, cv: float) -> str:
    """`[0.8790, 0.8835]`: the 95% bootstrap interval of a submission's CV from its runs' held-out
    predictions (`comp.evaluate.intervals.score_interval`); blank when the runs are gone, hold out
    different images, or no longer give the CV the ledger recorded (retrained since)."""
    paths = [Path(r) for r in runs.split()]
    if not paths or pd.isna(cv) or not all(p.is_dir() for p in paths):
        return ""
    try:
        iv = score_interval(paths)
    except UserError:
        return ""
    if iv is None or abs(iv.value - cv) > 6e-5:  # the ledger keeps 4 decimals
        return ""
    return f"[{iv.low:.4f}, {iv.high:.4f}]"


def rank_correlation(a: pd.Series, b: pd.Series) -> tuple[Optional[float], int]:
    """Spearman's rank correlation of `a` with `b` over the rows holding both, and that count
    (None below 3 rows, or when one side is constant)."""
    both = pd.concat([a, b], axis=1).dropna()
    if len(both) < 3 or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return None, len(both)
    from scipy.stats import spearmanr

    return float(spearmanr(both.iloc[:, 0], both.iloc[:, 1]).statistic), len(both)


def show(directory: Path, log: Log = print) -> pd.DataFrame:
    """Print the ledger with CV beside LB and the rank correlations; draw cv_vs_lb.png when a
    submission has both a CV and a public score. Returns the table printed."""
    ledger = _ledger(directory)
    numbers = cv_lb_table(ledger)
    intervals = [cv_interval_text(r, cv) for r, cv in zip(ledger["runs"], numbers["cv"])]
    if any(intervals):  # the runs behind the ledger are still on disk
        numbers.insert(numbers.columns.get_loc("cv") + 1, "cv_ci", intervals)
    log(text_table(numbers, four_places=("cv", "public", "private")))
    if any(intervals):
        log("cv_ci: the 95% bootstrap interval of each CV over its held-out images; whether two runs' CVs differ beyond that "
            "noise: comp compare RUN_A RUN_B")
    # Scores in different metrics do not rank against each other: one correlation (and one panel of
    # the figure) per metric, as comp runs groups its table by metric.
    groups = list(numbers.groupby("metric", sort=True))
    for metric, rows in groups:
        which = f" ({metric})" if len(groups) > 1 else ""
        for side in ("public", "private"):
            rho, n = rank_correlation(rows["cv"], rows[side])
            if rho is not None:
                log(f"CV vs {side} LB{which}: Spearman rank correlation {rho:+.3f} over {n} submissions")
            elif n and side == "public":
                log(f"CV vs public LB{which}: {n} submissions with both; a rank correlation needs 3")
    if (numbers["cv"].notna() & numbers["public"].notna()).any():
        from comp.evaluate.report.figures import plot_cv_vs_lb

        plot_cv_vs_lb(numbers, Path(directory) / PLOT)
        log(f"wrote {Path(directory) / PLOT}")
    elif numbers["public"].isna().all():
        log("no leaderboard scores yet: comp lb SUBMISSION SCORE, or comp lb --kaggle COMPETITION")
    return numbers


def lb(directory: Path = Path("submissions"), submission: Optional[str] = None, score: Optional[float | str] = None,
       private: Optional[float | str] = None, kaggle: Optional[str] = None, log: Log = print) -> pd.DataFrame:
    """`comp lb`: record a score (`submission` with `score` and/or `private`), or fetch them
    (`kaggle`), then print the ledger and draw cv_vs_lb.png."""
    if kaggle and submission is not None:
        raise UserError("--kaggle fetches every score; give it alone, or SUBMISSION SCORE alone")
    if submission is None and (score is not None or private is not None):
        raise UserError("--private needs the SUBMISSION it belongs to: comp lb SUBMISSION [SCORE] --private S")
    if submission is not None:
        record_score(directory, submission, score, private, log)
    elif kaggle:
        fetch_kaggle(directory, kaggle, log)
    return show(directory, log)
