"""Experiment tracking: what a run records, mirrored to TensorBoard, MLflow and W&B (`track: [...]`).

The run directory stays the record (metrics.csv, summary.json, curves.png); trackers are copies
for the tools a team already browses. Each epoch logs the row metrics.csv gets, at the epoch
(metrics.csv's 0-based `epoch`) as step; the run logs its resolved config as parameters (dotted
keys), then its summary, curves.png and config.yaml. A k-fold run is one tracked run whose folds
are nested runs (MLflow's `mlflow.parentRunId`, W&B's group; TensorBoard: the fold folders under
the run's), with each fold's score and the CV score on the parent.

Failures follow two rules. Before training (`Tracking(...)`): a tracker that is not installed, or an
MLflow tracking server that does not answer, stops the command with one line. During training, a
tracker that raises is warned about once and dropped: tracking never costs a run.

A resumed run continues the same tracked run: `tracking.json` in the run directory keeps the MLflow
run id and the W&B id; TensorBoard gets a purge step, so the epochs the crash lost and the resume
runs again are drawn once.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

from comp.errors import Log, UserError
from comp.tasks import tracked_keys

TRACKERS = ("tensorboard", "mlflow", "wandb")
STATE_FILE = "tracking.json"
# summary.json / cv.json entries that are numbers worth a chart (the rest goes in as the file)
# (each score with its post-processed variants, `comp.tasks.tracked_keys`: calibrated, thresholded)
SUMMARY_METRICS = tuple(tracked_keys(["best_val_score", "best_val_acc", "best_epoch", "epochs_run", "seconds", "temperature", "cv_score",
                                      "cv_acc", "folds_done"]))
_INSTALL = "pip install 'comp[track]' (or the library alone), or take it out of `track`"


def _finite(values: dict[str, Any]) -> dict[str, float]:
    """The entries of `values` that are finite numbers, as floats (NaN: no val split, nothing to draw)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


class Tracker:
    """One tracking library behind the interface the training loop calls.

    `start(run)` opens (or, resuming, reopens) the tracked run and returns what `tracking.json` keeps
    to find it again; `log_metrics({name: value}, step)` logs numbers at a step; `finish(summary,
    files, status)` logs the summary numbers and files and closes it (status FINISHED / KILLED / FAILED).
    """

    name = ""

    def start(self, run: "TrackedRun") -> dict[str, Any]:
        raise NotImplementedError

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def finish(self, summary: dict[str, Any], files: list[Path], status: str) -> None:
        raise NotImplementedError


class TrackedRun:
    """What a tracker needs to know about the run it mirrors."""

    def __init__(self, run_dir: Path, name: str, experiment: str, params: dict[str, Any], saved: dict[str, Any],
                 first_step: Optional[int], parent: Optional[dict[str, Any]]):
        self.run_dir = run_dir
        self.name = name
        self.experiment = experiment
        self.params = params  # flat config: {"optim.lr": 0.01, ...}
        self.saved = saved  # this tracker's entry of tracking.json ({} for a new run)
        self.first_step = first_step  # resuming: the first epoch this command logs (None: a new run)
        self.parent = parent  # the k-fold run's state of this tracker, for a fold


class TensorBoardTracker(Tracker):
    """Event files in the run directory itself, so `tensorboard --logdir runs` lists every run and fold."""

    name = "tensorboard"

    def __init__(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(f"track: tensorboard is not installed; {_INSTALL}") from None
        self._writer_class = SummaryWriter
        self.writer = None

    def start(self, run: TrackedRun) -> dict[str, Any]:
        # purge_step: TensorBoard drops the events at or after it that an earlier, crashed command wrote
        self.writer = self._writer_class(log_dir=str(run.run_dir), purge_step=run.first_step)
        self.params = run.params
        if run.first_step is None:
            self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in run.params.items()))
        return {}

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def finish(self, summary: dict[str, Any], files: list[Path], status: str) -> None:
        numbers = _finite({k: summary.get(k) for k in SUMMARY_METRICS})
        if numbers:  # the HParams tab: one row per run, its config beside its results
            hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in self.params.items()}
            self.writer.add_hparams(hparams, {f"summary/{k}": v for k, v in numbers.items()}, run_name=".")
        self.writer.add_text("summary", "    " + json.dumps(summary, indent=1, default=str).replace("\n", "\n    "))
        for path in files:
            if path.suffix == ".png" and path.is_file():
                import numpy as np
                from PIL import Image

                self.writer.add_image(path.stem, np.asarray(Image.open(path).convert("RGB")), dataformats="HWC")
        self.writer.add_text("status", status)
        self.writer.close()


