"""Reports: trials as pandas DataFrames, the files of a run directory, and comparisons.

`load` reads any number of run directories or storage URLs into one tidy DataFrame (one row
per trial; columns documented in `LOAD_COLUMNS` and below); `best_feasible`,
`pareto_front`, `same_architecture` and `compression_effect` answer the usual questions.

``trials.csv`` has one row per trial: ``number, state, feasible`` and the reason a trial
was infeasible or failed, the static cost (``flash_bytes, sram_bytes, macs, latency_ms,
energy_uj``...), the scores (``acc_float, acc_int8``...), ``train_s`` and one ``arch_``
column per architecture choice. ``pareto`` marks the feasible, completed trials no other
such trial beats on both objectives (``acc_int8`` up, ``latency_ms`` down). A candidate the
study had already trained is not trained again: its row copies the results and names the
trial that trained it in ``duplicate_of``, and stays out of the front.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from nas.errors import ConfigError
from nas.hardware import HardwareProfile
from nas.storage import open_storage

FIRST_COLUMNS = [
    "number",
    "state",
    "feasible",
    "pareto",
    "acc_float",
    "acc_int8",
    "acc_int8_test",
    "flash_bytes",
    "sram_bytes",
    "model_bytes",
    "arena_bytes",
    "macs",
    "params",
    "latency_ms",
    "energy_uj",
    "train_s",
    "reason",
]
PARETO_COLUMNS = [
    "number",
    "acc_int8",
    "acc_int8_test",
    "acc_float",
    "latency_ms",
    "energy_uj",
    "sram_bytes",
    "flash_bytes",
    "macs",
    "train_s",
]
#: The user attribute of a repeated candidate (an architecture the study had already
#: trained): the number of the trial that trained it. Repeats copy its results.
DUPLICATE_ATTR = "duplicate_of"
HIDDEN_ATTRS = ("arch", "val_acc_curve", "infeasible_reason", "fail_reason", "prune_reason")


def record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The flat row of one trial."""
    attrs = trial.user_attrs
    repeat = (
        f"same architecture as trial {attrs[DUPLICATE_ATTR]}" if DUPLICATE_ATTR in attrs else ""
    )
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": bool(attrs.get("feasible", False)),
        "reason": next(
            (attrs[k] for k in ("infeasible_reason", "fail_reason", "prune_reason") if k in attrs),
            repeat,
        ),
    }
    row.update({k: v for k, v in attrs.items() if k not in HIDDEN_ATTRS})
    row["train_s"] = float(attrs.get("train_s", 0.0))
    for name, violation in (getattr(trial, "constraints", None) or {}).items():
        row[f"feasible_{name}"] = bool(violation <= 0)
    row.update({f"arch_{k}": v for k, v in trial.params.items()})
    return row


def trained_mask(df: pd.DataFrame) -> pd.Series:
    """True for completed rows that fit and were trained and scored; a repeat is left out
    (the trial that trained its architecture stands for it)."""
    ok = (df["state"] == "COMPLETE") & df["feasible"].astype(bool)
    ok &= df["acc_int8"].notna() if "acc_int8" in df else False
    if DUPLICATE_ATTR in df:
        ok &= df[DUPLICATE_ATTR].isna()
    return ok


def pareto_mask(df: pd.DataFrame) -> pd.Series:
    """True for trained rows (`trained_mask`) not dominated in (acc_int8 max, latency_ms
    min)."""
    ok = trained_mask(df)
    mask = pd.Series(False, index=df.index)
    cand = df[ok]
    acc = cand["acc_int8"].to_numpy(dtype=float) if len(cand) else np.array([])
    lat = cand["latency_ms"].to_numpy(dtype=float) if len(cand) else np.array([])
    for i, idx in enumerate(cand.index):
        dominated = (acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))
        mask[idx] = not dominated.any()
    return mask


def frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial of ``study`` (see the module docstring for the columns)."""
    rows = [record(t) for t in study.get_trials(deepcopy=False)]
    df = pd.DataFrame(rows, columns=None if rows else FIRST_COLUMNS)
    for col in FIRST_COLUMNS:
        if col not in df:
            df[col] = np.nan
    df["feasible"] = df["feasible"].fillna(False).astype(bool)
    df["pareto"] = pareto_mask(df) if len(df) else pd.Series(dtype=bool)
    arch = sorted(c for c in df.columns if c.startswith("arch_"))
    rest = [c for c in df.columns if c not in FIRST_COLUMNS and c not in arch]
    return df[FIRST_COLUMNS + sorted(rest) + arch]


def best_row(df: pd.DataFrame) -> pd.Series | None:
    """The Pareto trial with the highest int8 accuracy (ties: the faster one)."""
    front = df[df["pareto"]]
    if front.empty:
        return None
    return front.sort_values(["acc_int8", "latency_ms"], ascending=[False, True]).iloc[0]


def pareto_table(df: pd.DataFrame) -> pd.DataFrame:
    front = df[df["pareto"]].sort_values("latency_ms")
    return front[[c for c in PARETO_COLUMNS if c in front]].reset_index(drop=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.0f}" if v.is_integer() or abs(v) >= 1e5 else f"{v:.4g}"
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def summary(df: pd.DataFrame) -> dict[str, Any]:
    states = df["state"]
    return {
        "trials": len(df),
        "complete_feasible": int(((states == "COMPLETE") & df["feasible"]).sum()),
        "infeasible": int(((states == "COMPLETE") & ~df["feasible"]).sum()),
        "pruned": int((states == "PRUNED").sum()),
        "failed": int((states == "FAIL").sum()),
        "train_s_total": float(df["train_s"].fillna(0).sum()),
    }


def write_run(
    run_dir: Path, df: pd.DataFrame, cfg: DictConfig, hw: HardwareProfile
) -> Path | None:
    """Write ``trials.csv``, ``report.md`` and ``best/``; print the Pareto front.

    Returns:
        The ``best/`` folder, or None when no trial has saved models.
    """
    df.to_csv(run_dir / "trials.csv", index=False)
    front = pareto_table(df)
    counts = summary(df)
    best = best_row(df)
    settings = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(settings, dict)
    settings["hw"] = {k: settings["hw"][k] for k in ("name", "board", "source_file")}
    lines = [
        f"# NAS run: {hw.name} ({hw.board})",
        "",
        f"Limits: SRAM {hw.sram_bytes} B, flash {hw.flash_bytes} B, clock "
        f"{hw.clock_hz / 1e6:g} MHz, active power {hw.active_power_mw:g} mW.",
        "",
        "Trials: " + ", ".join(f"{k} {_fmt(v)}" for k, v in counts.items()) + ".",
        "",
        "## Pareto front (feasible; acc_int8 up, latency_ms down)",
        "",
        markdown_table(front) if len(front) else "No feasible trial completed.",
        "",
    ]
    if best is not None:
        lines += [
            f"Best (highest acc_int8 on the front): trial {int(best['number'])}, in `best/`.",
            "",
        ]
    lines += failures(df)
    lines += estimate_vs_measured(df)
    lines += ["## Settings", "", "```json", json.dumps(settings, indent=2), "```", ""]
    (run_dir / "report.md").write_text("\n".join(lines))
    best_dir = None
    if best is not None:
        src = run_dir / "trials" / f"{int(best['number']):05d}"
        if src.is_dir():
            best_dir = run_dir / "best"
            shutil.rmtree(best_dir, ignore_errors=True)
            shutil.copytree(src, best_dir)
    print()
    print(
        f"Pareto front on {hw.name}: {counts['complete_feasible']} feasible, "
        f"{counts['infeasible']} infeasible, {counts['pruned']} pruned, "
        f"{counts['failed']} failed of {counts['trials']} trials"
    )
    print(front.to_string(index=False) if len(front) else "(no feasible trial completed)")
    print(f"run directory: {run_dir}")
    return best_dir


def failures(df: pd.DataFrame) -> list[str]:
    """Markdown section: failed trials grouped by reason."""
    failed = df[df["state"] == "FAIL"]
    if failed.empty:
        return []
    groups = failed.groupby("reason", sort=False)["number"].apply(list)
    table = pd.DataFrame(
        {
            "reason": groups.index,
            "trials": [len(v) for v in groups],
            "numbers": [", ".join(map(str, v)) for v in groups],
        }
    ).sort_values("trials", ascending=False)
    return ["## Failures by reason", "", markdown_table(table), ""]


def estimate_vs_measured(df: pd.DataFrame) -> list[str]:
    """Markdown section comparing static estimates with a backend's measurements."""
    pairs = [
        (e, m)
        for e, m in (
            ("arena_bytes_estimated", "arena_bytes_measured"),
            ("model_bytes_estimated", "model_bytes"),
        )
        if e in df and m in df
    ]
    if not pairs or "arena_bytes_measured" not in df:
        return []
    rows = df[df["arena_bytes_measured"].notna()]
    table = rows[["number"]].copy()
    for est, meas in pairs:
        table[est] = rows[est].astype(int)
        table[meas] = rows[meas].astype(int)
        table[f"{est.removesuffix('_estimated')}_error_pct"] = (
            100.0 * (rows[est] - rows[meas]) / rows[meas]
        )
    return ["## Static estimate vs measured on the runtime", "", markdown_table(table), ""]


