"""What a run leaves for a person to read: metrics.csv, curves.png, summary.json, progress bars."""

from __future__ import annotations

import csv
import math
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import torch

import comp

try:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
except ImportError:  # an inference bundle may run where rich is not installed: no bars then
    Console = None

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_score", "seconds")  # val_score: the competition metric


class MetricsLog:
    """Appends one row per epoch to metrics.csv (columns `METRIC_COLUMNS`) and keeps them in memory."""

    def __init__(self, path: Path, keep_until_epoch: Optional[int] = None):
        """Open `path`; when resuming, keep only rows with epoch <= `keep_until_epoch`."""
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        if keep_until_epoch is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                # An empty cell is a value that was not finite or not there (no val split): NaN again.
                self.rows = [
                    {k: float(v) if v else math.nan for k, v in r.items()}
                    for r in csv.DictReader(f) if int(r["epoch"]) <= keep_until_epoch
                ]
        self._rewrite()

    def append(self, row: dict[str, float]) -> None:
        self.rows.append({k: float(row.get(k, math.nan)) for k in METRIC_COLUMNS})
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, METRIC_COLUMNS).writerow(_fmt(self.rows[-1]))

    def _rewrite(self) -> None:
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, METRIC_COLUMNS)
            w.writeheader()
            w.writerows(_fmt(r) for r in self.rows)


def _fmt(row: dict[str, float]) -> dict[str, Any]:
    return {k: int(v) if k == "epoch" else (f"{v:.6g}" if math.isfinite(v) else "") for k, v in row.items()}


def plot_curves(rows: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Loss, accuracy and learning rate per epoch, side by side, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, name in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], "o-", label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in rows], "o-", label="val")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[2].plot(epochs, [r["lr"] for r in rows], "o-", color="tab:green")
    axes[2].set_title("learning rate (end of epoch)")
    axes[2].set_xlabel("epoch")
    axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


class LiveProgress:
    """A rich progress bar per epoch with live loss / accuracy / img/s; silent when not a terminal.

    When output is not a terminal (CI, pipes, CliRunner) the bar is off and only the per-epoch lines
    the engine prints remain, so logs stay readable.
    """

    def __init__(self, enabled: Optional[bool] = None):
        self._task, self._start, self._progress = None, 0.0, None
        if Console is None:
            self.enabled = False
            return
        console = Console(stderr=True)
        self.enabled = console.is_terminal if enabled is None else enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not self.enabled,
            transient=True,
        )
        self._task = None
        self._start = 0.0

    def __enter__(self) -> "LiveProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def wrap(self, log):
        """A log function that prints above the live bar instead of through it."""
        if not self.enabled:
            return log
        return lambda msg: self._progress.console.print(msg, markup=False, highlight=False, soft_wrap=True)

    def begin(self, description: str, total: int) -> None:
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=total, stats="")
        self._start = time.perf_counter()

    def step(self, images_seen: int, **stats: float) -> None:
        """Advance one batch; `stats` (e.g. loss=0.5, acc=0.9) are shown next to img/s."""
        if self._progress is None:
            return
        rate = images_seen / max(1e-9, time.perf_counter() - self._start)
        text = " ".join(f"{k} {v:.4f}" for k, v in stats.items()) + f" {rate:.0f} img/s"
        self._progress.update(self._task, advance=1, stats=text)


def environment() -> dict[str, str]:
    """Git commit, package versions and platform, recorded with every run."""
    import timm

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(comp.__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "comp": comp.__version__,
        "git_commit": commit or "unknown",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
