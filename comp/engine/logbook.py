"""What a run leaves for a person to read: metrics.csv, curves.png, summary.json, progress bars,
and the lines the training loop logs about them."""

from __future__ import annotations

import csv
import math
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

import comp
from comp.engine import distributed as dist
from comp.engine.checkpoint import weights_payload
from comp.errors import Log
from comp.files import save_atomic

if TYPE_CHECKING:
    import torch.nn as nn

    from comp.config import Config
    from comp.engine.epoch import EpochStats
    from comp.engine.state import LoopState

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


# -- what the training loop records (comp.engine.loop) ------------------------------------


def acc_text(acc: Optional[float], before: str = " acc ", after: str = "") -> str:
    """` acc 0.1234` for a log line, or nothing where the task has no accuracy (a regression's is NaN)."""
    return "" if acc is None or math.isnan(acc) else f"{before}{acc:.4f}{after}"


def record_epoch(
    metrics: MetricsLog, out_dir: Path, cfg: "Config", classes: list[str], epoch: int, optimizer, tr: "EpochStats", va: "EpochStats",
    new_best: Optional["nn.Module"], metric, scored: bool, log: Log,
) -> dict[str, float]:
    """The end-of-epoch bookkeeping of rank 0: metrics.csv, curves.png, best.pt (when `new_best`), the log line; returns the row."""
    lr = optimizer.param_groups[0]["lr"]
    row = dict(epoch=epoch, lr=lr, train_loss=tr.loss, train_acc=tr.acc, val_loss=va.loss, val_acc=va.acc, val_score=va.score,
               seconds=tr.seconds + va.seconds)
    metrics.append(row)
    plot_curves(metrics.rows, out_dir / "curves.png", title=f"{cfg.model.name} - {out_dir.name}")
    if new_best is not None:
        save_atomic(weights_payload(new_best, cfg, classes, epoch, va.acc), out_dir / "best.pt")
    val = f"val loss {va.loss:.4f}{acc_text(va.acc)}  " if scored else ""
    if scored and metric.name != "accuracy":
        val += f"{metric.name} {va.score:.4f}  "
    log(
        f"epoch {epoch + 1}/{cfg.train.epochs}  lr {lr:.2e}  train loss {tr.loss:.4f}{acc_text(tr.acc)}  "
        f"{val}{tr.images / max(tr.seconds, 1e-9):.0f} img/s  {row['seconds']:.1f}s{'  *best' if new_best is not None and scored else ''}"
    )
    return row


def log_imbalance(cfg: "Config", weight: Optional[torch.Tensor], classes: list[str], log: Log) -> None:
    """One line per imbalance remedy in use, so the log says how the classes were weighed."""
    t = cfg.train
    if weight is not None:
        shown = ", ".join(f"{c} {w:.3g}" for c, w in zip(classes[:10], weight.tolist()))
        log(f"class weights ({t.class_weights if isinstance(t.class_weights, str) else 'given'}): {shown}{', ...' if len(classes) > 10 else ''}")
    if t.loss == "focal":
        log(f"loss: focal, gamma {t.focal_gamma:g}")
    if cfg.data.sampler == "balanced":
        log("sampler: balanced (each class drawn equally often per epoch; rare images repeat, common ones are subsampled)")
        if weight is not None:
            log("note: class weights and the balanced sampler both correct the imbalance; together they over-weight rare classes")


def run_summary(
    state: "LoopState", metric, cfg: "Config", data, dcfg: dict, n_params: int, stopped_early: bool,
    ranks_agree: bool, seconds: float, device: torch.device, weight: Optional[torch.Tensor] = None,
) -> dict[str, Any]:
    """summary.json: what the run was, what it reached, and on what."""
    scored = data.n_val > 0
    return {
        "best_epoch": state.best_epoch,
        "metric": metric.name,
        "task": data.task.name,
        "best_val_score": state.best_val_score if scored and math.isfinite(state.best_val_score) else None,
        "best_val_acc": state.best_val_acc if scored else None,
        "classes": data.classes,
        "model": cfg.model.name,
        "epochs_run": state.epoch + 1,
        "stopped_early": stopped_early,
        "world_size": dist.world_size(),
        "ranks_agree": ranks_agree,
        "train_images": data.n_train,
        "class_weights": [round(w, 6) for w in weight.tolist()] if weight is not None else None,
        "sampler": cfg.data.sampler,
        "val_images": data.n_val,
        "image_size": dcfg["image_size"],
        "params": n_params,
        "seconds": round(seconds, 2),
        "seed": cfg.train.seed,
        "device": str(device),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
    }


def write_skipped(bad: dict[str, str], path: Path, log: Log) -> None:
    """skipped_files.txt: each unreadable image or unusable row with its reason (nothing when there is none)."""
    if not bad:
        return
    path.write_text("".join(f"{p}\t{r}\n" for p, r in sorted(bad.items())))
    log(f"warning: skipped {len(bad)} files or rows, listed in {path}")
