"""`comp evaluate --report DIR`: where the model fails, from its held-out predictions.

Written from the probabilities `comp evaluate` scores (validation or out-of-fold images; the
equal-weight ensemble when several runs are given; merged TTA views with --tta; calibrated as
`comp predict` would predict):

- per_class.csv: class, support, precision, recall, F1, images predicted as it, the class it is
  most confused with (sklearn.metrics); printed worst first;
- confusion_matrix.png: counts and row-normalised; beyond 30 classes the 30 with the most errors;
- top_losses.png / top_losses.csv: the held-out images with the highest loss (likely label errors);
- calibration.png: reliability diagram with the expected calibration error (ECE);
- report.md: the run, its metric and the above tied together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from comp.errors import Log, UserError
from comp.evaluate.report.figures import plot_confusion, plot_reliability, plot_top_losses, short_names, shown_classes
from comp.evaluate.report.tables import confused_pairs, confusion, per_class_table, reliability, top_losses, worst_first

REPORT_FILES = ("per_class.csv", "confusion_matrix.png", "top_losses.png", "top_losses.csv", "calibration.png", "report.md")
TAG_REPORT_FILES = ("per_tag.csv", "thresholds.png", "top_losses.png", "top_losses.csv", "report.md")


def check_report_dir(out: Path) -> None:
    """Refuse a report folder that is a file or holds files a report does not write (checked before any work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--report {out} is a file; give a folder for the report")
    if out.is_dir():
        from comp.evaluate.report.values import GRADE_REPORT_FILES, NUMBER_REPORT_FILES

        known = REPORT_FILES + TAG_REPORT_FILES + GRADE_REPORT_FILES + NUMBER_REPORT_FILES
        foreign = sorted(p.name for p in out.iterdir() if p.name not in known)
        if foreign:
            raise UserError(f"--report {out} holds other files ({', '.join(foreign[:3])}); give an empty or new folder")


def write_report(out: Path, task, probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str], ids: Sequence[str],
                 paths: Sequence[Path], *, thresholds=None, title: dict[str, Any], top: int = 16, log: Log = print) -> dict[str, Any]:
    """The report of what the task's outputs are (`task.what`, a key of `REPORTS`): per class
    (`write_class_report`), or per tag at `thresholds` (`comp.evaluate.report.tags`; 0.5 where None)."""
    return REPORTS[task.what](out, task, probs, targets, classes, ids, paths, thresholds=thresholds, title=title, top=top, log=log)


def _class_report(out, task, probs, targets, classes, ids, paths, *, thresholds, title, top, log):
    return write_class_report(out, probs, targets, classes, ids, paths, title=title, top=top, log=log)


def _tag_report(out, task, probs, targets, classes, ids, paths, *, thresholds, title, top, log):
    from comp.evaluate.report.tags import write_tag_report

    cut = thresholds if thresholds is not None else [0.5] * len(classes)
    return write_tag_report(out, probs, targets, classes, cut, ids, paths, title=title, top=top, ensure_one=task.ensure_one, log=log)


def _grade_report(out, task, probs, targets, classes, ids, paths, *, thresholds, title, top, log):
    from comp.evaluate.report.values import write_grade_report

    return write_grade_report(out, task, probs, targets, classes, ids, paths, thresholds=thresholds, title=title, top=top, log=log)


def _number_report(out, task, probs, targets, classes, ids, paths, *, thresholds, title, top, log):
    from comp.evaluate.report.values import write_number_report

    return write_number_report(out, task, probs, targets, classes, ids, paths, thresholds=thresholds, title=title, top=top, log=log)


# a new task's outputs choose one, or add theirs
REPORTS = {"classes": _class_report, "tags": _tag_report, "grades": _grade_report, "target": _number_report}


