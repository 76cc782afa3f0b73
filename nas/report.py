"""Reports: trials as pandas DataFrames, the files of a run directory, and comparisons.

`load` reads any number of run directories or storage URLs into one tidy DataFrame (one row
per trial; columns documented in `LOAD_COLUMNS` and below); `best_feasible`,
`pareto_front`, `same_architecture` and `compression_effect` answer the usual questions.

``trials.csv`` has one row per trial: ``number, state, feasible`` and the reason a trial
was infeasible or failed, the static cost (``flash_bytes, sram_bytes, macs, latency_ms,
energy_uj``...), the scores (``acc_float, acc_int8``...), ``train_s`` and ``compress_s``
(seconds of training and of the compression pipeline) and one ``arch_`` column per
architecture choice. ``pareto`` marks the feasible, completed trials no other
such trial beats on both objectives (``acc_int8`` up, ``latency_ms`` down). A candidate the
study had already trained is not trained again: its row copies the results and names the
trial that trained it in ``duplicate_of``, and stays out of the front. Every question about
"the trained trials" (the front, the best, comparisons, compression effects, counts) reads
the rows `trained_mask` selects. The column names are those of `nas.record`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.hardware import HardwareProfile
from nas.record import (
    ACC_FLOAT,
    ACC_INT8,
    ACC_INT8_TEST,
    AFTER_COMPRESSION,
    ARCH_PREFIX,
    COMPRESS_S,
    DUPLICATE_OF,
    FAMILY,
    FEASIBLE,
    FEASIBLE_PREFIX,
    FITS_UNCOMPRESSED,
    FLASH_BYTES,
    HIDDEN,
    LATENCY_MS,
    LOAD_COLUMNS,
    NUMBER,
    PARETO,
    PARETO_ALL,
    PARETO_RUN,
    PREDICTED_SUFFIX,
    REASON,
    REASONS,
    SCORED_BY,
    SRAM_BYTES,
    STATE,
    SUPERNET,
    TRAIN_S,
    UNCOMPRESSED_SUFFIX,
)
from nas.storage import display_url, mask_url, open_storage, without_masked_password

log = logging.getLogger(__name__)

#: The first columns of ``trials.csv``, in order (then the others sorted, then ``arch_*``).
FIRST_COLUMNS = [
    NUMBER,
    STATE,
    FEASIBLE,
    PARETO,
    FAMILY,
    ACC_FLOAT,
    ACC_INT8,
    ACC_INT8_TEST,
    "flash_bytes",
    "sram_bytes",
    "model_bytes",
    "arena_bytes",
    "macs",
    "params",
    LATENCY_MS,
    "energy_uj",
    TRAIN_S,
    COMPRESS_S,
    REASON,
]
#: The columns of the Pareto table of ``report.md``.
PARETO_COLUMNS = [
    NUMBER,
    FAMILY,
    ACC_INT8,
    ACC_INT8_TEST,
    ACC_FLOAT,
    LATENCY_MS,
    "energy_uj",
    "sram_bytes",
    "flash_bytes",
    "macs",
    TRAIN_S,
]


def record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The flat row of one trial."""
    attrs = trial.user_attrs
    repeat = f"same architecture as trial {attrs[DUPLICATE_OF]}" if DUPLICATE_OF in attrs else ""
    row: dict[str, Any] = {
        NUMBER: trial.number,
        STATE: trial.state.name,
        FEASIBLE: bool(attrs.get(FEASIBLE, False)),
        REASON: next((attrs[k] for k in REASONS if k in attrs), repeat),
    }
    row.update({k: v for k, v in attrs.items() if k not in HIDDEN})
    row[TRAIN_S] = float(attrs.get(TRAIN_S, 0.0))
    row[COMPRESS_S] = float(attrs.get(COMPRESS_S, 0.0))
    for name, violation in (getattr(trial, "constraints", None) or {}).items():
        row[FEASIBLE_PREFIX + name] = bool(violation <= 0)
    row.update({ARCH_PREFIX + k: v for k, v in trial.params.items()})
    return row


def trained_mask(df: pd.DataFrame) -> pd.Series:
    """True for completed rows that fit and were trained and scored; a repeat is left out
    (the trial that trained its architecture stands for it), and so are the candidates of
    a supernet search scored with inherited weights (`inherited_mask`)."""
    ok = (df[STATE] == "COMPLETE") & df[FEASIBLE].astype(bool)
    ok &= df[ACC_INT8].notna() if ACC_INT8 in df else False
    if DUPLICATE_OF in df:
        ok &= df[DUPLICATE_OF].isna()
    return ok & ~inherited_mask(df)


