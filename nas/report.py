"""Reports: the trials of a study as a pandas DataFrame, and the files of a run directory.

``trials.csv`` has one row per trial: ``number, state, feasible`` and the reason a trial
was infeasible or failed, the static cost (``flash_bytes, sram_bytes, macs, latency_ms,
energy_uj``...), the scores (``acc_float, acc_int8``...), ``train_s`` and one ``arch_``
column per architecture choice. ``pareto`` marks the feasible, completed trials no other
such trial beats on both objectives (``acc_int8`` up, ``latency_ms`` down).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from nas.hardware import HardwareProfile

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
HIDDEN_ATTRS = ("arch", "val_acc_curve", "infeasible_reason", "fail_reason", "prune_reason")


def record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The flat row of one trial."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": bool(attrs.get("feasible", False)),
        "reason": next(
            (attrs[k] for k in ("infeasible_reason", "fail_reason", "prune_reason") if k in attrs),
            "",
        ),
    }
    row.update({k: v for k, v in attrs.items() if k not in HIDDEN_ATTRS})
    row["train_s"] = float(attrs.get("train_s", 0.0))
    row.update({f"arch_{k}": v for k, v in trial.params.items()})
    return row


def pareto_mask(df: pd.DataFrame) -> pd.Series:
    """True for feasible completed rows not dominated in (acc_int8 max, latency_ms min)."""
    ok = (df["state"] == "COMPLETE") & df["feasible"].astype(bool)
    if "acc_int8" in df:
        ok &= df["acc_int8"].notna()
    else:
        ok &= False
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