class MlflowTracker(Tracker):
    """One MLflow run per comp run, in the experiment named by MLFLOW_EXPERIMENT_NAME or the competition
    folder, on the store of MLFLOW_TRACKING_URI (MLflow's own default when unset)."""

    name = "mlflow"

    def __init__(self):
        try:
            import mlflow
            from mlflow import MlflowClient
        except ImportError:
            raise UserError(f"track: mlflow is not installed; {_INSTALL}") from None
        self.uri = mlflow.get_tracking_uri()
        self.client = MlflowClient(self.uri)
        self.run_id = ""
        self._probe()

    def _probe(self) -> None:
        """Ask the store for one experiment, once, without MLflow's minutes of retries."""
        if not self.uri.startswith(("http://", "https://")):
            return
        saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
        os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")
        try:
            self.client.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - any failure here means the same thing to the user
            raise UserError(
                f"track: the MLflow tracking server {self.uri} does not answer ({_first_line(e)}); start it, fix MLFLOW_TRACKING_URI, "
                "or take mlflow out of `track`"
            ) from None
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def start(self, run: TrackedRun) -> dict[str, Any]:
        from mlflow.entities import Param

        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or run.experiment
        old = self._reopen(run.saved)
        if old is not None:
            self.run_id = old.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            logged = old.data.params
        else:
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment is not None else self.client.create_experiment(name)
            tags = {"comp.run_dir": str(run.run_dir.resolve()), "mlflow.source.name": "comp"}
            if run.parent and run.parent.get("run_id"):
                tags["mlflow.parentRunId"] = run.parent["run_id"]
            self.run_id = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
            logged = {}
        # MLflow refuses to change a logged parameter: a resume that extends epochs keeps the first value
        # as the parameter and records the new one as a tag.
        params = [Param(k, str(v)[:6000]) for k, v in run.params.items() if k not in logged]
        for i in range(0, len(params), 100):  # the store takes at most 100 parameters per call
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        for k, v in run.params.items():
            if k in logged and logged[k] != str(v)[:6000]:
                self.client.set_tag(self.run_id, f"comp.resumed.{k}", str(v)[:5000])
        return {"tracking_uri": self.uri, "run_id": self.run_id}

    def _reopen(self, saved: dict[str, Any]):
        """The MLflow run `saved` names, when it lives in this store; else None (a new one is made)."""
        if not saved.get("run_id") or saved.get("tracking_uri") != self.uri:
            return None
        try:
            old = self.client.get_run(saved["run_id"])
        except Exception:  # noqa: BLE001 - deleted, or another store under the same URI: start a new run
            return None
        return old if old.info.lifecycle_stage == "active" else None

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def finish(self, summary: dict[str, Any], files: list[Path], status: str) -> None:
        numbers = _finite({k: summary.get(k) for k in SUMMARY_METRICS})
        if numbers:
            self.log_metrics({f"summary.{k}": v for k, v in numbers.items()}, 0)
        for path in files:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)


class WandbTracker(Tracker):
    """A W&B run (project: WANDB_PROJECT or the competition folder); WANDB_MODE=offline is honoured."""

    name = "wandb"

    def __init__(self):
        try:
            import wandb
        except ImportError:
            raise UserError(f"track: wandb is not installed; {_INSTALL.replace('comp[track]', 'wandb')}") from None
        self.wandb = wandb
        self.run = None

    def start(self, run: TrackedRun) -> dict[str, Any]:
        run_id = run.saved.get("id") or self.wandb.util.generate_id()
        group = run.parent.get("group") if run.parent else None
        self.run = self.wandb.init(
            project=os.environ.get("WANDB_PROJECT") or run.experiment, name=run.name, id=run_id, resume="allow",
            dir=str(run.run_dir), config=run.params, group=group, job_type="fold" if group else "train", reinit="create_new",
        )
        return {"id": run_id, "group": group or run.name}

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def finish(self, summary: dict[str, Any], files: list[Path], status: str) -> None:
        self.run.summary.update(_finite({k: summary.get(k) for k in SUMMARY_METRICS}))
        for path in files:
            if path.suffix == ".png" and path.is_file():
                self.run.summary[path.stem] = self.wandb.Image(str(path))
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