def inherited_mask(df: pd.DataFrame) -> pd.Series:
    """True for the candidates a supernet search scored with inherited weights
    (``scored_by`` is ``supernet``): ranked there, never trained or run on a backend."""
    if SCORED_BY not in df:
        return pd.Series(False, index=df.index)
    return df[SCORED_BY] == SUPERNET


def repeat_mask(df: pd.DataFrame) -> pd.Series:
    """True for completed repeats: architectures the study had trained in another trial."""
    repeat = df[DUPLICATE_OF].notna() if DUPLICATE_OF in df else False
    return (df[STATE] == "COMPLETE") & repeat


def pareto_mask(df: pd.DataFrame) -> pd.Series:
    """True for trained rows (`trained_mask`) not dominated in (acc_int8 max, latency_ms
    min)."""
    ok = trained_mask(df)
    mask = pd.Series(False, index=df.index)
    cand = df[ok]
    acc = cand[ACC_INT8].to_numpy(dtype=float) if len(cand) else np.array([])
    lat = cand[LATENCY_MS].to_numpy(dtype=float) if len(cand) else np.array([])
    for i, idx in enumerate(cand.index):
        dominated = (acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))
        mask[idx] = not dominated.any()
    return mask


def frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial of ``study`` (see the module docstring for the columns)."""
    # queued trials (WAITING: search.enqueue, search.cheap_first) have no result yet
    done = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    rows = [record(t) for t in done]
    df = pd.DataFrame(rows, columns=None if rows else FIRST_COLUMNS)
    for col in FIRST_COLUMNS:
        if col not in df:
            df[col] = np.nan
    df[FEASIBLE] = df[FEASIBLE].fillna(False).astype(bool)
    df[PARETO] = pareto_mask(df) if len(df) else pd.Series(dtype=bool)
    arch = sorted(c for c in df.columns if c.startswith(ARCH_PREFIX))
    rest = [c for c in df.columns if c not in FIRST_COLUMNS and c not in arch]
    return df[FIRST_COLUMNS + sorted(rest) + arch]


def best_row(df: pd.DataFrame) -> pd.Series | None:
    """The Pareto trial with the highest int8 accuracy (ties: the faster one)."""
    front = df[df[PARETO]]
    if front.empty:
        return None
    return front.sort_values([ACC_INT8, LATENCY_MS], ascending=[False, True]).iloc[0]


def pareto_table(df: pd.DataFrame) -> pd.DataFrame:
    """The Pareto front of a run, fastest first, in `PARETO_COLUMNS`."""
    front = df[df[PARETO]].sort_values(LATENCY_MS)
    return front[[c for c in PARETO_COLUMNS if c in front]].reset_index(drop=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.0f}" if v.is_integer() or abs(v) >= 1e5 else f"{v:.4g}"
    return str(v)


def _cell(v: Any) -> str:
    """A value as one Markdown table cell: pipes escaped, line breaks as spaces."""
    return " ".join(_fmt(v).replace("|", "\\|").split())


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency); every cell is one cell,
    whatever its text."""
    lines = [
        "| " + " | ".join(_cell(c) for c in df.columns) + " |",
        "|" + "---|" * len(df.columns),
    ]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def summary(df: pd.DataFrame) -> dict[str, Any]:
    """Trials by outcome: ``complete_feasible`` counts those trained and scored
    (`trained_mask`), ``repeats`` the completed repeats of an architecture trained before,
    ``infeasible`` those rejected before training; then pruned and failed ones."""
    states = df[STATE]
    return {
        "trials": len(df),
        "complete_feasible": int(trained_mask(df).sum()),
        "inherited": int(
            (inherited_mask(df) & df[FEASIBLE].astype(bool) & ~repeat_mask(df)).sum()
        ),
        "repeats": int(repeat_mask(df).sum()),
        "infeasible": int(((states == "COMPLETE") & ~df[FEASIBLE]).sum()),
        "pruned": int((states == "PRUNED").sum()),
        "failed": int((states == "FAIL").sum()),
        "train_s_total": float(df[TRAIN_S].fillna(0).sum()),
        "compress_s_total": float(df.get(COMPRESS_S, pd.Series(dtype=float)).fillna(0).sum()),
    }


