"""Finding image files by the ids a CSV gives them: a relative path, a file name or a stem."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


class FileIndex:
    """Look up image files by their CSV id: a path relative to the image folder, a file name or a stem.

    A relative path ("dog/000.png", with or without the extension, optionally starting with the
    image folder's own name) matches exactly one file. A bare name or stem matches every file of
    that name in any subfolder; `lookup` returns them all, so a caller can refuse the ambiguity
    instead of picking one.
    """

    def __init__(self, paths: list[Path], root: Optional[Path] = None):
        self.paths = paths
        if root is None and paths:
            root = Path(os.path.commonpath([p.parent for p in paths]))
        self.root_parts = Path(root).parts if root is not None else ()
        self.by_rel: dict[str, Path] = {}
        self.by_name: dict[str, list[Path]] = {}
        for p in paths:
            rel = p.relative_to(root).as_posix() if root is not None else p.name
            self.by_rel.setdefault(rel, p)
            if p.suffix:
                self.by_rel.setdefault(rel[: -len(p.suffix)], p)
            for key in dict.fromkeys((p.name, p.stem)):
                self.by_name.setdefault(key, []).append(p)

    def lookup(self, key: str) -> list[Path]:
        """Every file `key` may mean: one for a relative path, possibly several for a bare name."""
        parts = [part for part in key.strip().replace("\\", "/").split("/") if part not in ("", ".")]
        if len(parts) == 1:
            return list(self.by_name.get(parts[0], []))
        for i in range(len(parts)):
            # The id may start with the image folder's own name ("train_images/0001.jpg").
            if i and tuple(parts[:i]) != self.root_parts[len(self.root_parts) - i:]:
                continue
            hit = self.by_rel.get("/".join(parts[i:]))
            if hit is not None:
                return [hit]
        return []  # a path that names no file never falls back to another folder's file of that name
