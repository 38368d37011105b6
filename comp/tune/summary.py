"""The study's trials as a table, trials.csv, best.yaml and Optuna's plots (`comp tune --summary`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import yaml

from comp.errors import Log, UserError
from comp.tune.space import _param
from comp.tune.study import _require_optuna, _storage, storage_url


def _yaml_value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _shown(v: Any) -> str:
    """A parameter value as the log shows it."""
    return f"{v:.4g}" if isinstance(v, float) else _yaml_value(v)


def _epochs(run_dir: Path) -> int:
    """Epochs a trial trained (summed over the folds of a k-fold trial)."""
    from comp.files import read_json

    summaries = [run_dir / "summary.json"] if (run_dir / "summary.json").is_file() else sorted(run_dir.glob("fold_*/summary.json"))
    return sum(int((read_json(s) or {}).get("epochs_run", 0)) for s in summaries)


def summarize(
    study_dir: Optional[Path] = None, *, storage: Optional[str] = None, study_name: Optional[str] = None, log: Log = print,
) -> dict[str, Any]:
    """The study's trials sorted by value (printed and in trials.csv), best.yaml and the plots, in `study_dir`.

    Returns:
        {"study", "direction", "trials": [{"number", "value", "state", "epochs", "seconds", "params", "run_dir"}],
        "best": {"number", "value", "params", "run_dir"} or None, "files": [...]}.
    """
    optuna = _require_optuna()
    if study_dir is None and storage is None:
        raise UserError("pass the study folder (or --storage URL and --study NAME) to summarize")
    url = storage_url(study_dir, storage) if study_dir is not None else storage
    if storage is None and not (Path(study_dir) / "study.db").is_file():
        raise UserError(f"{study_dir}: no study.db; pass the study folder comp tune wrote, or --storage URL --study NAME")
    store = _storage(optuna, url)  # a dead server or an unopenable file: one line, nothing written
    names = [s.study_name for s in optuna.get_all_study_summaries(storage=store)] if study_name is None else [study_name]
    if len(names) != 1:
        raise UserError(f"{url} holds {len(names)} studies ({', '.join(names[:5])}); pass --study NAME")
    try:
        study = optuna.load_study(study_name=names[0], storage=store)
    except KeyError:
        raise UserError(f"no study {names[0]!r} in {url}") from None
    out = Path(study_dir) if study_dir is not None else Path("runs") / f"{names[0]}-tune"
    out.mkdir(parents=True, exist_ok=True)
    minimize = study.direction.name == "MINIMIZE"
    space = {k: _param(k, v) for k, v in (study.user_attrs.get("base_config", {}).get("tune", {}).get("space", {})).items()}
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name in ("WAITING",):
            continue
        value = t.value if t.state.name == "COMPLETE" else (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        rows.append({
            "number": t.number, "value": value, "state": t.state.name.lower(), "epochs": t.user_attrs.get("epochs"),
            "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
            "params": {k: (space[k].value(v) if k in space else v) for k, v in t.params.items()}, "run_dir": t.user_attrs.get("run_dir"),
        })
    order = {"complete": 0, "pruned": 1, "running": 2, "fail": 3}
    rows.sort(key=lambda r: (order.get(r["state"], 4), r["value"] is None,
                             (r["value"] if minimize else -r["value"]) if r["value"] is not None else 0, r["number"]))
    _print_table(rows, study.direction.name.lower(), log)
    import pandas as pd

    table = pd.DataFrame([{k: v for k, v in r.items() if k != "params"} | {f"params.{k}": _yaml_value(v) for k, v in r["params"].items()}
                          for r in rows])
    table.to_csv(out / "trials.csv", index=False)
    files = [str(out / "trials.csv")]
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    best = complete[0] if complete else None
    if best is not None and study.user_attrs.get("base_config"):
        files.append(_write_best(out, study.user_attrs["base_config"], best))
        log(f"best: trial {best['number']} ({best['run_dir']}), value {best['value']:.4f}; its config: {files[-1]} "
            f"(comp train {files[-1]} --out runs/best)")
    files += _plots(optuna, study, out, log)
    return {"study": names[0], "direction": study.direction.name.lower(), "trials": rows, "best": best, "files": files}


def _print_table(rows: list[dict], direction: str, log: Log) -> None:
    log(f"{'trial':>5}  {'value':>8}  {'state':<8}  {'epochs':>6}  {'seconds':>7}  parameters")
    for r in rows:
        value = f"{r['value']:.4f}" if r["value"] is not None else "-"
        params = ", ".join(f"{k}={_shown(v)}" for k, v in r["params"].items())
        log(f"{r['number']:>5}  {value:>8}  {r['state']:<8}  {r['epochs'] if r['epochs'] is not None else '-':>6}  "
            f"{r['seconds'] if r['seconds'] is not None else '-':>7}  {params}")
    log(f"({direction}; a pruned trial shows its last reported value)")


def _write_best(out: Path, base: dict, best: dict) -> str:
    """best.yaml: the base config with the best trial's values, for `comp train` as it is."""
    from comp.config import _set_dotted, config_from_dict

    raw = yaml.safe_load(yaml.safe_dump(base))
    for key, value in best["params"].items():
        _set_dotted(raw, key, value)
    raw.pop("tune", None)  # the search is done; the recipe is what remains
    config_from_dict(raw, "best.yaml")  # a config comp train accepts
    path = out / "best.yaml"
    header = f"# comp tune: trial {best['number']} ({best['run_dir']}), value {best['value']:.6g}\n"
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def _plots(optuna, study, out: Path, log: Log) -> list[str]:
    """Optuna's own matplotlib plots; each needs enough finished trials, and is skipped with a note otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    written = []
    for name, plot in (("history.png", vis.plot_optimization_history), ("importances.png", vis.plot_param_importances),
                       ("slice.png", vis.plot_slice)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.savefig(out / name, dpi=100, bbox_inches="tight")
            plt.close(fig)
            written.append(str(out / name))
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as e:
            log(f"note: no {name} yet ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return written
