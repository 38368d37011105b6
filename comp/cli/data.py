"""`comp data check`: parse, call one plain function, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli.app import data_app, user_errors


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
