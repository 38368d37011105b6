"""`train.threads: auto`: this training's share of the machine's cores, among the comp trainings running on it.

torch takes every core in every process by default. Two trainings side by side on a 2-core
machine (folds with `--fold I`, `comp tune --jobs 2`, two terminals) then oversubscribe the cores
and both crawl: measured 14 + 14 img/s against 108 for one alone, a quarter of the work; with one
thread each, 76 + 70 img/s. So each training registers itself in a folder of live trainings
(`<comp cache dir>/trainings/`, one file per process holding its pid and start time), and at every
epoch start takes max(1, cores // live trainings) threads, where the cores are those this process
may use (its CPU affinity, which `taskset` and container CPU sets restrict). Entries of processes
that have ended (a pid gone, or reused by another process since) are removed when read. An explicit
`train.threads: N` always wins.

The thread count changes only at epoch starts. Float reductions depend on it, so a run whose share
changed mid-way is not bitwise equal to one that kept it; set `train.threads` to a number where that
matters.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional, Union

import torch


def usable_cores() -> int:
    """The cores this process may run on (CPU affinity; `os.cpu_count()` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused pid apart; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    now = _start_time(pid)
    return now is None or not started or now == started


class TrainingRegistry:
    """The live comp trainings on this machine: a folder with one file per training process."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def live(self) -> int:
        """How many registered trainings are running (this one included once registered); dead entries are removed."""
        count = 0
        for entry in self.folder.glob("*.pid"):
            try:
                pid_text, _, started = entry.read_text().partition(" ")
                alive = _alive(int(pid_text), started.strip())
            except (OSError, ValueError):
                continue  # a file being written or removed by its owner
            if alive:
                count += 1
            else:
                entry.unlink(missing_ok=True)
        return count

    @contextlib.contextmanager
    def registered(self) -> Iterator[None]:
        """This process counts as a live training inside the block (nested blocks count once)."""
        entry = self.folder / f"{os.getpid()}.pid"
        if entry.is_file():  # already registered, e.g. a k-fold run's folds or a tune worker's trials
            yield
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = entry.with_suffix(".tmp")
            tmp.write_text(f"{os.getpid()} {_start_time(os.getpid()) or ''}")
            os.replace(tmp, entry)
        except OSError:  # an unwritable cache folder: count nothing, take the whole share
            yield
            return
        try:
            yield
        finally:
            entry.unlink(missing_ok=True)

    def share(self) -> int:
        """This training's threads: its usable cores divided among the live trainings (at least 1)."""
        return max(1, usable_cores() // max(1, self.live()))


def default_registry() -> TrainingRegistry:
    from comp.data.cache import default_cache_dir

    return TrainingRegistry(default_cache_dir() / "trainings")


def apply_threads(setting: Union[str, int, None], registry: Optional[TrainingRegistry] = None) -> int:
    """Set torch's intra-op threads for `train.threads` (a number, or "auto": `registry.share()`); returns the count."""
    n = (registry or default_registry()).share() if setting in (None, "auto") else int(setting)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n