def write_class_report(
    out: Path,
    probs: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    ids: Sequence[str],
    paths: Sequence[Path],
    *,
    title: dict[str, Any],
    top: int = 16,
    log: Log = print,
) -> dict[str, Any]:
    """Write the report files for held-out `probs` (N, C) with true `labels` (N,) to `out`.

    Args:
        ids, paths: the N images' ids and files (top losses show and list them).
        title: what the predictions are, for report.md: runs, images, views, metric, score, ...
        top: how many top-loss images.

    Returns:
        {"per_class": table (class order), "ece", "top_losses": table, "files": [paths]}.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = per_class_table(probs, labels, classes)
    table.to_csv(out / "per_class.csv", index=False)
    cm = confusion(probs, labels, len(classes))
    plot_confusion(cm, classes, out / "confusion_matrix.png")
    losses = top_losses(probs, labels, classes, ids, paths, top)
    losses.to_csv(out / "top_losses.csv", index=False)
    plot_top_losses(losses, out / "top_losses.png", classes)
    bins, ece = reliability(probs, labels)
    plot_reliability(bins, ece, out / "calibration.png")
    pairs = confused_pairs(cm, classes)
    (out / "report.md").write_text(_markdown(title, table, pairs, losses, ece, len(shown_classes(cm)), len(classes)))
    _print_worst(table, log)
    log(f"expected calibration error {ece:.4f}; most confused: "
        + ("; ".join(f"{t} -> {p} ({n})" for t, p, n in pairs[:3]) or "none"))
    log(f"wrote {out}/: {', '.join(REPORT_FILES)}")
    return {"per_class": table, "ece": ece, "top_losses": losses, "files": [str(out / f) for f in REPORT_FILES]}


def _print_worst(table: pd.DataFrame, log: Log, limit: int = 20) -> None:
    rows = worst_first(table)
    width = min(24, max(len("class"), *(len(c) for c in table["class"])))
    short = dict(zip(table["class"], short_names(list(table["class"]), width)))
    log(f"{'class':<{width}}  support  precision  recall     f1  most confused with")
    for r in rows.head(limit).itertuples():
        confused = f"{r.most_confused_with} ({r.confused_count})" if r.most_confused_with else ""
        log(f"{short[r[1]]:<{width}}  {r.support:>7}  {r.precision:>9.4f}  {r.recall:>6.4f}  {r.f1:>5.4f}  {confused}")
    if len(rows) > limit:
        log(f"... {len(rows) - limit} more classes in per_class.csv")


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    def cell(v: Any) -> str:
        text = f"{v:.4f}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|")
    return head + "".join("| " + " | ".join(cell(v) for v in row) + " |\n" for row in df.itertuples(index=False))


def _markdown(title: dict[str, Any], table: pd.DataFrame, pairs, losses: pd.DataFrame, ece: float, shown: int, total: int) -> str:
    lines = ["# Evaluation report", ""]
    lines += [f"- **{k}**: {v}" for k, v in title.items()]
    lines += [f"- **expected calibration error**: {ece:.4f}", ""]
    lines += ["## Per class, worst first", "",
              "Precision: of the images predicted as the class, the share that are it. Recall: of its images, the share found. "
              "`most_confused_with`: the wrong class its images are most often predicted as.", ""]
    lines += [_md_table(worst_first(table)), ""]
    if pairs:
        lines += ["## Most confused pairs (true -> predicted)", ""]
        lines += [f"- {t} -> {p}: {n}" for t, p, n in pairs] + [""]
    matrix = "all classes" if shown == total else f"the {shown} classes with the most errors of {total}"
    lines += ["## Confusion matrix", "", f"Counts (left) and rows normalised to each true class (right; the diagonal is recall), {matrix}.",
              "", "![confusion matrix](confusion_matrix.png)", ""]
    lines += ["## Top losses", "", "The held-out images with the highest loss -log p(true class). Ones that look like their predicted "
              "class are likely label errors; paths in top_losses.csv.", "", "![top losses](top_losses.png)", ""]
    if len(losses):
        lines += [_md_table(losses[["rank", "id", "true", "predicted", "p_predicted", "loss"]]), ""]
    lines += ["## Calibration", "", "Accuracy against confidence (top probability) in 15 equal-width bins; bars under the diagonal are "
              "over-confident. ECE is the image-weighted mean gap.", "", "![calibration](calibration.png)", ""]
    return "\n".join(lines)
