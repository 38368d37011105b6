"""k-fold training -> predict (ensemble x TTA) -> evaluate, on tiny runs."""

import json

import pandas as pd
import pytest
import torch

import comp.data.cache as cache
import comp.data.images as images
from comp.data.synthetic import make_competition
from comp.engine.infer import find_model_dirs, load_member, predict_views
from comp.errors import UserError
from comp.evaluate import evaluate
from comp.predict import predict
from comp.probs import read_probs
from comp.train import train
from tests.conftest import write_config

quiet = dict(log=lambda s: None)


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kfold")
    data = make_competition(tmp / "c", classes=3, per_class=12, test_per_class=3, size=32, class_names=["100", "3", "12"])
    cfg = write_config(tmp / "c.yaml", data={"dir": str(data)}, train={"epochs": 1})
    lines = []
    summary = train(cfg, out=tmp / "run", folds=3, log=lines.append)
    return tmp / "run", data, summary, lines


def test_kfold_run_layout_and_oof(kfold_run):
    run, data, summary, lines = kfold_run
    assert {"fold_0", "fold_1", "fold_2", "oof.csv", "cv.json", "config.yaml"} <= {p.name for p in run.iterdir()}
    ids, probs, classes, meta = read_probs(run / "oof.csv")
    assert classes == ["3", "12", "100"]
    assert len(ids) == len(set(ids)) == 36 and sorted(set(meta["fold"])) == [0, 1, 2]
    assert torch.allclose(probs.sum(1), torch.ones(36), atol=1e-4)
    cv = json.loads((run / "cv.json").read_text())
    assert cv["cv_acc"] == pytest.approx(summary["cv_acc"]) and cv["folds_done"] == 3
    assert any(line.strip().startswith("cv") for line in lines)


def test_fold_needs_folds_and_range(tmp_path, shapes):
    cfg = write_config(tmp_path / "c.yaml", data={"dir": str(shapes)})
    with pytest.raises(UserError, match="--fold I needs --folds K"):
        train(cfg, out=tmp_path / "r", fold=0, **quiet)
    with pytest.raises(UserError, match=r"--fold 3 is outside 0..2"):
        train(cfg, out=tmp_path / "r", folds=3, fold=3, **quiet)


def test_single_fold_then_the_rest_into_one_run(tmp_path, shapes):
    cfg = write_config(tmp_path / "c.yaml", data={"dir": str(shapes)})
    cv = train(cfg, out=tmp_path / "r", folds=2, fold=1, **quiet)
    assert cv["folds_done"] == 1
    cv = train(cfg, out=tmp_path / "r", folds=2, fold=0, **quiet)
    assert cv["folds_done"] == 2 and cv["images"] == 48


def test_predict_writes_names_in_sample_format(kfold_run, tmp_path):
    run, data, _, _ = kfold_run
    meta = predict([run], out=tmp_path / "p.csv", views=["identity", "hflip", "rot10"], workers=0, **quiet)
    df = pd.read_csv(tmp_path / "p.csv", dtype=str)
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    assert list(df.columns) == list(sample.columns)
    assert list(df.iloc[:, 0]) == list(sample.iloc[:, 0])
    assert set(df.iloc[:, 1]) <= {"3", "12", "100"}
    ids, probs, classes, _ = read_probs(tmp_path / "p_probs.csv")
    assert classes == ["3", "12", "100"] and ids == list(sample.iloc[:, 0])
    assert [classes[i] for i in probs.argmax(1)] == list(df.iloc[:, 1])  # names, not indices
    assert meta["models"] == 3 and meta["views"][str(run)] == ["identity", "hflip", "rot10"]
    assert meta["cv_score"] == pytest.approx(json.loads((run / "cv.json").read_text())["cv_acc"])


def test_each_test_image_is_decoded_once_whatever_the_views(kfold_run, tmp_path, monkeypatch):
    run, data, _, _ = kfold_run
    calls = []
    real = images.decode_rgb
    counting = lambda p, *a, **k: calls.append(p) or real(p, *a, **k)  # noqa: E731
    monkeypatch.setattr(images, "decode_rgb", counting)  # file path
    monkeypatch.setattr(cache, "decode_rgb", counting)  # tensor cache
    monkeypatch.setenv("COMP_CACHE_DIR", str(tmp_path / "fresh-cache"))
    predict([run], out=tmp_path / "p.csv", views=["identity", "hflip", "vflip", "rot10", "crop0.9", "scale1.25"], workers=0, **quiet)
    assert len(calls) == 9 and len(set(calls)) == 9  # 9 test images, 3 folds x 6 views
    predict([run / "fold_1"], out=tmp_path / "q.csv", views=["identity"], workers=0, **quiet)
    assert len(calls) == 9  # a later prediction of the same test set reuses the cache


