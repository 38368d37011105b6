"""Crash safety: SIGKILL, Ctrl-C, NaN loss and disk-full never lose or corrupt a run."""

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import comp.engine.loop as loop_module  # the training loop builds the model
from comp.config import load_config
from comp.engine.checkpoint import load_checkpoint
from comp.files import save_atomic
from comp.engine.fit import fit
from comp.errors import Interrupted, UserError
from tests.conftest import write_config

# One thread: the same float reductions in this process and in a subprocess.
DETERMINISTIC = {"threads": 1, "seed": 5}


def _metrics(run: Path) -> list[tuple]:
    with open(run / "metrics.csv") as f:
        return [(r["epoch"], r["lr"], r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"]) for r in csv.DictReader(f)]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_checkpoint(a / "last.pt")["model"], load_checkpoint(b / "last.pt")["model"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _interrupt_at_forward(monkeypatch, n: int) -> None:
    """Deliver a real SIGINT to this process during the n-th training forward pass."""
    build = loop_module.build_model
    calls = {"n": 0}

    def hook(module, inputs):
        if module.training:
            calls["n"] += 1
            if calls["n"] == n:
                signal.raise_signal(signal.SIGINT)

    def build_with_hook(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(loop_module, "build_model", build_with_hook)


def assert_resume_is_exact(cfg, tmp_path: Path, monkeypatch, at_forward: int, partial_batches: int) -> list[str]:
    """Train `cfg` straight, then again with a Ctrl-C during training forward pass `at_forward` (in
    epoch 2) and `--resume`: last.pt holds `partial_batches` batches of epoch 2, and the resumed run
    ends with the straight run's metrics.csv and weights, bit for bit. Returns the straight run's log."""
    lines: list[str] = []
    fit(cfg, tmp_path / "straight", log=lines.append)
    _interrupt_at_forward(monkeypatch, at_forward)
    with pytest.raises(Interrupted, match="--resume"):
        fit(cfg, tmp_path / "run", log=lambda s: None)
    state = load_checkpoint(tmp_path / "run" / "last.pt")["state"]
    assert state["epoch"] == 0 and state["partial"]["epoch"] == 1 and state["partial"]["batches"] == partial_batches
    monkeypatch.undo()
    fit(cfg, tmp_path / "run", resume=True, log=lambda s: None)
    assert _metrics(tmp_path / "run") == _metrics(tmp_path / "straight")
    assert _same_weights(tmp_path / "run", tmp_path / "straight")
    return lines


@pytest.mark.parametrize("cache", ["on", "off"])
def test_ctrl_c_mid_epoch_saves_and_resume_is_exact(tmp_path, shapes, monkeypatch, cache):
    cfg = load_config(write_config(
        tmp_path / "c.yaml", data={"dir": str(shapes), "cache": cache, "batch_size": 8},
        train={**DETERMINISTIC, "epochs": 2, "checkpoint_minutes": 0},
        aug={"rotate": 10, "color_jitter": [0.2, 0.2, 0.2, 0.0]}, model={"dropout": 0.3},
    ))
    # 42 train images / batch 8 = 5 batches per epoch: Ctrl-C during the 2nd batch of epoch 2.
    assert_resume_is_exact(cfg, tmp_path, monkeypatch, at_forward=5 + 2, partial_batches=2)


def _train_subprocess(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "comp", "train", str(config), "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "no checkpoint appeared"
        time.sleep(0.02)


def test_sigkill_mid_run_leaves_a_loadable_checkpoint_and_resume_matches(tmp_path, shapes):
    # Mid-epoch saves every ~10 ms, so the kill lands around checkpoint writes.
    config = write_config(
        tmp_path / "c.yaml", data={"dir": str(shapes), "batch_size": 8},
        train={**DETERMINISTIC, "epochs": 12, "checkpoint_minutes": 0.0002},
    )
    fit(load_config(config), tmp_path / "straight", log=lambda s: None)

    proc = _train_subprocess(config, tmp_path / "run")
    _wait_for(tmp_path / "run" / "last.pt", proc)
    time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be killed; give it more epochs"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["state"]["epoch"] < 11

    fit(load_config(config), tmp_path / "run", resume=True, log=lambda s: None)
    assert _metrics(tmp_path / "run") == _metrics(tmp_path / "straight")
    assert _same_weights(tmp_path / "run", tmp_path / "straight")


def test_ctrl_c_via_cli_exits_130_with_the_resume_command(tmp_path, shapes):
    config = write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}, train={"epochs": 200})
    proc = _train_subprocess(config, tmp_path / "run")
    _wait_for(tmp_path / "run" / "last.pt", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err
    assert "--resume --out" in err and "interrupted" in err
    assert load_checkpoint(tmp_path / "run" / "last.pt")["state"]["epoch"] < 199


def test_nan_loss_stops_with_a_message_and_keeps_the_best_checkpoint(tmp_path, shapes, monkeypatch):
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes), "batch_size": 8}, train={"epochs": 4}))
    build = loop_module.build_model
    calls = {"n": 0}

    def poison(module, inputs, output):  # the 3rd training batch of epoch 2 diverges
        if module.training:
            calls["n"] += 1
            if calls["n"] == 5 + 3:
                return output * float("nan")

    def build_poisoned(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(loop_module, "build_model", build_poisoned)
    with pytest.raises(UserError, match=r"loss became nan.*epoch 2; best\.pt \(epoch 1\) and last\.pt are kept"):
        fit(cfg, tmp_path / "run", log=lambda s: None)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 0 and all(torch.isfinite(v).all() for v in best["model"].values() if v.is_floating_point())
    assert load_checkpoint(tmp_path / "run" / "last.pt")["state"]["epoch"] == 0


def test_disk_full_on_save_is_an_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    save_atomic({"x": torch.ones(3)}, target)

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="No space left.*free disk space"):
        save_atomic({"x": torch.zeros(3)}, target)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(target)["x"], torch.ones(3))  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_ctrl_c_in_the_last_batch_of_an_epoch_finishes_it_and_says_only_what_was_saved(tmp_path, shapes, monkeypatch):
    cfg = load_config(write_config(
        tmp_path / "c.yaml", data={"dir": str(shapes), "batch_size": 8}, train={**DETERMINISTIC, "epochs": 2, "checkpoint_minutes": 0},
    ))
    fit(cfg, tmp_path / "straight", log=lambda s: None)
    _interrupt_at_forward(monkeypatch, 5)  # 5 batches per epoch: the last batch of epoch 1
    # Used to raise "last.pt holds epoch 1 up to batch 5" without writing any last.pt: the epoch was lost.
    with pytest.raises(Interrupted) as stopped:
        fit(cfg, tmp_path / "run", log=lambda s: None)
    assert "holds epoch 1;" in str(stopped.value) and "up to batch" not in str(stopped.value)
    state = load_checkpoint(tmp_path / "run" / "last.pt")["state"]
    assert state["epoch"] == 0 and "partial" not in state
    assert len(_metrics(tmp_path / "run")) == 1  # epoch 1 was validated and recorded
    monkeypatch.undo()
    fit(cfg, tmp_path / "run", resume=True, log=lambda s: None)
    assert _metrics(tmp_path / "run") == _metrics(tmp_path / "straight")
    assert _same_weights(tmp_path / "run", tmp_path / "straight")
