import csv
import json
from pathlib import Path

import pytest
import timm
import torch
import yaml

from comp.config import load_config
from comp.engine.checkpoint import load_checkpoint
from comp.engine.fit import fit
from comp.engine.optim import create_optimizer, create_scheduler, param_groups
from comp.config import OptimConfig, SchedConfig, ModelConfig
from comp.errors import UserError
from comp.models.factory import build_model
from tests.conftest import write_config

RUN_FILES = {"config.yaml", "best.pt", "last.pt", "metrics.csv", "curves.png", "summary.json"}


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("cache", ["on", "off"])
def test_fit_writes_the_run_directory(tmp_path, shapes, cache):
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes), "cache": cache}, train={"epochs": 2}))
    lines = []
    summary = fit(cfg, tmp_path / "run", log=lines.append)
    assert any(("tensor cache" if cache == "on" else "albumentations") in line for line in lines)
    run = tmp_path / "run"
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    rows = _rows(run)
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    saved = json.loads((run / "summary.json").read_text())
    for key in ("best_epoch", "best_val_acc", "classes", "model", "epochs_run", "world_size"):
        assert key in saved
    assert saved["classes"] == ["circle", "square", "triangle"] and saved["epochs_run"] == 2
    assert saved["environment"]["torch"] == torch.__version__
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["data"]["image_size"] == 32
    assert resolved["data"]["mean"] == list(timm.create_model("test_resnet").pretrained_cfg["mean"])
    best = load_checkpoint(run / "best.pt")
    assert best["classes"] == saved["classes"] and best["epoch"] == saved["best_epoch"]
    assert summary["best_val_acc"] == pytest.approx(max(float(r["val_acc"]) for r in rows), abs=1e-5)


def test_existing_run_is_not_overwritten(tmp_path, shapes):
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}))
    fit(cfg, tmp_path / "run", log=lambda s: None)
    with pytest.raises(UserError, match="already holds a run; use --resume, --overwrite"):
        fit(cfg, tmp_path / "run", log=lambda s: None)
    fit(cfg, tmp_path / "run", overwrite=True, log=lambda s: None)
    # an overwrite without a val split must not leave the old run's val predictions behind
    assert (tmp_path / "run" / "val_probs.csv").is_file()
    fit(cfg.model_copy(update={"data": cfg.data.model_copy(update={"train_on_val": True})}), tmp_path / "run",
        overwrite=True, log=lambda s: None)
    assert not (tmp_path / "run" / "val_probs.csv").exists()


def test_resume_continues_to_the_same_result(tmp_path, shapes):
    base = dict(data={"dir": str(shapes)}, train={"epochs": 3, "seed": 3})
    cfg3 = load_config(write_config(tmp_path / "c.yaml", **base))
    fit(cfg3, tmp_path / "straight", log=lambda s: None)
    cfg1 = load_config(write_config(tmp_path / "c1.yaml", **base), ["train.epochs=1"])
    fit(cfg1, tmp_path / "resumed", log=lambda s: None)
    # The schedule of the resumed run must be the 3-epoch one, as for a run launched with 3 epochs.
    fit(cfg3, tmp_path / "resumed", resume=True, log=lambda s: None)
    straight, resumed = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
    assert [int(r["epoch"]) for r in resumed] == [0, 1, 2]
    assert resumed[2]["lr"] == straight[2]["lr"]
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    assert a.keys() == b.keys()


def test_resume_needs_a_last_checkpoint(tmp_path, shapes):
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}))
    with pytest.raises(UserError, match="no last.pt"):
        fit(cfg, tmp_path / "nothing", resume=True, log=lambda s: None)


@pytest.mark.parametrize("cache", ["on", "off"])
def test_unreadable_training_images_are_skipped_and_listed(tmp_path, shapes, cache):
    bad = shapes / "train" / "circle" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes), "val_fraction": 0.5, "cache": cache}))
    lines = []
    fit(cfg, tmp_path / "run", log=lines.append)
    listed = (tmp_path / "run" / "skipped_files.txt").read_text()
    assert str(bad) in listed
    assert any("skipped 1 files" in line for line in lines)


def test_train_on_val_uses_every_labelled_image(tmp_path):
    from comp.data.synthetic import make_competition

    data = make_competition(tmp_path / "c", classes=2, per_class=6, val_per_class=2)
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(data), "train_on_val": True}))
    lines = []
    summary = fit(cfg, tmp_path / "run", log=lines.append)
    assert summary["train_images"] == 16 and summary["val_images"] == 0 and summary["best_val_acc"] is None
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert epoch_lines and not any("val" in line or "nan" in line or "best" in line for line in epoch_lines), epoch_lines
    assert (tmp_path / "run" / "best.pt").is_file() and not (tmp_path / "run" / "val_probs.csv").exists()
    json.loads((tmp_path / "run" / "summary.json").read_text())  # strict JSON, no NaN


