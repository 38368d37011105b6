"""`comp data check DIR --teacher RUN`: the labelled images a k-fold teacher is sure are labelled wrong.

The relabelling step of Cassava-style solutions, done by eye: every training image is predicted
by the fold that did not train on it (the teacher's oof.csv); those whose prediction is at least
`sure` confident and disagrees with the label are listed (`teacher_disagreements.csv`: id, path,
label, the teacher's decision, how sure) and shown on a contact sheet
(`teacher_disagreements.png`, the surest first). Nothing is relabelled: the user decides, and
edits train.csv or moves the files. What "sure" and "disagree" mean is the task's (`Task.flagged`):
a class or tag probability of at least `sure`; for grades, a teacher a whole grade away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from comp.data.competition import open_competition
from comp.engine.rundir import saved_config
from comp.errors import Log, UserError
from comp.probs import read_probs

FILES = ("teacher_disagreements.csv", "teacher_disagreements.png")


def teacher_check(directory: Path, teacher: Path, *, sure: float = 0.9, out: Path = Path("teacher_check"), limit: int = 48,
                  log: Log = print) -> pd.DataFrame:
    """List (and picture the first `limit` of) the images of `directory` that `teacher`'s out-of-fold predictions contradict.

    Returns:
        The table written to `out/teacher_disagreements.csv`, surest first.
    """
    teacher = Path(teacher)
    if not 0 < sure <= 1:
        raise UserError(f"--sure {sure}: give a probability in (0, 1], e.g. 0.9")
    cfg = saved_config(teacher)
    if not (teacher / "oof.csv").is_file() or cfg is None:
        raise UserError(f"--teacher {teacher}: no oof.csv; give a finished k-fold run (comp train --folds K), whose folds "
                        "predict every labelled image without having trained on it")
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for {', '.join(FILES)}")
    competition = open_competition(directory, cfg.data.id_column, cfg.data.label_column, cfg.data.task, settings=cfg.data)
    task, classes = competition.task, competition.classes
    ids, probs, columns, meta = read_probs(teacher / "oof.csv")
    if columns != task.columns(classes):
        raise UserError(f"--teacher {teacher}: its oof.csv holds {columns[:4]}..., not {directory}'s {task.columns(classes)[:4]}...; "
                        "give a teacher of this competition")
    flagged, how = task.flagged(probs, task.targets(meta["label"], classes, teacher / "oof.csv"), sure)
    idx = flagged.nonzero().flatten().tolist()
    decided = task.decision_texts(probs[idx], classes) if idx else []
    table = pd.DataFrame({
        "id": [ids[i] for i in idx],
        "path": [str(Path(competition.root) / ids[i]) for i in idx],
        "label": [meta["label"][i] for i in idx],
        "teacher": decided,
        "sure": [float(how[i]) for i in idx],
    }).sort_values("sure", ascending=False, kind="stable")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / FILES[0], index=False)
    log(f"{len(table)} of {len(ids)} labelled images: the teacher's out-of-fold prediction is sure (>= {sure:g}) and disagrees "
        f"with the label; listed in {out / FILES[0]}" + ("" if len(table) else " (none)"))
    if len(table):
        _sheet(table.head(limit), out / FILES[1])
        log(f"the first {min(limit, len(table))} on {out / FILES[1]}; nothing was relabelled: fix train.csv (or move the files) "
            "where you agree")
    return table


def _sheet(table: pd.DataFrame, path: Path, columns: Optional[int] = None) -> None:
    from comp.evaluate.report.figures import plot_image_grid

    captions = [f"label: {r.label[:22]}\nteacher: {r.teacher[:22]}\nsure {r.sure:.2f}  {Path(r.id).name[-20:]}" for r in table.itertuples()]
    plot_image_grid(list(table["path"]), captions, path, "teacher_disagreements.csv: the teacher is sure and disagrees; "
                    "the labels are unchanged", columns or 6)
