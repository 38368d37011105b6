"""The `comp` command line: parse, call one plain function, print. No ML logic lives here.

A `UserError` from any command prints one line `error: ...` and exits 2; `comp --debug ...` shows
the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from comp.errors import UserError

app = typer.Typer(
    name="comp",
    help="Kaggle-style image classification: fine-tune, k-fold, TTA, validated submissions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect competition folders.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_state = {"debug": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """comp: point it at a competition folder, train, predict, submit."""
    _state["debug"] = debug or os.environ.get("COMP_DEBUG") == "1"


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a UserError into `error: <message>` on stderr and exit code 2 (traceback with --debug)."""
    try:
        yield
    except UserError as e:
        if _state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    except KeyboardInterrupt as e:
        typer.echo(str(e) or "interrupted", err=True)
        raise typer.Exit(130)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  comp train configs/demo.yaml --data data/shapes --epochs 1\n\n"
        "  comp train configs/resnet50-nycu.yaml --data data/hw1 --out runs/r50 --set optim.lr=3e-4 --set data.batch_size=32\n\n"
        "  comp train configs/demo.yaml --data data/shapes --folds 5 --out runs/demo-5f\n\n"
        "  comp train configs/demo.yaml --data data/shapes --seeds 3 --out runs/demo-3s\n\n"
        "  comp train configs/resnet50-nycu.yaml --out runs/r50 --resume --epochs 100"
    )
)
def train(
    config: Annotated[Path, typer.Argument(help="YAML config, e.g. configs/demo.yaml.", exists=True, dir_okay=False)],
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition folder (sets data.dir).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory [default: runs/<config>-<time>].")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Sets train.epochs.")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", min=2, help="Stratified K-fold: one run per fold, oof.csv, cv.json.")] = None,
    fold: Annotated[Optional[int], typer.Option("--fold", min=0, help="Train only fold I of --folds K.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --out.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: --set optim.lr=3e-4 (repeatable).")] = None,
    pseudo: Annotated[Optional[list[Path]], typer.Option(
        "--pseudo", help="Teacher run (or *_probs.csv) whose test-set predictions join training as soft targets; "
                         "per fold for a k-fold teacher with the same folds (repeatable; sets pseudo.from).")] = None,
    seeds: Annotated[Optional[int], typer.Option(
        "--seeds", min=1, help="N runs differing only in the seed (RUN/seed_<s>/, one split): mean with a 95% interval; "
                               "predicted as one ensemble (sets train.seeds).")] = None,
) -> None:
    """Fine-tune (or scratch-train) one model and write a run directory."""
    from comp.train import train as train_run

    with user_errors():
        summary = train_run(
            config, data=data, out=out, epochs=epochs, folds=folds, fold=fold, resume=resume, overwrite=overwrite,
            overrides=set_ or [], pseudo=[str(p) for p in pseudo or []], seeds=seeds, log=typer.echo,
        )
    _report_trained(summary)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  comp distill runs/big-5f --student configs/demo.yaml --out runs/small\n\n"
        "  comp distill runs/a-5f runs/b-5f --student configs/demo.yaml --out runs/small --alpha 0.7 --temperature 2 --no-test"
    )
)
def distill(
    teachers: Annotated[list[Path], typer.Argument(help="Teacher runs (k-fold runs: all folds) or *_probs.csv tables of comp predict.")],
    student: Annotated[Path, typer.Option("--student", help="The student's YAML config.", exists=True, dir_okay=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="The student's run directory [default: runs/<config>-<time>].")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition folder [default: the student's data.dir, else the first teacher's].")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Sets train.epochs.")] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="Sets distill.alpha: loss = (1 - alpha) task + alpha T^2 KL.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Sets distill.temperature.")] = None,
    test: Annotated[Optional[bool], typer.Option("--test/--no-test", help="Also learn the teachers on the test images (distill.test).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the student in --out from its last.pt.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --out.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key (repeatable).")] = None,
) -> None:
    """Distil teachers into one student: their merged predictions (temperature-scaled KL) beside the task loss; an ordinary run."""
    from comp.distill import distill as distill_run

    with user_errors():
        summary = distill_run(teachers, student, out=out, data=data, epochs=epochs, alpha=alpha, temperature=temperature, test=test,
                              resume=resume, overwrite=overwrite, overrides=set_ or [], log=typer.echo)
    _report_trained(summary)
    score = (summary.get("teachers") or {}).get("teacher_score")
    if score is not None:
        typer.echo(f"teachers' held-out {summary.get('metric', 'score')}: {score:.4f}")