# --------------------------------------------------------------------------- comparisons

#: Identification columns `load` puts first; then the `frame` columns, then ``arch_*``.
LOAD_COLUMNS = [
    "run",
    "study",
    "storage",
    "hw",
    "search_space",
    "dataset",
    "backend",
    "compression",
]
#: (method, metric before, metric after) pairs `compression_effect` reports.
COMPRESSION_PAIRS = [("ptq", "acc_float", "acc_int8")]


def _run_settings(cfg: Any) -> dict[str, str]:
    """Comparison settings from a run's ``.hydra/config.yaml`` (for studies without them)."""

    def name(key: str) -> str:
        node = cfg.get(key) or {}
        return str(node.get("name", "")) if hasattr(node, "get") else ""

    return {
        "hw": name("hw"),
        "search_space": name("search_space"),
        "dataset": name("dataset"),
        "backend": name("backend"),
        "compression": ",".join(cfg.get("compression") or []),
    }


def _sources(source: str | Path) -> list[tuple[str, str, dict[str, str]]]:
    """(run label, storage URL, settings) found in a run/sweep directory or given as a URL."""
    text = str(source)
    if "://" in text:
        return [(text, text, {})]
    root = Path(source)
    if not root.exists():
        raise ConfigError(f"report source '{root}' does not exist (a run directory or a URL)")
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for cfg_file in sorted(root.rglob(".hydra/config.yaml")):
        run_dir = cfg_file.parent.parent
        cfg: Any = OmegaConf.load(cfg_file)
        url = (cfg.get("storage") or {}).get("url")
        if not url:
            for name, prefix in (("study.db", "sqlite:///"), ("study.log", "journal://")):
                if (run_dir / name).is_file():
                    url = prefix + str((run_dir / name).resolve())
        if url:
            found.setdefault(url, (str(run_dir), _run_settings(cfg)))
    for db in sorted(root.rglob("study.db")):  # runs without Hydra's config folder
        found.setdefault(f"sqlite:///{db.resolve()}", (str(db.parent), {}))
    if not found:
        raise ConfigError(f"report source '{root}': no run directory (study.db) found in it")
    return [(run, url, settings) for url, (run, settings) in found.items()]