def test_early_stopping_with_patience(tmp_path, shapes):
    cfg = load_config(
        write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}, optim={"lr": 1e-9}, sched={"name": "none"},
                     train={"epochs": 6, "patience": 1})
    )
    lines = []
    summary = fit(cfg, tmp_path / "run", log=lines.append)
    assert summary["epochs_run"] < 6
    assert any(line.startswith("early stop") for line in lines)


def test_mixup_ema_clip_and_frozen_stages_run(tmp_path, shapes):
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml", data={"dir": str(shapes)}, model={"trainable": 1, "head": "V2"},
            optim={"name": "sgd", "nesterov": True, "backbone_lr_mult": 0.1},
            train={"mixup": 0.2, "cutmix": 1.0, "ema": True, "ema_decay": 0.9, "grad_clip": 1.0},
        )
    )
    summary = fit(cfg, tmp_path / "run", log=lambda s: None)
    assert summary["epochs_run"] == 1
    assert load_checkpoint(tmp_path / "run" / "last.pt")["ema"] is not None


def test_backbone_lr_multiplier_survives_the_schedule():
    model = build_model(ModelConfig(name="test_resnet", pretrained="none"), 3)
    cfg = OptimConfig(lr=1e-3, backbone_lr_mult=0.1, weight_decay=0.05)
    groups = param_groups(model, cfg)
    head_ids = {id(p) for p in model.head.parameters()}
    for g in groups:
        is_head = all(id(p) in head_ids for p in g["params"])
        assert g.get("lr_scale", 1.0) == pytest.approx(1.0 if is_head else 0.1)
        assert g["weight_decay"] in (0.0, 0.05)
    opt = create_optimizer(model, cfg)
    sched = create_scheduler(opt, SchedConfig(warmup_epochs=0), epochs=4, updates_per_epoch=10)
    sched.step_update(20)
    lrs = sorted({round(g["lr"], 12) for g in opt.param_groups})
    assert len(lrs) == 2 and lrs[1] / lrs[0] == pytest.approx(10)
    # with a constant schedule too
    opt = create_optimizer(model, cfg)
    create_scheduler(opt, SchedConfig(name="none"), epochs=4, updates_per_epoch=10).step_update(5)
    assert sorted({round(g["lr"], 12) for g in opt.param_groups}) == [pytest.approx(1e-4), pytest.approx(1e-3)]


def test_unknown_optimizer_and_schedule_are_user_errors():
    model = build_model(ModelConfig(name="test_resnet", pretrained="none"), 3)
    with pytest.raises(UserError, match="unknown optimizer 'adamz'"):
        create_optimizer(model, OptimConfig(name="adamz"))
    opt = create_optimizer(model, OptimConfig())
    with pytest.raises(UserError, match="sched.name='cosin'"):
        create_scheduler(opt, SchedConfig(name="cosin"), epochs=2, updates_per_epoch=3)


def test_a_tie_in_val_accuracy_goes_to_the_lower_val_loss(tmp_path, shapes):
    # Easy shapes at a high lr: val accuracy saturates, so several epochs tie on it; the
    # kept epoch must then be the one with the lowest val loss, not the first to reach it.
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}, train={"epochs": 6},
                                   optim={"lr": 3e-3}))
    summary = fit(cfg, tmp_path / "run", log=lambda s: None)
    rows = _rows(tmp_path / "run")
    accs = [round(float(r["val_acc"]), 6) for r in rows]
    tied = [i for i, a in enumerate(accs) if a == max(accs)]
    assert len(tied) >= 2, f"no tie to break: {accs}"
    expected = min(tied, key=lambda i: float(rows[i]["val_loss"]))
    assert summary["best_epoch"] == expected
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == expected


def test_update_best_rule_and_patience_count():
    from comp.engine.epoch import EpochStats
    from comp.engine.fit import update_best

    def stats(acc, loss):
        return EpochStats(loss=loss, acc=acc, images=10, seconds=1.0, bad_files=[])

    state = {"best_val_acc": -1.0, "best_val_loss": float("inf"), "best_epoch": -1, "stale_epochs": 0}
    assert update_best(state, 0, stats(0.8, 0.5))
    assert not update_best(state, 1, stats(0.8, 0.6)) and state["stale_epochs"] == 1  # tie, worse loss
    assert update_best(state, 2, stats(0.8, 0.4)) and state["best_epoch"] == 2 and state["stale_epochs"] == 0
    assert not update_best(state, 3, stats(0.7, 0.1)) and state["best_epoch"] == 2
    assert update_best({"best_val_acc": 0.9, "stale_epochs": 3}, 4, stats(float("nan"), float("nan")), scored=False)
