"""Shared fixtures: tiny generated competitions and configs written to tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from comp.data.synthetic import make_competition

torch.set_num_threads(2)

# A tiny scratch model: fast enough for several training runs per test session.
TINY = {
    "data": {"image_size": 32, "batch_size": 16, "workers": 0},
    "model": {"name": "test_resnet", "pretrained": "none", "head": "V0"},
    "optim": {"lr": 0.01},
    "train": {"epochs": 1, "seed": 0},
}


def write_config(path: Path, base: dict | None = None, **sections) -> Path:
    """Write a YAML config: `base` (default TINY) with `sections` merged in per section."""
    raw = {k: dict(v) for k, v in (TINY if base is None else base).items()}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(raw))
    return path


def one_line_error(result, *fragments) -> None:
    """Assert a CliRunner result is a user error: exit 2, one `error: ...` line, no traceback, with `fragments`."""
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "Traceback" not in result.output, err
    for f in fragments:
        assert f in err, err


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """The tensor cache of the whole session lives in a temp folder, never in ~/.cache/comp.

    Session-scoped so that it is in place before module-scoped fixtures train anything.
    """
    old = os.environ.get("COMP_CACHE_DIR")
    os.environ["COMP_CACHE_DIR"] = str(tmp_path_factory.mktemp("comp-cache"))
    yield
    if old is None:
        os.environ.pop("COMP_CACHE_DIR", None)
    else:
        os.environ["COMP_CACHE_DIR"] = old


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "tiny.yaml")


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    """Folders layout: 3 classes x 16 train images, 4 test images per class, sample submission."""
    return make_competition(tmp_path / "shapes", classes=3, per_class=16, test_per_class=4, size=32)


@pytest.fixture
def shapes_csv(tmp_path: Path) -> Path:
    """CSV layout: train.csv (image_id stems, label) + train/ + test/ + sample_submission.csv."""
    return make_competition(tmp_path / "shapes_csv", classes=3, per_class=16, test_per_class=4, size=32, layout="csv")
