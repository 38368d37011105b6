"""`comp distill` as a plain function: one student learns the teachers' merged predictions beside the labels.

The student is an ordinary run of its config (`comp predict`, `comp package` and `comp export` use
it like any other); `distill.from` names the teachers, and the run's summary records their score
(`teachers.teacher_score`) beside its own. How the targets are made: `comp.teach.plan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from comp.config import load_config
from comp.errors import Log, UserError
from comp.train import train


def distill(
    teachers: Sequence[Path],
    student: Path,
    *,
    out: Optional[Path] = None,
    data: Optional[Path] = None,
    epochs: Optional[int] = None,
    alpha: Optional[float] = None,
    temperature: Optional[float] = None,
    test: Optional[bool] = None,
    resume: bool = False,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    log: Log = print,
) -> dict[str, Any]:
    """Train the `student` config on the competition of the `teachers` with their merged predictions as soft targets.

    Args:
        teachers: teacher run directories (k-fold runs: every fold) or `*_probs.csv` tables.
        student: the student's YAML config.
        data: the competition folder (default: the student config's data.dir, else the first teacher's).
        alpha, temperature, test: set `distill.alpha`, `distill.temperature`, `distill.test`.

    Returns:
        The student's summary (as `comp.train.train`).
    """
    if not teachers:
        raise UserError("comp distill needs at least one teacher run, e.g. comp distill runs/big-5f --student configs/demo.yaml --out runs/small")
    sets: list = list(overrides)
    sets.append(("distill.from", [str(Path(t)) for t in teachers]))
    for key, value in (("distill.alpha", alpha), ("distill.temperature", temperature), ("distill.test", test)):
        if value is not None:
            sets.append((key, value))
    if data is None and not resume and load_config(student).data.dir is None:
        data = _teacher_data(Path(teachers[0]))
    return train(student, data=data, out=out, epochs=epochs, resume=resume, overwrite=overwrite, overrides=sets, log=log)


def _teacher_data(teacher: Path) -> Optional[Path]:
    """The competition folder a teacher run was trained on (its config's data.dir), or None."""
    from comp.engine.rundir import saved_config

    cfg = saved_config(teacher) if teacher.is_dir() else None
    return Path(cfg.data.dir) if cfg is not None and cfg.data.dir else None
