"""`comp factors`: train a base recipe and one-factor-at-a-time variants, then tabulate and plot.

A suite (configs/factors/*.yaml):

    dataset: fashion-mnist        # fashion-mnist | cifar10 | cifar100 | tiny-imagenet
    val_fraction: 0.1             # stratified hold-out of train for model selection (test stays unseen)
    base: {model: {...}, optim: {...}, train: {...}, aug: {...}}   # a comp config, data.dir excluded
    factors:                      # name -> overrides of base; `combine: [a, b]` merges rows first
      bn: {model: {name: scratch_cnn_bn}}
      all: {combine: [bn, aug], train: {epochs: 20}}

Every suite has the row `base`. Each row is a normal run directory under OUT/<row>/ (metrics.csv,
curves.png, best.pt, ...), trained on the in-memory dataset with the decode-once tensor path and
batched augmentation, then scored on the dataset's test split with its best checkpoint. Finished
rows are skipped when the suite runs again (a row killed mid-run resumes from its last.pt).
`optim.lr: find` runs the learning-rate range test first, `data.batch_size: find` the batch-size
finder; the chosen values are recorded in the row's config.yaml.

Outputs: OUT/results.csv, OUT/results.md (params, epochs, s/epoch, best val loss, val and test
accuracy, delta vs base in points) and OUT/results.png (validation accuracy per epoch, all rows);
with `--seeds N`, every row N times and the table with intervals (`comp.factor_table`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from comp.config import Config, config_from_dict, read_yaml_mapping
from comp.data.augment import BatchAugment
from comp.data.batches import TensorBatches
from comp.data.competition import Split
from comp.tasks.splits import holdout_indices
from comp.data.sources import DATASETS, load_dataset
from comp.engine.checkpoint import load_checkpoint
from comp.factor_table import collect_results, markdown_table, seed_dirs, write_report
from comp.device import resolve_device
from comp.engine.epoch import evaluate
from comp.engine.finders import find_batch_size, lr_range_test, plot_lr_test
from comp.engine.loop import TrainingData, train_run
from comp.files import write_json
from comp.engine.optim import create_optimizer
from comp.errors import Log, UserError
from comp.models.factory import build_model
from comp.models.heads import count_params

SUITE_KEYS = {"dataset", "val_fraction", "base", "factors", "description"}


# -- the suite file -----------------------------------------------------------------------------


def load_suite(path: Path) -> dict[str, Any]:
    """Read and check a suite YAML; returns {"dataset", "val_fraction", "rows": {name: raw config}}."""
    path = Path(path)
    raw = read_yaml_mapping(path, "suite file", "see configs/factors/", "suite keys (dataset:, base:, factors:)")
    unknown = set(raw) - SUITE_KEYS
    if unknown:
        raise UserError(f"{path}: unknown key(s) {sorted(unknown)}; a suite has {sorted(SUITE_KEYS)}")
    if raw.get("dataset") not in DATASETS:
        raise UserError(f"{path}: dataset must be one of {', '.join(DATASETS)}, got {raw.get('dataset')!r}")
    factors = raw.get("factors") or {}
    if "base" in factors:
        raise UserError(f"{path}: 'base' is the base recipe's row; give the factor another name")
    rows = {"base": copy.deepcopy(raw.get("base") or {})}
    for name, spec in factors.items():
        spec = copy.deepcopy(spec or {})
        merged = copy.deepcopy(rows["base"])
        for other in spec.pop("combine", []):
            if other not in factors:
                raise UserError(f"{path}: factor {name!r} combines unknown factor {other!r}")
            _merge(merged, {k: v for k, v in factors[other].items() if k != "combine"})
        rows[name] = _merge(merged, spec)
    return {"dataset": raw["dataset"], "val_fraction": float(raw.get("val_fraction", 0.1)), "rows": rows, "path": path}


def _merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


# -- data ------------------------------------------------------------------------------------------


class InMemoryData:
    """A dataset's train (split into train/val) and test tensors, uint8 (N, 3, S, S), gray as RGB."""

    def __init__(self, dataset: str, root: Optional[Path], val_fraction: float, seed: int = 0):
        x, y, self.classes = load_dataset(dataset, root, "train")
        xt, yt, _ = load_dataset(dataset, root, "test")
        self.size = x.shape[1]
        train_idx, val_idx = holdout_indices(y.tolist(), val_fraction, seed)
        x, xt = _to_nchw_rgb(x), _to_nchw_rgb(xt)
        y, yt = torch.from_numpy(y), torch.from_numpy(yt)
        self.train = (x[train_idx], y[train_idx])
        self.val = (x[val_idx], y[val_idx])
        self.test = (xt, yt)
        f = self.train[0][:20000].float() / 255
        self.mean = tuple(f.mean(dim=(0, 2, 3)).tolist())
        self.std = tuple(f.std(dim=(0, 2, 3)).tolist())

    def resized(self, x: torch.Tensor, size: int) -> torch.Tensor:
        if size == self.size:
            return x
        return torch.cat([F.interpolate(c.float(), size=size, mode="bilinear", antialias=True, align_corners=False).round().clamp(0, 255).to(torch.uint8) for c in x.split(4096)])


