"""Batch inference: trained runs on a list of images, every TTA view from one decode.

Images are decoded once per preprocessing (size, crop) into uint8 batches by DataLoader workers;
each model normalizes the batch with its own mean/std, then every view is a tensor op on it
(comp/tta.py). So N views cost N forward passes and no extra decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import math
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from comp.config import Config, DataConfig, config_from_dict
from comp.data.competition import Competition, Split
from comp.data.cache import cache_rows, choose_cache, eval_crops, load_or_build
from comp.data.images import ImageFileDataset, collate_skip_bad, unreadable_image
from comp.data.transforms import EvalPreset, eval_resize
from comp.engine.checkpoint import load_checkpoint
from comp.engine.rundir import WEIGHTS_FILE, require_finished, seed_runs
from comp.errors import UserError
from comp.models.factory import build_model
from comp.probs import write_probs
from comp.tasks import Task, get_task
from comp.tta import parse_view


@dataclass
class Member:
    """One trained model ready for inference (a run directory, or one fold of a k-fold run)."""

    run_dir: Path
    model: nn.Module
    classes: list[str]
    cfg: Config

    @property
    def size(self) -> int:
        return int(self.cfg.data.image_size)

    @property
    def task(self) -> Task:
        """The competition type it was trained for (its saved config's resolved data.task)."""
        return get_task(self.cfg.data.task, self.cfg.data, self.cfg.train.loss, self.classes)

    @property
    def crop_pct(self) -> float:
        return float(self.cfg.data.crop_pct)


def has_model(d: Path) -> bool:
    """Whether `d` holds one trained model: a run's best.pt or a bundle's model.safetensors."""
    return (Path(d) / "best.pt").is_file() or (Path(d) / WEIGHTS_FILE).is_file()


def find_model_dirs(path: Path) -> list[Path]:
    """`path` itself if it holds a model (best.pt), else its fold_*/ folders that do (a k-fold run),
    or every model of its seeds (a run of `--seeds N`: N models, K x N with folds), seed by seed.

    An unfinished run, k-fold run or seed is refused (`comp.engine.rundir.require_finished`): a
    half-trained fold would otherwise join the ensemble unnoticed.
    """
    path = Path(path)
    require_finished(path)
    if has_model(path):
        return [path]
    seeds = seed_runs(path)
    if seeds:
        return [d for s in seeds for d in find_model_dirs(s)]
    folds = sorted((p for p in path.glob("fold_*") if has_model(p)), key=lambda p: int(p.name.split("_")[1]))
    if not folds:
        raise UserError(f"{path} is not a comp run (no best.pt, no fold_*/best.pt); pass a run directory from comp train")
    return folds


def load_member(run_dir: Path, device: torch.device) -> Member:
    """Rebuild the model of `run_dir` from its best.pt, or a bundle's model.safetensors (architecture from the saved config)."""
    run_dir = Path(run_dir)
    if (run_dir / "best.pt").is_file():
        ckpt = load_checkpoint(run_dir / "best.pt")
        raw, classes, state, source = ckpt["config"], list(ckpt["classes"]), ckpt["model"], run_dir / "best.pt"
    else:
        raw, classes, state, source = *_packaged(run_dir / WEIGHTS_FILE), run_dir / WEIGHTS_FILE
    cfg = config_from_dict(raw, str(source))
    task = get_task(cfg.data.task, cfg.data, cfg.train.loss, classes)
    model = build_model(cfg.model, task.model_outputs(classes), pretrained=False)
    model.load_state_dict(state)  # fp16 weights of a --half bundle are copied into the fp32 model
    model.to(device, memory_format=torch.channels_last).eval()
    return Member(run_dir, model, classes, cfg)


def _packaged(path: Path) -> tuple[dict, list[str], dict[str, torch.Tensor]]:
    """(config, classes, state dict) of a model.safetensors written by comp package."""
    import json

    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta["config"]), json.loads(meta["classes"]), load_file(str(path))
    except (SafetensorError, KeyError, ValueError, OSError) as e:
        raise UserError(f"cannot load {path} ({type(e).__name__}); it is damaged or not written by comp package") from e


def decode_loader(paths: Sequence[Path], size: int, crop_pct: float, batch_size: int, workers: int) -> DataLoader:
    """uint8 batches (B, 3, size, size) by `eval_resize_crop` (as the cache holds them); bad files reported."""
    ds = ImageFileDataset(paths, list(range(len(paths))), EvalPreset(size=size, crop_pct=crop_pct), draft_size=eval_resize(size, crop_pct))
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip_bad)


