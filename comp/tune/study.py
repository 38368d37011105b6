"""The Optuna side of a study: the library, the storage (SQLite in the study folder or any URL), sampler and pruner."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

from comp.config import Config
from comp.errors import UserError
from comp.tune.space import Param

STATES_DONE = ("COMPLETE", "PRUNED")


def _require_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("comp tune needs Optuna: pip install 'comp[tune]' (optuna; psycopg for PostgreSQL storage)") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # comp prints its own line per trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(study_dir: Path, storage: Optional[str]) -> str:
    """The storage URL: `storage`, else SQLite in the study folder."""
    return storage or f"sqlite:///{(Path(study_dir) / 'study.db').resolve()}"


def _storage(optuna, url: str, heartbeat: Optional[int] = None):
    """Optuna's storage at `url` (with heartbeats for a worker; without, to read a study); a URL that
    does not open (no server, a folder that is not there, no driver) is one line."""
    import time

    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    beats = {} if heartbeat is None else dict(heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    for attempt in range(4 if heartbeat is not None else 1):  # only workers race to create the tables
        try:
            return RDBStorage(url, **beats)
        except Exception as e:  # sqlalchemy's errors for a bad URL, a missing driver, a server that is down
            error = e
            # Workers started together race to create the tables of a new database (a unique-key
            # violation in PostgreSQL's catalog): the loser finds them made when it tries again.
            time.sleep(0.5 * (attempt + 1))
    raise UserError(f"cannot open the study storage {url} ({type(error).__name__}: {str(error).splitlines()[0]}); "
                    "check --storage (e.g. postgresql+psycopg://user@host/db)") from None


def _sampler(optuna, cfg: Config, params: list[Param], seed: int):
    if cfg.tune.sampler == "grid":
        grid = {p.key: p.grid() for p in params}
        continuous = [k for k, g in grid.items() if g is None]
        if continuous:
            raise UserError(f"tune.sampler grid needs choice or int keys; {continuous[0]!r} is a continuous range")
        return optuna.samplers.GridSampler(grid, seed=seed)
    if cfg.tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # Random start-up trials, then TPE: a third of a small budget (at least 3, at most TPE's default 10).
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, cfg.tune.trials // 3)))


def _pruner(optuna, cfg: Config):
    if cfg.tune.pruner == "none":
        return optuna.pruners.NopPruner()
    if cfg.tune.pruner == "hyperband":
        steps = cfg.train.folds if cfg.train.folds > 1 else cfg.train.epochs
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, steps))
    # Compared from the first epoch on, once 3 trials have finished (a small budget cannot wait for more).
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def _finished(study) -> int:
    return sum(t.state.name in STATES_DONE for t in study.get_trials(deepcopy=False))
