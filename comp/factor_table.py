"""The factor suite's table and plot (`comp factors`): one row per suite row, from its factor.json files.

With one seed a row is OUT/<row>/factor.json and its delta to base is a plain difference. With
`--seeds N` a row is OUT/<row>/seed_<s>/factor.json for each seed s, and the table shows, per row:
the mean test accuracy with its 95% t-interval over the seeds and their standard deviation, and
the difference to `base` as the mean of the paired differences (seed s of the row minus seed s of
base: the same seeds for every row) with its 95% t-interval. A row whose interval excludes 0 is
marked `*`: its effect is outside the seeds' noise. The interval covers training noise (init,
data order, augmentation); the test images are the same for every row, so it does not cover how
a different test set would move every row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from comp.stats import paired_t, t_interval

PER_SEED = "results_seeds.csv"


def seed_dirs(row_dir: Path, seeds: Optional[Sequence[int]]) -> list[Path]:
    """Where a row's runs are: OUT/<row> itself with one seed (None), else OUT/<row>/seed_<s> per seed."""
    return [row_dir] if seeds is None else [row_dir / f"seed_{s}" for s in seeds]


def collect_results(out: Path, order: Sequence[str], seeds: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """The finished rows' factor.json files as a table, with the delta to base in points (and,
    with `seeds`, the intervals of the module docstring; a row counts the seeds it has finished)."""
    if seeds is None:
        found = [json.loads((out / n / "factor.json").read_text()) for n in order if (out / n / "factor.json").is_file()]
        table = pd.DataFrame(found)
        if table.empty:
            return table
        base = table.loc[table["name"] == "base", "test_acc"]
        table["delta_vs_base"] = ((table["test_acc"] - base.iloc[0]) * 100).round(2) if len(base) else float("nan")
        return table
    per_seed = seed_results(out, order, seeds)
    if per_seed.empty:
        return per_seed
    base = per_seed[per_seed["name"] == "base"].set_index("seed")["test_acc"]
    rows = []
    for name, group in per_seed.groupby("name", sort=False):
        acc, sd = t_interval(group["test_acc"])
        row = {
            "name": name, "model": group["model"].iloc[0], "params": int(group["params"].iloc[0]), "epochs": int(group["epochs"].max()),
            "s_per_epoch": round(float(group["s_per_epoch"].mean()), 1), "best_val_loss": round(float(group["best_val_loss"].mean()), 4),
            "best_val_acc": round(float(group["best_val_acc"].mean()), 4), "test_acc": acc.value, "test_acc_low": acc.low,
            "test_acc_high": acc.high, "test_acc_sd": sd, "seeds": len(group),
        }
        shared = group[group["seed"].isin(base.index)].set_index("seed")["test_acc"]
        if name != "base" and len(shared):
            d = paired_t(base[shared.index].to_numpy(), shared.to_numpy())
            row.update(delta_vs_base=d.value * 100, delta_low=d.low * 100, delta_high=d.high * 100, outside_noise=d.excludes(0.0))
        rows.append(row)
    return pd.DataFrame(rows)


def seed_results(out: Path, order: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """Every finished (row, seed) factor.json as one table row, with its `seed`."""
    found = []
    for name in order:
        for s, d in zip(seeds, seed_dirs(out / name, seeds)):
            if (d / "factor.json").is_file():
                found.append({**json.loads((d / "factor.json").read_text()), "name": name, "seed": s})
    return pd.DataFrame(found)


def markdown_table(table: pd.DataFrame) -> str:
    """The report table in Markdown (pandas' to_markdown needs tabulate, which is not a dependency)."""
    if table.empty:
        return "(no finished rows)"
    if "seeds" in table:
        return _seeds_table(table)
    head = "| row | model | params | epochs | s/epoch | best val loss | val acc | test acc | vs base (points) |"
    lines = [head, "|" + "---|" * 9]
    for r in table.itertuples():
        delta = "" if r.name == "base" or pd.isna(r.delta_vs_base) else f"{r.delta_vs_base:+.2f}"
        lines.append(
            f"| {r.name} | {r.model} | {r.params / 1e6:.2f}M | {r.epochs} | {r.s_per_epoch} | {r.best_val_loss:.4f} | "
            f"{r.best_val_acc:.4f} | {r.test_acc:.4f} | {delta} |"
        )
    return "\n".join(lines)


def _seeds_table(table: pd.DataFrame) -> str:
    head = ("| row | model | params | epochs | s/epoch | val acc | test acc, mean [95% CI] | sd (points) | seeds | "
            "vs base (points, paired 95% CI) |")
    lines = [head, "|" + "---|" * 10]
    for r in table.to_dict("records"):
        ci = "" if np.isnan(r["test_acc_low"]) else f" [{r['test_acc_low']:.4f}, {r['test_acc_high']:.4f}]"
        sd = "" if np.isnan(r["test_acc_sd"]) else f"{r['test_acc_sd'] * 100:.2f}"
        delta = ""
        if r["name"] != "base" and not pd.isna(r.get("delta_vs_base")):
            delta = f"{r['delta_vs_base']:+.2f}"
            if not np.isnan(r["delta_low"]):
                delta += f" [{r['delta_low']:+.2f}, {r['delta_high']:+.2f}]" + (" *" if r["outside_noise"] else "")
        lines.append(f"| {r['name']} | {r['model']} | {r['params'] / 1e6:.2f}M | {r['epochs']} | {r['s_per_epoch']} | "
                     f"{r['best_val_acc']:.4f} | {r['test_acc']:.4f}{ci} | {sd} | {r['seeds']} | {delta} |")
    return "\n".join(lines) + "\n\n`*`: the paired interval over the seeds excludes 0 (the effect is outside the seeds' noise)."


def write_report(table: pd.DataFrame, out: Path, title: str, seeds: Optional[Sequence[int]] = None) -> None:
    """results.csv, results.md and results.png: validation accuracy per epoch of every row (the
    mean over its seeds) and, with seeds, the test accuracy of every row with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "results.csv", index=False)
    if seeds is not None:
        seed_results(out, list(table.get("name", [])), seeds).to_csv(out / PER_SEED, index=False)
    (out / "results.md").write_text(f"# Factor suite: {title}\n\n{markdown_table(table)}\n")
    fig, axes = plt.subplots(1, 2 if seeds is not None else 1, figsize=(13 if seeds is not None else 8, 5), squeeze=False)
    ax = axes[0, 0]
    for name in table.get("name", []):
        curves = [pd.read_csv(d / "metrics.csv") for d in seed_dirs(out / name, seeds) if (d / "metrics.csv").is_file()]
        if curves:
            mean = pd.concat(curves).groupby("epoch")["val_acc"].mean()
            ax.plot(mean.index + 1, mean.to_numpy(), marker=".", label=name)
    ax.set(xlabel="epoch", ylabel="validation accuracy" + (" (mean over seeds)" if seeds is not None else ""), title=f"factor suite: {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if seeds is not None and not table.empty:
        ax = axes[0, 1]
        y = np.arange(len(table))[::-1]
        err = np.vstack([table["test_acc"] - table["test_acc_low"], table["test_acc_high"] - table["test_acc"]])
        ax.errorbar(table["test_acc"], y, xerr=np.nan_to_num(err), fmt="o", capsize=4)
        ax.set_yticks(y, table["name"])
        ax.set(xlabel=f"test accuracy, mean and 95% interval over {len(seeds)} seeds", title="test accuracy")
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=100)
    plt.close(fig)
