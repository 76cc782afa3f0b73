"""Summarise one ``search.strategy=supernet`` run: candidates scored, their cost, the
finalists, and the CPU time of the whole command.

Usage:
    /usr/bin/time -v python -m nas search ... search.strategy=supernet ... 2> time.txt
    python benchmarks/supernet_search_summary.py RUN_DIR --time time.txt \\
        --supernet-cpu-s S --command "python -m nas search ..." --out FILE

``--supernet-cpu-s``: the CPU seconds that trained the supernet the run loaded from
``search.supernet.path`` (0 when the run trained it itself: then the command's own CPU
time holds it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "fashion_mnist"))

from run import provenance  # noqa: E402

from nas.report import inherited_mask, repeat_mask, trained_mask  # noqa: E402


def cpu_seconds(time_file: Path) -> tuple[float, str]:
    """User + system CPU seconds and the wall clock from ``/usr/bin/time -v`` output."""
    text = time_file.read_text()
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    return user + system, wall.group(1) if wall else "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--time", type=Path, required=True)
    ap.add_argument("--supernet-cpu-s", type=float, default=0.0)
    ap.add_argument("--command", required=True)
    ap.add_argument("--out", type=Path, required=True)
    opts = ap.parse_args(argv)
    df = pd.read_csv(opts.run_dir / "trials.csv")
    cpu, wall = cpu_seconds(opts.time)
    scored = df[inherited_mask(df) & df.feasible.astype(bool) & ~repeat_mask(df)]
    rejected = df[(df.state == "COMPLETE") & ~df.feasible.astype(bool)]
    finalists = df[trained_mask(df)].sort_values("acc_int8", ascending=False)
    total_h = (cpu + opts.supernet_cpu_s) / 3600
    prov = provenance()
    rows = [
        f"| {int(r.number)} | {int(r.finalist_of)} | {r.acc_int8_inherited:.4f} | "
        f"{r.acc_int8:.4f} | {r.acc_int8_test:.4f} | {r.latency_ms:.1f} | "
        f"{int(r.sram_bytes):,} | {int(r.flash_bytes):,} | {r.train_s:.0f} |"
        for r in finalists.itertuples()
    ]
    text = [
        "# One supernet search: candidates scored, CPU time, finalists",
        "",
        f"- Command: `{opts.command}`",
        f"- Commit {prov['commit']}, {prov['date']}; {prov['machine']}",
        f"- CPU time of the command (`/usr/bin/time -v`, user + system): {cpu / 3600:.2f} "
        f"CPU-h, wall clock {wall}; the supernet it loaded took {opts.supernet_cpu_s / 3600:.2f} "
        f"CPU-h to train: **{total_h:.2f} CPU-h in all** (target: 1.5 CPU-h).",
        f"- Trials sampled: {len(df):,}; **feasible candidates scored with inherited weights: "
        f"{len(scored):,}** (target: 1,000); rejected before scoring (over a limit): "
        f"{len(rejected):,}; repeats of an architecture already scored: "
        f"{int(repeat_mask(df).sum()):,}.",
        f"- Scoring one candidate (`score_s`, wall clock): median {scored.score_s.median():.2f} "
        f"s, 90th percentile {scored.score_s.quantile(0.9):.2f} s; inherited int8 validation "
        f"accuracy {scored.acc_int8.min():.3f} to {scored.acc_int8.max():.3f} "
        f"(median {scored.acc_int8.median():.3f}).",
        "",
        "Finalists (trained from their inherited weights with the search recipe, scored by "
        "the backend; test accuracy on the run's test subset):",
        "",
        "| trial | from candidate | inherited val | val (int8) | test (int8) | latency ms | "
        "SRAM B | flash B | train s |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    opts.out.write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
