"""`comp tune`: an Optuna search over a config's keys, on one machine or many.

The search space is the config's `tune.space`: a dotted config key to one of `{float: [lo, hi]}`,
`{log: [lo, hi]}` (log-uniform), `{int: [lo, hi]}` or `{choice: [a, b, ...]}`; every key not in the
space keeps the config's value. Each trial is an ordinary run directory `STUDY/trial_NNNN/`
trained by the same code as `comp train` (single or k-fold), so `comp predict`, `evaluate` and
`package` work on any trial. A single run reports its val score in the competition metric after
every epoch and a k-fold run the mean of its folds after every fold, so the pruner stops trials that
lag behind the others at the same point; the direction comes from the metric. A trial's value is
what `comp predict` would score: its best val score, or its CV score, calibrated for log loss.

The study lives in an Optuna storage: `sqlite:///STUDY/study.db` by default, or any SQLAlchemy URL
(`--storage postgresql+psycopg://...`), which is how several processes or machines share one study.
`tune.trials` (`--trials`) is the study's total of finished (complete or pruned) trials over all
its workers; each worker stops once the study has that many (a worker that is already inside a
trial finishes it, so each extra worker may add one trial more). Workers send a heartbeat every
`tune.heartbeat` seconds: the trial of a worker that died (kill -9, a lost machine) is marked failed
by the next worker to start a trial and run again with the same parameters (Optuna's
`RetryHeartbeatStaleTrialCallback`), resuming its run directory from last.pt. Ctrl-C stops like
`comp train` (the trial's last.pt saved) and queues the trial again, so running the same command
resumes it.

At the end, and with `comp tune --summary STUDY` (or the storage URL) at any time: the trials sorted
by value, `STUDY/trials.csv`, `STUDY/best.yaml` (the base config with the best parameters, which
`comp train` takes as it is), and Optuna's matplotlib plots (history.png, importances.png,
slice.png).
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from comp.config import Config, load_config
from comp.errors import Interrupted, Log, UserError

from comp.tune.space import Param, parse_space
from comp.tune.study import _finished, _pruner, _require_optuna, _sampler, _storage, storage_url
from comp.tune.summary import _epochs, _shown, _yaml_value, summarize


def tune(
    config_path: Path,
    *,
    data: Optional[Path] = None,
    out: Optional[Path] = None,
    trials: Optional[int] = None,
    timeout: Optional[float] = None,
    storage: Optional[str] = None,
    study_name: Optional[str] = None,
    jobs: int = 1,
    overrides: Sequence[str] = (),
    log: Log = print,
) -> dict[str, Any]:
    """Run (or join, or continue) the study of `config_path`'s `tune.space`; returns `summarize`'s result.

    Args:
        out: the study folder (trial run directories, study.db, best.yaml, plots); default
            `runs/<config>-tune`.
        trials, timeout: override `tune.trials` (the study's total) and `tune.timeout` (minutes, this worker).
        storage, study_name: an SQLAlchemy URL and study name shared by every worker (default SQLite in `out`,
            named after the folder).
        jobs: trials at once on this machine: `jobs - 1` worker processes beside this one, each training
            with its share of the cores (`train.threads: auto`).
    """
    from comp.train import absolute_paths

    optuna = _require_optuna()
    again = _again(config_path, out, data, trials, timeout, storage, study_name, jobs, overrides)
    overrides = list(overrides) + ([("data.dir", str(data))] if data is not None else [])
    if trials is not None:
        overrides.append(("tune.trials", trials))
    if timeout is not None:
        overrides.append(("tune.timeout", timeout))
    cfg = absolute_paths(load_config(config_path, overrides))
    params = parse_space(cfg.tune.space, Path(config_path), overrides)
    if not cfg.data.dir:
        raise UserError("no data folder: pass --data DIR or set data.dir in the config")
    if cfg.train.seeds > 1 or "train.seeds" in cfg.tune.space:
        raise UserError("comp tune trains each trial once (train.seeds 1); search with one seed, then train the best config with "
                        "comp train BEST.yaml --seeds N, or compare trials with comp compare")
    from comp.data.competition import open_configured

    competition = open_configured(cfg.data)
    metric = competition.task.for_run(cfg.train.loss).check(cfg, competition.classes)
    study_dir = Path(out) if out else Path("runs") / f"{Path(config_path).stem}-tune"
    if study_dir.exists() and not study_dir.is_dir():
        raise UserError(f"--out {study_dir} is a file; pass a folder for the study")
    url = storage_url(study_dir, storage)
    name = study_name or study_dir.resolve().name
    if storage is None:  # the default SQLite file lives in the study folder
        study_dir.mkdir(parents=True, exist_ok=True)
    store = _storage(optuna, url, cfg.tune.heartbeat)  # a given URL is opened before the folder is made: a dead one leaves none
    study_dir.mkdir(parents=True, exist_ok=True)
    study, direction = _open_study(optuna, cfg, params, metric, study_dir, store, url, name)
    children = _start_workers(config_path, study_dir, url, name, jobs, data, overrides, log) if jobs > 1 else []
    log(f"study {name} ({url}): {metric.name} to {direction}, {_finished(study)}/{cfg.tune.trials} trials finished; "
        f"space: {', '.join(p.key for p in params)}")
    objective = _Objective(cfg, params, study_dir, Path(config_path), overrides, log, again)
    try:
        if _finished(study) < cfg.tune.trials:
            from optuna.study import MaxTrialsCallback
            from optuna.trial import TrialState

            study.optimize(
                objective, timeout=cfg.tune.timeout * 60 if cfg.tune.timeout else None,
                callbacks=[MaxTrialsCallback(cfg.tune.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))],
                catch=(),
            )
    except Interrupted:
        run = objective.queue_again(study)
        raise Interrupted(f"interrupted: {run}/ holds the trial's last.pt and the trial is queued again; continue with: {again}") from None
    finally:
        for child in children:
            child.wait()
    return summarize(study_dir, storage=storage, study_name=name, log=log)


def _again(config_path, out, data, trials, timeout, storage, study_name, jobs, overrides) -> str:
    """The command that continues this study after Ctrl-C: every option this one was given."""
    words = ["comp", "tune", str(config_path), "--out", str(Path(out) if out else Path("runs") / f"{Path(config_path).stem}-tune")]
    for option, value in (("--data", data), ("--trials", trials), ("--timeout", timeout), ("--storage", storage),
                          ("--study", study_name), ("--jobs", jobs if jobs > 1 else None)):
        if value is not None:
            words += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    for o in overrides:
        words += ["--set", o if isinstance(o, str) else f"{o[0]}={_yaml_value(o[1])}"]
    return " ".join(shlex.quote(w) for w in words)


def _open_study(optuna, cfg: Config, params: list[Param], metric, study_dir: Path, store, url: str, name: str):
    """The study `name` in `store` (at `url`), created or joined (refused when it optimises the other
    way), with the base config recorded and this worker's sampler and pruner; returns (study, direction)."""
    direction = "maximize" if metric.higher_is_better else "minimize"
    try:
        study = optuna.create_study(storage=store, study_name=name, direction=direction, load_if_exists=True)
    except ValueError as e:  # e.g. the name exists with another direction
        raise UserError(f"study {name!r} in {url}: {e}") from None
    if study.direction.name.lower() != direction:
        raise UserError(f"study {name!r} in {url} {study.direction.name.lower()}s, but metric {metric.name} is to {direction}; "
                        "use another --study")
    joined = bool(study.get_trials(deepcopy=False))
    base = yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    study.set_user_attr("base_config", base)
    (study_dir / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    # Workers must not draw the same random start-up trials: the I-th worker --jobs starts on this
    # machine takes tune.seed + 7919 I, and a worker joining a running study from elsewhere mixes
    # in its host and pid. A lone worker's search repeats with tune.seed.
    worker = int(os.environ.get("COMP_TUNE_WORKER", "0"))
    seed = cfg.tune.seed + 7919 * worker if worker or not joined else hash((cfg.tune.seed, socket.gethostname(), os.getpid())) % 2**31
    study.sampler = _sampler(optuna, cfg, params, seed)
    study.pruner = _pruner(optuna, cfg)
    return study, direction


def _start_workers(config_path, study_dir, url, name, jobs, data, overrides, log) -> list[subprocess.Popen]:
    """`jobs - 1` more workers of this study as separate processes (their output in STUDY/worker_I.log)."""
    sets = [o if isinstance(o, str) else f"{o[0]}={_yaml_value(o[1])}" for o in overrides]  # --set, --data, --trials as --set
    children = []
    for i in range(1, jobs):
        cmd = [sys.executable, "-m", "comp", "tune", str(config_path), "--out", str(study_dir), "--storage", url, "--study", name]
        for s in sets:
            cmd += ["--set", s]
        logfile = open(Path(study_dir) / f"worker_{i}.log", "a")
        children.append(subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env={**os.environ, "COMP_TUNE_WORKER": str(i)}))
        log(f"worker {i}: pid {children[-1].pid}, log {Path(study_dir) / f'worker_{i}.log'}")
    return children


class _Objective:
    """One trial: its parameters applied to the base config, trained as `comp train` would, pruned by epoch or fold."""

    def __init__(self, cfg: Config, params: list[Param], study_dir: Path, config_path: Path, overrides: list, log: Log, again: str):
        self.cfg, self.params, self.study_dir, self.config_path, self.overrides, self.log = cfg, params, study_dir, config_path, overrides, log
        self.again = again  # the command that continues the study, printed on Ctrl-C
        self.current = None  # (params, distributions, user attrs) of the trial in progress, to queue again on Ctrl-C

    def __call__(self, trial) -> float:
        import optuna

        from comp.engine.epoch import NonFiniteLoss
        from comp.engine.fit import fit
        from comp.engine.kfold import fit_folds
        from comp.predict import run_score
        from comp.tasks import final_score

        values = {p.key: p.value(p.suggest(trial)) for p in self.params}
        run_name = trial.user_attrs.get("run_dir") or f"trial_{trial.number:04d}"  # a retried trial resumes its own folder
        trial.set_user_attr("run_dir", run_name)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        self.current = (dict(trial.params), dict(trial.distributions), {"run_dir": run_name})
        run_dir = self.study_dir / run_name
        cfg = load_config(self.config_path, [*self.overrides, *values.items()])
        from comp.train import absolute_paths

        cfg = absolute_paths(cfg)
        if cfg.train.folds > 1:  # a k-fold trial's folds resume one by one; cv.json marks the end
            resume = (run_dir / "config.yaml").is_file() and not (run_dir / "cv.json").is_file()
        else:
            resume = (run_dir / "last.pt").is_file() and not (run_dir / "summary.json").is_file()
        shown = ", ".join(f"{k}={_shown(v)}" for k, v in values.items())
        self.log(f"trial {trial.number} ({run_name}{', resumed' if resume else ''}): {shown}")
        pruned = {"at": None}

        def report(step: int, value: float) -> bool:
            if value is None or not math.isfinite(value):
                return False
            trial.report(value, step)
            if trial.should_prune():
                pruned["at"] = step
                return True
            return False

        quiet = lambda line: None  # noqa: E731  (a trial's epoch lines stay in its metrics.csv)
        try:
            from comp.data.competition import open_configured
            from comp.teach.plan import active, planner

            teach = planner(cfg, open_configured(cfg.data), quiet) if active(cfg) else None  # a second round's trials
            if cfg.train.folds > 1:
                scores: list[float] = []

                def after_fold(i: int, summary: dict) -> bool:
                    value = final_score(summary, "best_val_score")  # the fold's score of what predict writes
                    scores.append(value if value is not None else float("nan"))
                    return report(i, sum(scores) / len(scores))

                fit_folds(cfg, run_dir, resume=resume, overwrite=not resume, log=quiet, after_fold=after_fold,
                          resume_command=self.again, teach=teach)
            else:
                fit(cfg, run_dir, resume=resume, overwrite=not resume, log=quiet,
                    on_epoch=lambda epoch, va: report(epoch, va.score),
                    resume_command=self.again, teach=teach)
        except NonFiniteLoss as e:  # a diverging recipe is a hopeless trial, not the end of the study
            self.log(f"trial {trial.number}: pruned, {e}")
            raise optuna.TrialPruned(str(e)) from None
        self.current = None
        value = run_score(run_dir)
        trial.set_user_attr("epochs", _epochs(run_dir))
        if pruned["at"] is not None:
            self.log(f"trial {trial.number}: pruned after {'fold' if cfg.train.folds > 1 else 'epoch'} {pruned['at'] + 1}")
            raise optuna.TrialPruned()
        if value is None or not math.isfinite(value):
            self.log(f"trial {trial.number}: no score ({run_dir}); counted as failed")
            return float("nan")
        self.log(f"trial {trial.number}: {self.cfg.metric} {value:.4f}")
        return value

    def queue_again(self, study) -> Optional[Path]:
        """After Ctrl-C: the interrupted trial runs again, first, with its parameters and folder (resumed
        from last.pt); returns that folder."""
        if self.current is None:
            return None
        from optuna.trial import TrialState, create_trial

        params, distributions, attrs = self.current
        study.add_trial(create_trial(state=TrialState.WAITING, params=params, distributions=distributions, user_attrs=attrs))
        return self.study_dir / attrs["run_dir"]
