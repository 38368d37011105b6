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
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  comp train configs/demo.yaml --data data/shapes --epochs 1\n\n"
        "  comp train configs/resnet50-nycu.yaml --data data/hw1 --out runs/r50 --set optim.lr=3e-4 --set data.batch_size=32\n\n"
        "  comp train configs/demo.yaml --data data/shapes --folds 5 --out runs/demo-5f\n\n"
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
) -> None:
    """Fine-tune (or scratch-train) one model and write a run directory."""
    from comp.train import train as train_run

    with user_errors():
        summary = train_run(
            config, data=data, out=out, epochs=epochs, folds=folds, fold=fold, resume=resume, overwrite=overwrite,
            overrides=set_ or [], log=typer.echo,
        )
    if "cv_acc" in summary:
        typer.echo(f"cv acc {summary['cv_acc']:.4f} over {summary['folds_done']} folds; run: {summary['run_dir']}")
    else:
        typer.echo(f"best val acc {summary['best_val_acc']:.4f} at epoch {summary['best_epoch'] + 1}; run: {summary['run_dir']}")


@data_app.command(
    "check",
    epilog="Example:\n\n  comp data check data/hw1",
)
def data_check(
    directory: Annotated[Path, typer.Argument(help="Competition folder.")],
    id_column: Annotated[Optional[str], typer.Option(help="CSV layout: train.csv id column.")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="CSV layout: train.csv label column.")] = None,
) -> None:
    """Audit a competition folder: layout, classes and counts, unreadable or odd images, duplicates."""
    from comp.data.audit import audit_competition, format_report

    with user_errors():
        report = audit_competition(directory, id_column, label_column)
    typer.echo(format_report(report))
    if not report.ok:
        raise typer.Exit(2)


def run() -> None:  # pragma: no cover - console entry point used by `python -m comp`
    app(prog_name="comp")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
