"""Keyword spotting on a synthetic Speech Commands folder under a tight Cortex-M4 budget
with the MFCC front-end counted: the search against random search and the DS-CNN.

    python benchmarks/kws/run.py            # the table in benchmarks/kws/results/RESULTS.md
    python benchmarks/kws/run.py --quick    # the same pipeline in minutes
    python benchmarks/kws/run.py --report-only [--quick]   # the report again

The data is synthetic speech (`benchmarks/kws/make_dataset.py`: espeak-ng voices, not
people): a model trained on it is no keyword spotter; the point is the comparison of
methods under one budget, and that every command runs unchanged on the real Speech
Commands v2 folder (``--root``).

Budget ``kws-m4-tight``: the ``cortex_m4`` profile with at most 32 KiB of SRAM and 64 KiB
of flash for the model *and* the fixed-point MFCC front-end together (the front-end's
measured RAM (an audio window, its FFT buffer, the feature map, its stack), flash and
time per 1-s clip are part of every candidate's ``sram_bytes``, ``flash_bytes`` and
``latency_ms``), runtime allowances zero,
and the TFLite Micro arena as the interpreter of the ``tflite-micro`` wheel measures it
(64-bit pointers, reference kernels: a conservative figure, as in the Fashion-MNIST
benchmark). Every model is scored in that interpreter (``backend=tflm``).

Methods, per seed: ``search`` (TPE over the MobileNet-like space on the 49 x 10 MFCC map,
accuracy first, candidates that do not fit rejected before training and not counted),
``random`` (the same with Optuna's random sampler), and ``dscnn`` (the reference space's
DS-CNN in its MLPerf Tiny KWS shape, 10 x 4 stride-2 first convolution and four
depthwise-separable blocks, at the largest width that fits the budget with the front-end).
Each search's best candidate by validation accuracy and the DS-CNN are then trained again
with one final recipe and scored on the test split (int8, TFLM). The machinery is the
Fashion-MNIST benchmark's (`benchmarks/fashion_mnist/run.py`), with this data and budget:
each run is its ``run_job`` (the search step, the DS-CNN trained once with the search
recipe, then ``python -m nas finalize RUN_DIR``: the top ``finalists`` of a search trained
again with ``final_epochs`` epochs on the whole training split, no teacher, the best by
validation accuracy the run's model), its ``collect``, ``table`` and ``plots``. What
differs is said to them through the recipe (`KwsRecipe`: the dataset, the search
command, the DS-CNN) and their ``budgets`` and ``labels`` arguments, not by changing that
module. A call starts afresh (the runs folder is emptied); ``--report-only`` writes the
report again from the runs folder of the last call.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "fashion_mnist"))

import run as fm  # noqa: E402

from nas.data import FEATURES  # noqa: E402
from nas.frontend import MfccConfig  # noqa: E402
from nas.frontend_c import frontend_cost  # noqa: E402
from nas.hardware import load_profile  # noqa: E402

SRAM_LIMIT, FLASH_LIMIT = 32 * 1024, 64 * 1024
BUDGET = "kws-m4-tight"
MEMORY = {
    "name": "kws_m4_tight",
    "sram_bytes": SRAM_LIMIT,
    "flash_bytes": FLASH_LIMIT,
    "runtime_ram_bytes": 0,
    "runtime_flash_bytes": 0,
    "pointer_bytes": 8,
    "kernels": "reference",
}
#: The searches' space: MobileNet-like on the 49 x 10 map.
SPACE = [
    "search_space=mobilenet",
    "search_space.stem_channels=[16,24,32,48,64]",
    "search_space.stem_strides=[2]",
    "search_space.widths=[16,24,32,48,64]",
    "search_space.depths=[1,2,3]",
    "search_space.kernels=[3,5]",
    "search_space.expansions=[1,2,4]",
    "search_space.strides=[1,2]",
]
LABELS = {
    "search": "search (TPE)",
    "random": "random search",
    "dscnn": "DS-CNN (MLPerf Tiny KWS shape)",
}


@functools.cache
def frontend() -> dict[str, float]:
    return frontend_cost(MfccConfig(), load_profile("cortex_m4"))


@functools.cache
def budgets() -> dict[str, dict[str, Any]]:
    """The budget as the Fashion-MNIST runner's functions read it (`fm.BUDGETS`): the
    profile and its memory (`fm.hw_args`), the measured arena's limit (`fm.collect`: it
    leaves room for the front-end's RAM) and the memory plot's axis (`fm.plots`)."""
    return {
        BUDGET: {
            "profile": "cortex_m4",
            "memory": MEMORY,
            "arena_limit": SRAM_LIMIT - int(frontend()["frontend_sram_bytes"]),
            "memory_plot": ("sram_bytes", "SRAM bytes (arena + front-end)", SRAM_LIMIT),
        }
    }


@functools.cache
def dscnn() -> dict[str, Any] | None:
    """The DS-CNN at the largest width whose static cost, with the front-end, fits (the
    reference space's network; tracing is not thread-safe: computed before the jobs)."""
    from nas_space_reference import ReferenceSearchSpace

    from nas.spaces import build_model

    hw = dataclasses.replace(load_profile("cortex_m4"), **MEMORY)
    space, fe = ReferenceSearchSpace(), frontend()
    best: dict[str, Any] | None = None
    for width in space.config.widths:  # the widths the reference space can enqueue
        spec = {"family": "dscnn", "width": width, "resolution": 49}
        module, shape = build_model(space, spec, 1, 12, FEATURES, (49, 10))
        cost = space.cost(module, space.trace(module, shape, f"dscnn {width}"), hw)
        if not cost.with_frontend(fe).infeasible_reason(hw):
            best = spec
    return best


@dataclasses.dataclass
class KwsRecipe(fm.Recipe):
    """The search and final recipes on the synthetic Speech Commands folder."""

    root: str = ""
    cache_dir: str = ""

    def search_args(self) -> list[str]:
        return [
            "dataset=speech_commands",
            f"dataset.root={self.root}",
            f"dataset.cache_dir={self.cache_dir}",
            f"search.epochs={self.search_epochs}",
            f"search.batch_size={self.batch_size}",
            f"search.lr={self.lr}",
        ]

    def finalize_args(self, teacher: bool, screened: Path | None = None) -> list[str]:
        """The Fashion-MNIST finalize recipe without a teacher (this benchmark trains its
        final models without one) and without its subsets (the speech folder has none)."""
        args = super().finalize_args(False, screened)
        return [a for a in args if not a.startswith("dataset.")]

    def reference(self, budget: str, method: str) -> dict[str, Any] | None:
        return dscnn() if method == "dscnn" else None

    def search_command(
        self,
        budget: str,
        method: str,
        seed: int,
        run: Path,
        timeout_s: float | None = None,
        supernet: Path | None = None,
    ) -> list[str]:
        """TPE or random search in `SPACE`, or the DS-CNN trained once in the reference
        space."""
        args = [
            "search",
            *fm.hw_args(budget, budgets()),
            *(["search_space=reference"] if method == "dscnn" else SPACE),
            "backend=tflm",
            *self.search_args(),
            f"search.seed={seed}",
            "search.objectives=[acc_int8]",
            f"hydra.run.dir={run}",
        ]
        if method == "dscnn":
            point = self.reference(budget, method)
            assert point is not None
            return [*args, "search.n_trials=1", f"search.enqueue=[{fm.hydra_dict(point)}]"]
        return [*args, "search.count_infeasible=false", *fm.sampler_args(self, budget, method)]


FULL = KwsRecipe(
    seeds=[0, 1, 2],
    trials={BUDGET: 16},
    search_epochs=6,
    search_train=0,
    final_epochs=20,
    distill_epochs=0,
    teacher_epochs=0,
    final_train=0,
    batch_size=64,
    finalists=1,
    budgets=[BUDGET],
    methods=list(LABELS),
    ablation_seeds=[],
)
QUICK = dataclasses.replace(
    FULL, seeds=[0], trials={BUDGET: 4}, search_epochs=1, final_epochs=2, finalists=1
)


def notes() -> list[str]:
    fe = frontend()
    return [
        "Cortex-M4 (STM32L4R5 latency table): SRAM <= 32 KiB and flash <= 64 KiB for the "
        "model and the MFCC front-end together. The front-end (30 ms windows every 20 ms, "
        "40 mel bands, 10 coefficients: 49 x 10 int8 features) costs "
        f"{fe['frontend_sram_bytes']:,} B of RAM (one window of audio, its FFT buffer, the "
        f"feature map, its stack), {fe['frontend_flash_bytes']:,} B of flash and "
        f"{fe['frontend_latency_ms']:.1f} ms per 1-s clip, from the profile's entries "
        "measured in QEMU (`benchmarks/results/frontend_calibration_cortex-m4.md`); the SRAM "
        "column is the measured TFLM arena (64-bit pointers, reference kernels) plus that "
        "RAM, and `fits` checks it against 32 KiB. Latency is the estimate for model and "
        "front-end. Search space: MobileNet-like on the 49 x 10 map, a stride-2 stem of "
        "16-64 channels, stage widths 16-64, 1-3 blocks, kernels 3 or 5, expansion 1-4, "
        "stride 1 or 2.",
    ]


def make_data(root: Path, per_word: int) -> None:
    if (root / "testing_list.txt").is_file():
        return
    cmd = [sys.executable, str(HERE / "make_dataset.py"), str(root), f"--per-word={per_word}"]
    subprocess.run(cmd, check=True, cwd=ROOT)


def run_all(recipe: KwsRecipe, runs: Path, jobs: int, threads: int, commit: str) -> None:
    """Every method and seed, ``jobs`` at a time (`fm.run_job`: search, then finalize)."""
    dscnn()  # before the threads

    def job(j: tuple[str, int]) -> dict:
        return fm.run_job(recipe, runs, BUDGET, *j, threads, ablation=False, commit=commit)

    todo = [(m, s) for s in recipe.seeds for m in recipe.methods]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(job, todo))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 4 trials, 1-2 epochs")
    p.add_argument("--root", type=Path, help="a Speech Commands folder (default: synthetic)")
    p.add_argument("--per-word", type=int, default=200, help="synthetic clips per keyword")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--jobs", type=int, default=2, help="jobs at a time (default 2)")
    p.add_argument("--threads", type=int, help="torch threads per job (default: CPUs / jobs)")
    p.add_argument("--out", type=Path, help="results folder (default: results/)")
    p.add_argument("--runs", type=Path, help="runs folder (default: outputs/kws_benchmark*)")
    p.add_argument("--report-only", action="store_true", help="the report of the last call")
    args = p.parse_args(argv)
    recipe = dataclasses.replace(QUICK if args.quick else FULL)
    if args.seeds:
        recipe.seeds = args.seeds
    suffix = "_quick" if args.quick else ""
    runs = args.runs or ROOT / f"outputs/kws_benchmark{suffix}"
    out = args.out or (ROOT / "outputs/kws_quick" if args.quick else HERE / "results")
    root = args.root or ROOT / "outputs" / f"kws_data_{args.per_word}"
    recipe.root, recipe.cache_dir = str(root), str(ROOT / "outputs" / "kws_cache")
    if args.report_only:
        if not (runs / "run.json").is_file():
            print(f"nothing to report: no {runs / 'run.json'}")
            return 0
        run = json.loads((runs / "run.json").read_text())
        recipe = KwsRecipe(**run["recipe"])
    else:
        make_data(root, args.per_word)
        if runs.exists():
            shutil.rmtree(runs)
        runs.mkdir(parents=True)
        start = datetime.datetime.now()
        run = {
            "argv": argv, "recipe": dataclasses.asdict(recipe), **fm.provenance(), "wall_s": 0,
            "per_word": args.per_word,
        }  # fmt: skip
        (runs / "run.json").write_text(json.dumps(run, indent=1))
        jobs = max(1, args.jobs)
        threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
        run_all(recipe, runs, jobs, threads, run["commit"])
        run["wall_s"] = (datetime.datetime.now() - start).total_seconds()
        (runs / "run.json").write_text(json.dumps(run, indent=1))
    if (out / "models").exists():
        shutil.rmtree(out / "models")
    df = fm.collect(runs, out, budgets())
    if df.empty:
        print(f"nothing to report: no runs in {runs}")
        return 0
    df["sram_bytes"] = df.get("arena_bytes", 0) + frontend()["frontend_sram_bytes"]
    write_results(df, out, run, recipe)
    print(f"results: {out / 'RESULTS.md'}")
    failed = df[df["error"].fillna("") != ""] if "error" in df else df.iloc[:0]
    for _, r in failed.iterrows():
        print(f"failed: {r['method']} seed {r['seed']}: {r['error']}", file=sys.stderr)
    return 1 if len(failed) else 0


