"""The Typer app, its `--debug` switch and `user_errors`: a `UserError` from any command prints one
line `error: ...` and exits 2; `comp --debug ...` shows the traceback instead."""

from __future__ import annotations

import contextlib
import os
from typing import Annotated, Iterator

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


def run() -> None:  # pragma: no cover - console entry point used by `python -m comp`
    app(prog_name="comp")
