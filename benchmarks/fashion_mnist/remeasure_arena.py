"""Measure the TFLite Micro arena of the benchmark's stored m4-tight models again, without
training anything, and rewrite the figures that depend on it.

    python benchmarks/fashion_mnist/remeasure_arena.py [--results DIR]

For every m4-tight row of ``results.csv`` it loads ``models/m4-tight/<method>/seed<k>/
model.tflite`` and finds by bisection the smallest arena in which the ``tflite-micro``
interpreter allocates and invokes it (`nas_backend_tflm.runtime.min_arena_bytes`, exact to
1 byte). It rebuilds the architecture in ``arch.json`` to recompute the static estimate
(`nas.cost.tflm_arena`, the budget's 64-bit pointers and reference kernels), then updates:

- ``arch.json``: the metrics the ``tflm`` backend reports (``arena_bytes_measured``,
  ``arena_bytes_allocated``, ``arena_head_bytes_measured``, ``arena_tail_bytes_measured``,
  ``arena_bytes_estimated``) and the cost's arena and SRAM figures;
- ``results.csv``: ``arena_bytes``, ``sram_bytes`` and ``fits`` (static check and
  measured arena within the budget, as `run.collect` decides it);
- ``RESULTS.md``: the m4-tight notes and table, with a line saying when the arena was
  measured again, and the m4-tight memory plot. The rest (finalists, architectures, the
  uno budget) is left as the run wrote it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from nas_backend_tflm.runtime import arena_usage, load, min_arena_bytes

import nas
from nas.cost import tflm_arena
from nas.graph import Graph, trace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402

BUDGET = "m4-tight"
NOTE = "Arena measured again"


def space_config(budget: str) -> dict[str, Any]:
    """The budget's ``search_space.*`` overrides as keyword arguments."""
    config = {}
    for override in run.BUDGETS[budget]["space"]:
        key, _, value = override.partition("=")
        if key.startswith("search_space."):
            config[key.removeprefix("search_space.")] = json.loads(value)
    return config


def graph_of(info: dict[str, Any], budget: str) -> Graph:
    """The architecture of a stored model, traced again (weights do not matter here)."""
    config = space_config(budget) if info["search_space"] == "mobilenet" else {}
    space = nas.create_search_space(info["search_space"], **config)
    spec, channels = info["arch"], info["in_channels"]
    r = space.resolution(spec)
    torch.manual_seed(0)
    module = space.build(spec, channels, info["num_classes"]).eval()
    return trace(module, (1, channels, r, r), "stored model")


def remeasure(folder: Path, budget: str) -> dict[str, Any]:
    """Measure one stored model again and update its ``arch.json``; return its figures."""
    model = (folder / "model.tflite").read_bytes()
    info = json.loads((folder / "arch.json").read_text())
    estimated = tflm_arena(graph_of(info, budget), "reference", 8)
    measured = min_arena_bytes(model, guess=estimated.min_bytes)
    usage = arena_usage(load(model, measured))
    info["metrics"].update(
        arena_bytes_measured=measured,
        arena_bytes_allocated=usage.total_bytes,
        arena_head_bytes_measured=usage.head_bytes,
        arena_tail_bytes_measured=usage.tail_bytes,
        arena_bytes_estimated=estimated.min_bytes,
    )
    runtime_ram = run.BUDGETS[budget]["memory"]["runtime_ram_bytes"]
    info["cost"].update(
        arena_bytes=estimated.min_bytes,
        arena_head_bytes=estimated.head_bytes,
        arena_tail_bytes=estimated.tail_bytes,
        sram_bytes=estimated.min_bytes + runtime_ram,
    )
    (folder / "arch.json").write_text(json.dumps(info, indent=2))
    return {
        "measured": measured,
        "allocated": usage.total_bytes,
        "sram": estimated.min_bytes + runtime_ram,
        **info,
    }


def update_rows(df: pd.DataFrame, results: Path, budget: str) -> tuple[list[str], int]:
    """Re-measure every stored model of ``budget`` in place. Returns one line per model
    (before -> after) and the most the smallest arena exceeds what stays allocated."""
    limits = run.BUDGETS[budget]["memory"]
    changes, gap = [], 0
    for i, row in df[df["budget"] == budget].iterrows():
        folder = results / "models" / budget / row["method"] / f"seed{row['seed']}"
        if not (folder / "model.tflite").is_file():
            continue
        new = remeasure(folder, budget)
        feasible = (
            new["sram"] <= limits["sram_bytes"] and row["flash_bytes"] <= limits["flash_bytes"]
        )
        changes.append(
            f"{row['method']} seed {row['seed']}: {row['arena_bytes']} -> {new['measured']} B"
            f" (estimate {new['cost']['arena_bytes']} B)"
        )
        df.loc[i, ["arena_bytes", "sram_bytes"]] = [new["measured"], new["sram"]]
        df.loc[i, "fits"] = bool(feasible and run.arena_fits(new["measured"]))
        gap = max(gap, new["measured"] - new["allocated"])
    return changes, gap


def rewrite_section(results: Path, df: pd.DataFrame, budget: str, gap: int) -> None:
    """Replace the budget's notes and table in ``RESULTS.md`` and redraw its memory plot."""
    path = results / "RESULTS.md"
    lines = path.read_text().splitlines()
    start = lines.index(f"## {budget}")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("!["))
    made = run.provenance()
    note = (
        f"{NOTE} on {made['date']} (commit {made['commit']}) with "
        "`python benchmarks/fashion_mnist/remeasure_arena.py`: the smallest arena each "
        "stored model runs in. The run itself had recorded what TFLite Micro's "
        "RecordingMicroAllocator reports once allocation is done, which leaves out the "
        f"temporary space allocation needs (here up to {gap:,} B more)."
    )
    section = ["## " + budget, "", *run.BUDGET_NOTES[budget], "", *run.table(df, budget), ""]
    lines[start:end] = [*section, note, ""]
    run.plots(df, budget, results, kinds=("memory",))
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=HERE / "results", help="results folder")
    args = p.parse_args(argv)
    df = pd.read_csv(args.results / "results.csv")
    changes, gap = update_rows(df, args.results, BUDGET)
    print("\n".join(changes))
    df.to_csv(args.results / "results.csv", index=False)
    rewrite_section(args.results, df, BUDGET, gap)
    print(f"results: {args.results / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
