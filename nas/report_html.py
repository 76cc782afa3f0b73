"""``python -m nas report``: one comparison table, ``report.md`` and a self-contained
``report.html`` (plotly, its JavaScript inlined, so it opens offline) over many runs."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from nas import report
from nas.data import IMAGES
from nas.errors import ArgumentParser, ConfigError
from nas.hardware import load_profile, profile_from_mapping
from nas.plugin_manager import get_plugin_manager
from nas.record import ARCH, ARCH_PREFIX, FAMILY, INPUT_HW
from nas.spaces import build_model
from nas.storage import mask_url, open_storage

#: A report compares targets: a chip and the search space searched on it.
TARGET = ["hw", "search_space"]
SHIP_COLUMNS = [
    "hw",
    "search_space",
    "run",
    "number",
    "acc_int8",
    "acc_int8_test",
    "latency_ms",
    "energy_uj",
    "sram_bytes",
    "flash_bytes",
    "macs",
]


def _study(row: pd.Series) -> optuna.Study:
    return optuna.load_study(study_name=row["study"], storage=open_storage(row["storage"]))


def layer_table(row: pd.Series) -> pd.DataFrame:
    """Per-op memory and latency of the trial in ``row`` (rebuilt from its choices)."""
    study = _study(row)
    attrs = study.user_attrs
    trial = study.trials[int(row["number"])]
    spec = trial.user_attrs.get(ARCH) or trial.params
    cls = get_plugin_manager().get("search_space", row["search_space"] or "mobilenet")
    known = set(cls.Config.__dataclass_fields__)
    conf = {k: v for k, v in (attrs.get("search_space_config") or {}).items() if k in known}
    space = cls(cls.Config(**conf))
    c_in, n_cls = int(attrs.get("in_channels", 1)), int(attrs.get("num_classes", 10))
    kind = attrs.get("input_kind", IMAGES)
    fixed_hw = trial.user_attrs.get(INPUT_HW, attrs.get(INPUT_HW))  # per trial when searched
    module, shape = build_model(space, spec, c_in, n_cls, kind, fixed_hw)
    graph = space.trace(module, shape, f"trial {row['number']}")
    prof = attrs.get("hw_profile")
    hw = (
        profile_from_mapping(prof, prof.get("source_file", "hw"))
        if prof
        else load_profile(row["hw"])
    )
    return pd.DataFrame(space.layers(module, graph, hw))


def front_line(group: pd.DataFrame, x: str) -> pd.DataFrame:
    """The trials of ``group`` no other beats on both ``x`` (down) and int8 accuracy (up),
    by ``x``: the staircase a Pareto plot draws."""
    rows = group.sort_values([x, "acc_int8"], ascending=[True, False])
    best = rows["acc_int8"].cummax()
    return rows[rows["acc_int8"] >= best]


def _figures(df: pd.DataFrame) -> list[tuple[str, str, Any]]:
    """(section, caption, plotly figure) for the HTML page."""
    import plotly.express as px
    import plotly.graph_objects as go

    out: list[tuple[str, str, Any]] = []
    done = df[report.trained_mask(df)].copy()
    if not done.empty:
        done["target"] = done["hw"] + " / " + done["search_space"]
        # studies written before the family column: their space is their family
        done[FAMILY] = done[FAMILY].fillna(done["search_space"]) if FAMILY in done else "?"
        for x in ("sram_bytes", "flash_bytes", "latency_ms"):
            fig = px.scatter(
                done,
                x=x,
                y="acc_int8",
                color=FAMILY,
                symbol="target",
                hover_data=["run", "number", "macs"],
                log_x=True,
                title=f"int8 accuracy vs {x}, by model family (lines: each target's front)",
            )
            dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
            for k, (target, group) in enumerate(done.groupby("target", sort=True)):
                front = front_line(group, x)
                fig.add_trace(
                    go.Scatter(
                        x=front[x],
                        y=front["acc_int8"],
                        mode="lines",
                        line={"shape": "hv", "color": "grey", "dash": dashes[k % len(dashes)]},
                        name=f"{target} front",
                        hoverinfo="skip",
                    )
                )
            out.append(("Pareto fronts", f"acc_int8 vs {x}, feasible trials", fig))
    for (run, study_name), group in df.groupby(["run", "study"], sort=False):
        study = _study(group.iloc[0])
        with np.errstate(all="ignore"):
            fig = optuna.visualization.plot_optimization_history(
                study,
                target=lambda t: t.values[0] if t.values else math.nan,
                target_name="acc_int8 (0 = infeasible)",
            )
        fig.update_layout(title=f"Optimisation history: {study_name} ({run})")
        out.append(("Optimisation history", f"{study_name} in {run}", fig))
    for _, best in report.best_feasible(df, by=TARGET).iterrows():
        layers = layer_table(best)
        if "label" in layers:  # readable names: "3 depthwise 5x5/2 -> 8x8x48"
            layers["op"] = layers["label"]
        where = f"{best['hw']} / {best['search_space']}"
        peak = int(layers["live_bytes"].idxmax())
        colors = ["crimson" if i == peak else "steelblue" for i in range(len(layers))]
        fig = go.Figure(go.Bar(x=layers["op"], y=layers["live_bytes"], marker_color=colors))
        fig.update_layout(
            title=f"{where}: SRAM bytes live per layer (peak in red: "
            f"{layers['op'][peak]}), trial {best['number']}",
            yaxis_title="bytes",
        )
        out.append(("Best model per target", f"memory per layer on {where}", fig))
        fig = go.Figure(go.Bar(x=layers["op"], y=layers["latency_ms"]))
        fig.update_layout(
            title=f"{where}: estimated latency per layer, trial {best['number']}",
            yaxis_title="ms",
        )
        out.append(("Best model per target", f"latency per layer on {where}", fig))
    return out


def summary_html(df: pd.DataFrame, ship: pd.DataFrame) -> str:
    """The paragraph at the top of the page: runs, targets, data, best per target."""
    import html

    runs = df["run"].nunique()
    targets = df.groupby(TARGET).ngroups
    data = ", ".join(sorted(df["dataset"].dropna().astype(str).unique())) or "unknown"

    def one(r: pd.Series) -> str:
        test = r.get("acc_int8_test", math.nan)
        return (
            f"{r['hw']} / {r['search_space']}: int8 accuracy {r['acc_int8']:.3f}"
            + (f" (test {test:.3f})" if test == test else "")
            + f" at {r['latency_ms']:.2f} ms, {int(r['sram_bytes']):,} B SRAM, "
            f"{int(r['flash_bytes']):,} B flash (trial {int(r['number'])} of {r['run']})"
        )

    best = "; ".join(one(r) for _, r in ship.iterrows())
    trained = int(report.trained_mask(df).sum())
    text = (
        f"{len(df)} trials in {runs} run{'s' * (runs != 1)} on {targets} target"
        f"{'s' * (targets != 1)} (chip / search space), {trained} of them trained and "
        f"scored; data: {data}. Best per target: {best or 'none feasible'}. Every number "
        "is int8, after quantization; the same tables are in report.md and comparison.csv."
    )
    return f"<p>{html.escape(text)}</p>"


def write_html(path: Path, df: pd.DataFrame) -> None:
    from plotly.offline import get_plotlyjs

    parts, section = [], None
    for name, caption, fig in _figures(df):
        if name != section:
            parts.append(f"<h2>{name}</h2>")
            section = name
        parts.append(
            f"<figure>{fig.to_html(full_html=False, include_plotlyjs=False)}"
            f"<figcaption>{caption}</figcaption></figure>"
        )
    ship = report.best_feasible(df, by=TARGET)
    table = ship[[c for c in SHIP_COLUMNS if c in ship]].to_html(index=False, border=0)
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mcu-nas comparison</title>
<script>{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd}}
figure{{margin:1em 0}}</style></head>
<body><h1>mcu-nas comparison</h1>{summary_html(df, ship)}
<h2>Which architecture to ship on which chip</h2>{table}
{"".join(parts)}
</body></html>
"""
    path.write_text(html)