_CLASSES = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}


class Tracking:
    """The trackers of one run (or one k-fold run), failing quietly once it has started.

    `Tracking(names, log)` checks each tracker (installed; MLflow's server answers) and raises a
    `UserError` otherwise: call it with the command's other checks, before anything is written.
    """

    def __init__(self, names: list[str], log: Log = print):
        self.log = log
        self.trackers: list[Tracker] = [_CLASSES[n]() for n in dict.fromkeys(names)]
        self.run_dir: Optional[Path] = None
        self.state: dict[str, Any] = {}
        self._pending: Optional[tuple[Path, dict[str, Any], str, bool]] = None

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def start(self, run_dir: Path, params: dict[str, Any], experiment: str, *, resume: bool = False, first_step: Optional[int] = None,
              parent: Optional["Tracking"] = None) -> None:
        """Open the tracked run of `run_dir`, or with `resume` reopen the one its tracking.json names.

        `params` is the flat config; `experiment` the default experiment / project name; `first_step`
        the first epoch a resumed run logs again (TensorBoard forgets what the old command logged
        from there); `parent` the k-fold run's tracking, for a fold (its run is started first).
        """
        if not self.trackers:
            return
        self.run_dir = Path(run_dir)
        saved = _read_state(self.run_dir) if resume else {}
        if parent is not None:
            parent.start_once()
        for tracker in list(self.trackers):
            run = TrackedRun(self.run_dir, self.run_dir.name, experiment, params, saved.get(tracker.name, {}), first_step,
                             parent.state.get(tracker.name) if parent is not None else None)
            state = self._call(tracker, "start", run)
            if state:
                self.state[tracker.name] = state
        self._save_state()
        self.log(f"tracking: {', '.join(t.name for t in self.trackers)}" + self._where())

    def defer(self, run_dir: Path, params: dict[str, Any], experiment: str, *, resume: bool) -> None:
        """Remember what `start_once` will open: a k-fold run's tracked run opens when its first fold
        has been accepted (or, every fold skipped, when its CV score is logged)."""
        self._pending = (Path(run_dir), params, experiment, resume)

    def start_once(self) -> None:
        """Start the run `defer` described, unless it has started."""
        if self.run_dir is None and self.trackers and self._pending is not None:
            run_dir, params, experiment, resume = self._pending
            self.start(run_dir, params, experiment, resume=resume)

    def log_metrics(self, values: dict[str, Any], step: int) -> None:
        """Log the finite numbers of `values` (e.g. a metrics.csv row less `epoch`) at `step`."""
        numbers = _finite(values)
        if numbers:
            for tracker in list(self.trackers):
                self._call(tracker, "log_metrics", numbers, step)

    def finish(self, summary: dict[str, Any], files: list[Path], status: str = "FINISHED") -> None:
        """Log the summary numbers and `files` (those that exist) and close every tracked run."""
        if self.run_dir is None:  # never started (the command was refused): nothing to close
            self.trackers = []
            return
        for tracker in list(self.trackers):
            self._call(tracker, "finish", summary, [Path(f) for f in files], status)
        self.trackers = []

    def abort(self, error: BaseException) -> None:
        """Close the tracked runs of a command that ended with `error`: KILLED for Ctrl-C, else FAILED."""
        self.finish({}, [], "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")

    def _call(self, tracker: Tracker, method: str, *args):
        try:
            return getattr(tracker, method)(*args)
        except Exception as e:  # noqa: BLE001 - a tracker's failure must never cost the run
            self.trackers.remove(tracker)
            self.log(f"warning: tracker {tracker.name} failed ({_first_line(e)}); training goes on without it")
            return None

    def _save_state(self) -> None:
        if self.run_dir is not None and self.state:
            (self.run_dir / STATE_FILE).write_text(json.dumps(self.state, indent=1) + "\n")

    def _where(self) -> str:
        m = self.state.get("mlflow")
        return f" (mlflow run {m['run_id']} at {m['tracking_uri']})" if m else ""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def tracked_params(cfg) -> dict[str, Any]:
    """The config a tracker records: every dotted key but how a search or the tracking itself is run."""
    from comp.engine.rundir import flat

    return {k: v for k, v in flat(cfg).items() if not k.startswith("tune.") and k != "track"}


def experiment_name(source: str) -> str:
    """The default experiment (MLflow) / project (W&B): the competition folder's name."""
    return Path(str(source)).resolve().name or "comp"
