"""DistributedDataParallel under torchrun: 2 gloo processes on CPU against one process."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from comp.config import load_config
from comp.engine.checkpoint import load_checkpoint
from comp.engine.fit import fit
from comp.data.sampling import rank_batches
from tests.conftest import write_config

# No BatchNorm (ConvNeXt uses LayerNorm), no dropout, no augmentation: the two setups then compute
# the same gradients, up to the order of float additions. Plain SGD without momentum keeps those
# rounding differences at rounding scale; AdamW divides by the root of the second moment, which
# blows them up in near-zero gradients by an amount that depends on the CPU's vector width.
SAME_MATH = dict(
    model={"name": "test_convnext", "pretrained": "none", "head": "V0"},
    optim={"name": "sgd", "lr": 0.05, "momentum": 0.0, "weight_decay": 0.0},
    aug={"scale": [1.0, 1.0], "ratio": [1.0, 1.0], "hflip": 0.0, "translate": 0.0, "rotate": 0.0, "color_jitter": None},
)


def _rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_rank_batches_split_each_global_batch():
    order = torch.arange(10)
    one = [idx.tolist() for _, idx in rank_batches(order, 4, drop_last=False)]
    two = [[idx.tolist() for _, idx in rank_batches(order, 2, drop_last=False, rank=r, world=2)] for r in (0, 1)]
    assert one == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [a + b for a, b in zip(*two)] == one  # rank 0's slice, then rank 1's, = the big batch


def test_a_short_last_batch_leaves_no_rank_empty():
    # 3 samples, 2 ranks x batch 8: in batch_size slices rank 1 got nothing and DDP hung.
    parts = [[idx.tolist() for _, idx in rank_batches(torch.arange(3), 8, drop_last=False, rank=r, world=2)] for r in (0, 1)]
    assert parts == [[[0, 1]], [[2]]]
    # Fewer samples than ranks: training pads from the start of the epoch; evaluation does not.
    padded = [[idx.tolist() for _, idx in rank_batches(torch.arange(1), 8, drop_last=False, rank=r, world=2, pad=True)] for r in (0, 1)]
    assert padded == [[[0]], [[0]]]
    assert [idx.tolist() for _, idx in rank_batches(torch.arange(1), 8, drop_last=False, rank=1, world=2)] == [[]]


def _torchrun(*args: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "-m", "comp", *args],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=timeout,
    )


def test_ddp_trains_on_less_data_than_one_global_batch(tmp_path, shapes):
    # 42 train images, 2 ranks x batch 64: one short batch per epoch, which must reach both ranks.
    config = write_config(
        tmp_path / "c.yaml", data={"dir": str(shapes), "batch_size": 64, "workers": 0},
        train={"epochs": 1, "threads": 1, "checkpoint_minutes": 0},
    )
    result = _torchrun("train", str(config), "--out", str(tmp_path / "ddp"), timeout=150)  # a hang fails, not blocks
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["epochs_run"] == 1


@pytest.mark.parametrize("cache", ["on", "off"])
def test_two_gloo_processes_match_one_process(tmp_path, shapes, cache):
    config = write_config(
        tmp_path / "c.yaml", data={"dir": str(shapes), "batch_size": 8, "cache": cache, "workers": 0},
        train={"epochs": 3, "threads": 1, "seed": 0, "checkpoint_minutes": 0}, **SAME_MATH,
    )
    fit(load_config(config, ["data.batch_size=16"]), tmp_path / "single", log=lambda s: None)

    result = _torchrun("train", str(config), "--out", str(tmp_path / "ddp"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("epoch 3/3") == 1  # only rank 0 logs
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_agree"] is True

    a = load_checkpoint(tmp_path / "single" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    for k in a:
        # SGD: the float-order differences of the all-reduce stay near float32 rounding (~1e-7
        # relative); a rank training on the wrong images moves weights by the size of an update.
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-5), k
    single, ddp = _rows(tmp_path / "single"), _rows(tmp_path / "ddp")
    assert len(single) == len(ddp) == 3
    for x, y in zip(single, ddp):  # the loss of every epoch, i.e. the sum of its per-step losses
        assert float(x["train_loss"]) == pytest.approx(float(y["train_loss"]), rel=1e-4)
        assert float(x["val_loss"]) == pytest.approx(float(y["val_loss"]), rel=1e-4)


def test_predict_shards_test_images_across_ranks(tmp_path, shapes):
    from comp.predict import predict

    config = write_config(tmp_path / "c.yaml", data={"dir": str(shapes), "workers": 0}, train={"epochs": 1})
    fit(load_config(config), tmp_path / "run", log=lambda s: None)
    predict([tmp_path / "run"], out=tmp_path / "one.csv", workers=0, log=lambda s: None)
    result = _torchrun("predict", str(tmp_path / "run"), "--out", str(tmp_path / "two.csv"), "--workers", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()
    import pandas as pd

    a, b = pd.read_csv(tmp_path / "one_probs.csv"), pd.read_csv(tmp_path / "two_probs.csv")
    assert a.columns.tolist() == b.columns.tolist() and (a.iloc[:, 0] == b.iloc[:, 0]).all()
    assert abs(a.iloc[:, 1:].to_numpy() - b.iloc[:, 1:].to_numpy()).max() < 1e-5