def markdown(df: pd.DataFrame, sources: list[str]) -> str:
    table = report.markdown_table
    ship = report.best_feasible(df, by=TARGET)
    arch = [c for c in df.columns if c.startswith(ARCH_PREFIX)]
    shown = ", ".join(f"`{mask_url(s)}`" for s in sources)
    lines = ["# mcu-nas comparison", "", "Sources: " + shown, ""]
    counts = df.groupby([*TARGET, "run"]).apply(lambda g: pd.Series(report.summary(g)))
    lines += ["## Trials per run", "", table(counts.reset_index()), ""]
    lines += [
        "## Which architecture to ship on which chip",
        "",
        "The feasible trial with the highest int8 accuracy per target:",
        "",
    ]
    lines += [
        table(ship[[c for c in SHIP_COLUMNS if c in ship]]) if len(ship) else "No feasible trial.",
        "",
    ]
    for space, rows in ship.groupby("search_space", sort=True):
        used = [c for c in arch if rows[c].notna().any()]
        if used:
            lines += [f"Their architectures ({space}):", "", table(rows[["hw", *used]]), ""]
    front = report.pareto_front(df, by=TARGET)
    if len(front):
        cols = [*TARGET, "run", "number", "acc_int8", "latency_ms", "sram_bytes", "flash_bytes"]
        lines += ["## Pareto front per target and search space", "", table(front[cols]), ""]
    same = report.same_architecture(df)
    if len(same):
        lines += ["## Same architecture on several targets", "", table(same), ""]
    effect = report.compression_effect(df)
    if len(effect):
        summary = effect.groupby(["hw", "method", "metric"])["change"].agg(
            ["mean", "min", "max", "count"]
        )
        lines += [
            "## Effect of compression (after - before, per trial)",
            "",
            table(summary.reset_index()),
            "",
        ]
    lines += report.failures(df)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = ArgumentParser(
        prog="python -m nas report",
        description="Compare runs: comparison.csv, report.md, report.html",
    )
    ap.add_argument("sources", nargs="+", help="run or sweep directories, or storage URLs")
    ap.add_argument("--out", help="output folder (default outputs/report_<date>)")
    args = ap.parse_args(argv)
    df = report.load(args.sources)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(args.out or f"outputs/report_{stamp}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out '{out}': cannot create ({exc.strerror})") from None
    df.to_csv(out / "comparison.csv", index=False)
    try:
        df.to_parquet(out / "comparison.parquet", index=False)
    except ImportError:
        pass  # Parquet needs pyarrow
    md = markdown(df, args.sources)
    (out / "report.md").write_text(md)
    write_html(out / "report.html", df)
    print(md)
    print(f"\nwritten: {out}/comparison.csv, report.md, report.html")
    return 0
