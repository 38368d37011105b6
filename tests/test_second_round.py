"""Second rounds: per-fold pseudo-labels, OOF soft targets, distillation and comp data check --teacher, through the CLI;
the soft-target arithmetic and the refusals; resume; package == predict for a pseudo-labelled and a distilled student."""

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from comp.cli import app
from comp.data.synthetic import make_competition, make_graded_competition, make_tagged_competition
from comp.engine.checkpoint import load_checkpoint
from comp.probs import read_probs
from comp.tasks import get_task
from comp.tasks.losses import ClassWeightedLoss
from comp.tasks.soft_targets import Packing, TeachingLoss
from tests.conftest import one_line_error, write_config
from tests.ship.test_package import _run_offline

runner = CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A shapes competition, a 2-fold teacher on it and a single-run teacher (the default hold-out)."""
    tmp = tmp_path_factory.mktemp("second")
    data = make_competition(tmp / "shapes", classes=3, per_class=12, test_per_class=4, size=32)
    config = write_config(tmp / "c.yaml", data={"dir": str(data)}, train={"epochs": 2, "seed": 0})
    _ok(runner.invoke(app, ["train", str(config), "--folds", "2", "--out", str(tmp / "kfold")]))
    _ok(runner.invoke(app, ["train", str(config), "--out", str(tmp / "single")]))
    return tmp, data, config


def _summary(run):
    return json.loads((run / "summary.json").read_text())


def test_a_fold_learns_only_from_the_teacher_fold_that_held_out_its_validation_images(tmp_path, world):
    tmp, data, config = world
    teacher, student = tmp / "kfold", tmp_path / "student"
    out = _ok(runner.invoke(app, ["train", str(config), "--folds", "2", "--out", str(student), "--pseudo", str(teacher)]))
    assert "12 test images join" in out
    for i in range(2):
        record = _summary(student / f"fold_{i}")["teachers"]
        (used,) = record["pseudo"]["teachers"]
        assert used["models"] == [str(teacher / f"fold_{i}")] and not record["pseudo"]["leaky"]
        # the fold's validation images are exactly ones its teacher fold never trained on
        val_ids = set(read_probs(student / f"fold_{i}" / "val_probs.csv")[0])
        assert val_ids <= set(read_probs(teacher / f"fold_{i}" / "val_probs.csv")[0])
        # its targets are that fold's own TTA prediction of the test images, as comp predict makes it
        ids, values, _, _ = read_probs(student / f"fold_{i}" / "teacher_targets.csv")
        _ok(runner.invoke(app, ["predict", str(teacher / f"fold_{i}"), "--out", str(tmp_path / f"p{i}.csv")]))
        pids, pvalues, _, _ = read_probs(tmp_path / f"p{i}_probs.csv")
        assert len(ids) == 12 and [i.split("/")[-1].split(".")[0] for i in ids] == pids
        assert torch.allclose(values, pvalues, atol=1e-6)
    a = read_probs(student / "fold_0" / "teacher_targets.csv")[1]
    b = read_probs(student / "fold_1" / "teacher_targets.csv")[1]
    assert not torch.allclose(a, b)  # two teachers, not one ensemble
    # comp runs shows the teachers
    assert "kfold" in _ok(runner.invoke(app, ["runs", str(student)]))


def test_a_leaking_teacher_is_refused_before_anything_is_written_or_accepted_with_a_warning(tmp_path, world):
    tmp, data, config = world
    # a single student validates on images every fold of the k-fold teacher trained on
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "s"), "--pseudo", str(tmp / "kfold")]),
                   "pseudo.from", "trained on 3 of this run's 3 validation images", "pseudo.leak_ok=true")
    assert not (tmp_path / "s").exists()
    # a k-fold student cannot learn from a single run that trained on its folds' validation images
    one_line_error(runner.invoke(app, ["train", str(config), "--folds", "2", "--out", str(tmp_path / "s"), "--pseudo", str(tmp / "single")]),
                   "no k-fold run with this run's folds")
    assert not (tmp_path / "s").exists()
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "s"), "--pseudo", str(tmp / "kfold"),
                                  "--set", "pseudo.leak_ok=true"]))
    assert "CV score is optimistic" in out
    record = _summary(tmp_path / "s")["teachers"]["pseudo"]
    assert record["leaky"] and len(record["teachers"][0]["models"]) == 2
    # the same hold-out as the teacher's own: a clean single teacher
    _ok(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "t"), "--pseudo", str(tmp / "single")]))
    assert not _summary(tmp_path / "t")["teachers"]["pseudo"]["leaky"]


def test_refusals_each_one_line_before_training(tmp_path, world):
    tmp, data, config = world
    other = make_competition(tmp_path / "four", classes=4, per_class=6, test_per_class=2, size=32)
    one_line_error(runner.invoke(app, ["train", str(config), "--data", str(other), "--out", str(tmp_path / "a"), "--pseudo", str(tmp / "single")]),
                   "trained on other classes", "same competition")
    no_test = make_competition(tmp_path / "notest", classes=3, per_class=6, test_per_class=0, size=32, sample_submission=False)
    one_line_error(runner.invoke(app, ["train", str(config), "--data", str(no_test), "--out", str(tmp_path / "a"), "--pseudo", str(tmp / "single")]),
                   "has no test images")
    short = tmp_path / "short_probs.csv"
    pd.read_csv(tmp / "kfold" / "oof.csv").iloc[:3].drop(columns=["label", "fold"]).to_csv(short, index=False)
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "a"), "--pseudo", str(short),
                                       "--set", "pseudo.leak_ok=true"]), "has no prediction for", "cover the competition's test ids")
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "a"), "--pseudo", str(tmp / "single"),
                                       "--set", f"distill.from={tmp / 'single'}"]), "use one of them")
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "a"),
                                       "--set", f"train.oof_targets={{from: {tmp / 'single'}}}"]), "has no oof.csv")
    one_line_error(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "a"), "--pseudo", str(tmp_path / "nowhere")]),
                   "not found")
    assert not (tmp_path / "a").exists()
    # a teacher of another task: integer grades trained as classes, a student of the ordinal task
    grades = make_graded_competition(tmp_path / "aptos", images=24, test_images=4)
    _ok(runner.invoke(app, ["train", str(config), "--data", str(grades), "--out", str(tmp_path / "cls")]))
    one_line_error(runner.invoke(app, ["train", str(config), "--data", str(grades), "--out", str(tmp_path / "a"), "--pseudo",
                                       str(tmp_path / "cls"), "--set", "data.task=ordinal"]), "trained as single", "same task")
    one_line_error(runner.invoke(app, ["train", str(config), "--data", str(grades), "--out", str(tmp_path / "a"), "--set", "data.task=ordinal",
                                       "--set", "train.loss=corn", "--set", f"distill.from={tmp_path / 'cls'}"]), "corn learns whole grades")
    assert not (tmp_path / "a").exists()


def test_soft_targets_pack_and_weigh_the_task_loss_and_the_tempered_kl():
    task = get_task("single")
    hard = torch.tensor([0, 2, 1, 1])
    soft = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    packing = Packing.of(hard, 3)
    rows = packing.pack(hard, soft, torch.tensor([1.0, 1.0, 0.0, 0.5]), torch.tensor([0.0, 0.0, 2.0, 0.5]))
    back = packing.unpack(rows)
    assert torch.equal(back[0], hard) and back[0].dtype == torch.long and torch.equal(back[1], soft)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.1, 0.3], [0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    ce = ClassWeightedLoss(3, label_smoothing=0.1)
    t = 2.0
    loss = TeachingLoss(task, ce, packing, temperature=t)(logits, rows)

    def kl(i):  # by hand: T^2 KL(softmax(log q / T) || softmax(z / T))
        q = F.softmax(soft[i].log() / t, 0)
        return t * t * (q * (q.log() - F.log_softmax(logits[i] / t, 0))).sum()

    def smoothed_ce(i):
        target = F.one_hot(hard[i], 3).float() * 0.9 + 0.1 / 3
        return -(target * F.log_softmax(logits[i], 0)).sum()

    expected = (smoothed_ce(0) + smoothed_ce(1) + 0.5 * smoothed_ce(3) + 2.0 * kl(2) + 0.5 * kl(3)) / 4
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # multi-label: per-tag binary KL is 0 when the student matches the teacher, at any temperature
    tags = get_task("multilabel")
    q = torch.tensor([[0.9, 0.2], [0.3, 0.6]])
    assert tags.soft_loss(torch.logit(q), q, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    assert tags.soft_loss(torch.zeros(2, 2), q, 1.0).item() > 0.01


def test_oof_targets_blend_the_label_and_the_out_of_fold_prediction(tmp_path, world):
    tmp, data, config = world
    run = tmp_path / "oof"
    _ok(runner.invoke(app, ["train", str(config), "--folds", "2", "--out", str(run), "--set", f"train.oof_targets={{from: {tmp / 'kfold'}, mix: 0.25}}"]))
    oof = pd.read_csv(tmp / "kfold" / "oof.csv").set_index("id")
    classes = ["circle", "square", "triangle"]
    for i in range(2):
        ids, values, columns, _ = read_probs(run / f"fold_{i}" / "teacher_targets.csv")
        assert columns == classes and len(ids) == 18
        labels = oof.loc[ids, "label"]
        expected = 0.75 * F.one_hot(torch.tensor([classes.index(c) for c in labels]), 3).float() + 0.25 * torch.tensor(oof.loc[ids, classes].to_numpy())
        assert torch.allclose(values, expected.float(), atol=1e-6)
        assert _summary(run / f"fold_{i}")["teachers"]["oof_targets"]["mix"] == 0.25


def test_threshold_and_hard_pseudo_labels(tmp_path, world):
    tmp, data, config = world
    run = tmp_path / "hard"
    _ok(runner.invoke(app, ["predict", str(tmp / "single"), "--out", str(tmp_path / "p.csv")]))
    probs = read_probs(tmp_path / "p_probs.csv")[1]
    threshold = float(probs.max(1).values.median())
    out = _ok(runner.invoke(app, ["train", str(config), "--out", str(run), "--pseudo", str(tmp / "single"),
                                  "--set", f"pseudo.threshold={threshold}", "--set", "pseudo.hard=true", "--set", "pseudo.weight=0.3"]))
    kept = int((probs.max(1).values >= threshold).sum())
    assert f"{kept} of 12 test images kept" in out and 0 < kept < 12
    record = _summary(run)["teachers"]["pseudo"]
    assert record["kept"] == kept and record["hard"] and record["weight"] == 0.3
    assert len(read_probs(run / "teacher_targets.csv")[0]) == 12  # every teacher prediction is kept on record


@pytest.mark.parametrize("kind", ["pseudo", "distill"])
def test_resume_of_a_second_round_run_is_bitwise(tmp_path, world, kind):
    from comp.config import load_config
    from comp.distill import distill
    from comp.train import train

    tmp, data, config = world
    sets = ["train.epochs=3"]  # the seed of the single teacher: its hold-out is the student's

    def run(out, log):
        if kind == "pseudo":
            return train(config, out=out, overrides=sets + ["pseudo.final_epochs=1"], pseudo=[str(tmp / "single")], log=log)
        return distill([tmp / "kfold"], config, out=out, overrides=sets, log=log)

    def stop_after_epoch_2(line):
        if line.startswith("epoch 2/3"):
            raise KeyboardInterrupt

    run(tmp_path / "straight", lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", stop_after_epoch_2)
    assert (tmp_path / "resumed" / "teacher_targets.csv").is_file() and not (tmp_path / "resumed" / "summary.json").exists()
    if kind == "pseudo":
        train(config, out=tmp_path / "resumed", resume=True, log=lambda s: None)
    else:
        distill([tmp / "kfold"], config, out=tmp_path / "resumed", resume=True, log=lambda s: None)
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "straight" / name)["model"]
        b = load_checkpoint(tmp_path / "resumed" / name)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), name  # same machine: bitwise
    assert (tmp_path / "straight" / "teacher_targets.csv").read_bytes() == (tmp_path / "resumed" / "teacher_targets.csv").read_bytes()
    assert load_config(tmp_path / "resumed" / "config.yaml").model_dump() == load_config(tmp_path / "straight" / "config.yaml").model_dump()


def test_a_distilled_and_a_pseudo_labelled_student_package_as_they_predict(tmp_path, world):
    tmp, data, config = world
    student = tmp_path / "distilled"
    out = _ok(runner.invoke(app, ["distill", str(tmp / "kfold"), "--student", str(config), "--out", str(student), "--alpha", "0.7",
                                  "--temperature", "2"]))
    assert "teachers' held-out accuracy" in out
    record = _summary(student)["teachers"]
    assert record["distill"]["alpha"] == 0.7 and record["distill"]["test_images"] == 12 and record["teacher_score"] is not None
    assert len(record["distill"]["teachers"][0]["sha256"]) == 2  # both folds' best.pt
    pseudo = tmp_path / "pseudo"
    _ok(runner.invoke(app, ["train", str(config), "--folds", "2", "--out", str(pseudo), "--pseudo", str(tmp / "kfold")]))
    for run in (student, pseudo):
        bundle, expected = tmp_path / f"{run.name}-bundle", tmp_path / f"{run.name}-expected.csv"
        _ok(runner.invoke(app, ["package", str(run), "--out", str(bundle)]))
        _ok(runner.invoke(app, ["predict", str(run), "--out", str(expected)]))
        done = _run_offline(bundle, data, tmp_path / f"{run.name}-bundle.csv", tmp_path, tmp_path)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / f"{run.name}-bundle.csv").read_bytes() == expected.read_bytes()
    _ok(runner.invoke(app, ["submit", str(tmp_path / "distilled-expected.csv"), "--data", str(data)]))


def test_data_check_teacher_lists_confident_disagreements(tmp_path, world):
    tmp, data, config = world
    oof_ids, probs, classes, meta = read_probs(tmp / "kfold" / "oof.csv")
    sure = float(probs.max(1).values.quantile(0.3))
    labels = torch.tensor([classes.index(c) for c in meta["label"]])
    flagged = (probs.max(1).values >= sure) & (probs.argmax(1) != labels)
    out_dir = tmp_path / "check"
    out = _ok(runner.invoke(app, ["data", "check", str(data), "--teacher", str(tmp / "kfold"), "--sure", str(sure), "--out", str(out_dir)]))
    table = pd.read_csv(out_dir / "teacher_disagreements.csv")
    assert set(table["id"]) == {i for i, f in zip(oof_ids, flagged.tolist()) if f}
    assert f"{int(flagged.sum())} of {len(oof_ids)} labelled images" in out
    if len(table):
        assert (out_dir / "teacher_disagreements.png").is_file()
        assert (table["teacher"] != table["label"]).all() and (table["sure"] >= sure).all()
    one_line_error(runner.invoke(app, ["data", "check", str(data), "--teacher", str(tmp / "single"), "--out", str(out_dir)]), "k-fold")


@pytest.mark.parametrize("kind", ["multilabel", "ordinal", "regression"])
def test_pseudo_labels_and_distillation_for_every_task(tmp_path, kind):
    if kind == "multilabel":
        data, sets = make_tagged_competition(tmp_path / "tags", images=24, test_images=6), ["--set", "metric=f1_samples"]
    else:
        data = make_graded_competition(tmp_path / "g", kind="regression" if kind == "regression" else "ordinal", images=24, test_images=6)
        sets = ["--set", f"data.task={kind}", "--set", f"metric={'qwk' if kind == 'ordinal' else 'rmse'}"]
    config = write_config(tmp_path / "c.yaml", data={"dir": str(data)}, train={"epochs": 1, "seed": 0})
    _ok(runner.invoke(app, ["train", str(config), "--folds", "2", "--out", str(tmp_path / "t"), *sets]))
    _ok(runner.invoke(app, ["train", str(config), "--folds", "2", "--out", str(tmp_path / "s"), "--pseudo", str(tmp_path / "t"), *sets]))
    ids, values, columns, _ = read_probs(tmp_path / "s" / "fold_0" / "teacher_targets.csv")
    assert len(ids) == 6 and torch.isfinite(values).all()
    _ok(runner.invoke(app, ["distill", str(tmp_path / "t"), "--student", str(config), "--out", str(tmp_path / "d"), *sets]))
    _ok(runner.invoke(app, ["train", str(config), "--folds", "2", "--out", str(tmp_path / "o"), "--set",
                            f"train.oof_targets={{from: {tmp_path / 't'}}}", *sets]))
    for run in ("s", "d", "o"):
        _ok(runner.invoke(app, ["predict", str(tmp_path / run), "--out", str(tmp_path / f"{run}.csv")]))


def test_a_mistyped_teacher_key_is_named_as_the_user_types_it(tmp_path):
    from comp.config import load_config
    from comp.errors import UserError

    with pytest.raises(UserError, match=r"unknown key 'pseudo.fro'; did you mean 'pseudo.from'\?"):
        load_config(write_config(tmp_path / "c.yaml"), ["pseudo.fro=runs/x"])
