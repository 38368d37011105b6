"""Photo-sized competitions: comp's decode-once cache against the ImageFolder loader, side by side.

    .venv/bin/python benchmarks/photo_pipeline.py DATA_DIR [--size 224] [--epochs 3] [--images 2000] [--train]

DATA_DIR is a folders-layout competition; when it has no train/ folder, one is generated there:
`--images` JPEGs of 400-800 px (each side drawn independently, quality 90): Fashion-MNIST items
(or shapes when the data is not installed) upscaled and tinted on a noisy gradient background.

Measured in one run, without a model (on 2 CPU cores any model at 224 px is slower than any
loader, so only the loader shows what a GPU would wait on), the normalised float batches
(64, 3, S, S) a training loop would receive, with RandomResizedCrop(S) + horizontal flip:

- comp, cold: an empty cache folder, so the one-off decode (draft-mode JPEG decoding into the
  memory-mapped squares, threads = 2) is included; `--epochs` epochs, overall img/s;
- comp, warm: the cache exists (a later run, another fold, the second epoch on): epochs only;
- reference: torchvision ImageFolder + PIL RandomResizedCrop(S) + flip + ToTensor + Normalize,
  DataLoader with 2 workers, batch 64, shuffled.

Also printed: comp's peak RSS and how much of it is the file-backed cache pages (reclaimable)
against anonymous memory. `--train` also times `--epochs` epochs of real training with a small
model (mobilenetv3_small_050, from scratch) three ways: comp with the cache, comp from the files
(data.cache=off), and a hand-written loop over the reference loader.

The last line is `comp_img_s=<cold, overall> comp_warm_img_s=<warm> reference_img_s=<reference>`.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def build_photos(root: Path, n: int = 2000, classes: int = 10, seed: int = 0, test: int = 0) -> Path:
    """Write a folders-layout photo competition (train/<class>/*.jpg, test/*.jpg); skipped when complete."""
    marker = root / ".complete"
    if marker.is_file():
        return root
    rng = np.random.default_rng(seed)
    try:
        from comp.data.sources import FASHION_CLASSES, fashion_mnist

        x, y = fashion_mnist("train")
        names = FASHION_CLASSES[:classes]
        items = {c: x[y == c] for c in range(classes)}
    except Exception:  # no Fashion-MNIST: coloured shapes (there are only len(SHAPES) of them)
        from comp.data.synthetic import SHAPES, draw_shape

        classes = min(classes, len(SHAPES))
        names = list(SHAPES[:classes])
        items = {c: np.stack([np.asarray(draw_shape(SHAPES[c], 28, rng).convert("L")) for _ in range(200)]) for c in range(classes)}
    answers = []
    for k in range(n + test):
        c = k % classes
        item = items[c][rng.integers(len(items[c]))]
        w, h = (int(v) for v in rng.integers(400, 801, 2))
        im = _photo(item, w, h, rng)
        if k < n:
            folder = root / "train" / names[c]
            folder.mkdir(parents=True, exist_ok=True)
            im.save(folder / f"{k:05d}.jpg", quality=90)
        else:
            (root / "test").mkdir(parents=True, exist_ok=True)
            im.save(root / "test" / f"t{k:05d}.jpg", quality=90)
            answers.append((f"t{k:05d}", names[c]))
    if answers:
        import pandas as pd

        pd.DataFrame(answers, columns=["image_name", "label"]).to_csv(root.parent / f"{root.name}-answers.csv", index=False)
        pd.DataFrame({"image_name": [a for a, _ in answers], "pred_label": names[0]}).to_csv(root / "sample_submission.csv", index=False)
    marker.write_text("ok")
    return root


def _photo(item: np.ndarray, w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """One w x h RGB photo: a tinted, upscaled 28 px item on a noisy two-colour gradient."""
    a, b = rng.integers(0, 160, 3), rng.integers(0, 160, 3)
    t = np.linspace(0, 1, w)[None, :, None]
    bg = (a * (1 - t) + b * t).repeat(h, 0)
    bg = bg + rng.normal(0, 12, (h, w, 3))
    side = int(min(w, h) * rng.uniform(0.55, 0.85))
    obj = np.asarray(Image.fromarray(item).resize((side, side), Image.BICUBIC), dtype=np.float64)[:, :, None] / 255
    tint = rng.integers(140, 256, 3)
    x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
    patch = bg[y0 : y0 + side, x0 : x0 + side]
    bg[y0 : y0 + side, x0 : x0 + side] = patch * (1 - obj) + tint * obj
    return Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))


def comp_epochs(data: Path, cache_dir: Path, size: int, epochs: int) -> tuple[float, float, float]:
    """(seconds to build or open the cache, seconds of the epochs, images per epoch) through make_loaders."""
    from comp.config import Config
    from comp.data.competition import Split, open_competition
    from comp.data.loaders import make_loaders

    cfg = Config.model_validate({
        "data": {"cache": "auto", "cache_dir": str(cache_dir), "batch_size": 64, "workers": 2},
        "aug": {"scale": [0.08, 1.0], "hflip": 0.5, "color_jitter": None, "rotate": 0, "translate": 0},
    })
    comp = open_competition(data)
    dcfg = {"image_size": size, "crop_pct": 0.875, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    t0 = time.perf_counter()
    train, _, _ = make_loaders(cfg, dcfg, comp.train, Split([], []), torch.device("cpu"))
    assert "decode-once cache" in train.describe, train.describe
    t1 = time.perf_counter()
    seen = 0
    for epoch in range(epochs):
        train.set_epoch(epoch)
        for x, y, _ in train:
            seen += len(y)
    return t1 - t0, time.perf_counter() - t1, seen / epochs


def reference_epochs(data: Path, size: int, epochs: int) -> tuple[float, float]:
    """(seconds, images per epoch) of the ImageFolder + PIL loader with 2 workers."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    loader = DataLoader(ImageFolder(str(data / "train"), transform=tf), batch_size=64, shuffle=True, num_workers=2, drop_last=True)
    t0, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for x, y in loader:
            seen += len(y)
    return time.perf_counter() - t0, seen / epochs


def _memory() -> str:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    anon, files = (int(status.get(k, "0 kB").split()[0]) / 1024 for k in ("RssAnon", "RssFile"))
    return f"comp peak RSS {peak:.0f} MB (now: {anon:.0f} MB anonymous, {files:.0f} MB file-backed, i.e. cache pages the OS may drop)"


def train_three_ways(data: Path, size: int, epochs: int, out: Path) -> list[str]:
    """`epochs` epochs of a small model: comp with the cache, comp from files, a hand-written loop."""
    lines = []
    config = out / "small.yaml"
    config.write_text(
        f"data: {{image_size: {size}, crop_pct: 0.875, batch_size: 64, workers: 2, val_fraction: 0.05}}\n"
        "model: {name: mobilenetv3_small_050, pretrained: none, head: V0}\n"
        "optim: {name: adamw, lr: 0.002}\n"
        f"train: {{epochs: {epochs}, label_smoothing: 0.1, seed: 0}}\n"
        "aug: {scale: [0.08, 1.0], hflip: 0.5, color_jitter: null, rotate: 0, translate: 0}\n"
    )
    for name, cache in (("comp, cache", "auto"), ("comp, files", "off")):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "comp", "train", str(config), "--data", str(data), "--out", str(out / cache),
                        "--set", f"data.cache={cache}", "--set", f"data.cache_dir={out / 'train-cache'}"], check=True)
        lines.append(f"train {name}: {time.perf_counter() - t0:.0f} s for {epochs} epochs (incl. start-up and validation)")
    lines.append(f"train hand-written loop: {_reference_training(data, size, epochs):.0f} s for {epochs} epochs")
    return lines


def _reference_training(data: Path, size: int, epochs: int) -> float:
    import timm
    import torchvision.transforms as T
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ds = ImageFolder(str(data / "train"), transform=tf)
    loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=2, drop_last=True)
    model = timm.create_model("mobilenetv3_small_050", num_classes=len(ds.classes))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--train", action="store_true", help="also time real training with a small model three ways")
    a = ap.parse_args()
    torch.set_num_threads(2)
    from comp.device import tune_cpu_allocator

    tune_cpu_allocator()  # as comp train does
    if not (a.data / "train").is_dir():
        t = time.perf_counter()
        build_photos(a.data, a.images)
        print(f"generated {a.images} JPEGs of 400-800 px in {a.data} ({time.perf_counter() - t:.0f} s)", flush=True)
    n = sum(1 for _ in (a.data / "train").rglob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        build_s, cold_s, per_epoch = comp_epochs(a.data, cache, a.size, a.epochs)
        cold = a.epochs * per_epoch / (build_s + cold_s)
        print(f"comp cold: decode {build_s:.1f} s ({n / build_s:.0f} img/s) + {a.epochs} epochs {cold_s:.1f} s -> {cold:.0f} img/s overall", flush=True)
        open_s, warm_s, _ = comp_epochs(a.data, cache, a.size, a.epochs)
        warm = a.epochs * per_epoch / (open_s + warm_s)
        print(f"comp warm: open {open_s:.2f} s + {a.epochs} epochs {warm_s:.1f} s -> {warm:.0f} img/s", flush=True)
        print(_memory(), flush=True)
        size_mb = sum(p.stat().st_size for p in cache.iterdir()) / 2**20
        print(f"cache on disk: {size_mb:.0f} MB for {n} images", flush=True)
    ref_s, ref_per_epoch = reference_epochs(a.data, a.size, a.epochs)
    ref = a.epochs * ref_per_epoch / ref_s
    print(f"reference: {a.epochs} epochs {ref_s:.1f} s -> {ref:.0f} img/s (ImageFolder + PIL RandomResizedCrop, 2 workers)", flush=True)
    print(f"comp / reference: cold {cold / ref:.2f}x, warm {warm / ref:.2f}x", flush=True)
    if a.train:
        with tempfile.TemporaryDirectory() as tmp:
            for line in train_three_ways(a.data, a.size, a.epochs, Path(tmp)):
                print(line, flush=True)
    print(f"comp_img_s={cold:.0f} comp_warm_img_s={warm:.0f} reference_img_s={ref:.0f}")


if __name__ == "__main__":
    main()
