"""How far the search's choice of finalists rests on which images score it.

Every candidate a Fashion-MNIST benchmark search trains is scored twice on images it never
trained on: ``acc_int8`` on the search's validation images (1,000: 10% of
``dataset.train_subset``), which ranks the candidates and picks the finalists, and
``acc_int8_test`` on 1,000 test images, which the search only records. The two are
independent samples of the same accuracy. Were the ranking a property of the networks,
both samples would pick the same finalists; this script counts how often they do, per
search and random search run of a runs folder (``benchmarks/fashion_mnist/run.py``), next
to how far apart the top five candidates are. No training: it reads ``trials.csv`` files.

    python benchmarks/fashion_mnist/proxy_noise.py outputs/fashion_mnist_families \\
        outputs/fm_feasible_start --out benchmarks/fashion_mnist/results/proxy_noise.md
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BUDGETS, best_final, provenance, trials_of  # noqa: E402

from nas.report import markdown_table, trained_mask  # noqa: E402

#: The finalists a benchmark search hands to the final recipe (``Recipe.finalists``).
FINALISTS = 2
#: Candidates whose spread is compared with the noise: the top of a search.
TOP = 5


def scored(trials: pd.DataFrame) -> pd.DataFrame:
    """The distinct candidates a run trained and scored to the end on both image sets, as
    ``finalize`` chooses among them (repeats left out)."""
    return trials[trained_mask(trials) & trials["acc_int8_test"].notna()]


def cell(row: pd.Series) -> str:
    """A candidate's family and input resolution, as ``cnn@28``."""
    return f"{row['family']}@{int(row['arch_resolution'])}"


def explored(s: pd.DataFrame) -> str:
    """What a run trained: per family and resolution, the candidates and the best
    validation score, the best first."""
    cells = s.assign(cell=s.apply(cell, axis=1)).groupby("cell")["acc_int8"].agg(["size", "max"])
    cells = cells.sort_values("max", ascending=False)
    return ", ".join(f"{c} {int(n)} ({best:.3f})" for c, (n, best) in cells.iterrows())


def repeats(trials: pd.DataFrame) -> str:
    """How often the sampler proposed an architecture the run had already trained, and
    how many of those proposals were of the one it repeated most."""
    if "duplicate_of" not in trials or trials["duplicate_of"].isna().all():
        return "0"
    twins = trials["duplicate_of"].dropna().astype(int).value_counts()
    return f"{twins.sum()} ({twins.iloc[0]} of trial {twins.index[0]})"


def final_model(budget: str, run_dir: Path) -> str:
    """The run's model after the final recipe, as the benchmark picks it (`run.best_final`):
    its family and resolution, and int8 test accuracy on all 10,000 images; "" before
    finalize."""
    limit = BUDGETS[budget]["arena_limit"] if budget in BUDGETS else None
    best = best_final(trials_of(run_dir / "final"), limit)
    return "" if best is None else f"{cell(best)} {best['acc_int8_test']:.4f}"


def run_row(budget: str, run_dir: Path, trials: pd.DataFrame) -> dict[str, object] | None:
    """One run's figures; None when it scored fewer than ``TOP`` candidates."""
    run = run_dir.name
    s = scored(trials)
    if len(s) < TOP:
        return None
    by_val = s.nlargest(FINALISTS, "acc_int8")["number"]
    by_test = s.nlargest(FINALISTS, "acc_int8_test")["number"]
    top = s["acc_int8"].nlargest(TOP)
    # the part of one sample's error that differs between candidates, which is what
    # reorders them: the spread of val - test over the run's candidates (the error all
    # share cancels), over sqrt(2) for one sample of the two; a gap between two
    # candidates carries sqrt(2) times it
    noise = (s["acc_int8"] - s["acc_int8_test"]).std() / 2**0.5
    return {
        "budget": budget,
        "run": run,
        "candidates": len(s),
        "tau(val, test)": round(s["acc_int8"].corr(s["acc_int8_test"], method="kendall"), 3),
        "finalists also top by test": f"{len(set(by_val) & set(by_test))} of {FINALISTS}",
        f"top-{TOP} spread (pt)": round(100 * (top.iloc[0] - top.iloc[-1]), 1),
        "ranking noise of a 1,000-image score (pt)": round(100 * noise, 2),
        "trained: family@resolution, candidates (best validation)": explored(s),
        "repeated proposals": repeats(trials),
        "final model (test)": final_model(budget, run_dir),
    }


def collect(folders: list[Path]) -> pd.DataFrame:
    rows = []
    for folder in folders:
        for csv in sorted(folder.glob("*/*/run/trials.csv")):
            run = csv.parent.parent.name
            if run.split("-s")[0] not in ("search", "random"):
                continue
            row = run_row(csv.parent.parent.parent.name, csv.parent.parent, pd.read_csv(csv))
            if row is not None:
                rows.append({**row, "runs folder": folder.name})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="runs folders of run.py")
    ap.add_argument("--out", type=Path, help="write the table here (Markdown)")
    args = ap.parse_args()
    missing = [str(f) for f in args.runs if not f.is_dir()]
    if missing:
        sys.exit(
            f"error: no runs folder {', '.join(missing)} "
            "(python benchmarks/fashion_mnist/run.py makes one)"
        )
    t0 = os.times()
    df = collect(args.runs)
    if df.empty:
        sys.exit(
            f"error: no search or random run with {TOP} scored candidates under "
            + ", ".join(map(str, args.runs))
        )
    prov = provenance()
    cpu = os.times().user - t0.user + os.times().system - t0.system
    lines = [
        "# How much the finalists depend on the images that score them",
        "",
        f"- Command: `python {' '.join(sys.argv)}`",
        f"- {prov['date']}, commit {prov['commit']}; {prov['machine']}; CPU time {cpu:.1f} s",
        "- `tau(val, test)`: Kendall tau between each candidate's int8 accuracy on the "
        "search's 1,000 validation images and on 1,000 test images; `finalists also top by "
        f"test`: of the {FINALISTS} finalists chosen by validation, how many the test images "
        "would have chosen; ranking noise: the part of one score's sampling error that "
        "differs between the run's candidates (the standard deviation of val - test over "
        "them, over sqrt(2); the error all candidates share cancels and is not in it). The "
        "gap between two candidates carries sqrt(2) times that noise: compare that with the "
        f"top-{TOP} spread. `trained`: the distinct candidates the run trained to the end, "
        "per family and input resolution, with the best validation score of each; `repeated "
        "proposals`: trials that proposed an architecture the run had already trained (no "
        "training; the sampler is given the earlier result, or the pruning, again), and how "
        "many of them proposed the one it repeated most; `final model`: the finalist the "
        "final recipe kept, with its int8 test accuracy on all 10,000 test images",
        "",
        markdown_table(df),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