def _to_nchw_rgb(x: np.ndarray) -> torch.Tensor:
    x = np.ascontiguousarray(x) if x.flags.writeable else np.array(x)  # idx arrays are read-only views of the file
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    return t.expand(-1, 3, -1, -1).contiguous() if t.shape[1] == 1 else t.contiguous()


def _batches(cfg: Config, data: InMemoryData, split: tuple, train: bool, device: torch.device) -> TensorBatches:
    x, y = split
    augment = BatchAugment.from_config(cfg.aug) if train else None
    bs = cfg.data.batch_size
    batches = TensorBatches(
        data.resized(x, cfg.data.image_size), y, batch_size=bs if train else bs * 2, mean=cfg.data.mean, std=cfg.data.std,
        shuffle=train, drop_last=train and len(x) > bs, augment=augment, seed=cfg.train.seed, device=device,
        balanced=train and cfg.data.sampler == "balanced",
    )
    batches.describe = "in-memory data set, batched augmentation"
    return batches


# -- one row ---------------------------------------------------------------------------------------


def row_config(raw: dict, data: InMemoryData, epochs: Optional[int], name: str, suite: Path) -> tuple[Config, dict]:
    """Validate a row's config (data.dir unused; size, mean and std from the dataset); returns it
    and the `find` requests taken out of it."""
    raw = copy.deepcopy(raw)
    finds = {}
    if raw.get("optim", {}).get("lr") == "find":
        finds["lr"] = raw["optim"].pop("lr")
    if raw.get("data", {}).get("batch_size") == "find":
        finds["batch_size"] = raw["data"].pop("batch_size")
    d = raw.setdefault("data", {})
    d.setdefault("image_size", data.size)
    d.setdefault("mean", list(data.mean))
    d.setdefault("std", list(data.std))
    d.setdefault("crop_pct", 1.0)
    raw.setdefault("model", {}).setdefault("pretrained", "none")
    if epochs is not None:
        raw.setdefault("train", {})["epochs"] = epochs
    return config_from_dict(raw, source=f"{suite} (row {name!r})"), finds


def _apply_finders(
    cfg: Config, finds: dict, data: InMemoryData, device: torch.device, out: Path, log: Log
) -> tuple[Config, Optional[Callable[[], None]]]:
    """`cfg` with the found batch size / lr, and what writes the lr plot into the row's folder.

    The plot is written once the row's run has been accepted (`on_accept`), so the run folder
    only ever holds files of that run.
    """
    write_plot = None
    if not finds:
        return cfg, write_plot
    model = build_model(cfg.model, len(data.classes), pretrained=False)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    if "batch_size" in finds:
        x, y = data.train

        def sample(b: int):  # b training images, normalized exactly as in training (no augmentation)
            idx = torch.arange(b) % len(x)
            one = TensorBatches(data.resized(x[idx], cfg.data.image_size), y[idx], batch_size=b, mean=cfg.data.mean, std=cfg.data.std)
            xb, yb, _ = next(iter(one))
            return xb, yb

        # At least ~10 updates per epoch: a batch of the whole (small) dataset would barely train.
        cap = max(16, len(y) // 10)
        candidates = [b for b in (16, 32, 64, 128, 256, 512, 1024) if b <= cap]
        bs = find_batch_size(model, sample, lambda m: create_optimizer(m, cfg.optim), criterion, device=device, candidates=candidates, log=log)
        log(f"batch-size finder: {bs}")
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"batch_size": bs})})
    if "lr" in finds:
        batches = _batches(cfg, data, data.train, True, device)
        lrs, losses, lr = lr_range_test(model, batches, lambda m: create_optimizer(m, cfg.optim), criterion, device=device)
        log(f"lr range test: suggested lr {lr:.2e} (plot: {out / 'lr_find.png'})")
        cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": lr})})

        def write_plot() -> None:
            out.mkdir(parents=True, exist_ok=True)
            plot_lr_test(lrs, losses, lr, out / "lr_find.png")

    return cfg, write_plot


