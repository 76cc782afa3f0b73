"""What the screen of ``python -m nas finalize --screen`` chose, per benchmark run: each
screened candidate's search score (the search's epochs on its own share of the images),
its screen score (the recipe's ``screen_epochs`` on the final recipe's images, scored
on its validation images), and for the finalist its final validation and test accuracy.
No training; it reads the runs' ``final/finalize.json`` and ``final/trials.csv``.

    python benchmarks/fashion_mnist/screen_table.py outputs/fm_screen/m4-tight/*-s*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from nas.report import markdown_table


def describe(arch: dict) -> str:
    """A candidate in a few words: family, resolution, and the family's own choices."""
    family = arch.get("family", "?")
    own = [f"{k[len(family) + 1 :]} {v}" for k, v in arch.items() if k.startswith(family + "_")]
    return f"{family} {arch.get('resolution', '?')} px" + (f" ({', '.join(own)})" if own else "")


def nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def rows(job: Path) -> list[dict]:
    recipe = json.loads((job / "final" / "finalize.json").read_text())
    if not recipe.get("screened"):
        return []
    final = pd.read_csv(job / "final" / "trials.csv").set_index("number")
    chosen = {c["number"]: i for i, c in enumerate(recipe["candidates"])}
    out = []
    for cand in recipe["screened"]:
        row = {
            "run": job.name,
            "trial": cand["number"],
            "candidate": describe(cand["arch"]),
            "MMACs": round(nan_if_none(cand.get("macs")) / 1e6, 2),
            "search": round(cand["acc_int8"], 4),
            "screen": round(nan_if_none(cand.get("acc_int8_screen")), 4),
        }
        if cand["number"] in chosen:
            got = final.loc[chosen[cand["number"]]]
            row["final val"] = round(float(got["acc_int8"]), 4)
            row["final test"] = round(float(got["acc_int8_test"]), 4)
        out.append(row)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("jobs", nargs="+", type=Path, help="benchmark job folders (search-s0, ...)")
    jobs = [j for j in p.parse_args(argv).jobs if (j / "final" / "finalize.json").is_file()]
    table = pd.DataFrame([r for j in jobs for r in rows(j)])
    print(markdown_table(table) if len(table) else "no screened run found")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
