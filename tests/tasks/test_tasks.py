"""The Task interface: every registered task fills it in, and the pieces every stage shares behave.

A new task copies these tests (docs/contract.md, "Adding a task"): the interface check runs for it
as soon as it is registered; the round trip of each submission shape and the score key need only
its shapes and targets.
"""

import inspect

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from comp.config import load_config
from comp.data.competition import SubmissionFormat
from comp.errors import UserError
from comp.tasks import TASKS, Task, final_score, final_score_key, get_task, tracked_keys
from comp.tasks.multilabel import MultiLabel
from comp.tasks.single import SingleLabel
from tests.conftest import write_config

CLASSES = ["arctic fox", "cat", "dog"]


def _abstract_methods() -> list[str]:
    """The methods of `Task` that raise NotImplementedError: what every task must write."""
    return [name for name, fn in inspect.getmembers(Task, inspect.isfunction)
            if "raise NotImplementedError" in inspect.getsource(fn)]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_fills_in_the_interface(name):
    kind = TASKS[name]
    assert kind.name == name and kind.label and kind.what
    missing = [m for m in _abstract_methods() if getattr(kind, m) is getattr(Task, m)]
    assert not missing, f"{name} lacks {missing}"
    assert len(_abstract_methods()) > 20  # the check sees the interface, not an empty list


def test_get_task_carries_the_data_settings_and_refuses_unknown_names(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["data.at_least_one_tag=false", "data.positive_class=dog"])
    assert get_task("multilabel", cfg.data).ensure_one is False and get_task("single", cfg.data).positive_class == "dog"
    with pytest.raises(UserError, match="data.task 'auto'"):
        get_task("auto")  # auto is resolved from the data first (comp.data.labels)


def test_the_final_score_key_is_the_one_of_what_predict_writes():
    summary = {"best_val_score": 0.5, "best_val_score_calibrated": 0.4}
    assert final_score_key(summary, "best_val_score") == "best_val_score_calibrated"
    assert final_score_key(summary, "best_val_score", calibrated=False) == "best_val_score"
    tags = {"cv_score": 0.6, "cv_score_thresholded": 0.7}
    assert final_score(tags, "cv_score") == 0.7
    assert final_score(tags, "cv_score", calibrated=False) == 0.7  # --no-calibrate keeps the thresholds predict applies
    assert final_score({"cv_score": None, "cv_score_calibrated": None}, "cv_score") is None
    assert final_score_key({}, "cv_score") is None
    assert {"best_val_score_thresholded", "cv_score_calibrated"} <= set(tracked_keys(["best_val_score", "cv_score", "seconds"]))


def test_multilabel_focal_loss_applies_the_tag_weights(tmp_path):
    # train.class_weights used to be dropped by the focal (and asl) tag loss while summary.json recorded them.
    from torchvision.ops import sigmoid_focal_loss

    cfg = load_config(write_config(tmp_path / "c.yaml"), ["train.loss=focal", "train.focal_gamma=2", "train.label_smoothing=0"])
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.5, 1.5, -2.0]])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    weight = torch.tensor([1.0, 4.0, 0.5])
    plain, _ = MultiLabel().loss(cfg.train, 3)
    weighted, _ = MultiLabel().loss(cfg.train, 3, weight)
    assert plain(logits, y).item() == pytest.approx(sigmoid_focal_loss(logits, y, alpha=-1, gamma=2, reduction="mean").item(), rel=1e-6)
    p = torch.sigmoid(logits)
    p_t = p * y + (1 - p) * (1 - y)
    expected = (F.binary_cross_entropy_with_logits(logits, y, pos_weight=weight, reduction="none") * (1 - p_t) ** 2).mean()
    assert weighted(logits, y).item() == pytest.approx(expected.item(), rel=1e-6)
    assert weighted(logits, y).item() != pytest.approx(plain(logits, y).item(), rel=1e-3)


