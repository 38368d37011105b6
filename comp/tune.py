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
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from comp.config import Config, load_config
from comp.errors import Interrupted, Log, UserError

KINDS = ("float", "log", "int", "choice")
STATES_DONE = ("COMPLETE", "PRUNED")


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
        params.append(param)
    return params


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


def _storage(optuna, url: str, heartbeat: int):
    import time

    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    for attempt in range(4):
        try:
            return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
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
    overrides = list(overrides) + ([("data.dir", str(data))] if data is not None else [])
    if trials is not None:
        overrides.append(("tune.trials", trials))
    if timeout is not None:
        overrides.append(("tune.timeout", timeout))
    cfg = absolute_paths(load_config(config_path, overrides))
    params = parse_space(cfg.tune.space, Path(config_path), overrides)
    if not cfg.data.dir:
        raise UserError("no data folder: pass --data DIR or set data.dir in the config")
    from comp.data.competition import open_configured

    competition = open_configured(cfg.data)
    metric = competition.task.check(cfg, competition.classes)
    study_dir = Path(out) if out else Path("runs") / f"{Path(config_path).stem}-tune"
    if study_dir.exists() and not study_dir.is_dir():
        raise UserError(f"--out {study_dir} is a file; pass a folder for the study")
    study_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url(study_dir, storage)
    name = study_name or study_dir.resolve().name
    store = _storage(optuna, url, cfg.tune.heartbeat)
    direction = "maximize" if metric.higher_is_better else "minimize"
    try:
        study = optuna.create_study(storage=store, study_name=name, direction=direction, load_if_exists=True)
    except ValueError as e:  # e.g. the name exists with another direction
        raise UserError(f"study {name!r} in {url}: {e}") from None
    if study.direction.name.lower() != direction:
        raise UserError(f"study {name!r} in {url} {study.direction.name.lower()}s, but metric {metric.name} is to {direction}; "
                        "use another --study")
    joined = bool(study.get_trials(deepcopy=False))
    base = yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json")))
    study.set_user_attr("base_config", base)
    (study_dir / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    # Workers must not draw the same random start-up trials: the I-th worker --jobs starts on this
    # machine takes tune.seed + 7919 I, and a worker joining a running study from elsewhere mixes
    # in its host and pid. A lone worker's search repeats with tune.seed.
    worker = int(os.environ.get("COMP_TUNE_WORKER", "0"))
    seed = cfg.tune.seed + 7919 * worker if worker or not joined else hash((cfg.tune.seed, socket.gethostname(), os.getpid())) % 2**31
    study.sampler = _sampler(optuna, cfg, params, seed)
    study.pruner = _pruner(optuna, cfg)
    children = _start_workers(config_path, study_dir, url, name, jobs, data, overrides, log) if jobs > 1 else []
    log(f"study {name} ({url}): {metric.name} to {direction}, {_finished(study)}/{cfg.tune.trials} trials finished; "
        f"space: {', '.join(p.key for p in params)}")
    objective = _Objective(cfg, params, study_dir, Path(config_path), overrides, log)
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
        again = f"comp tune {config_path} --out {study_dir}" + (f" --storage {storage}" if storage else "") + (
            f" --study {study_name}" if study_name else "")
        raise Interrupted(f"interrupted: {run}/ holds the trial's last.pt and the trial is queued again; continue with: {again}") from None
    finally:
        for child in children:
            child.wait()
    return summarize(study_dir, storage=storage, study_name=name, log=log)


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


def _yaml_value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _shown(v: Any) -> str:
    """A parameter value for a log line or the table: floats to 4 significant digits."""
    return f"{v:.4g}" if isinstance(v, float) else _yaml_value(v)


class _Objective:
    """One trial: its parameters applied to the base config, trained as `comp train` would, pruned by epoch or fold."""

    def __init__(self, cfg: Config, params: list[Param], study_dir: Path, config_path: Path, overrides: list, log: Log):
        self.cfg, self.params, self.study_dir, self.config_path, self.overrides, self.log = cfg, params, study_dir, config_path, overrides, log
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
            if cfg.train.folds > 1:
                scores: list[float] = []

                def after_fold(i: int, summary: dict) -> bool:
                    value = final_score(summary, "best_val_score")  # the fold's score of what predict writes
                    scores.append(value if value is not None else float("nan"))
                    return report(i, sum(scores) / len(scores))

                fit_folds(cfg, run_dir, resume=resume, overwrite=not resume, log=quiet, after_fold=after_fold,
                          resume_command=f"comp tune {self.config_path} --out {self.study_dir}")
            else:
                fit(cfg, run_dir, resume=resume, overwrite=not resume, log=quiet,
                    on_epoch=lambda epoch, va: report(epoch, va.score),
                    resume_command=f"comp tune {self.config_path} --out {self.study_dir}")
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


def _epochs(run_dir: Path) -> int:
    """Epochs a trial trained (summed over the folds of a k-fold trial)."""
    from comp.files import read_json

    summaries = [run_dir / "summary.json"] if (run_dir / "summary.json").is_file() else sorted(run_dir.glob("fold_*/summary.json"))
    return sum(int((read_json(s) or {}).get("epochs_run", 0)) for s in summaries)


def summarize(
    study_dir: Optional[Path] = None, *, storage: Optional[str] = None, study_name: Optional[str] = None, log: Log = print,
) -> dict[str, Any]:
    """The study's trials sorted by value (printed and in trials.csv), best.yaml and the plots, in `study_dir`.

    Returns:
        {"study", "direction", "trials": [{"number", "value", "state", "epochs", "seconds", "params", "run_dir"}],
        "best": {"number", "value", "params", "run_dir"} or None, "files": [...]}.
    """
    optuna = _require_optuna()
    if study_dir is None and storage is None:
        raise UserError("pass the study folder (or --storage URL and --study NAME) to summarize")
    url = storage_url(study_dir, storage) if study_dir is not None else storage
    if storage is None and not (Path(study_dir) / "study.db").is_file():
        raise UserError(f"{study_dir}: no study.db; pass the study folder comp tune wrote, or --storage URL --study NAME")
    names = [s.study_name for s in optuna.get_all_study_summaries(storage=url)] if study_name is None else [study_name]
    if len(names) != 1:
        raise UserError(f"{url} holds {len(names)} studies ({', '.join(names[:5])}); pass --study NAME")
    try:
        study = optuna.load_study(study_name=names[0], storage=url)
    except KeyError:
        raise UserError(f"no study {names[0]!r} in {url}") from None
    out = Path(study_dir) if study_dir is not None else Path("runs") / f"{names[0]}-tune"
    out.mkdir(parents=True, exist_ok=True)
    minimize = study.direction.name == "MINIMIZE"
    space = {k: _param(k, v) for k, v in (study.user_attrs.get("base_config", {}).get("tune", {}).get("space", {})).items()}
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name in ("WAITING",):
            continue
        value = t.value if t.state.name == "COMPLETE" else (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        rows.append({
            "number": t.number, "value": value, "state": t.state.name.lower(), "epochs": t.user_attrs.get("epochs"),
            "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
            "params": {k: (space[k].value(v) if k in space else v) for k, v in t.params.items()}, "run_dir": t.user_attrs.get("run_dir"),
        })
    order = {"complete": 0, "pruned": 1, "running": 2, "fail": 3}
    rows.sort(key=lambda r: (order.get(r["state"], 4), r["value"] is None,
                             (r["value"] if minimize else -r["value"]) if r["value"] is not None else 0, r["number"]))
    _print_table(rows, study.direction.name.lower(), log)
    import pandas as pd

    table = pd.DataFrame([{k: v for k, v in r.items() if k != "params"} | {f"params.{k}": _yaml_value(v) for k, v in r["params"].items()}
                          for r in rows])
    table.to_csv(out / "trials.csv", index=False)
    files = [str(out / "trials.csv")]
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    best = complete[0] if complete else None
    if best is not None and study.user_attrs.get("base_config"):
        files.append(_write_best(out, study.user_attrs["base_config"], best))
        log(f"best: trial {best['number']} ({best['run_dir']}), value {best['value']:.4f}; its config: {files[-1]} "
            f"(comp train {files[-1]} --out runs/best)")
    files += _plots(optuna, study, out, log)
    return {"study": names[0], "direction": study.direction.name.lower(), "trials": rows, "best": best, "files": files}


def _print_table(rows: list[dict], direction: str, log: Log) -> None:
    log(f"{'trial':>5}  {'value':>8}  {'state':<8}  {'epochs':>6}  {'seconds':>7}  parameters")
    for r in rows:
        value = f"{r['value']:.4f}" if r["value"] is not None else "-"
        params = ", ".join(f"{k}={_shown(v)}" for k, v in r["params"].items())
        log(f"{r['number']:>5}  {value:>8}  {r['state']:<8}  {r['epochs'] if r['epochs'] is not None else '-':>6}  "
            f"{r['seconds'] if r['seconds'] is not None else '-':>7}  {params}")
    log(f"({direction}; a pruned trial shows its last reported value)")


def _write_best(out: Path, base: dict, best: dict) -> str:
    """best.yaml: the base config with the best trial's values, for `comp train` as it is."""
    from comp.config import _set_dotted, config_from_dict

    raw = yaml.safe_load(yaml.safe_dump(base))
    for key, value in best["params"].items():
        _set_dotted(raw, key, value)
    raw.pop("tune", None)  # the search is done; the recipe is what remains
    config_from_dict(raw, "best.yaml")  # a config comp train accepts
    path = out / "best.yaml"
    header = f"# comp tune: trial {best['number']} ({best['run_dir']}), value {best['value']:.6g}\n"
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def _plots(optuna, study, out: Path, log: Log) -> list[str]:
    """Optuna's own matplotlib plots; each needs enough finished trials, and is skipped with a note otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    written = []
    for name, plot in (("history.png", vis.plot_optimization_history), ("importances.png", vis.plot_param_importances),
                       ("slice.png", vis.plot_slice)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.savefig(out / name, dpi=100, bbox_inches="tight")
            plt.close(fig)
            written.append(str(out / name))
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as e:
            log(f"note: no {name} yet ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return written
