"""`comp predict`, `evaluate`, `compare`, `submit`, `lb`, `package`, `export` and `runs`: parse, call one plain function, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli.app import app, user_errors
from comp.errors import UserError


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