def test_settings_a_task_cannot_use_are_refused_before_training(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["metric=f2_samples", "train.loss=asl", "train.class_weights=balanced"])
    with pytest.raises(UserError, match="asymmetric loss takes no weights"):
        MultiLabel().check(cfg, CLASSES)
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["metric=f2_samples", "tta.merge=geometric"])
    with pytest.raises(UserError, match="tta.merge=geometric"):
        MultiLabel().check(cfg, CLASSES)
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["train.loss=asl"])
    with pytest.raises(UserError, match="asl is the multi-label"):
        SingleLabel().check(cfg, CLASSES)
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["metric=f2_samples"])
    with pytest.raises(UserError, match="f2_samples scores multi-label"):
        SingleLabel().check(cfg, CLASSES)


def _probs(task: Task) -> torch.Tensor:
    logits = torch.tensor([[3.0, 0.5, -1.0], [-1.0, 2.0, 2.5], [0.0, -3.0, 1.0], [1.0, 1.0, -2.0]])
    return task.activation(logits)


@pytest.mark.parametrize("task,kinds,metric", [
    (SingleLabel(), ["label", "probs", "topk"], "accuracy"),
    (MultiLabel(), ["tags", "onehot", "probs"], "f2_samples"),
])
def test_every_shape_a_task_writes_passes_its_own_validation(task, kinds, metric):
    probs = _probs(task)
    ids = [f"t{i}" for i in range(len(probs))]
    classes = ["a", "b", "c"]
    for kind in kinds:
        fmt = SubmissionFormat(["id", "value"] if kind in ("label", "topk", "tags") else ["id", *classes], "stem")
        shape = task.resolve_shape(fmt, classes, "map@2" if kind == "topk" else metric, kind)
        columns = task.decode(probs, classes, shape, thresholds=[0.5, 0.6, 0.7] if kind != "probs" else None)
        df = pd.DataFrame({"id": ids, **columns}).astype(str)
        df.columns = shape.columns
        task.check_values("p.csv", df, shape, classes)  # raises on a value the shape cannot hold
        assert task.guess_shape(df, fmt, classes).kind == kind


def test_single_label_ties_tags_and_activations():
    single, multi = SingleLabel(), MultiLabel(ensure_one=False)
    p = _probs(single)
    assert torch.allclose(p.sum(1), torch.ones(len(p)))
    assert single.accuracy(p, torch.tensor([0, 2, 2, 1])) == pytest.approx(0.75)
    q = _probs(multi)
    shape = multi.resolve_shape(SubmissionFormat(["id", "tags"], "stem"), ["a", "b", "c"], "f1_samples")
    written = multi.decode(q, ["a", "b", "c"], shape, [0.5, 0.5, 0.5])["tags"]
    assert written == ["a b", "b c", "a c", "a b"]  # each tag at or above its threshold, in class order
    assert multi.decode(torch.full((1, 3), 0.1), ["a", "b", "c"], shape)["tags"] == [""]  # no tag kept: at_least_one_tag off
    assert MultiLabel().decode(torch.full((1, 3), 0.1), ["a", "b", "c"], shape)["tags"] != [""]


def test_agreement_values_keep_whole_names_and_ignore_tag_order():
    fmt = SubmissionFormat(["id", "label"], "stem")
    label = SingleLabel().resolve_shape(fmt, CLASSES, "accuracy")
    values = pd.Series(["arctic fox", "cat"])
    assert SingleLabel().compared(values, label, CLASSES).tolist() == ["arctic fox", "cat"]
    assert SingleLabel().compared(pd.Series(["0.3", "0.7"]), label, CLASSES) is None  # numbers under the same header
    tags = MultiLabel().resolve_shape(fmt, CLASSES, "f2_samples")
    assert MultiLabel().compared(pd.Series(["dog cat", "cat dog"]), tags, CLASSES).nunique() == 1


def test_an_ensembles_decisions_are_compared_as_the_task_writes_them():
    a = torch.tensor([[0.6, 0.4], [0.2, 0.8]])
    b = torch.tensor([[0.55, 0.45], [0.6, 0.4]])
    assert SingleLabel().same_decisions(a, b).tolist() == [True, False]
    assert MultiLabel().same_decisions(a, b, [0.5, 0.5]).tolist() == [True, False]
    assert MultiLabel().same_decisions(a, a, [0.5, 0.5]).tolist() == [True, True]
    assert np.isfinite(MultiLabel().score("roc_auc", a, torch.tensor([[1, 0], [0, 1]]), ["a", "b"]))
