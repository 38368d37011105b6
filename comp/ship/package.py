"""`comp package`: a folder that predicts like `comp predict` on a machine without comp or a network.

Kaggle code competitions run a notebook with the internet off, on Kaggle's own image (torch,
torchvision, timm, albumentations, pandas, scikit-learn, pydantic, PyYAML; not comp). Upload the
folder as a Kaggle dataset, attach it to the notebook, and run

    python /kaggle/input/<bundle>/inference.py --data /kaggle/input/<competition> --out /kaggle/working/submission.csv

The folder holds:

- `models/<run>/[fold_i/]model.safetensors`: each model's weights (fp16 with `half`), with its
  classes and resolved config in the file's metadata; beside it `config.yaml`, `summary.json` and
  `calibration.json` as the run had them, and a k-fold run's own `config.yaml`, `cv.json` and
  `calibration.json` (the log-loss temperature of the run, applied to its merged folds) in
  `models/<run>/`;
- `bundle.json`: the ensemble settings (runs and their weights, TTA views, merge rule, submission
  shape, calibration, train.csv columns) that `comp predict` was given;
- `comp/`: comp's own source, which `inference.py` imports in place of any installed comp;
- `inference.py` and `README.md`.

`inference.py` calls the same `comp.predict.predict` with those settings, so its CSV is the one
`comp predict RUN... --data DIR` writes with the same options (byte for byte on the same machine
and device). It writes only its `--out` file: the test images are decoded in memory (no decode
cache on disk) and no probability or metadata files are written beside it.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

import comp
from comp.config import config_from_dict
from comp.engine.checkpoint import load_checkpoint
from comp.engine.infer import find_model_dirs
from comp.engine.rundir import WEIGHTS_FILE
from comp.errors import Log, UserError
from comp.files import read_json, write_json
from comp.predict import check_options
from comp.tasks import get_task, recorded_settings

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = 1


def package(
    runs: Sequence[Path],
    *,
    out: Path,
    tta: bool = True,
    views: Optional[Sequence[str]] = None,
    weights: Optional[Sequence[float]] = None,
    merge_rule: Optional[str] = None,
    shape: str = "auto",
    calibrate: bool = True,
    half: bool = False,
    data: Optional[Path] = None,
    log: Log = print,
) -> dict[str, Any]:
    """Write the inference bundle of `runs` (run or fold directories) to the new folder `out`.

    The options are those of `comp.predict.predict` and are stored for `inference.py`. With `half`,
    weights are stored as fp16 (half the size) and loaded back to fp32; the agreement with the
    fp32 ensemble is measured on up to 256 test images of `data` (default: the runs' data folder)
    and reported, since fp16 rounding can flip a close call.

    Returns:
        The bundle.json content plus "bytes" (the bundle's size) and, with `half`, "half_agreement".
    """
    if not runs:
        raise UserError("no runs given; pass one or more run directories, e.g. comp package runs/demo-5f --out bundle")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not an empty folder; give a new folder for the bundle")
    if any(Path(r).suffix == ".csv" for r in runs):
        raise UserError("a bundle needs the models; pass run directories, not probability tables")
    weights, views = check_options(len(runs), weights, tta, views, merge_rule, shape)
    members, checkpoints, classes, first_cfg = _trained_runs(runs)
    task = get_task(first_cfg.data.task, first_cfg.data)
    task.check_merge(merge_rule or first_cfg.tta.merge)
    out_shape = _check_shape(first_cfg, classes, shape, data)
    # fixed now: the bundle carries no held-out predictions to fit them on
    thresholds, source = task.prediction_post(list(members), list(weights) if weights is not None else [1.0] * len(runs),
                                              first_cfg.metric, classes, out_shape)
    if source:
        log(f"{task.cut_name}: {source}")

    names = _run_names(list(members))
    out.mkdir(parents=True, exist_ok=True)
    _write_models(out, members, names, checkpoints, half)
    shutil.copytree(Path(comp.__file__).parent, out / "comp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    settings = {
        "format": BUNDLE_FORMAT,
        "comp_version": comp.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": names,
        "source_runs": [str(Path(r).resolve()) for r in members],
        "weights": list(weights) if weights is not None else None,
        "tta": tta,
        "views": views,
        "merge": merge_rule,
        "shape": shape,
        "calibrate": calibrate,
        "id_column": first_cfg.data.id_column,
        "label_column": first_cfg.data.label_column,
        "train_images": first_cfg.data.train_images,
        "test_images": first_cfg.data.test_images,
        "task": first_cfg.data.task,
        "thresholds": thresholds,  # where the task cuts (multi-label): per tag, applied to the merged probabilities
        "at_least_one_tag": first_cfg.data.at_least_one_tag,
        "classes": classes,
        "half": half,
    }
    write_json(settings, out / BUNDLE_FILE)
    (out / "inference.py").write_text(INFERENCE_PY)
    (out / "README.md").write_text(_readme(settings, out.name))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    result = {**settings, "bytes": size}
    log(f"wrote {out}: {sum(len(ds) for ds in members.values())} models, {size / 2**20:.1f} MiB"
        f"{' (fp16 weights)' if half else ''}; run it with: python {out / 'inference.py'} --data COMPETITION_DIR --out submission.csv")
    if half:
        result["half_agreement"] = _half_agreement(list(members), out, settings, data or first_cfg.data.dir, log)
    return result


def _trained_runs(runs: Sequence[Path]) -> tuple[dict[Path, list[Path]], dict[Path, dict], list[str], Any]:
    """Each run's model folders (folds), their best.pt checkpoints, the classes they share and the
    first one's config; refused when a folder has no best.pt or the runs disagree on the classes."""
    members = {Path(r): find_model_dirs(Path(r)) for r in runs}
    for d in (d for ds in members.values() for d in ds):
        if not (d / "best.pt").is_file():
            raise UserError(f"{d} has no best.pt (a bundle's model?); package the trained runs themselves")
    checkpoints = {d: load_checkpoint(d / "best.pt") for ds in members.values() for d in ds}
    classes = None
    for d, ckpt in checkpoints.items():
        if classes is not None and list(ckpt["classes"]) != classes:
            raise UserError(f"{d} was trained on other classes than the rest; package runs of one competition")
        classes = list(ckpt["classes"])
    first, ckpt = next(iter(checkpoints.items()))
    return members, checkpoints, classes, config_from_dict(ckpt["config"], str(first / "best.pt"))


def _write_models(out: Path, members: dict[Path, list[Path]], names: list[str], checkpoints: dict[Path, dict], half: bool) -> None:
    """models/<run>/ (a k-fold run: its config, cv.json and temperature, and a folder per fold; a run
    of seeds: its config, seeds.json and temperature, and its seeds' folders, each as a run or k-fold run)."""
    for (run, dirs), name in zip(members.items(), names):
        dest = out / "models" / name
        if dirs != [run]:
            for d in {run, *(d.parent for d in dirs if d.parent != run)}:  # the run, and a run of seeds' k-fold seeds
                (dest / d.relative_to(run)).mkdir(parents=True, exist_ok=True)
                for f in ("config.yaml", "cv.json", "seeds.json", "calibration.json"):  # the run's own temperature, fitted on its held-out table
                    if (d / f).is_file():
                        shutil.copy2(d / f, dest / d.relative_to(run) / f)
        for d in dirs:
            _write_member(d, checkpoints[d], dest / d.relative_to(run), half)


def _check_shape(cfg, classes: list[str], shape: str, data: Optional[Path]):
    """The submission shape `comp predict` will write on the runs' competition, refused now where
    predict would refuse it; None when the competition is not on this machine (inference.py checks
    it where it runs)."""
    from comp.data.competition import open_competition

    folder = Path(data or cfg.data.dir or "")
    if not str(folder) or not folder.is_dir():
        return None
    competition = open_competition(folder, cfg.data.id_column, cfg.data.label_column, cfg.data.task, settings=cfg.data)
    return competition.task.resolve_shape(competition.submission, classes, cfg.metric, cfg.data.submission if shape == "auto" else shape)


def _run_names(runs: list[Path]) -> list[str]:
    """A distinct, filesystem-safe folder name per run, in order: its own name, numbered when two share it."""
    names = []
    for i, run in enumerate(runs):
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(run).resolve().name) or "run"
        names.append(base if base not in names else f"{base}-{i}")
    return names


def _write_member(src: Path, ckpt: dict, dest: Path, half: bool) -> None:
    """One model: weights as safetensors (classes and config in its metadata) and the run's small files."""
    import yaml
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    meta = {"classes": json.dumps(list(ckpt["classes"])), "config": json.dumps(ckpt["config"]), "epoch": str(ckpt.get("epoch", "")),
            "dtype": "float16" if half else "as trained"}
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in ckpt["model"].items()}
    save_file(tensors, str(dest / WEIGHTS_FILE), metadata=meta)
    (dest / "config.yaml").write_text(yaml.safe_dump(ckpt["config"], sort_keys=False))
    for f in ("summary.json", "calibration.json"):
        if (src / f).is_file():
            shutil.copy2(src / f, dest / f)


