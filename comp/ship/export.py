"""`comp export`: a run as one self-contained model file, uint8 RGB images in, class probabilities out.

The exported graph takes images (N, 3, S, S) uint8 RGB at the run's size S, already resized and
cropped as comp's eval preprocessing does (resize the short side to S / crop_pct, centre crop S),
normalises them inside the graph, runs the model, or every fold of a k-fold run merged by the
run's `tta.merge` rule, applies the run's log-loss temperature to the merged prediction (with
`calibrate`), and returns probabilities (N, C). No TTA: one view, the identity. A multi-label run
returns per-tag sigmoid probabilities (its folds averaged), not a softmax; its thresholds travel in
the metadata (`thresholds`, one per line, in class order) for the caller to apply.

- ONNX (torch's dynamo exporter; needs the `export` extra: onnx, onnxruntime, onnxscript): input
  `images`, output `probs`, a dynamic batch dimension; the model's metadata holds `classes` (one
  class name per line), `image_size`, `crop_pct` and `comp_version`.
- TorchScript (`torch.jit.trace`): loads with `torch.jit.load` alone; the same facts travel as
  extra files `classes.txt`, `image_size`, `crop_pct` (`torch.jit.load(f, _extra_files=...)`).

After writing, the file is loaded back (onnxruntime / torch.jit) and compared with the PyTorch
ensemble on a batch of the run's own test images (random images when the data is not there);
the largest absolute difference of a probability is reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

import comp
from comp.tasks.calibration import run_temperature
from comp.engine.infer import Member, decode_loader, find_model_dirs, load_member
from comp.errors import Log, UserError

FORMATS = ("onnx", "torchscript")
MAX_DIFF = 1e-4  # an export that disagrees more than this with PyTorch is an error, not a file


class ExportedModel(nn.Module):
    """uint8 images (N, 3, S, S) -> probabilities (N, C): normalise, each model, the task's merge and temperature.

    As `comp.predict.combine.run_probabilities` with one view: the folds merged by `rule`, then the
    run's temperature T on the merged row, in the graph the task writes (`Task.export_head`).
    """

    def __init__(self, members: Sequence[Member], temperature: float = 1.0, rule: str = "mean"):
        super().__init__()
        self.task = members[0].task
        cfg = members[0].cfg.data
        self.models = nn.ModuleList(m.model for m in members)
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("inv_std", 1 / (torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1) * 255))
        self.register_buffer("inv_t", torch.tensor(1 / temperature, dtype=torch.float32))
        self.rule = rule

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) * self.inv_std
        return self.task.export_head([m(x) for m in self.models], self.inv_t, self.rule)


def export(run: Path, *, format: str, out: Path, calibrate: bool = True, log: Log = print) -> dict[str, Any]:
    """Export `run` (a run, a k-fold run or one fold) to `out` in `format`; returns what was checked.

    Returns:
        {"format", "out", "classes", "image_size", "models", "bytes", "max_abs_diff", "check_images"}.

    Raises:
        UserError: an unknown format, a missing export extra, a bad --out, or folds of different
            sizes or normalisations.
    """
    if format not in FORMATS:
        raise UserError(f"--format {format!r}: use {' or '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; pass a file name, e.g. {out / ('model.onnx' if format == 'onnx' else 'model.pt')}")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist; create it first")
    if format == "onnx":
        _require_onnx()
    cpu = torch.device("cpu")
    members = [load_member(d, cpu) for d in find_model_dirs(Path(run))]
    first = members[0]
    for m in members[1:]:
        if (m.size, m.crop_pct, m.cfg.data.mean, m.cfg.data.std) != (first.size, first.crop_pct, first.cfg.data.mean, first.cfg.data.std):
            raise UserError(f"{m.run_dir} has another image size or normalisation than {first.run_dir}; export one run at a time")
    task = first.task
    task.check_merge(first.cfg.tta.merge, "tta.merge")  # as comp predict refuses it, not silently another rule
    model = ExportedModel(members, run_temperature(Path(run)) if calibrate else 1.0, first.cfg.tta.merge).eval()
    for m in model.models:
        m.to(memory_format=torch.contiguous_format)
    images, source = _check_batch(first)
    with torch.inference_mode():
        reference = model(images)
    facts = {"classes": "\n".join(first.classes), "image_size": str(first.size), "crop_pct": str(first.crop_pct),
             "comp_version": comp.__version__}
    facts.update(task.export_facts(Path(run), first.cfg.metric, first.classes))
    if format == "onnx":
        got = _export_onnx(model, images, out, facts)
    else:
        got = _export_torchscript(model, images, out, facts)
    diff = float((got - reference).abs().max())
    result = {"format": format, "out": str(out), "classes": first.classes, "image_size": first.size, "models": len(members),
              "bytes": out.stat().st_size, "max_abs_diff": diff, "check_images": f"{len(images)} {source}"}
    log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {format}): {len(members)} model(s), uint8 RGB (N, 3, {first.size}, "
        f"{first.size}) in, {task.outputs_text(first.classes)} out")
    log(f"check on {len(images)} {source}: max |{format} - PyTorch| = {diff:.2e}")
    if not diff <= MAX_DIFF:
        out.unlink()
        raise UserError(f"the exported model disagrees with PyTorch by {diff:.2e} (> {MAX_DIFF:g}); the file was removed. "
                        "Try the other --format and report this")
    return result


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UserError(f"ONNX export needs the export extra ({e.name} is missing): pip install 'comp[export]'") from None


def _check_batch(member: Member, n: int = 8) -> tuple[torch.Tensor, str]:
    """uint8 (n, 3, S, S): the run's first test images as comp decodes them, else seeded noise."""
    from comp.data.competition import open_competition

    data = member.cfg.data.dir
    try:
        paths = (open_competition(Path(data), member.cfg.data.id_column, member.cfg.data.label_column, member.cfg.data.task).test_paths[:n]
                 if data else [])
    except UserError:
        paths = []
    if len(paths) >= 2:  # the dynamic batch dimension needs an example of more than one image
        batch = next(iter(decode_loader(paths, member.size, member.crop_pct, batch_size=n, workers=0)))[0]
        if len(batch) >= 2:
            return batch, "test images"
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, member.size, member.size), generator=g, dtype=torch.uint8), "random images"


def _export_onnx(model: nn.Module, images: torch.Tensor, out: Path, facts: dict[str, str]) -> torch.Tensor:
    import onnx
    import onnxruntime

    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        model, (images,), dynamo=True, input_names=["images"], output_names=["probs"], dynamic_shapes=({0: batch},),
        verbose=False,
    )
    proto = program.model_proto
    for key, value in facts.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["probs"], {"images": images.numpy()})[0])


def _export_torchscript(model: nn.Module, images: torch.Tensor, out: Path, facts: dict[str, str]) -> torch.Tensor:
    import warnings

    with warnings.catch_warnings():
        # PyTorch marks TorchScript deprecated (in favour of torch.export); it still loads everywhere libtorch runs.
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():
            traced = torch.jit.trace(model, (images,), check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={("classes.txt" if k == "classes" else k): v for k, v in facts.items()})
        loaded = torch.jit.load(str(out), map_location="cpu")
        with torch.no_grad():
            return loaded(images)