def _report_trained(summary: dict) -> None:
    """The closing line of comp train and comp distill."""
    from comp.engine.distributed import is_main
    from comp.engine.logbook import acc_text

    if not is_main():  # under torchrun, rank 0 reports
        return
    metric = summary.get("metric", "accuracy")
    if "seed_scores" in summary:
        mean = f"mean {metric} {summary['mean']:.4f} [{summary['low']:.4f}, {summary['high']:.4f}], " if summary.get("sd") is not None else ""
        ensemble = f"their ensemble {summary['final_score']:.4f}; " if summary.get("final_score") is not None else ""
        typer.echo(f"{len(summary['seeds'])} seeds: {mean}{ensemble}run: {summary['run_dir']}")
    elif "cv_acc" in summary:
        extra = acc_text(summary["cv_acc"], " (acc ", ")") if metric != "accuracy" else ""
        typer.echo(f"cv {metric} {summary['cv_score']:.4f}{extra}{_post_score(summary, 'cv_score')} over {summary['folds_done']} folds; "
                   f"run: {summary['run_dir']}")
    elif summary["best_val_acc"] is None:
        typer.echo(f"trained {summary['epochs_run']} epochs without a validation split; run: {summary['run_dir']}")
    elif metric == "accuracy":
        typer.echo(f"best val acc {summary['best_val_acc']:.4f} at epoch {summary['best_epoch'] + 1}; run: {summary['run_dir']}")
    else:
        value = "n/a" if summary["best_val_score"] is None else f"{summary['best_val_score']:.4f}"
        typer.echo(f"best val {metric} {value}{_post_score(summary, 'best_val_score')}{acc_text(summary['best_val_acc'], ' (acc ', ')')} "
                   f"at epoch {summary['best_epoch'] + 1}; run: {summary['run_dir']}")


def _post_score(summary: dict, key: str) -> str:
    """", <what was fitted> <score>": the final score beside the raw `key` when it differs (`comp.tasks.final_score_key`)."""
    from comp.tasks import POST_WORDS, final_score_key

    final = final_score_key(summary, key)
    if final is None or final == key:
        return ""
    return f", {POST_WORDS[final[len(key):]]} {summary[final]:.4f}"


def _floats(text: Optional[str], what: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} takes comma-separated numbers, e.g. 0.6,0.4; got {text!r}") from None


@app.command(
    epilog=(
        "Examples:\n\n"
        "  comp predict runs/demo-5f --tta\n\n"
        "  comp predict runs/r50 runs/effnet --weights 0.6,0.4 --tta-views identity,hflip,rot10 --out sub/ens.csv\n\n"
        "  comp predict sub/a_probs.csv sub/b_probs.csv --data data/hw1 --out sub/ab.csv"
    )
)
def predict(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (k-fold runs expand to folds) or *_probs.csv tables.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition folder [default: the run's data.dir].")] = None,
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="Test-time augmentation with the runs' tta.views.")] = True,
    tta_views: Annotated[Optional[str], typer.Option("--tta-views", help="Views, e.g. identity,hflip,rot10,crop0.9,scale1.15.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Prediction CSV; _probs.csv and _meta.json go next to it.")] = Path("prediction.csv"),
    weights: Annotated[Optional[str], typer.Option("--weights", help="One weight per run, e.g. 0.6,0.4.")] = None,
    merge: Annotated[Optional[str], typer.Option("--merge", help="mean (of probabilities), geometric or logit (the same: mean of logits).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Decoding processes.")] = 2,
    id_column: Annotated[Optional[str], typer.Option("--id-column", help="CSV layout: train.csv id column [default: the run's].")] = None,
    label_column: Annotated[Optional[str], typer.Option("--label-column", help="CSV layout: train.csv label column [default: the run's].")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Apply each run's fitted temperature (log-loss runs).")] = True,
    shape: Annotated[str, typer.Option("--shape", help=(
        "Prediction CSV shape: auto (from sample_submission.csv and the run's metric), label (class names), probs (one "
        "probability column per class), positive (binary: the positive class's probability) or topk (k names, MAP@k)."))] = "auto",
) -> None:
    """Ensemble of runs and their folds x TTA views -> prediction CSV (in the sample submission's shape) + class probabilities."""
    from comp.predict import predict as predict_run

    with user_errors():
        predict_run(
            runs, data=data, tta=tta, views=tta_views, out=out, weights=_floats(weights, "--weights"),
            merge_rule=merge, batch_size=batch_size, workers=workers, id_column=id_column, label_column=label_column,
            shape=shape, calibrate=calibrate, log=typer.echo,
        )


