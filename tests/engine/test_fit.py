import csv
import json
from pathlib import Path

import pytest
import timm
import torch
import yaml

from comp.tasks.single import SingleLabel
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
    assert any(("input: decode-once cache" if cache == "on" else "input: files, decoded every epoch") in line for line in lines)
    run = tmp_path / "run"
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    rows = _rows(run)
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_score", "seconds"]
    assert all(r["val_score"] == r["val_acc"] for r in rows)  # the default metric is accuracy
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    saved = json.loads((run / "summary.json").read_text())
    for key in ("best_epoch", "best_val_acc", "metric", "best_val_score", "classes", "model", "epochs_run", "world_size"):
        assert key in saved
    assert saved["metric"] == "accuracy" and saved["best_val_score"] == saved["best_val_acc"]
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


def test_resume_after_an_epoch_end_continues_to_the_same_result(tmp_path, shapes):
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}, train={"epochs": 3, "seed": 3}))
    fit(cfg, tmp_path / "straight", log=lambda s: None)

    def stop_after_epoch_2(line):  # logged after last.pt of epoch 2 is saved, like a kill right then
        if line.startswith("epoch 2/3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "resumed", log=stop_after_epoch_2)
    assert not (tmp_path / "resumed" / "summary.json").exists()
    fit(cfg, tmp_path / "resumed", resume=True, log=lambda s: None)
    straight, resumed = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(straight)
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "straight" / name)["model"]
        b = load_checkpoint(tmp_path / "resumed" / name)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name  # same machine: bitwise


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


def test_mixup_ema_clip_frozen_stages_and_lr_multiplier_take_effect(tmp_path, shapes, monkeypatch):
    import timm.data

    from comp.engine.checkpoint import seed_everything

    calls = {"mixup": 0, "clip": []}
    real_mixup, real_clip = timm.data.Mixup.__call__, torch.nn.utils.clip_grad_norm_

    def mixup(self, x, target):
        calls["mixup"] += 1
        return real_mixup(self, x, target)

    def clip(params, max_norm, *a, **k):
        calls["clip"].append(max_norm)
        return real_clip(params, max_norm, *a, **k)

    monkeypatch.setattr(timm.data.Mixup, "__call__", mixup)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml", data={"dir": str(shapes)}, model={"trainable": 1, "head": "V2"},
            optim={"name": "sgd", "nesterov": True, "backbone_lr_mult": 0.1},
            train={"mixup": 0.2, "cutmix": 1.0, "ema": True, "ema_decay": 0.9, "grad_clip": 1.0},
        )
    )
    summary = fit(cfg, tmp_path / "run", log=lambda s: None)
    assert summary["epochs_run"] == 1
    assert calls["mixup"] > 0 and calls["clip"] and set(calls["clip"]) == {1.0}

    last = load_checkpoint(tmp_path / "run" / "last.pt")
    best = load_checkpoint(tmp_path / "run" / "best.pt")["model"]
    assert last["ema"] is not None and all(torch.equal(best[k], last["ema"][k]) for k in best)  # best.pt = EMA weights
    assert any(not torch.equal(last["ema"][k], last["model"][k]) for k in best)

    seed_everything(cfg.train.seed)  # the run's initial weights (fit seeds before it builds the model)
    init = build_model(cfg.model, 3).state_dict()
    frozen = [k for k in init if k.startswith("backbone.") and "layer4" not in k and init[k].is_floating_point()
              and "running" not in k]
    trained = [k for k in init if k.startswith("head.") and k.endswith("weight")]
    assert frozen and all(torch.equal(init[k], last["model"][k]) for k in frozen)  # trainable=1: only the last stage
    assert trained and all(not torch.equal(init[k], last["model"][k]) for k in trained)

    lrs = {round(g["lr"] / g.get("lr_scale", 1.0), 12) for g in last["optimizer"]["param_groups"]}
    scales = sorted({g.get("lr_scale", 1.0) for g in last["optimizer"]["param_groups"]})
    assert scales == [0.1, 1.0] and len(lrs) == 1  # backbone groups at 0.1x the head's lr


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