def test_reensemble_from_probability_tables(kfold_run, tmp_path):
    run, data, _, _ = kfold_run
    predict([run / "fold_0"], out=tmp_path / "a.csv", tta=False, workers=0, **quiet)
    predict([run / "fold_1"], out=tmp_path / "b.csv", tta=False, workers=0, **quiet)
    predict([tmp_path / "a_probs.csv", tmp_path / "b_probs.csv"], data=data, weights=[3, 1], out=tmp_path / "ab.csv", **quiet)
    _, pa, _, _ = read_probs(tmp_path / "a_probs.csv")
    _, pb, _, _ = read_probs(tmp_path / "b_probs.csv")
    _, pab, _, _ = read_probs(tmp_path / "ab_probs.csv")
    assert torch.allclose(pab, 0.75 * pa + 0.25 * pb, atol=1e-5)
    with pytest.raises(UserError, match="--weights has 1 values for 2 runs"):
        predict([tmp_path / "a_probs.csv", tmp_path / "b_probs.csv"], data=data, weights=[1], **quiet)


def test_predict_errors(kfold_run, tmp_path):
    run, data, _, _ = kfold_run
    with pytest.raises(UserError, match="not a comp run"):
        predict([tmp_path], data=data, **quiet)
    with pytest.raises(UserError, match="unknown TTA view 'spin'"):
        predict([run], views=["spin"], **quiet)
    other = make_competition(tmp_path / "other", classes=2, per_class=3, test_per_class=1)
    with pytest.raises(UserError, match="trained on classes"):
        predict([run], data=other, **quiet)
    first = data / "test" / "img_00000.png"
    good = first.read_bytes()
    first.write_bytes(good[:20])  # truncated: predicting must name it, on the cached and the file path
    member = load_member(find_model_dirs(run)[0], torch.device("cpu"))
    try:
        for cache_mode in ("on", "off"):
            member.cfg.data.cache = cache_mode
            with pytest.raises(UserError, match=r"cannot read image .*img_00000.png; replace or re-download"):
                predict_views([member], [["identity"]], [first], device=torch.device("cpu"), workers=0)
    finally:
        first.write_bytes(good)
    (data / "test" / "img_00000.png").rename(data / "img_00000.png")
    try:
        with pytest.raises(UserError, match="ids have no test image"):
            predict([run], **quiet)
    finally:
        (data / "img_00000.png").rename(data / "test" / "img_00000.png")


def test_id_style_and_columns_follow_the_csv_competition(tmp_path):
    data = make_competition(tmp_path / "c", classes=2, per_class=8, test_per_class=2, layout="csv", id_style="name", ext=".jpg")
    cfg = write_config(tmp_path / "c.yaml", data={"dir": str(data)})
    train(cfg, out=tmp_path / "run", **quiet)
    predict([tmp_path / "run"], out=tmp_path / "p.csv", workers=0, **quiet)
    df = pd.read_csv(tmp_path / "p.csv", dtype=str)
    assert list(df.columns) == ["id", "label"]
    assert all(i.endswith(".jpg") for i in df["id"])


def test_evaluate_scores_views_oof_and_ensembles(kfold_run):
    run, data, summary, _ = kfold_run
    res = evaluate([run], tta=True, views=["identity", "hflip"], **quiet)
    r = res["runs"][str(run)]
    assert r["images"] == 36 and set(r["views"]) == {"identity", "hflip"}
    assert r["views"]["identity"] == pytest.approx(summary["cv_acc"], abs=1e-6)  # same models, same images
    res = evaluate([run, run / "fold_0"], tta=True, views=["identity", "hflip"], fit=True, **quiet)
    assert res["ensemble_images"] == 12  # fold_0's val images are the shared ones
    assert len(res["weights"]) == 2 and sum(res["weights"]) == pytest.approx(1)
    assert res["views_selected"] and set(res["views_selected"]) <= {"identity", "hflip"}
