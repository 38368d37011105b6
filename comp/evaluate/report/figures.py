"""The pictures of `comp evaluate --report` (confusion matrix, top losses, reliability diagram) and `comp lb` (CV against LB).

matplotlib with the Agg backend (no display needed); every figure is sized from what it shows,
so 10 classes and 100 classes are both readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

MAX_MATRIX_CLASSES = 30  # beyond this the matrix shows only the classes with the most errors


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cut(name: str, width: int) -> str:
    """`name` in at most `width` characters: the middle replaced by an ellipsis, keeping more of the end."""
    if len(name) <= width:
        return name
    head = (width - 1) * 2 // 5
    return name[:head] + "…" + name[len(name) - (width - 1 - head):]


def short_names(names: Sequence[str], width: int = 18) -> list[str]:
    """Labels of at most `width` characters that tell `names` apart.

    Long names are cut in the middle, not at the end: class names often share a long prefix and
    differ at the end (`Acer_pseudoplatanus_variety_07`, PlantVillage's `Tomato___Leaf_Mold`), and
    a cut end made 45 such classes read alike. If cut names still collide, every name is
    numbered by its index in `names` (`7:Acer_p…ety_07`), the row of per_class.csv.
    """
    cut = [_cut(n, width) for n in names]
    if len(set(cut)) == len(cut):
        return cut
    return [f"{i}:{_cut(n, max(4, width - len(str(i)) - 1))}" for i, n in enumerate(names)]


def shown_classes(cm: np.ndarray, limit: int = MAX_MATRIX_CLASSES) -> list[int]:
    """The class indices the matrix shows: all of them, or the `limit` with the most errors
    (wrong predictions of their images plus images wrongly predicted as them), in class order."""
    if len(cm) <= limit:
        return list(range(len(cm)))
    off = cm.copy()
    np.fill_diagonal(off, 0)
    errors = off.sum(0) + off.sum(1)
    return sorted(np.argsort(-errors, kind="stable")[:limit].tolist())


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path) -> None:
    """Counts and row-normalised (recall per true class) matrices side by side, saved as a PNG."""
    plt = _pyplot()
    keep = shown_classes(cm)
    sub = cm[np.ix_(keep, keep)]
    short = short_names(classes)
    names = [short[i] for i in keep]
    rows = cm[keep].sum(1, keepdims=True)  # normalised by all images of the class, also those predicted outside `keep`
    norm = np.divide(sub, rows, out=np.zeros(sub.shape, dtype=float), where=rows > 0)
    k = len(keep)
    side = max(5.0, 0.32 * k + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.5, side))
    annotate = k <= 20
    for ax, values, title, fmt in ((axes[0], sub, "counts", "d"), (axes[1], norm, "row-normalised (recall)", ".2f")):
        im = ax.imshow(values, cmap="Blues", vmin=0, vmax=values.max() if values.max() > 0 else 1)
        ax.set_title(title)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(k), names, rotation=90, fontsize=max(5, min(9, 220 // k)))
        ax.set_yticks(range(k), names, fontsize=max(5, min(9, 220 // k)))
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if annotate:
            top = values.max() if values.max() > 0 else 1
            for i in range(k):
                for j in range(k):
                    if values[i, j]:
                        ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", fontsize=7,
                                color="white" if values[i, j] > top / 2 else "black")
    title = "confusion matrix" if k == len(cm) else f"confusion matrix: the {k} most confused of {len(cm)} classes (all in per_class.csv)"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long rotated class names stay inside the picture
    plt.close(fig)


def plot_top_losses(table: pd.DataFrame, path: Path, classes: Sequence[str] = (), columns: int = 4) -> None:
    """A grid of the top-loss images, each captioned true / predicted (probability) / loss.

    `classes` (all of the competition's) gives the captions the names `short_names` gives them in
    the confusion matrix.
    """
    label = dict(zip(classes, short_names(classes)))
    captions = []
    for r in table.itertuples():
        true, pred = label.get(r.true, _cut(r.true, 18)), label.get(r.predicted, _cut(r.predicted, 18))
        captions.append(f"true: {true}\npred: {pred} ({r.p_predicted:.2f})\nloss {r.loss:.2f}  {_short_id(r.id)}")
    plot_image_grid(list(table["path"]), captions, path,
                    "top losses: held-out images the model gets most wrong (top_losses.csv has their paths)", columns)


def _short_id(value) -> str:
    name = Path(str(value)).name
    return name if len(name) <= 24 else "…" + name[-23:]


def plot_image_grid(paths: Sequence, captions: Sequence[str], path: Path, title: str, columns: int = 4) -> None:
    """A contact sheet: each image of `paths` with its three-line caption, under `title`."""
    from comp.data.images import DECODE_ERRORS, load_rgb

    plt = _pyplot()
    rows = -(-max(1, len(paths)) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 2.6, rows * 3.2 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, paths, captions):
        try:
            ax.imshow(np.asarray(load_rgb(Path(image))))
        except DECODE_ERRORS:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (rows * 3.2 + 0.4)))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(bins: pd.DataFrame, ece: float, path: Path) -> None:
    """Reliability diagram (accuracy against confidence per bin) above a histogram of confidences."""
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    width = (bins["hi"] - bins["lo"]).to_numpy()
    centers = ((bins["hi"] + bins["lo"]) / 2).to_numpy()
    ax.bar(centers, bins["accuracy"], width=width * 0.95, color="tab:blue", alpha=0.8, label="accuracy")
    # The bin's mean confidence as a tick across its bar: above the bar = over-confident, below = under-confident.
    ax.errorbar(centers, bins["confidence"], xerr=width * 0.45, fmt="none", ecolor="tab:red", elinewidth=2.5, label="mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"reliability (top-label), ECE {ece:.4f}")
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(centers, bins["images"], width=width * 0.95, color="gray")
    hist.set_xlabel("confidence (top probability)")
    hist.set_ylabel("images")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cv_vs_lb(table: pd.DataFrame, path: Path) -> None:
    """CV (x) against the leaderboard (y), one point per submission, labelled `#row runs`; one panel
    per metric (scores in different metrics share no scale).

    `table` has columns "#", "runs", "metric", "cv", "public", "private" (`comp.submission.lb.cv_lb_table`).
    Filled dots are public scores, hollow squares private ones; the dashed line is LB = CV, so the
    gap between what a recipe promised and what it scored reads off directly.
    """
    plt = _pyplot()
    groups = [(m, rows) for m, rows in table.groupby("metric", sort=True) if (rows["cv"].notna() & rows["public"].notna()).any()]
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 5.5), squeeze=False)
    for ax, (metric, rows) in zip(axes[0], groups):
        _cv_lb_panel(ax, rows, metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cv_lb_panel(ax, table: pd.DataFrame, metric: str) -> None:
    """One metric's submissions on `ax` (see `plot_cv_vs_lb`)."""
    public = table.dropna(subset=["cv", "public"])
    private = table.dropna(subset=["cv", "private"])
    ax.scatter(public["cv"], public["public"], color="tab:blue", zorder=3, label="public LB")
    if len(private):
        ax.scatter(private["cv"], private["private"], facecolors="none", edgecolors="tab:red", marker="s", zorder=3, label="private LB")
    for row in public.itertuples(index=False):
        ax.annotate(f"#{row[0]} {_cut(str(row.runs), 22)}", (row.cv, row.public), textcoords="offset points", xytext=(5, 4), fontsize=7)
    values = pd.concat([public["cv"], public["public"], private["cv"], private["private"]])
    lo, hi = float(values.min()), float(values.max())
    pad = (hi - lo) * 0.08 or 0.01
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="LB = CV")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    unit = f" ({metric})" if metric and metric != "-" else ""
    ax.set_xlabel(f"CV{unit}")
    ax.set_ylabel(f"leaderboard{unit}")
    ax.set_title(f"CV against leaderboard{unit}, {len(public)} submissions")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