def decoded_batches(
    paths: Sequence[Path], size: int, crop_pct: float, data_cfg: DataConfig, batch_size: int, workers: int, disk_cache: bool = True,
    pool: Optional[Sequence[Path]] = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """uint8 batches (B, 3, size, size) of `paths` in order, with their positions and any bad files.

    From the decode-once cache (the squares' centres) when `data.cache` (and `disk_cache`) allows
    it (so every fold and every later prediction of the same test set reuses one decode), else from
    DataLoader workers; both give the same pixels. With `pool` (a superset of `paths`, e.g. all
    labelled images) the pool's cache is used, the one training built.
    """
    cached = list(pool) if pool is not None else list(paths)
    if disk_cache and choose_cache(data_cfg.cache, cached, size, crop_pct, data_cfg.cache_max_gb).use:
        squares, ok = load_or_build(cached, size, crop_pct, data_cfg.cache_dir, threads=max(1, workers))
        images = eval_crops(squares, size, crop_pct)
        rows = cache_rows(cached, paths)
        for start in range(0, len(paths), batch_size):
            pos = torch.arange(start, min(start + batch_size, len(paths)))
            good = ok[rows[pos]]
            yield images[rows[pos[good]]], pos[good], [str(paths[i]) for i in pos[~good].tolist()]
    else:
        yield from decode_loader(paths, size, crop_pct, batch_size, workers)


@torch.inference_mode()
def predict_views(
    members: Sequence[Member],
    views: Sequence[Sequence[str]],
    paths: Sequence[Path],
    *,
    device: torch.device,
    batch_size: int = 64,
    workers: int = 2,
    on_bad: str = "raise",
    progress=None,
    disk_cache: bool = True,
    pool: Optional[Sequence[Path]] = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Probabilities of every member under each of its views.

    Args:
        members: M loaded models.
        views: for member m, its list of V_m view names.
        paths: N image files.
        on_bad: "raise" (a UserError naming the file) or "skip" (row left as NaN, mask False).
        disk_cache: False = never read or write the decode-once cache on disk (decode in memory).
        pool: a superset of `paths` whose cache to use (see `decoded_batches`).

    Returns:
        ([ (V_m, N, D) float32 predictions per member (its task's activation: D = C probabilities, or
        1 value) ], ok mask (N,) bool).
    """
    n = len(paths)
    fns = [[parse_view(v) for v in vs] for vs in views]
    tasks = [m.task for m in members]
    out = [torch.full((len(vs), n, len(t.columns(m.classes))), float("nan")) for m, t, vs in zip(members, tasks, views)]
    ok = torch.zeros(n, dtype=torch.bool)
    groups: dict[tuple[int, float], list[int]] = {}
    for i, m in enumerate(members):
        groups.setdefault((m.size, m.crop_pct), []).append(i)
    dtype = torch.bfloat16 if device.type == "cuda" else None  # CPU: fp32 is faster than bf16 autocast
    for (size, crop), idx in groups.items():
        norm = {i: _normalizer(members[i], device) for i in idx}
        batches = decoded_batches(paths, size, crop, members[idx[0]].cfg.data, batch_size, workers, disk_cache, pool)
        if progress is not None:
            progress.begin(f"predict {size}px", math.ceil(n / batch_size))
        seen = 0
        for x, pos, bad in batches:
            if bad and on_bad == "raise":
                raise unreadable_image(bad[0])
            seen += len(pos)
            if len(pos):
                ok[pos] = True
                x = x.to(device, non_blocking=True).float()
                for i in idx:
                    mean, std = norm[i]
                    xn = (x * (1 / 255.0)).sub_(mean).mul_(1 / std).contiguous(memory_format=torch.channels_last)
                    for v, fn in enumerate(fns[i]):
                        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                            logits = members[i].model(fn(xn))
                        out[i][v, pos] = tasks[i].activation(logits).cpu()
            if progress is not None:
                progress.step(seen)
    return out, ok


def _normalizer(m: Member, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(m.cfg.data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(m.cfg.data.std, device=device).view(1, 3, 1, 1)
    return mean, std


def shared_classes(members: Sequence[Member]) -> list[str]:
    """The class list all `members` share; runs trained on other classes cannot be ensembled."""
    classes = members[0].classes
    for m in members:
        if m.classes != classes:
            raise UserError(f"{m.run_dir} was trained on other classes than the rest; ensemble runs of one competition")
    return classes


def write_val_probs(
    run_dir: Path, val: Split, competition: Competition, device: torch.device, cfg: Config, pool: Optional[Sequence[Path]] = None,
) -> None:
    """Predict `val` with the run's best.pt (identity view) into run_dir/val_probs.csv.

    Ids are paths relative to the competition folder, so `comp evaluate` and out-of-fold ensembling
    can find the images again and align runs. `pool`: the labelled images training cached, whose
    cache then serves the val images (no second decode).
    """
    member = load_member(run_dir, device)
    probs, ok = predict_views(
        [member], [["identity"]], val.paths, device=device, batch_size=cfg.data.batch_size * 2,
        workers=cfg.data.workers, on_bad="skip", pool=pool,
    )
    keep = ok.nonzero().flatten().tolist()
    write_probs(
        run_dir / "val_probs.csv",
        [relative_id(val.paths[i], competition.root) for i in keep],
        probs[0][0][keep],
        member.task.columns(competition.classes),
        label=competition.task.label_texts(val, keep, competition.classes),
        unit=competition.task.unit_rows,
    )


def relative_id(path: Path, root: Path) -> str:
    """`path` relative to `root` as a POSIX string (absolute if outside it)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()