def bundle_runs(root: Path) -> tuple[list[Path], dict[str, Any]]:
    """The run folders of the bundle at `root` and its settings (bundle.json)."""
    settings = read_json(Path(root) / BUNDLE_FILE)
    if not settings or settings.get("format") != BUNDLE_FORMAT:
        raise UserError(f"{root} is not a comp bundle (no {BUNDLE_FILE} of format {BUNDLE_FORMAT}); build one with comp package")
    return [Path(root) / "models" / name for name in settings["runs"]], settings


def predict_bundle(
    root: Path, data: Path, out: Path, *, device: str = "auto", batch_size: int = 64, workers: int = 2, log: Log = print
) -> dict[str, Any]:
    """What `inference.py` runs: `comp.predict.predict` with the bundle's runs and settings.

    Writes only `out`: no decode cache on disk, no probability or metadata files beside it.
    """
    from comp.predict import predict

    runs, s = bundle_runs(root)
    return predict(
        runs, data=Path(data), tta=s["tta"], views=s["views"], out=Path(out), weights=s["weights"], merge_rule=s["merge"],
        device=device, batch_size=batch_size, workers=workers, id_column=s["id_column"], label_column=s["label_column"],
        shape=s["shape"], calibrate=s["calibrate"], sidecars=False, disk_cache=False, thresholds=s.get("thresholds"), log=log,
    )


