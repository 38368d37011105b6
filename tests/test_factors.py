"""`comp factors` on a tiny Fashion-MNIST-format fixture; the finders on their own."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import yaml
from typer.testing import CliRunner

from comp.cli import app
from comp.engine.finders import find_batch_size, lr_range_test, suggest_lr
from comp.factors import load_suite, run_suite
from comp.errors import UserError

runner = CliRunner()


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory) -> Path:
    """Fashion-MNIST idx files with 3 learnable classes: a bright band in rows, columns or the centre."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for split, n, prefix in (("train", 240, "train"), ("test", 60, "t10k")):
        y = np.arange(n) % 3
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        x[y == 0, 10:18, :] = 220
        x[y == 1, :, 10:18] = 220
        x[y == 2, 8:20, 8:20] = 220
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(x)))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y.astype(np.uint8))))
    return root


def _suite(tmp_path: Path, **extra) -> Path:
    suite = {
        "dataset": "fashion-mnist",
        "val_fraction": 0.2,
        "base": {
            "data": {"batch_size": 32},
            "model": {"name": "scratch_cnn_small", "head": "V0"},
            "optim": {"name": "adamw", "lr": 0.003},
            "train": {"epochs": 2, "label_smoothing": 0.0},
            "aug": {"scale": [1.0, 1.0], "hflip": 0.0, "translate": 0.0, "rotate": 0.0, "color_jitter": None},
        },
        "factors": {
            "bn": {"model": {"name": "scratch_cnn_small_bn"}},
            "aug": {"aug": {"translate": 0.1, "erase": 0.5}},
            "bn_aug": {"combine": ["bn", "aug"], "optim": {"lr": "find"}, "data": {"batch_size": "find"}},
        },
        **extra,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_suite_runs_tabulates_plots_and_resumes(tmp_path, fmnist):
    suite, out = _suite(tmp_path), tmp_path / "out"
    lines = []
    table = run_suite(suite, data=fmnist, out=out, log=lines.append)
    assert table["name"].tolist() == ["base", "bn", "aug", "bn_aug"]
    assert (table["test_acc"] > 0.6).all(), table  # chance is 1/3
    assert table.loc[0, "delta_vs_base"] == 0 and table["params"].gt(0).all()
    for f in ("results.csv", "results.md", "results.png", "base/curves.png", "bn_aug/lr_find.png"):
        assert (out / f).is_file(), f
    md = (out / "results.md").read_text()
    assert "| bn_aug | scratch_cnn_small_bn |" in md and "best val loss" in md
    combined = yaml.safe_load((out / "bn_aug" / "config.yaml").read_text())
    assert combined["aug"]["erase"] == 0.5 and combined["model"]["name"] == "scratch_cnn_small_bn"
    assert combined["optim"]["lr"] != 0.003 and combined["data"]["batch_size"] == 16  # capped at a tenth of 192 train images
    assert any("lr range test: suggested" in line for line in lines)

    lines.clear()
    again = run_suite(suite, data=fmnist, out=out, log=lines.append)
    assert sum("finished earlier, skipped" in line for line in lines) == 4
    pd.testing.assert_frame_equal(again, table)


def test_cli_only_and_epochs(tmp_path, fmnist):
    out = tmp_path / "out"
    result = runner.invoke(app, ["factors", str(_suite(tmp_path)), "--data", str(fmnist), "--out", str(out), "--epochs", "1", "--only", "base,bn"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv")
    assert table["name"].tolist() == ["base", "bn"] and table["epochs"].tolist() == [1, 1]
    bad = runner.invoke(app, ["factors", str(_suite(tmp_path)), "--data", str(fmnist), "--out", str(out), "--only", "nope"])
    assert bad.exit_code == 2 and "unknown row(s) ['nope']" in bad.output


def test_suite_mistakes_are_named(tmp_path, fmnist):
    with pytest.raises(UserError, match="dataset must be one of"):
        load_suite(_suite(tmp_path, dataset="mnist"))
    with pytest.raises(UserError, match="combines unknown factor 'ghost'"):
        load_suite(_suite(tmp_path, factors={"x": {"combine": ["ghost"]}}))
    with pytest.raises(UserError, match=r"row 'typo'.*unknown key 'optim.lrr'"):
        run_suite(_suite(tmp_path, factors={"typo": {"optim": {"lrr": 1}}}), data=fmnist, out=tmp_path / "o", log=lambda s: None)


def test_shipped_suites_validate():
    from types import SimpleNamespace

    from comp.factors import row_config

    fake = SimpleNamespace(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    suites = sorted((Path(__file__).resolve().parents[1] / "configs" / "factors").glob("*.yaml"))
    assert [p.stem for p in suites] == ["cifar10", "cifar100", "fashion-mnist", "tiny-imagenet"]  # from any working directory
    for path in suites:
        suite = load_suite(path)
        assert "base" in suite["rows"] and len(suite["rows"]) >= 5, path
        for name, raw in suite["rows"].items():
            cfg, _ = row_config(raw, fake, None, name, path)  # every row is a valid comp config
            assert cfg.model.pretrained == "none" and cfg.model.name.startswith("scratch_"), (path, name)


def test_lr_range_test_suggests_a_rate_below_the_blow_up():
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    y = (x[:, 0] > 0).long()
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)]
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    before = [p.clone() for p in model.parameters()]
    lrs, losses, lr = lr_range_test(
        model, batches, lambda m: torch.optim.SGD(m.parameters(), lr=1.0), nn.CrossEntropyLoss(), device=torch.device("cpu"),
    )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the model itself is untouched
    assert 1e-4 < lr < lrs[-1] and min(losses) < losses[0]



def test_suggest_lr_is_the_steepest_descent():
    lrs = np.logspace(-6, 0, 31)
    x = np.log10(lrs)
    # The loss falls fastest at lr = 1e-3 (index 15), then blows up past 1e-1.
    losses = 2 - np.tanh(2 * (x + 3)) + 50 * np.clip(x + 1, 0, None)
    assert suggest_lr(list(lrs), list(losses)) == lrs[15]
    assert suggest_lr([1e-3, 1e-2, 1e-1], [1.0, 0.9, 2.0]) == 1e-2  # too short to differentiate: the middle


class _Clocked(nn.Module):
    """A model whose forward pass advances a fake clock by `cost[batch size]` seconds.

    The clock is a class attribute: the finder trains a deep copy of the model.
    """

    clock = [0.0]

    def __init__(self, cost):
        super().__init__()
        self.cost, self.fc = cost, nn.Linear(4, 2)

    def forward(self, x):
        self.clock[0] += self.cost[len(x)]
        return self.fc(x)


@pytest.mark.parametrize("cost, oom_from, expected", [
    ({8: 1.0, 16: 1.0, 32: 3.0, 64: 1.0}, None, 16),  # 32 is slower per image than 16: stop there
    ({8: 1.0, 16: 1.0, 32: 1.0, 64: 1.0}, 64, 32),  # 64 does not fit: the largest that did
    ({8: 1.0, 16: 2.0, 32: 4.0, 64: 8.0}, None, 8),  # no gain from larger batches: the smallest
])
def test_batch_size_finder_picks_the_fastest_that_fits(monkeypatch, cost, oom_from, expected):
    import comp.engine.finders as finders

    clock = _Clocked.clock
    monkeypatch.setattr(finders.time, "perf_counter", lambda: clock[0])

    def sample(b):
        if oom_from and b >= oom_from:
            raise torch.OutOfMemoryError("fake")
        return torch.randn(b, 4), torch.randint(0, 2, (b,))

    bs = find_batch_size(
        _Clocked(cost), sample, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), nn.CrossEntropyLoss(),
        device=torch.device("cpu"), candidates=(8, 16, 32, 64),
    )
    assert bs == expected


def test_seeds_give_intervals_and_paired_differences_computed_by_hand(tmp_path, fmnist):
    out = tmp_path / "out"
    result = runner.invoke(app, ["factors", str(_suite(tmp_path)), "--data", str(fmnist), "--out", str(out), "--epochs", "1",
                                 "--only", "base,bn", "--seeds", "3"])
    assert result.exit_code == 0, result.output
    for row in ("base", "bn"):
        assert sorted(p.name for p in (out / row).glob("seed_*")) == ["seed_42", "seed_43", "seed_44"]  # base's train.seed 42, +1, +2
    assert yaml.safe_load((out / "bn" / "seed_43" / "config.yaml").read_text())["train"]["seed"] == 43
    per_seed = pd.read_csv(out / "results_seeds.csv")
    table = pd.read_csv(out / "results.csv").set_index("name")
    from scipy import stats

    t = stats.t.ppf(0.975, 2)
    for row in ("base", "bn"):
        acc = per_seed[per_seed["name"] == row].sort_values("seed")["test_acc"].to_numpy()
        half = t * acc.std(ddof=1) / np.sqrt(3)
        assert table.loc[row, "test_acc"] == pytest.approx(acc.mean())
        assert (table.loc[row, "test_acc_low"], table.loc[row, "test_acc_high"]) == pytest.approx((acc.mean() - half, acc.mean() + half))
    a = per_seed[per_seed["name"] == "base"].sort_values("seed")["test_acc"].to_numpy()
    b = per_seed[per_seed["name"] == "bn"].sort_values("seed")["test_acc"].to_numpy()
    d = (b - a) * 100
    half = t * d.std(ddof=1) / np.sqrt(3)
    assert table.loc["bn", "delta_vs_base"] == pytest.approx(d.mean())
    assert (table.loc["bn", "delta_low"], table.loc["bn", "delta_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert bool(table.loc["bn", "outside_noise"]) == (d.mean() - half > 0 or d.mean() + half < 0)
    md = (out / "results.md").read_text()
    assert "paired 95% CI" in md and "| bn | scratch_cnn_small_bn |" in md
    assert (out / "results.png").is_file()
    again = runner.invoke(app, ["factors", str(_suite(tmp_path)), "--data", str(fmnist), "--out", str(out), "--epochs", "1",
                                "--only", "base,bn", "--seeds", "3"])
    assert again.output.count("finished earlier, skipped") == 6