def write_results(df: pd.DataFrame, out: Path, run: dict[str, Any], recipe: KwsRecipe) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("pareto_*.svg"):
        stale.unlink()
    df.to_csv(out / "results.csv", index=False)
    fe = frontend()
    lines = [
        "# Keyword spotting (synthetic speech) under a Cortex-M4 budget with the front-end",
        "",
        f"- Command: `{' '.join(['python benchmarks/kws/run.py', *run['argv']])}`",
        f"- Date: {run['date']}; commit {run['commit']}",
        f"- Machine: {run['machine']}",
        f"- Wall clock {run['wall_s'] / 60:.1f} min; CPU time of all searches "
        f"{df['search_cpu_s'].sum() / 3600:.2f} h, of all finalize runs "
        f"{df['final_cpu_s'].sum() / 3600:.2f} h",
        "- **The speech is synthetic**: espeak-ng voices (`benchmarks/kws/make_dataset.py`, "
        f"seed 0, {run.get('per_word', 150)} clips per keyword, white noise under every clip "
        "at 5-30 dB SNR), the 12-class Speech Commands task (10 keywords, silence, unknown), "
        "splits by synthetic speaker; MFCC 49 x 10 (`nas.frontend`), one augmented copy of "
        "every training clip (time shift, background noise).",
        f"- Seeds {recipe.seeds}. Search: {recipe.trials[BUDGET]} trained candidates per run "
        f"(those that do not fit are rejected before training and not counted), "
        f"{recipe.search_epochs} epochs, batch {recipe.batch_size}, Adam lr {recipe.lr} "
        "one-cycle; the DS-CNN is trained once with that recipe. Finalize (every model, "
        f"`python -m nas finalize`): the top {recipe.finalists} of a search (the DS-CNN: "
        f"its one network) trained again, {recipe.final_epochs} epochs on the whole "
        "training split, no teacher; the finalist with the best validation accuracy is the "
        "run's model. Test accuracy on the whole test split, int8 in the TFLite Micro "
        "interpreter.",
        f"- Front-end on the Cortex-M4 (QEMU-measured profile entries): "
        f"{fe['frontend_sram_bytes']:,} B RAM, {fe['frontend_flash_bytes']:,} B flash, "
        f"{fe['frontend_latency_ms']:.1f} ms per 1-s clip; included below in SRAM and latency.",
        "",
        f"## {BUDGET}",
        "",
        *notes(),
        "",
        *fm.table(df, BUDGET, LABELS),
        "",
        *fm.plots(df, BUDGET, out, budgets=budgets(), labels=LABELS),
        "",
        "## Architectures",
        "",
        "| method | seed | architecture |",
        "|---|---|---|",
    ]
    for _, r in df.iterrows():
        arch = r.get("arch")
        text = arch if isinstance(arch, str) else r.get("error", "")
        lines.append(f"| {r['method']} | {r['seed']} | `{text}` |")
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