def load(sources: Iterable[str | Path]) -> pd.DataFrame:
    """One row per trial of every study in ``sources`` (run directories, sweep directories
    or storage URLs): `LOAD_COLUMNS`, then the `frame` columns (``pareto`` is renamed
    ``pareto_run``; ``pareto_all`` is the front over all rows; ``feasible_<constraint>``
    per limit), then one ``arch_<choice>`` column per architecture choice."""
    frames = []
    seen: set[tuple[str, str]] = set()
    for source in sources:
        for run, url, settings in _sources(source):
            storage = open_storage(url)
            for name in optuna.get_all_study_names(storage=storage):
                if (url, name) in seen:
                    continue
                seen.add((url, name))
                study = optuna.load_study(study_name=name, storage=storage)
                df = frame(study)
                attrs = {**settings, **study.user_attrs}
                if isinstance(attrs.get("compression"), list):
                    attrs["compression"] = ",".join(attrs["compression"])
                ident = {"run": run, "study": name, "storage": url}
                ident.update({k: str(attrs.get(k, "")) for k in LOAD_COLUMNS[3:]})
                for i, (key, value) in enumerate(ident.items()):
                    df.insert(i, key, value)
                frames.append(df)
    if not frames:
        raise ConfigError("no studies found in the report sources")
    out = pd.concat(frames, ignore_index=True).rename(columns={"pareto": "pareto_run"})
    out["pareto_all"] = pareto_mask(out)
    arch = sorted(c for c in out.columns if c.startswith("arch_"))
    first = (
        LOAD_COLUMNS + [c for c in FIRST_COLUMNS if c != "pareto"] + ["pareto_run", "pareto_all"]
    )
    rest = [c for c in out.columns if c not in first and c not in arch]
    return out[first + sorted(rest) + arch]


def _feasible_done(df: pd.DataFrame) -> pd.DataFrame:
    return df[trained_mask(df)]


def best_feasible(df: pd.DataFrame, by: str | list[str] = "hw") -> pd.DataFrame:
    """Per ``by`` group, the feasible trial with the highest int8 accuracy (then fastest)."""
    done = _feasible_done(df).sort_values(["acc_int8", "latency_ms"], ascending=[False, True])
    return done.groupby(by, sort=True).head(1).reset_index(drop=True)


def pareto_front(df: pd.DataFrame, by: str | list[str] = "hw") -> pd.DataFrame:
    """Per ``by`` group, its own Pareto front (acc_int8 up, latency_ms down)."""
    parts = []
    for _, group in df.groupby(by, sort=True):
        parts.append(group[pareto_mask(group)].sort_values("latency_ms"))
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[:0]


def same_architecture(df: pd.DataFrame, metric: str = "acc_int8") -> pd.DataFrame:
    """Architectures scored on more than one target: one row per architecture, one
    ``<metric>@<hw>`` column per target."""
    arch = [c for c in df.columns if c.startswith("arch_")]
    done = _feasible_done(df)
    if not arch or done.empty:
        return pd.DataFrame()
    cols = ["search_space", *arch] if "search_space" in done else arch
    key = done[cols].apply(lambda r: "|".join(str(v) for v in r if v == v), axis=1)
    table = done.assign(_arch=key).pivot_table(
        index="_arch", columns="hw", values=metric, aggfunc="max"
    )
    table = table[table.notna().sum(axis=1) > 1]
    table.columns = [f"{metric}@{c}" for c in table.columns]
    return table.reset_index().rename(columns={"_arch": "architecture"})


def compression_effect(df: pd.DataFrame) -> pd.DataFrame:
    """Before/after of each compression step per trial (e.g. ptq: acc_float -> acc_int8)."""
    rows = []
    done = df[df["state"] == "COMPLETE"]
    for method, before, after in COMPRESSION_PAIRS:
        if before not in done or after not in done:
            continue
        used = (
            done[done["compression"].str.split(",").apply(lambda m, x=method: x in m)]
            if ("compression" in done)
            else done
        )
        for _, r in used.dropna(subset=[before, after]).iterrows():
            rows.append(
                {
                    "run": r.get("run", ""),
                    "hw": r.get("hw", ""),
                    "number": r["number"],
                    "method": method,
                    "metric": after,
                    "before": r[before],
                    "after": r[after],
                    "change": r[after] - r[before],
                }
            )
    return pd.DataFrame(rows)