@app.command(
    epilog="Examples:\n\n  comp evaluate runs/demo-5f --tta\n\n  comp evaluate runs/demo-5f --report report/\n\n  comp evaluate runs/a-5f runs/b-5f --tta --tta-views identity,hflip,rot10,rot-10 --fit"
)
def evaluate(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition folder [default: the run's data.dir].")] = None,
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="Score every TTA view and their merge.")] = False,
    tta_views: Annotated[Optional[str], typer.Option("--tta-views", help="Views to score, e.g. identity,hflip,rot10.")] = None,
    fit: Annotated[bool, typer.Option("--fit", help="Fit run weights and choose views by hill-climbing on the metric over held-out predictions.")] = False,
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Score log-loss runs with their fitted temperature, as predict does.")] = True,
    merge: Annotated[Optional[str], typer.Option("--merge", help="How views and runs are merged, as comp predict --merge [default: the first run's tta.merge].")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the error analysis here: per_class.csv, confusion_matrix.png, top_losses.png/.csv, calibration.png, report.md.")] = None,
    top_losses: Annotated[int, typer.Option("--top-losses", min=0, help="Images in top_losses.png/.csv.")] = 16,
) -> None:
    """The competition metric (and accuracy) of runs on validation / out-of-fold images, each TTA view and the ensemble."""
    from comp.evaluate import evaluate as evaluate_runs

    with user_errors():
        evaluate_runs(runs, data=data, tta=tta, views=tta_views, fit=fit, calibrate=calibrate, merge_rule=merge, report=report,
                      top_losses=top_losses, log=typer.echo)


@app.command(
    epilog="Examples:\n\n  comp compare runs/r50-5f runs/r50-5f-mixup\n\n  comp compare runs/a runs/b runs/c --metric log_loss --resamples 5000"
)
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories; every later run is compared with the first.")],
    metric: Annotated[Optional[str], typer.Option("--metric", help="Compare in this metric [default: the first run's].")] = None,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples of the held-out images.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the resampling.")] = 0,
) -> None:
    """Is B better than A? The paired difference in the metric on the held-out images both runs share, with a 95% bootstrap interval."""
    from comp.compare import compare as compare_runs

    with user_errors():
        compare_runs(runs, metric=metric, resamples=resamples, seed=seed, log=typer.echo)


