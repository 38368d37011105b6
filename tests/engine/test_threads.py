"""`train.threads: auto`: the cores are shared among the comp trainings running on the machine."""

import os
import subprocess
import sys

import torch

from comp.config import load_config
from comp.engine.threads import TrainingRegistry, _start_time, apply_threads, usable_cores
from tests.conftest import write_config


def _entry(registry: TrainingRegistry, pid: int, started: str) -> None:
    registry.folder.mkdir(parents=True, exist_ok=True)
    (registry.folder / f"{pid}.pid").write_text(f"{pid} {started}")


def test_live_trainings_share_the_cores_and_dead_ones_are_forgotten(tmp_path):
    registry = TrainingRegistry(tmp_path / "trainings")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with registry.registered():
            assert registry.live() == 1 and registry.share() == usable_cores()
            _entry(registry, other.pid, _start_time(other.pid) or "")
            assert registry.live() == 2 and registry.share() == max(1, usable_cores() // 2)
            with registry.registered():  # nested (a k-fold run's folds): still one entry for this process
                assert registry.live() == 2
            other.kill()
            other.wait()
            assert registry.live() == 1 and not (registry.folder / f"{other.pid}.pid").exists()
        assert registry.live() == 0 and list(registry.folder.iterdir()) == []
    finally:
        other.kill()


def test_a_reused_pid_is_not_a_live_training(tmp_path):
    registry = TrainingRegistry(tmp_path / "trainings")
    _entry(registry, os.getpid(), "1")  # this pid, but a process that started at another time
    assert registry.live() == 0 and not any(registry.folder.iterdir())


def test_an_explicit_thread_count_wins_and_auto_is_the_default(tmp_path):
    before = torch.get_num_threads()
    try:
        assert apply_threads(1, TrainingRegistry(tmp_path)) == 1 and torch.get_num_threads() == 1
        assert apply_threads("auto", TrainingRegistry(tmp_path)) == usable_cores()
    finally:
        torch.set_num_threads(before)
    cfg = load_config(write_config(tmp_path / "c.yaml"))
    assert cfg.train.threads == "auto"
    legacy = load_config(write_config(tmp_path / "old.yaml", train={"threads": None}))  # configs saved before auto
    assert legacy.train.threads == "auto"


def test_a_training_logs_its_share(tmp_path, shapes):
    from comp.engine.fit import fit

    lines: list[str] = []
    fit(load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes)})), tmp_path / "run", log=lines.append)
    assert any(line.startswith("threads: ") and "train.threads auto" in line for line in lines), lines