def _scripted_validation(monkeypatch, scores):
    """Validation returns the scripted (metric score, val loss) per epoch instead of real ones.

    Real runs' ties and orderings depend on the last bits of float results, so the selection rule
    is tested on given numbers; the model, the loop and best.pt stay real.
    """
    import comp.engine.loop as loop_module  # the training loop validates
    from comp.engine.epoch import EpochStats

    scores, current = iter(scores), {}
    real = loop_module.evaluate

    def scripted(*args, **kwargs):
        stats = real(*args, **kwargs)
        current["score"], loss = next(scores)
        return EpochStats(loss=loss, acc=stats.acc, images=stats.images, seconds=stats.seconds, bad_files=stats.bad_files,
                          probs=stats.probs, targets=stats.targets)

    monkeypatch.setattr(loop_module, "evaluate", scripted)
    monkeypatch.setattr(SingleLabel, "score", lambda self, *a, **k: current["score"])  # the epoch's score, as the task gives it


def test_a_tie_in_the_metric_goes_to_the_lower_val_loss(tmp_path, shapes, monkeypatch):
    _scripted_validation(monkeypatch, [(0.5, 1.0), (0.8, 0.6), (0.8, 0.4), (0.8, 0.5), (0.7, 0.3)])
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}, train={"epochs": 5}))
    summary = fit(cfg, tmp_path / "run", log=lambda s: None)
    assert summary["best_epoch"] == 2 and summary["best_val_score"] == 0.8  # not epoch 1, the first to reach 0.8
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 2


def test_the_metric_chooses_the_best_epoch_and_its_direction(tmp_path, shapes, monkeypatch):
    # log loss is lower-is-better: epoch 1 wins although accuracy-style "higher" would pick epoch 0.
    _scripted_validation(monkeypatch, [(0.9, 0.9), (0.5, 0.5), (0.6, 0.6)])
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"dir": str(shapes)}, train={"epochs": 3, "patience": 1}),
                      ["metric=log_loss", "data.submission=probs"])  # the sample has one label column
    lines = []
    summary = fit(cfg, tmp_path / "run", log=lines.append)
    assert summary["metric"] == "log_loss" and summary["best_epoch"] == 1 and summary["best_val_score"] == 0.5
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    assert [float(r["val_score"]) for r in _rows(tmp_path / "run")] == [0.9, 0.5, 0.6]
    assert any("log_loss 0.5000" in line for line in lines)


def test_update_best_rule_and_patience_count():
    from comp.engine.epoch import EpochStats
    from comp.engine.state import LoopState, update_best
    from comp.tasks.metrics import get_metric

    def stats(acc, loss):
        return EpochStats(loss=loss, acc=acc, images=10, seconds=1.0, bad_files=[], score=acc)

    acc = get_metric("accuracy")
    state = LoopState.new(acc)
    assert update_best(state, 0, stats(0.8, 0.5))
    assert not update_best(state, 1, stats(0.8, 0.6)) and state.stale_epochs == 1  # tie, worse loss
    assert update_best(state, 2, stats(0.8, 0.4)) and state.best_epoch == 2 and state.stale_epochs == 0
    assert not update_best(state, 3, stats(0.7, 0.1)) and state.best_epoch == 2
    assert update_best(LoopState(best_val_score=0.9, stale_epochs=3), 4, stats(float("nan"), float("nan")), scored=False)
    # Lower-is-better metrics and epochs the metric cannot score (NaN: judged by val loss among themselves).
    ll = get_metric("log_loss")
    state = LoopState.new(ll)
    assert update_best(state, 0, stats(0.5, 0.5), ll) and not update_best(state, 1, stats(0.6, 0.4), ll)
    auc = get_metric("roc_auc")
    state = LoopState.new(auc)
    assert update_best(state, 0, stats(float("nan"), 0.5), auc) and not update_best(state, 1, stats(float("nan"), 0.6), auc)
    assert update_best(state, 2, stats(0.7, 0.9), auc) and not update_best(state, 3, stats(float("nan"), 0.1), auc)


def test_loop_state_reads_last_pt_of_older_versions():
    from comp.engine.state import LoopState

    old = {"epoch": 3, "best_val_acc": 0.8, "best_val_loss": 0.4, "best_epoch": 2, "stale_epochs": 1, "updates": 40}
    state = LoopState.from_dict(old)
    assert state.best_val_score == 0.8 and state.updates_done() == 40 and LoopState.from_dict(state.to_dict()) == state
