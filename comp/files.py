"""Files every layer writes: atomic checkpoints and caches, JSON records.

A leaf module (it imports nothing of comp but the errors), so the data layer's cache and the
engine's checkpoints share one atomic writer without an import running back up the flow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch

from comp.errors import UserError


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """`torch.save(obj, path)` via temp file + fsync + rename. Disk errors become a UserError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        again = "resume with --resume" if (path.parent / "last.pt").is_file() else "run the command again"
        raise UserError(f"could not write checkpoint {path} ({e}); free disk space and {again}") from e


def write_json(obj: dict[str, Any], path: Path) -> None:
    """`obj` as indented JSON (non-JSON values as strings)."""
    Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: Path) -> Optional[dict[str, Any]]:
    """A JSON file's content, or None when it is missing or damaged."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
