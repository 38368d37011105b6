"""`comp evaluate --report` for graded (ordinal) and numeric (regression) competitions.

Grades (from the continuous predictions, cut at the cut-points `comp predict` applies):

- per_grade.csv: grade, support, precision, recall, the mean and spread of its continuous
  predictions (sklearn.metrics);
- confusion_matrix.png: counts over grades and rows normalised;
- cutpoints.png: the continuous predictions of each true grade as histograms, with the fitted
  cut-points (solid) and plain rounding (dotted): where the cuts sit between the grades' humps;
- top_errors.csv: the images furthest from their grade.

Numbers:

- predicted_vs_true.png: each image's prediction against its target, with the diagonal;
- residuals_by_bin.csv / residuals.png: the residual (prediction - target) by quantile bin of
  the target: where the model is biased (regression to the mean shows as a positive residual in
  the low bins and a negative one in the high bins);
- top_errors.csv: the images with the largest absolute error.

report.md ties them together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from comp.errors import Log
from comp.evaluate.report.figures import _pyplot, plot_confusion

GRADE_REPORT_FILES = ("per_grade.csv", "confusion_matrix.png", "cutpoints.png", "top_errors.csv", "report.md")
NUMBER_REPORT_FILES = ("predicted_vs_true.png", "residuals.png", "residuals_by_bin.csv", "top_errors.csv", "report.md")


def write_grade_report(out: Path, task, probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str], ids: Sequence[str],
                       paths: Sequence[Path], *, thresholds, title: dict[str, Any], top: int = 16, log: Log = print) -> dict[str, Any]:
    """The report of (N, 1) continuous grade positions against (N,) grade indices, cut at `thresholds` (None: rounding)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from comp.tasks.cutpoints import cut, rounding_cuts

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    v = probs[:, 0].double().numpy()
    y = targets.numpy().astype(np.int64)
    cuts = np.asarray(thresholds if thresholds is not None else rounding_cuts(len(classes)))
    pred = cut(v, cuts)
    k = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=k, zero_division=0)
    table = pd.DataFrame({
        "grade": list(classes), "support": support, "precision": precision, "recall": recall, "f1": f1,
        "predicted": np.bincount(pred, minlength=len(classes))[: len(classes)],
        "mean_prediction": [v[y == g].mean() if (y == g).any() else np.nan for g in k],
        "std_prediction": [v[y == g].std() if (y == g).any() else np.nan for g in k],
    })
    table.to_csv(out / "per_grade.csv", index=False)
    plot_confusion(confusion_matrix(y, pred, labels=k), classes, out / "confusion_matrix.png")
    _plot_cutpoints(v, y, classes, cuts, out / "cutpoints.png")
    errors = _top_errors(ids, paths, [classes[g] for g in y], [classes[g] for g in pred], v, np.abs(v - y), top)
    figures = [("Confusion matrix", "Counts (left) and rows normalised to each true grade (right).", "confusion_matrix.png"),
               ("Cut-points", "The continuous predictions of each true grade, with the cut-points predict applies (solid) and plain "
                "rounding (dotted).", "cutpoints.png")]
    lines = ["grade  support  precision  recall  mean prediction"] + [
        f"{r.grade:>5}  {r.support:>7}  {r.precision:>9.4f}  {r.recall:>6.4f}  {r.mean_prediction:>15.3f}" for r in table.itertuples()]
    _finish(out, title, "Per grade", table, figures, errors, lines, GRADE_REPORT_FILES, log)
    return {"per_grade": table, "top_errors": errors, "files": [str(out / f) for f in GRADE_REPORT_FILES]}