@app.command(
    epilog="Examples:\n\n  comp submit prediction.csv -m 'r50 5-fold + tta'\n\n  comp submit prediction.csv --kaggle dog-breed-identification"
)
def submit(
    prediction: Annotated[Path, typer.Argument(help="Prediction CSV from comp predict.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition folder [default: from the prediction's _meta.json].")] = None,
    message: Annotated[str, typer.Option("-m", "--message", help="Note kept in submissions/history.csv.")] = "",
    kaggle: Annotated[Optional[str], typer.Option("--kaggle", help="Also submit with the Kaggle CLI to this competition.")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Archive folder.")] = Path("submissions"),
    id_column: Annotated[Optional[str], typer.Option("--id-column", help="CSV layout: train.csv id column [default: from _meta.json].")] = None,
    label_column: Annotated[Optional[str], typer.Option("--label-column", help="CSV layout: train.csv label column [default: from _meta.json].")] = None,
) -> None:
    """Validate against the sample submission, archive under submissions/, optionally submit to Kaggle."""
    from comp.submission.submit import submit as submit_file

    with user_errors():
        row = submit_file(
            prediction, data=data, message=message, kaggle=kaggle, directory=directory, id_column=id_column, label_column=label_column,
        )
    agreement = f", agrees {float(row['agreement_with_previous']):.1%} with the previous" if row["agreement_with_previous"] else ""
    typer.echo(f"valid; archived {row['path']} and {Path(row['zip']).name}{agreement}")


@app.command(
    epilog=(
        "Examples:\n\n"
        "  comp lb\n\n"
        "  comp lb 3 0.9412 --private 0.9387\n\n"
        "  comp lb 20261129-101500_prediction.csv 0.9412\n\n"
        "  comp lb --kaggle dog-breed-identification"
    ),
    context_settings={"ignore_unknown_options": True},  # a negative score (-0.5) is a value, not an option
)
def lb(
    submission: Annotated[Optional[str], typer.Argument(help="Archived submission: its row number in the ledger or its file name.")] = None,
    score: Annotated[Optional[str], typer.Argument(help="Its public leaderboard score (negative ones too).")] = None,
    private: Annotated[Optional[str], typer.Option("--private", help="Its private leaderboard score.")] = None,
    kaggle: Annotated[Optional[str], typer.Option("--kaggle", help="Fetch the scores of your submissions to this competition with the Kaggle CLI.")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Archive folder holding history.csv.")] = Path("submissions"),
) -> None:
    """Leaderboard scores in the submission ledger; prints CV beside LB and draws cv_vs_lb.png."""
    from comp.submission.lb import lb as leaderboard

    with user_errors():
        leaderboard(directory, submission, score, private, kaggle, log=typer.echo)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  comp package runs/demo-5f --out bundle\n\n"
        "  comp package runs/r50-5f runs/effnet-5f --weights 0.6,0.4 --half --out bundle\n\n"
        "Then on Kaggle: python /kaggle/input/bundle/inference.py --data /kaggle/input/COMPETITION --out /kaggle/working/submission.csv"
    )
)
def package(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (k-fold runs expand to folds).")],
    out: Annotated[Path, typer.Option("--out", help="New folder for the bundle (upload it as a Kaggle dataset).")],
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="Test-time augmentation with the runs' tta.views.")] = True,
    tta_views: Annotated[Optional[str], typer.Option("--tta-views", help="Views, e.g. identity,hflip,rot10.")] = None,
    weights: Annotated[Optional[str], typer.Option("--weights", help="One weight per run, e.g. 0.6,0.4.")] = None,
    merge: Annotated[Optional[str], typer.Option("--merge", help="mean, geometric or logit (as comp predict).")] = None,
    shape: Annotated[str, typer.Option("--shape", help="Prediction CSV shape, as comp predict --shape.")] = "auto",
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Apply each run's fitted temperature.")] = True,
    half: Annotated[bool, typer.Option("--half", help="Store fp16 weights (half the size); the agreement with fp32 is measured and printed.")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition whose test images measure the --half agreement [default: the run's].")] = None,
) -> None:
    """An offline inference bundle for Kaggle code competitions: inference.py reproduces comp predict without comp installed."""
    from comp.ship.package import package as package_runs

    with user_errors():
        package_runs(runs, out=out, tta=tta, views=tta_views, weights=_floats(weights, "--weights"), merge_rule=merge, shape=shape,
                     calibrate=calibrate, half=half, data=data, log=typer.echo)


@app.command(
    epilog="Examples:\n\n  comp export runs/demo --format onnx --out demo.onnx\n\n  comp export runs/demo-5f --format torchscript --out demo.pt"
)
def export(
    run: Annotated[Path, typer.Argument(help="A run directory (a k-fold run exports its folds as one model).")],
    format: Annotated[str, typer.Option("--format", help="onnx or torchscript.")],
    out: Annotated[Path, typer.Option("--out", help="Model file to write.")],
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Apply the run's fitted temperature inside the model.")] = True,
) -> None:
    """One self-contained model: uint8 RGB (N, 3, S, S) in, class probabilities out; checked against PyTorch after export."""
    from comp.ship.export import export as export_run

    with user_errors():
        export_run(run, format=format, out=out, calibrate=calibrate, log=typer.echo)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  comp tune configs/demo.yaml --data data/leaves --trials 20 --set 'tune.space={optim.lr: {log: [1.0e-4, 1.0e-2]}}'\n\n"
        "  comp tune configs/tune-demo.yaml --data data/leaves --jobs 2\n\n"
        "  comp tune configs/tune-demo.yaml --data /shared/leaves --storage postgresql+psycopg://comp@db-host/comp --study leaves\n\n"
        "  comp tune --summary runs/tune-demo-tune"
    )
)
def tune(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config with a tune.space, e.g. configs/tune-demo.yaml.", dir_okay=False)] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition folder (sets data.dir).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Study folder: trial_NNNN/ runs, study.db, best.yaml, plots [default: runs/<config>-tune].")] = None,
    trials: Annotated[Optional[int], typer.Option("--trials", min=1, help="The study's total of finished trials, over all workers (tune.trials).")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", min=0.01, help="Minutes this worker searches at most (tune.timeout).")] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help="SQLAlchemy URL shared by every worker [default: sqlite:///STUDY/study.db].")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name in the storage [default: the study folder's name].")] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Trials at once on this machine, each with its share of the cores.")] = 1,
    summary: Annotated[Optional[str], typer.Option("--summary", help="Only print the trials and write best.yaml and plots for this study folder (or storage URL).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key (repeatable).")] = None,
) -> None:
    """Search the config's tune.space with Optuna: each trial a run directory, the study shared through its storage."""
    from comp.tune import summarize, tune as tune_run

    with user_errors():
        if summary is not None:
            is_url = "://" in summary
            summarize(None if is_url else Path(summary), storage=summary if is_url else storage, study_name=study, log=typer.echo)
            return
        if config is None:
            raise UserError("comp tune needs a CONFIG with a tune.space (or --summary STUDY)")
        if not config.is_file():
            raise UserError(f"config file not found: {config} (pass a YAML file, e.g. configs/tune-demo.yaml)")
        tune_run(config, data=data, out=out, trials=trials, timeout=timeout, storage=storage, study_name=study, jobs=jobs,
                 overrides=set_ or [], log=typer.echo)


@app.command(
    "runs",
    epilog="Examples:\n\n  comp runs\n\n  comp runs runs/ other/runs --sort date\n\n  comp runs runs/tune-demo-tune --csv trials.csv\n\n"
           "  comp runs --vs runs/baseline --ci",
)
def runs_(
    folders: Annotated[Optional[list[Path]], typer.Argument(help="Folders holding run directories [default: runs].")] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", help="A column to sort by [default: the score, in the metric's direction]; date: newest first.")] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write the table to this CSV file.")] = None,
    vs: Annotated[Optional[Path], typer.Option("--vs", help="Add each run's difference to this run, with a 95% paired bootstrap interval, "
                                                            "where they share held-out images.")] = None,
    ci: Annotated[bool, typer.Option("--ci", help="Add each score's 95% bootstrap interval over its held-out images.")] = False,
) -> None:
    """A leaderboard of your runs: score, accuracy, epochs, model, time, and the config keys that differ among them."""
    from comp.runs import runs as list_runs

    with user_errors():
        list_runs(folders or [Path("runs")], sort=sort, csv=csv, vs=vs, ci=ci, log=typer.echo)


@app.command(epilog="Example:\n\n  comp demo --out demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo competition, run and submission.")] = Path("demo"),
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Override the demo config's epochs.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Config to train [default: configs/demo.yaml].")] = None,
) -> None:
    """Build the Fashion-MNIST demo competition and run train (final fit on train + val) -> predict --tta -> submit on it."""
    from comp.demo import run_demo

    with user_errors():
        run_demo(out, epochs=epochs, config=config, log=typer.echo)


