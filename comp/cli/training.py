"""`comp train`, `distill`, `tune`, `lr-find`, `factors` and `demo`: parse, call one plain function, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli.app import app, user_errors
from comp.errors import UserError


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
