"""`comp data check`: audit a competition folder before training on it.

Reports the layout found, classes with image counts per split, the test set and submission format,
images that do not decode (fully decoded, not just opened), odd images (tiny, extreme aspect ratio,
unusual modes that get converted), files that are not images, and byte-identical images shared by
train and test (leakage) or repeated across classes (label noise).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from PIL import Image

from comp.data.competition import Competition, open_competition
from comp.data.images import DECODE_ERRORS, OS_JUNK, is_image_file, load_rgb

ODD_MIN_SIDE = 16
ODD_ASPECT = 5.0
IMBALANCED = 5.0  # largest : smallest class at which data check suggests the imbalance switches


@dataclass
class ImageInfo:
    path: Path
    digest: str = ""
    size: tuple[int, int] = (0, 0)
    mode: str = ""
    error: Optional[str] = None


@dataclass
class AuditReport:
    competition: Competition
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    odd: list[tuple[str, str]] = field(default_factory=list)
    non_images: list[str] = field(default_factory=list)
    train_test_duplicates: list[tuple[str, str]] = field(default_factory=list)
    cross_class_duplicates: list[tuple[str, str]] = field(default_factory=list)

    @property
    def imbalance_ratio(self) -> float:
        """Labelled images (train + val) of the largest class over the smallest (inf if one has none)."""
        comp = self.competition
        counts = comp.class_counts()
        if comp.val:
            counts = {c: n + comp.class_counts(comp.val)[c] for c, n in counts.items()}
        low, high = min(counts.values()), max(counts.values())
        return high / low if low else float("inf")

    @property
    def ok(self) -> bool:
        """No unreadable test image and nothing that blocks prediction."""
        comp = self.competition
        test = {str(p) for p in comp.test_paths}
        return comp.test_problem is None and not any(p in test for p, _ in self.unreadable)


def inspect_image(path: Path) -> ImageInfo:
    """Hash the bytes and fully decode one image (the check training itself would do)."""
    info = ImageInfo(path)
    try:
        data = path.read_bytes()
        info.digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if not data:
            info.error = "empty file"
            return info
        with Image.open(path) as im:
            info.size, info.mode = im.size, im.mode
        load_rgb(path)
    except DECODE_ERRORS as e:
        info.error = f"{type(e).__name__}: {e}".strip()
    return info


def audit_competition(root: Path | str, id_column: Optional[str] = None, label_column: Optional[str] = None, threads: int = 4,
                      task: str = "auto", train_images: Optional[str] = None, test_images: Optional[str] = None) -> AuditReport:
    """Open the competition at `root` (multi-label too) and inspect every image in it (decoding runs in threads).
    `train_images` / `test_images`: the image folders, as data.train_images / data.test_images."""
    comp = open_competition(root, id_column, label_column, task,
                            settings=SimpleNamespace(train_images=train_images, test_images=test_images))
    report = AuditReport(comp)
    splits = {"train": comp.train.paths, "val": comp.val.paths if comp.val else [], "test": comp.test_paths}
    # what "the same label" means: the label text, a class or a whole tag set (the task's)
    labels = {}
    for split in (comp.train, comp.val) if comp.val else (comp.train,):
        labels.update(zip(split.paths, comp.task.label_texts(split, range(len(split)), comp.classes)))
    paths = sorted({p for ps in splits.values() for p in ps})
    with ThreadPoolExecutor(threads) as pool:  # PIL releases the GIL while decoding
        infos = dict(zip(paths, pool.map(inspect_image, paths)))
    by_digest: dict[str, list[Path]] = defaultdict(list)
    for p, info in infos.items():
        if info.error:
            report.unreadable.append((str(p), info.error))
            continue
        by_digest[info.digest].append(p)
        w, h = info.size
        if min(w, h) < ODD_MIN_SIDE:
            report.odd.append((str(p), f"tiny ({w}x{h})"))
        elif max(w, h) / max(1, min(w, h)) > ODD_ASPECT:
            report.odd.append((str(p), f"extreme aspect ratio ({w}x{h})"))
        if info.mode not in ("RGB", "L"):
            report.odd.append((str(p), f"mode {info.mode} (converted to RGB)"))
    test = set(comp.test_paths)
    for group in by_digest.values():
        if len(group) < 2:
            continue
        train_side = [p for p in group if p not in test]
        test_side = [p for p in group if p in test]
        if train_side and test_side:
            report.train_test_duplicates.append((str(train_side[0]), str(test_side[0])))
        classes = {labels[p] for p in train_side if p in labels}
        if len(classes) > 1:
            report.cross_class_duplicates.append((str(train_side[0]), str(train_side[1])))
    report.non_images = sorted(
        str(p) for p in Path(root).rglob("*")
        if p.is_file() and not is_image_file(p) and p.suffix.lower() != ".csv" and p.name.lower() not in OS_JUNK
        and p.name != "README.md"
    )
    return report


def format_report(report: AuditReport, limit: int = 10) -> str:
    """Human-readable text of an `AuditReport`."""
    comp = report.competition
    lines = [f"layout: {comp.layout}  ({comp.root})"]
    if comp.id_column is not None:  # which train.csv columns were read, so a wrong pick shows at once
        lines.append(f"train.csv columns: id {comp.id_column!r}, label {comp.label_column!r}")
    lines += comp.notes  # which image folders were chosen, and why
    lines += comp.task.audit_lines(comp, limit)
    if comp.task.counted:
        val_counts = comp.class_counts(comp.val) if comp.val else {}
        width = max(len(c) for c in comp.classes)
        for name, n in comp.class_counts().items():
            extra = f"  val {val_counts.get(name, 0)}" if comp.val else ""
            share = comp.task.count_note(n, len(comp.train))
            lines.append(f"  {name:<{width}}  train {n}{extra}{share}")
        lines.append(_imbalance_line(report.imbalance_ratio, comp.task.imbalance_fix()))
    sub = comp.submission
    lines.append(f"train images: {len(comp.train)}" + (f", val images: {len(comp.val)}" if comp.val else " (no val split: a stratified hold-out is used)"))
    lines.append(
        f"test images: {len(comp.test_paths)}; submission columns {sub.columns}, ids as file {sub.id_style}"
        + (f" (from {sub.sample.name})" if sub.sample else
           " (sample_submission.csv cannot be used: see PROBLEM)" if (comp.root / "sample_submission.csv").is_file() and comp.test_problem
           else " (no sample_submission.csv: NYCU format)")
    )
    if comp.test_problem:
        lines.append(f"PROBLEM: {comp.test_problem}")
    sections = [
        ("skipped while indexing", comp.skipped),
        ("unreadable images (skipped in training; an error in test)", report.unreadable),
        ("odd images", report.odd),
        ("train/test identical files", report.train_test_duplicates),
        ("identical files with different labels", report.cross_class_duplicates),
        ("files that are not images", [(p, "") for p in report.non_images]),
    ]
    for title, items in sections:
        if not items:
            continue
        lines.append(f"{title}: {len(items)}")
        for a, b in items[:limit]:
            lines.append(f"  {a}  {b}".rstrip())
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more")
    lines.append("ok" if report.ok else "NOT READY: fix the problems above before predicting")
    return "\n".join(lines)


def _imbalance_line(ratio: float, fix: str) -> str:
    """The imbalance ratio, with the switches that address it (`fix`, the task's) when it is large."""
    if ratio < IMBALANCED:
        return f"imbalance: largest / smallest class {ratio:.1f}:1"
    shown = "a class has no labelled images" if ratio == float("inf") else f"largest / smallest class {ratio:.1f}:1"
    return f"imbalance: {shown}; {fix}, and comp evaluate --report to see the per-class recall"