def outcomes(counts: dict[str, Any], hw_name: str) -> str:
    """One sentence on what happened to the trials (`summary`): pruned candidates fit the
    chip and were stopped during training, unlike the ones rejected before training."""
    parts = [f"{counts['complete_feasible']} trained and scored"]
    if counts["inherited"]:
        parts.append(f"{counts['inherited']} scored on the supernet")
    if counts["repeats"]:
        parts.append(f"{counts['repeats']} repeats of an architecture already trained")
    parts += [
        f"{counts['pruned']} stopped early by the pruner (they fit; their accuracy lagged)",
        f"{counts['infeasible']} rejected before training (over a limit of the chip)",
        f"{counts['failed']} failed",
    ]
    return f"{counts['trials']} trials on {hw_name}: " + ", ".join(parts) + "."


def best_dir_steps(best_dir: Path, backend: str) -> list[str]:
    """The `next_steps` lines that point into ``best/``."""
    lines = []
    if (best_dir / "firmware" / "Makefile").is_file():
        lines.append(
            f"  make -C {best_dir / 'firmware'} run: build the model's C firmware and run "
            "it in a simulator (README.md there)"
        )
    if (best_dir / "FIRMWARE.md").is_file():
        lines.append(f"  {best_dir / 'FIRMWARE.md'}: the TensorFlow Lite Micro route")
    elif backend != "c_sim" and (best_dir / "firmware").is_dir():
        lines.append(
            f"  search again with backend=c_sim to compile every candidate's C and measure "
            f"its flash, RAM and latency in the simulator (backend {backend} estimated them)"
        )
    return lines


def next_steps(run_dir: Path, best: pd.Series | None, best_dir: Path | None, backend: str) -> str:
    """What the end of a search prints: the best model and where to go from there
    (``best_dir``: the ``best/`` this run wrote, None when its trials saved no models)."""
    if best is None:
        return f"run directory: {run_dir} (report.md, trials.csv)"
    lines = [
        f"Best: trial {int(best[NUMBER])}, int8 accuracy {best[ACC_INT8]:.3f} (validation)"
        + (
            f", {best[ACC_INT8_TEST]:.3f} (test)"
            if ACC_INT8_TEST in best and best[ACC_INT8_TEST] == best[ACC_INT8_TEST]
            else ""
        )
        + f", {best[LATENCY_MS]:.2f} ms, {int(best[SRAM_BYTES]):,} B SRAM, "
        f"{int(best[FLASH_BYTES]):,} B flash.",
        "Next:",
    ]
    if best_dir is None:
        lines.append("  (no best/: the trials saved no models, search.save_models=false)")
    else:
        lines += best_dir_steps(best_dir, backend)
    lines += [
        f"  {run_dir / 'report.md'}: the Pareto front, failures, settings",
        f"  {run_dir / 'trials.csv'}: every trial, one row each (pandas.read_csv)",
        f"run directory: {run_dir}",
    ]
    return "\n".join(lines)


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
        f"Hardware profile file: `{hw.source_file}`.",
        "",
        outcomes(counts, hw.name)
        + f" Training time: {counts['train_s_total']:.0f} s; compression: "
        f"{counts['compress_s_total']:.0f} s.",
        "",
        "## Pareto front (feasible; acc_int8 up, latency_ms down)",
        "",
        markdown_table(front) if len(front) else "No feasible trial completed.",
        "",
    ]
    if counts["inherited"]:
        lines += [
            f"{counts['inherited']} feasible candidates were scored with weights inherited "
            "from the supernet (`scored_by` = `supernet` in `trials.csv`: int8 validation "
            "accuracy after batch-norm recalibration, no training, no backend). The front "
            "holds the finalists (`finalist_of`), trained and scored by the backend.",
            "",
        ]
    if best is not None:
        lines += [
            f"Best (highest acc_int8 on the front): trial {int(best['number'])}, in `best/`.",
            "",
        ]
    lines += frontend_lines(df, front)
    lines += compression_lines(df)
    lines += failures(df)
    lines += estimate_vs_measured(df)
    shown = mask_url(json.dumps(settings, indent=2))
    lines += ["## Settings", "", "```json", shown, "```", ""]
    (run_dir / "report.md").write_text("\n".join(lines))
    best_dir = None
    if best is not None:
        src = run_dir / "trials" / f"{int(best['number']):05d}"
        if src.is_dir():
            best_dir = run_dir / "best"
            shutil.rmtree(best_dir, ignore_errors=True)
            shutil.copytree(src, best_dir)
    print()
    summary_line = outcomes(counts, hw.name)
    print(summary_line)
    log.info(summary_line)
    if len(front):
        print("Pareto front (feasible, trained; int8 accuracy up, latency down):")
        print(front.to_string(index=False))
    else:
        print("No feasible trial completed: nothing to deploy.")
    return best_dir


