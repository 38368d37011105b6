"""`tune.space`: each dotted config key with its range or choices, checked against the config before any trial."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from comp.config import load_config
from comp.errors import UserError

KINDS = ("float", "log", "int", "choice")


@dataclass(frozen=True)
class Param:
    """One key of the search space: `kind` with (lo, hi) bounds or `choices`."""

    key: str
    kind: str
    lo: Any = None
    hi: Any = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The trial's value as Optuna stores it (`value` turns it into the config's)."""
        if self.kind == "choice":  # Optuna takes plain values; lists (e.g. aug.scale) go through their index
            return trial.suggest_categorical(self.key, self.grid())
        if self.kind == "int":
            return trial.suggest_int(self.key, self.lo, self.hi)
        return trial.suggest_float(self.key, self.lo, self.hi, log=self.kind == "log")

    @property
    def _indexed(self) -> bool:
        return any(not isinstance(c, (str, int, float, bool)) and c is not None for c in self.choices)

    def value(self, stored: Any) -> Any:
        """The config value of a parameter as Optuna stored it."""
        return self.choices[stored] if self.kind == "choice" and self._indexed else stored

    def grid(self) -> Optional[list]:
        """Every value for the grid sampler, or None for a continuous range."""
        if self.kind == "choice":
            return list(range(len(self.choices))) if self._indexed else list(self.choices)
        if self.kind == "int":
            return list(range(self.lo, self.hi + 1))
        return None


def parse_space(space: dict[str, Any], config: Path, overrides: Sequence) -> list[Param]:
    """The `tune.space` of `config` as Params, every bound and choice checked against the config keys.

    A key that is not a config key, a spec that is not one of the four kinds, or a value the key
    cannot take is a UserError naming the key, raised before any trial.
    """
    if not space:
        raise UserError(f"{config}: tune.space is empty; add keys to search, e.g. tune: {{space: {{optim.lr: {{log: [1.0e-4, 1.0e-2]}}}}}}")
    params = []
    for key, spec in space.items():
        where = f"tune.space {key!r}"
        if key.startswith("tune.") or key == "data.dir":
            raise UserError(f"{where}: not a key a trial can change; search the recipe (optim.lr, model.head, ...)")
        param = _param(key, spec)
        for value in param.choices if param.kind == "choice" else (param.lo, param.hi):
            try:
                load_config(config, [*overrides, (key, value)])
            except UserError as e:
                raise UserError(f"{where}: {str(e).removeprefix(f'--set {key}: ')}") from None
        if param.kind in ("float", "log"):
            _check_fractions(param, config, overrides)
        params.append(param)
    return params


def _check_fractions(param: Param, config: Path, overrides: Sequence) -> None:
    """A float or log range draws fractional values: refuse it now for a key that takes whole numbers
    (`train.epochs`), whose whole bounds alone would pass, rather than fail the first trial."""
    lo, hi = param.lo, param.hi
    probe = lo + (hi - lo) / math.pi  # fractional unless by a coincidence that e then avoids
    if float(probe).is_integer():
        probe = lo + (hi - lo) / math.e
    try:
        load_config(config, [*overrides, (param.key, probe)])
    except UserError as e:
        whole = float(lo).is_integer() and float(hi).is_integer()
        fix = f"; use {{int: [{int(lo)}, {int(hi)}]}}" if whole else ""
        raise UserError(f"tune.space {param.key!r}: {param.kind} draws fractional values such as {probe:.4g}, which "
                        f"{param.key} does not take ({str(e).removeprefix(f'--set {param.key}: ')}){fix}") from None


def _param(key: str, spec: Any) -> Param:
    """The Param of one `tune.space` entry; a spec of the wrong shape is a UserError naming the key."""
    where = f"tune.space {key!r}"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise UserError(f"{where}: give one of {{float: [lo, hi]}}, {{log: [lo, hi]}}, {{int: [lo, hi]}}, {{choice: [a, b, ...]}}")
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if not values:
            raise UserError(f"{where}: choice needs at least one value")
        return Param(key, kind, choices=tuple(values))
    if not isinstance(values, list) or len(values) != 2:
        raise UserError(f"{where}: {kind} takes [lo, hi]")
    try:
        lo, hi = (int(v) for v in values) if kind == "int" else (float(v) for v in values)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {kind} bounds must be numbers; got {values}") from None
    if kind == "int" and any(float(v) != int(float(v)) for v in values):
        raise UserError(f"{where}: int bounds must be whole numbers; got {values}")
    if not lo < hi if kind != "int" else not lo <= hi:
        raise UserError(f"{where}: lo must be below hi; got {values}")
    if kind == "log" and lo <= 0:
        raise UserError(f"{where}: log bounds must be > 0; got {values}")
    return Param(key, kind, lo, hi)