def run_row(name: str, cfg: Config, finds: dict, data: InMemoryData, out: Path, log: Log, again: Optional[str] = None) -> dict[str, Any]:
    """Train one row (or resume it) and score its best checkpoint on the test split; `again` is the
    command that continues the suite after a Ctrl-C (running the suite again resumes the row)."""
    done = out / "factor.json"
    if done.is_file():
        log(f"{name}: finished earlier, skipped")
        return json.loads(done.read_text())
    device = resolve_device(cfg.train.device)
    resume = (out / "last.pt").is_file()
    write_plot = None
    if resume:
        cfg = config_from_dict(yaml.safe_load((out / "config.yaml").read_text()), source=str(out / "config.yaml"))
    else:
        cfg, write_plot = _apply_finders(cfg, finds, data, device, out, log)
    log(f"== {name}: {cfg.model.name}, {cfg.optim.name} lr {cfg.optim.lr:g}, batch {cfg.data.batch_size}, {cfg.train.epochs} epochs")
    training = TrainingData(
        classes=list(data.classes), n_train=len(data.train[1]), n_val=len(data.val[1]),
        train_split=Split([], data.train[1].tolist()),  # class weights read the labels alone (tensor data has no paths)
        make_loaders=lambda c, dcfg, dev, progress: (_batches(c, data, data.train, True, dev), _batches(c, data, data.val, False, dev), []),
        source=name,
    )
    summary = train_run(cfg, training, out, resume=resume, overwrite=not resume, log=log, on_accept=write_plot, resume_command=again)
    model = build_model(cfg.model, len(data.classes), pretrained=False)
    model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
    model.to(device, memory_format=torch.channels_last if cfg.train.channels_last else torch.contiguous_format)
    test = evaluate(model, _batches(cfg, data, data.test, False, device), device=device, channels_last=cfg.train.channels_last)
    metrics = pd.read_csv(out / "metrics.csv")
    result = {
        "name": name,
        "model": cfg.model.name,
        "params": count_params(model),
        "epochs": int(summary["epochs_run"]),
        "s_per_epoch": round(float(metrics["seconds"].mean()), 1),
        "best_val_loss": round(float(metrics["val_loss"].min()), 4),
        "best_val_acc": round(float(metrics["val_acc"].max()), 4),
        "test_acc": round(test.acc, 4),
        "test_loss": round(test.loss, 4),
        "train_seconds": summary["seconds"],
    }
    write_json(result, done)
    log(f"{name}: test accuracy {test.acc:.4f}")
    return result


# -- the suite ------------------------------------------------------------------------------------


def run_suite(
    suite_path: Path, *, data: Optional[Path] = None, out: Optional[Path] = None, epochs: Optional[int] = None,
    only: Optional[Sequence[str]] = None, seeds: int = 1, log: Log = print,
) -> pd.DataFrame:
    """Run (or finish) a factor suite and write results.csv, results.md and results.png.

    Args:
        data: the dataset folder or its parent (None: the usual places / a download when online).
        out: output folder (default runs/factors-<suite name>).
        epochs: overrides every row's train.epochs (a quick look at a suite).
        only: row names to run; the table still shows every finished row.
        seeds: N > 1 trains every row with the seeds s, s+1, ..., s+N-1 (s: base's `train.seed`), each
            into OUT/<row>/seed_<s>/; the table shows intervals (`comp.factor_table`). The hold-out
            split is the same for every seed: only the training's randomness changes.

    Returns:
        The results table, one row per finished suite row.
    """
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: give 1 or more")
    suite = load_suite(suite_path)
    out = Path(out) if out else Path("runs") / f"factors-{Path(suite_path).stem}"
    rows = suite["rows"]
    wanted = list(rows) if not only else list(only)
    unknown = [n for n in wanted if n not in rows]
    if unknown:
        raise UserError(f"--only: unknown row(s) {unknown}; the suite has {list(rows)}")
    log(f"loading {suite['dataset']} ...")
    dataset = InMemoryData(suite["dataset"], data, suite["val_fraction"])
    log(f"{suite['dataset']}: {len(dataset.train[1])} train / {len(dataset.val[1])} val / {len(dataset.test[1])} test images, "
        f"{len(dataset.classes)} classes, {dataset.size} px")
    configs = {name: row_config(raw, dataset, epochs, name, suite["path"]) for name, raw in rows.items()}  # all errors first
    seed_list = [configs["base"][0].train.seed + i for i in range(seeds)] if seeds > 1 else None
    again = (f"comp factors {suite_path} --out {out}" + (f" --data {data}" if data else "") + (f" --epochs {epochs}" if epochs else "")
             + (f" --seeds {seeds}" if seeds > 1 else ""))
    for name in wanted:
        cfg, finds = configs[name]
        for s, row_dir in zip(seed_list or [cfg.train.seed], seed_dirs(out / name, seed_list)):
            seeded = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": s})}) if seed_list else cfg
            label = f"{name} (seed {s})" if seed_list else name
            run_row(label, seeded, finds, dataset, row_dir, log, again=again + f" --only {name}")
    table = collect_results(out, list(rows), seed_list)
    write_report(table, out, Path(suite_path).stem, seed_list)
    log("\n" + markdown_table(table))
    return table