def write_number_report(out: Path, task, probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str], ids: Sequence[str],
                        paths: Sequence[Path], *, thresholds, title: dict[str, Any], top: int = 16, log: Log = print) -> dict[str, Any]:
    """The report of (N, 1) predicted numbers against (N,) targets."""
    from comp.tasks.regression import quantile_bins

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = probs[:, 0].double().numpy()
    y = targets.double().numpy()
    residual = p - y
    bins = quantile_bins(y, 5)  # at least 5 images a bin
    rows = []
    for b in np.unique(bins):
        m = bins == b
        rows.append({"bin": int(b), "target_from": y[m].min(), "target_to": y[m].max(), "images": int(m.sum()),
                     "mean_residual": residual[m].mean(), "rmse": float(np.sqrt((residual[m] ** 2).mean())),
                     "mean_prediction": p[m].mean()})
    table = pd.DataFrame(rows)
    table.to_csv(out / "residuals_by_bin.csv", index=False)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, p, s=8, alpha=0.6)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"true {classes[0]}")
    ax.set_ylabel(f"predicted {classes[0]}")
    _save(plt, fig, out / "predicted_vs_true.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.boxplot([residual[bins == b] for b in np.unique(bins)], showfliers=False)
    ax.axhline(0, color="k", lw=1)
    ax.set_xticks(range(1, len(table) + 1), [f"{r.target_from:.3g}-{r.target_to:.3g}" for r in table.itertuples()], rotation=45, fontsize=7)
    ax.set_xlabel(f"true {classes[0]} (quantile bins)")
    ax.set_ylabel("prediction - true")
    _save(plt, fig, out / "residuals.png")
    errors = _top_errors(ids, paths, [f"{t:.6g}" for t in y], [f"{t:.6g}" for t in p], p, np.abs(residual), top)
    figures = [("Predicted against true", "Each held-out image; the dashed line is a perfect prediction.", "predicted_vs_true.png"),
               ("Residuals", "Prediction - true by quantile bin of the target: a positive residual in the low bins and a negative one "
                "in the high bins is the pull to the mean.", "residuals.png")]
    lines = ["target bin            images  mean residual    rmse"] + [
        f"{r.target_from:>9.4g}-{r.target_to:<9.4g}  {r.images:>6}  {r.mean_residual:>13.4f}  {r.rmse:>6.4f}" for r in table.itertuples()]
    _finish(out, title, "Residuals by target bin", table, figures, errors, lines, NUMBER_REPORT_FILES, log)
    return {"residuals_by_bin": table, "top_errors": errors, "files": [str(out / f) for f in NUMBER_REPORT_FILES]}


def _finish(out: Path, title, heading: str, table: pd.DataFrame, figures, errors: pd.DataFrame, lines: list[str], files, log: Log) -> None:
    """top_errors.csv and report.md, then the table's lines and what was written, to the log."""
    errors.to_csv(out / "top_errors.csv", index=False)
    (out / "report.md").write_text(_markdown(title, heading, table, figures, errors))
    for line in lines:
        log(line)
    log(f"wrote {out}/: {', '.join(files)}")


def _plot_cutpoints(v: np.ndarray, y: np.ndarray, classes: Sequence[str], cuts: np.ndarray, path: Path) -> None:
    from comp.tasks.cutpoints import rounding_cuts

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    edges = np.linspace(min(v.min(), cuts.min()) - 0.25, max(v.max(), cuts.max()) + 0.25, 60)
    for g, name in enumerate(classes):
        if (y == g).any():
            ax.hist(v[y == g], bins=edges, alpha=0.5, label=f"grade {name}")
    for c in cuts:
        ax.axvline(c, color="k", lw=1.2)
    for c in rounding_cuts(len(classes)):
        ax.axvline(c, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("continuous prediction (grade position)")
    ax.set_ylabel("images")
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _top_errors(ids, paths, true, predicted, value, error, top: int) -> pd.DataFrame:
    order = np.argsort(-error, kind="stable")[:top]
    return pd.DataFrame({"rank": range(1, len(order) + 1), "id": [ids[i] for i in order], "true": [true[i] for i in order],
                         "predicted": [predicted[i] for i in order], "value": [float(value[i]) for i in order],
                         "error": [float(error[i]) for i in order], "path": [str(paths[i]) for i in order]})


def _markdown(title: dict[str, Any], heading: str, table: pd.DataFrame, figures, errors: pd.DataFrame) -> str:
    from comp.evaluate.report import _md_table

    lines = ["# Evaluation report", ""] + [f"- **{k}**: {v}" for k, v in title.items()] + ["", f"## {heading}", "", _md_table(table), ""]
    for name, text, file in figures:
        lines += [f"## {name}", "", text, "", f"![{name}]({file})", ""]
    lines += ["## Largest errors", "", _md_table(errors.drop(columns=["path"])), ""]
    return "\n".join(lines)