def frontend_lines(df: pd.DataFrame, front: pd.DataFrame) -> list[str]:
    """Markdown section: the model and the on-chip front-end, apart, for the front's
    trials (their sum is what ``sram_bytes``, ``flash_bytes`` and ``latency_ms`` hold)."""
    if "frontend_sram_bytes" not in df or not (df["frontend_sram_bytes"].fillna(0) > 0).any():
        return []
    rows = df[df[NUMBER].isin(front[NUMBER])] if len(front) else df.iloc[:0]
    lines = [
        "## Model and front-end",
        "",
        "Every candidate's `sram_bytes`, `flash_bytes`, `latency_ms` and `energy_uj` include "
        "the on-chip front-end that turns the raw signal into the model's input (keyword "
        "spotting's MFCC: `frontend_*` columns, from the profile's measured entries).",
        "",
        "| trial | model SRAM B | front-end SRAM B | model flash B | front-end flash B | "
        "model ms | front-end ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in rows.iterrows():
        fs, ff, fl = r["frontend_sram_bytes"], r["frontend_flash_bytes"], r["frontend_latency_ms"]
        lines.append(
            f"| {int(r[NUMBER])} | {int(r['sram_bytes'] - fs):,} | {int(fs):,} | "
            f"{int(r['flash_bytes'] - ff):,} | {int(ff):,} | {r[LATENCY_MS] - fl:.2f} | "
            f"{fl:.2f} |"
        )
    return [*lines, ""]


def compression_lines(df: pd.DataFrame) -> list[str]:
    """Markdown section, when compression changes the cost: how many candidates fit only
    through it, and each trained trial's cost uncompressed, predicted and measured."""
    if FITS_UNCOMPRESSED not in df or df[FITS_UNCOMPRESSED].isna().all():
        return []
    after = df[REASON].fillna("").astype(str).str.startswith(AFTER_COMPRESSION)
    fitting = df[df[FEASIBLE].astype(bool) | after]  # predicted to fit
    only = fitting[fitting[FITS_UNCOMPRESSED].eq(False)]
    lines = [
        "## Compression: predicted and measured cost",
        "",
        f"{len(only)} of {len(fitting)} candidates predicted to fit the chip fit only "
        "through compression (`fits_uncompressed` false: the uncompressed int8 network "
        f"is over a limit); {int(trained_mask(only).sum())} of them were trained and scored. "
        f"{int(after.sum())} trained candidates no longer fitted once measured after "
        "compression. "
        "The prediction before training (`*_predicted`) decided feasibility; the cost "
        "columns hold the measurement after compression, `*_uncompressed` the int8 network.",
        "",
    ]
    rows = df[trained_mask(df)]
    if len(rows):
        table = rows[[NUMBER]].copy()
        for name in ("flash_bytes", "sram_bytes"):
            for col in (name + UNCOMPRESSED_SUFFIX, name + PREDICTED_SUFFIX, name):
                table[col] = rows[col].fillna(rows[name]).astype(int)
        table["flash_prediction_error_pct"] = (
            100.0
            * (rows["flash_bytes" + PREDICTED_SUFFIX] - rows["flash_bytes"])
            / rows["flash_bytes"]
        )
        lines += [markdown_table(table), ""]
    return lines


def failures(df: pd.DataFrame) -> list[str]:
    """Markdown section: failed trials grouped by reason."""
    failed = df[df[STATE] == "FAIL"]
    if failed.empty:
        return []
    groups = failed.groupby(REASON, sort=False)[NUMBER].apply(list)
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
    rows = df[trained_mask(df) & df["arena_bytes_measured"].notna()]
    table = rows[[NUMBER]].copy()
    for est, meas in pairs:
        table[est] = rows[est].astype(int)
        table[meas] = rows[meas].astype(int)
        table[f"{est.removesuffix('_estimated')}_error_pct"] = (
            100.0 * (rows[est] - rows[meas]) / rows[meas]
        )
    return ["## Static estimate vs measured on the runtime", "", markdown_table(table), ""]


# --------------------------------------------------------------------------- comparisons

#: (method, metric before, metric after) pairs `compression_effect` reports.
COMPRESSION_PAIRS = [("ptq", ACC_FLOAT, ACC_INT8)]


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


def _saved_url(cfg: Any, cfg_file: Path) -> str | None:
    """``storage.url`` of a saved run config; an ``${oc.env:NAME}`` in it is resolved now."""
    try:
        return (cfg.get("storage") or {}).get("url")
    except Exception as exc:  # an environment variable the URL refers to is not set
        raise ConfigError(f"{cfg_file}: storage.url: {str(exc).splitlines()[0]}") from None


def _sources(source: str | Path) -> list[tuple[str, str, dict[str, str]]]:
    """(run label, storage URL, settings) found in a run/sweep directory or given as a URL."""
    text = str(source)
    if "://" in text:
        return [(display_url(text), text, {})]
    root = Path(source)
    if not root.exists():
        raise ConfigError(f"report source '{root}' does not exist (a run directory or a URL)")
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for cfg_file in sorted(root.rglob(".hydra/config.yaml")):
        run_dir = cfg_file.parent.parent
        cfg: Any = OmegaConf.load(cfg_file)
        url = _saved_url(cfg, cfg_file)
        if url:  # saved masked: libpq finds the password itself (PGPASSWORD, ~/.pgpass)
            url = without_masked_password(url)
        else:
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
                ident = {"run": run, "study": name, "storage": display_url(url)}
                ident.update({k: str(attrs.get(k, "")) for k in LOAD_COLUMNS[3:]})
                for i, (key, value) in enumerate(ident.items()):
                    df.insert(i, key, value)
                frames.append(df)
    if not frames:
        raise ConfigError("no studies found in the report sources")
    out = pd.concat(frames, ignore_index=True).rename(columns={PARETO: PARETO_RUN})
    out[PARETO_ALL] = pareto_mask(out)
    arch = sorted(c for c in out.columns if c.startswith(ARCH_PREFIX))
    first = LOAD_COLUMNS + [c for c in FIRST_COLUMNS if c != PARETO] + [PARETO_RUN, PARETO_ALL]
    rest = [c for c in out.columns if c not in first and c not in arch]
    return out[first + sorted(rest) + arch]


def best_feasible(df: pd.DataFrame, by: str | list[str] = "hw") -> pd.DataFrame:
    """Per ``by`` group, the feasible trial with the highest int8 accuracy (then fastest)."""
    done = df[trained_mask(df)].sort_values([ACC_INT8, LATENCY_MS], ascending=[False, True])
    return done.groupby(by, sort=True).head(1).reset_index(drop=True)


def pareto_front(df: pd.DataFrame, by: str | list[str] = "hw") -> pd.DataFrame:
    """Per ``by`` group, its own Pareto front (acc_int8 up, latency_ms down)."""
    parts = []
    for _, group in df.groupby(by, sort=True):
        parts.append(group[pareto_mask(group)].sort_values(LATENCY_MS))
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[:0]


def same_architecture(df: pd.DataFrame, metric: str = ACC_INT8) -> pd.DataFrame:
    """Architectures scored on more than one target: one row per architecture, one
    ``<metric>@<hw>`` column per target."""
    arch = [c for c in df.columns if c.startswith(ARCH_PREFIX)]
    done = df[trained_mask(df)]
    if not arch or done.empty:
        return pd.DataFrame()
    space = done["search_space"].astype(str) + ": " if "search_space" in done else ""

    def named(row: pd.Series) -> str:  # "mobilenet: resolution=16, s1_width=8, ..."
        return ", ".join(
            f"{c.removeprefix(ARCH_PREFIX)}={_fmt(v)}" for c, v in row.items() if v == v
        )

    key = space + done[arch].apply(named, axis=1)
    table = done.assign(_arch=key).pivot_table(
        index="_arch", columns="hw", values=metric, aggfunc="max"
    )
    table = table[table.notna().sum(axis=1) > 1]
    table.columns = [f"{metric}@{c}" for c in table.columns]
    return table.reset_index().rename(columns={"_arch": "architecture"})


def compression_effect(df: pd.DataFrame) -> pd.DataFrame:
    """Before/after of each compression step per trained trial (`trained_mask`; e.g. ptq:
    acc_float -> acc_int8)."""
    rows = []
    done = df[trained_mask(df)]
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
                    "number": r[NUMBER],
                    "method": method,
                    "metric": after,
                    "before": r[before],
                    "after": r[after],
                    "change": r[after] - r[before],
                }
            )
    return pd.DataFrame(rows)