@app.command(
    "lr-find",
    epilog="Example:\n\n  comp lr-find configs/demo.yaml --data data/hw1 --out runs/lr_find.png",
)
def lr_find(
    config: Annotated[Path, typer.Argument(help="YAML config, e.g. configs/demo.yaml.", exists=True, dir_okay=False)],
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition folder (sets data.dir).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Where the loss-vs-lr plot goes.")] = Path("lr_find.png"),
    steps: Annotated[int, typer.Option("--steps", min=10, help="Batches in the test.")] = 100,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key (repeatable).")] = None,
) -> None:
    """Learning-rate range test: prints the suggested optim.lr and saves the plot."""
    from comp.train import lr_find as lr_find_run

    with user_errors():
        lr_find_run(config, data=data, out=out, steps=steps, overrides=set_ or [], log=typer.echo)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  comp factors configs/factors/fashion-mnist.yaml --out runs/factors-fmnist\n\n"
        "  comp factors configs/factors/cifar10.yaml --data ~/data --epochs 2 --only base,residual\n\n"
        "  comp factors configs/factors/fashion-mnist.yaml --seeds 3 --epochs 2"
    )
)
def factors(
    suite: Annotated[Path, typer.Argument(help="Suite YAML, e.g. configs/factors/fashion-mnist.yaml.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="The dataset folder or its parent (like torchvision's root).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder [default: runs/factors-<suite>].")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Overrides every row's train.epochs.")] = None,
    only: Annotated[Optional[str], typer.Option("--only", help="Comma-separated rows to run, e.g. base,bn.")] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Train every row with N seeds (the same for every row): "
                                       "mean with a 95% interval, paired difference to base.")] = 1,
) -> None:
    """Run a factor suite: base recipe + one-factor variants, results table and plots."""
    from comp.factors import run_suite

    with user_errors():
        run_suite(suite, data=data, out=out, epochs=epochs, only=[s.strip() for s in only.split(",")] if only else None, seeds=seeds,
                  log=typer.echo)


@data_app.command(
    "check",
    epilog="Examples:\n\n  comp data check data/hw1\n\n  comp data check data/cassava --teacher runs/b4-5f --sure 0.9 --out runs/relabel",
)
def data_check(
    directory: Annotated[Path, typer.Argument(help="Competition folder.")],
    id_column: Annotated[Optional[str], typer.Option("--id-column", help="CSV layout: train.csv id column.")] = None,
    label_column: Annotated[Optional[str], typer.Option("--label-column", help="CSV layout: train.csv label column.")] = None,
    task: Annotated[str, typer.Option("--task", help="CSV layout: auto, single or multilabel (as data.task).")] = "auto",
    train_images: Annotated[Optional[str], typer.Option("--train-images", help="CSV layout: the training images' folder (as data.train_images).")] = None,
    test_images: Annotated[Optional[str], typer.Option("--test-images", help="CSV layout: the test images' folder (as data.test_images).")] = None,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", help="A k-fold run: list the labelled images its out-of-fold "
                                                    "prediction is sure of and disagrees with (CSV + contact sheet); no label changes.")] = None,
    sure: Annotated[float, typer.Option("--sure", help="With --teacher: how sure the teacher must be (probability).")] = 0.9,
    out: Annotated[Path, typer.Option("--out", help="With --teacher: the folder for teacher_disagreements.csv/.png.")] = Path("teacher_check"),
) -> None:
    """Audit a competition folder: layout, classes (tags) and counts, unreadable or odd images, duplicates."""
    from comp.data.audit import audit_competition, format_report
    from comp.tasks import check_choice

    if teacher is not None:
        from comp.teach.relabel import teacher_check

        with user_errors():
            teacher_check(directory, teacher, sure=sure, out=out, log=typer.echo)
        return
    with user_errors():
        report = audit_competition(directory, id_column, label_column, task=check_choice(task, "--task"), train_images=train_images,
                                   test_images=test_images)
    typer.echo(format_report(report))
    if not report.ok:
        raise typer.Exit(2)


def run() -> None:  # pragma: no cover - console entry point used by `python -m comp`
    app(prog_name="comp")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
