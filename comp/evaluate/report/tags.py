"""`comp evaluate --report` of multi-label runs: per-tag table, threshold curves, top losses with tag sets.

Files: `per_tag.csv` (tag, support, threshold, precision, recall, F1 at the threshold, average
precision), `thresholds.png` (each tag's F1 against its threshold, the chosen one marked; rarest
tags first), `top_losses.png` / `.csv` (the images with the highest per-image binary
cross-entropy, captioned with their true and predicted tag sets) and `report.md`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from comp.errors import Log
from comp.tasks.tag_metrics import predict_tags
from comp.evaluate.report.figures import _pyplot, plot_top_losses, short_names

CURVE = np.round(np.arange(0.02, 0.981, 0.02), 2)
MAX_CURVES = 30  # beyond this, the rarest tags' curves (the ones a threshold matters most for)


def per_tag_table(probs: np.ndarray, targets: np.ndarray, classes: Sequence[str], thresholds: Sequence[float],
                  ensure_one: bool = True) -> pd.DataFrame:
    """One row per tag: support, threshold, precision, recall, F1 (of the tags predict writes), AP; sklearn."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    pred = predict_tags(probs, thresholds, ensure_one)
    precision, recall, f1, support = precision_recall_fscore_support(targets, pred, average=None, zero_division=0)
    ap = [average_precision_score(targets[:, c], probs[:, c]) if targets[:, c].any() else np.nan for c in range(len(classes))]
    return pd.DataFrame({"tag": list(classes), "support": support, "threshold": list(thresholds), "precision": precision,
                         "recall": recall, "f1": f1, "average_precision": ap})


def tag_top_losses(probs: np.ndarray, targets: np.ndarray, classes: Sequence[str], thresholds: Sequence[float],
                   ids: Sequence[str], paths: Sequence[Path], n: int, ensure_one: bool = True) -> pd.DataFrame:
    """The `n` images with the highest mean binary cross-entropy over their tags, highest first.

    Columns as the single-label table: rank, id, path, true and predicted (tag sets), p_predicted
    (the mean probability of the predicted tags), p_true (of the true ones), loss.
    """
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean(1)
    pred = predict_tags(probs, thresholds, ensure_one)
    order = np.argsort(-loss, kind="stable")[: max(0, n)]

    def tags(row) -> str:
        return " ".join(c for c, on in zip(classes, row) if on) or "-"

    rows = [dict(rank=r + 1, id=ids[i], path=str(paths[i]), true=tags(targets[i]), predicted=tags(pred[i]),
                 p_predicted=float(probs[i][pred[i] == 1].mean()) if pred[i].any() else float("nan"), p_true=float(probs[i][targets[i] == 1].mean()) if targets[i].any()
                 else float("nan"), loss=float(loss[i])) for r, i in enumerate(order)]
    return pd.DataFrame(rows, columns=["rank", "id", "path", "true", "predicted", "p_predicted", "p_true", "loss"])


def plot_threshold_curves(probs: np.ndarray, targets: np.ndarray, classes: Sequence[str], thresholds: Sequence[float], path: Path) -> None:
    """Each tag's F1 as its threshold moves (the others' decisions do not enter a tag's own F1), the
    chosen threshold marked; the rarest `MAX_CURVES` tags when there are more."""
    from sklearn.metrics import f1_score

    plt = _pyplot()
    order = np.argsort(targets.sum(0), kind="stable")[:MAX_CURVES]
    cols = min(5, len(order))
    rows = -(-len(order) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2.2 + 0.4), squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat:
        ax.axis("off")
    names = short_names(list(classes))
    for ax, c in zip(axes.flat, order):
        ax.axis("on")
        curve = [f1_score(targets[:, c], probs[:, c] >= t, zero_division=0) for t in CURVE]
        ax.plot(CURVE, curve, color="tab:blue")
        ax.axvline(thresholds[c], color="tab:red", lw=1)
        ax.axvline(0.5, color="gray", lw=0.8, ls="--")
        ax.set_title(f"{names[c]} ({int(targets[:, c].sum())})", fontsize=8)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    fig.suptitle("per-tag F1 against its threshold (red: the threshold applied; dashed: 0.5; in brackets: positives)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (rows * 2.2 + 0.4)))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_tag_report(out: Path, probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str], thresholds: Sequence[float],
                     ids: Sequence[str], paths: Sequence[Path], *, title: dict[str, Any], top: int = 16, ensure_one: bool = True,
                     log: Log = print) -> dict[str, Any]:
    """Write the multi-label report for held-out (N, C) `probs` against (N, C) 0/1 `targets` to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p, y = probs.double().numpy(), targets.numpy().astype(int)
    table = per_tag_table(p, y, classes, thresholds, ensure_one)
    table.to_csv(out / "per_tag.csv", index=False)
    plot_threshold_curves(p, y, classes, thresholds, out / "thresholds.png")
    losses = tag_top_losses(p, y, classes, thresholds, ids, paths, top, ensure_one)
    losses.to_csv(out / "top_losses.csv", index=False)
    plot_top_losses(losses, out / "top_losses.png")
    worst = table.sort_values(["f1", "support"]).head(10)
    lines = ["# comp evaluate report (multi-label)", ""] + [f"- {k}: {v}" for k, v in title.items()] + [
        "", "## Weakest tags (F1 at the threshold applied)", "",
        "| tag | support | threshold | precision | recall | F1 | AP |", "|---|---|---|---|---|---|---|",
    ] + [f"| {r.tag} | {r.support} | {r.threshold:.2f} | {r.precision:.3f} | {r.recall:.3f} | {r.f1:.3f} | {r.average_precision:.3f} |"
         for r in worst.itertuples()] + ["", "Files: per_tag.csv, thresholds.png, top_losses.png, top_losses.csv.", ""]
    (out / "report.md").write_text("\n".join(lines))
    files = [out / f for f in ("per_tag.csv", "thresholds.png", "top_losses.png", "top_losses.csv", "report.md")]
    log(f"report: {out}/ (per_tag.csv, thresholds.png, top_losses.png, report.md)")
    return {"per_tag": table, "top_losses": losses, "files": [str(f) for f in files]}