def _half_agreement(runs: list[Path], bundle: Path, settings: dict, data: Optional[str], log: Log) -> Optional[dict[str, float]]:
    """The bundle's merged prediction with fp16 weights against the same ensemble in fp32, on up to 256 test images.

    Both are combined as `comp predict` combines them with the bundle's settings (views, folds,
    temperatures, merge rule, weights), so the agreement is that of the labels the bundle writes.
    Returns the share of images whose label is unchanged and the largest probability change.
    """
    from comp.tasks.calibration import run_temperature
    from comp.data.competition import open_competition
    from comp.device import resolve_device
    from comp.engine.infer import load_member, predict_views
    from comp.predict.ensemble import merge
    from comp.predict.combine import combine_members, member_views

    if not data or not Path(data).is_dir():
        log("fp16: no competition folder to measure the agreement on; pass --data DIR")
        return None
    competition = open_competition(Path(data), settings["id_column"], settings["label_column"], settings.get("task", "auto"),
                                   settings=recorded_settings(settings))
    paths = competition.test_paths[:256]
    device = resolve_device("auto")

    def final(run_dirs: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        members = {r: [load_member(d, device) for d in find_model_dirs(r)] for r in run_dirs}
        flat = [m for ms in members.values() for m in ms]
        probs, ok = predict_views(flat, [member_views(m, settings["tta"], settings["views"]) for m in flat], paths,
                                  device=device, on_bad="skip")
        rule = settings["merge"] or flat[0].cfg.tta.merge
        temperatures = {r: run_temperature(r) if settings["calibrate"] else 1.0 for r in run_dirs}
        per_run = combine_members(members, probs, temperatures, rule)
        return merge(torch.stack([per_run[r] for r in run_dirs]), settings["weights"], rule), ok

    p_full, ok = final(runs)
    p_half, _ = final(bundle_runs(bundle)[0])
    task = competition.task  # what the bundle writes: labels, or tag sets at its thresholds
    t = settings.get("thresholds")
    agree = float(task.same_decisions(p_full[ok], p_half[ok], t).double().mean())
    diff = float((p_full[ok] - p_half[ok]).abs().max())
    n = int(ok.sum())
    log(f"fp16 weights: on {n} test images the bundle's merged prediction keeps the fp32 {task.decision} on {100 * agree:.2f}% "
        f"of them, max |probability difference| {diff:.2e}")
    return {"images": n, "label_agreement": agree, "max_abs_prob_diff": diff}


def _readme(settings: dict, name: str) -> str:
    return README_TEMPLATE.format(name=name, runs=", ".join(settings["runs"]), classes=len(settings["classes"]),
                                  half="fp16" if settings["half"] else "fp32")


README_TEMPLATE = """# comp inference bundle `{name}`

Runs: {runs}. {classes} classes, {half} weights. Built by `comp package`; predicts exactly what
`comp predict` predicts for these runs and options, with no `comp` installed and no network.

## On Kaggle (code competition, internet off)

1. Upload this folder as a Kaggle dataset (Datasets -> New dataset -> upload the folder), say
   `my-bundle`.
2. In the competition's notebook: Add data -> your dataset, so it appears under
   `/kaggle/input/my-bundle/`. The competition's files are under `/kaggle/input/<competition>/`.
3. One cell:

       !python /kaggle/input/my-bundle/inference.py --data /kaggle/input/<competition> --out /kaggle/working/submission.csv

   It uses the GPU when the notebook has one. Only `--out` is written.

It needs the libraries of Kaggle's image: torch, torchvision, timm, albumentations, pandas,
scikit-learn, pydantic, PyYAML, safetensors, pillow, numpy. `python inference.py --help` lists the
options.

## Elsewhere

    python inference.py --data COMPETITION_DIR --out submission.csv
"""


INFERENCE_PY = '''"""Predict a competition's test set with the models of this bundle (built by `comp package`).

On Kaggle: the bundle is a dataset under /kaggle/input/<bundle>/, the competition under
/kaggle/input/<competition>/, and the notebook's output goes to /kaggle/working/:

    python /kaggle/input/<bundle>/inference.py --data /kaggle/input/<competition> --out /kaggle/working/submission.csv

Runs with the internet off and without comp installed: the comp source in this folder is
imported in its place. Writes only the --out file.
"""

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    default_out = "/kaggle/working/submission.csv" if Path("/kaggle/working").is_dir() else "submission.csv"
    p = argparse.ArgumentParser(
        description="Predict the test images of a competition folder with this bundle's ensemble.",
        epilog="Kaggle: --data /kaggle/input/<competition> (the folder with test images and sample_submission.csv); "
        "the default --out there is /kaggle/working/submission.csv, the file a code competition scores.",
    )
    p.add_argument("--data", required=True, help="competition folder, e.g. /kaggle/input/<competition>")
    p.add_argument("--out", default=default_out, help=f"submission file to write [default: {default_out}]")
    p.add_argument("--device", default="auto", help="auto (GPU when present) | cpu | cuda | cuda:1")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="image decoding processes")
    a = p.parse_args()
    sys.dont_write_bytecode = True  # no __pycache__ in the bundle: /kaggle/input is read-only, and nothing is written but --out
    sys.path.insert(0, str(HERE))  # this bundle's comp, before any installed one
    from comp.errors import UserError
    from comp.ship.package import predict_bundle

    try:
        predict_bundle(HERE, Path(a.data), Path(a.out), device=a.device, batch_size=a.batch_size, workers=a.workers)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
'''
