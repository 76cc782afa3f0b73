"""Keyword spotting on a synthetic Speech Commands folder under a tight Cortex-M4 budget
with the MFCC front-end counted: the search against random search and the DS-CNN.

    python benchmarks/kws/run.py            # the table in benchmarks/kws/results/RESULTS.md
    python benchmarks/kws/run.py --quick    # the same pipeline in minutes

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
Fashion-MNIST benchmark's (`benchmarks/fashion_mnist/run.py`), with this data and budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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
KWS_BUDGETS: dict[str, dict[str, Any]] = {
    BUDGET: {
        "profile": "cortex_m4",
        "memory": MEMORY,
        "space": [
            "search_space=mobilenet",
            "search_space.stem_channels=[16,24,32,48,64]",
            "search_space.stem_strides=[2]",
            "search_space.widths=[16,24,32,48,64]",
            "search_space.depths=[1,2,3]",
            "search_space.kernels=[3,5]",
            "search_space.expansions=[1,2,4]",
            "search_space.strides=[1,2]",
        ],
        "search": [],
        "backend": "tflm",
        "memory_plot": ("sram_bytes", "SRAM bytes (arena + front-end)", SRAM_LIMIT),
    }
}
LABELS = {
    "search": "search (TPE)",
    "random": "random search",
    "dscnn": "DS-CNN (MLPerf Tiny KWS shape)",
}


@dataclasses.dataclass
class KwsRecipe(fm.Recipe):
    """The search and final recipes on the synthetic Speech Commands folder."""

    root: str = ""
    cache_dir: str = ""

    def train_args(self, final: bool) -> list[str]:
        return [
            "dataset=speech_commands",
            f"dataset.root={self.root}",
            f"dataset.cache_dir={self.cache_dir}",
            f"search.epochs={self.final_epochs if final else self.search_epochs}",
            f"search.batch_size={self.batch_size}",
            f"search.lr={self.lr}",
        ]


FULL = KwsRecipe(
    seeds=[0, 1, 2],
    trials={BUDGET: 16},
    search_epochs=6,
    search_train=0,
    final_epochs=20,
    final_train=0,
    batch_size=64,
    finalists=1,
    budgets=[BUDGET],
)
QUICK = dataclasses.replace(
    FULL, seeds=[0], trials={BUDGET: 4}, search_epochs=1, final_epochs=2, finalists=1
)


def frontend() -> dict[str, float]:
    return frontend_cost(MfccConfig(), load_profile("cortex_m4"))


def references(budget: str, runs: Path) -> dict[str, dict[str, Any] | None]:
    """The DS-CNN at the largest width whose static cost, with the front-end, fits."""
    from nas_space_reference import ReferenceSearchSpace

    from nas.spaces import build_model

    hw = dataclasses.replace(load_profile("cortex_m4"), **MEMORY)
    space, fe = ReferenceSearchSpace(), frontend()
    best: dict[str, Any] | None = None
    for width in space.config.widths:  # the widths a final run can enqueue
        spec = {"family": "dscnn", "width": width, "resolution": 49}
        module, shape = build_model(space, spec, 1, 12, FEATURES, (49, 10))
        cost = space.cost(module, space.trace(module, shape, f"dscnn {width}"), hw)
        if not cost.with_frontend(fe).infeasible_reason(hw):
            best = spec
    out = {"dscnn": best}
    (runs / f"references_{budget}.json").write_text(json.dumps(out, indent=1))
    return out


def fits(measured: Any) -> Any:
    """Whether a measured arena leaves room for the front-end in the SRAM budget."""
    return ~(measured + frontend()["frontend_sram_bytes"] > SRAM_LIMIT)


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 4 trials, 1-2 epochs")
    p.add_argument("--root", type=Path, help="a Speech Commands folder (default: synthetic)")
    p.add_argument("--per-word", type=int, default=200, help="synthetic clips per keyword")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    recipe = dataclasses.replace(QUICK if args.quick else FULL)
    if args.seeds:
        recipe.seeds = args.seeds
    suffix = "_quick" if args.quick else ""
    runs = ROOT / f"outputs/kws_benchmark{suffix}"
    out = ROOT / "outputs/kws_quick" if args.quick else HERE / "results"
    root = args.root or ROOT / "outputs" / f"kws_data_{args.per_word}"
    recipe.root, recipe.cache_dir = str(root), str(ROOT / "outputs" / "kws_cache")
    # the Fashion-MNIST machinery, with this budget, these references and labels
    fm.BUDGETS, fm.LABELS, fm.BUDGET_NOTES = KWS_BUDGETS, LABELS, {BUDGET: notes()}
    fm.references, fm.arena_fits = references, fits
    if args.report_only:
        run = json.loads((runs / "run.json").read_text())
        done = fm.load_jobs(runs)
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
        done = fm.run_all(recipe, runs, max(1, args.jobs))
        run["wall_s"] = (datetime.datetime.now() - start).total_seconds()
        (runs / "run.json").write_text(json.dumps(run, indent=1))
    if (out / "models").exists():
        shutil.rmtree(out / "models")
    df = fm.collect(done, out)
    df["sram_bytes"] = df.get("arena_bytes", 0) + frontend()["frontend_sram_bytes"]
    write_results(df, out, run, fm.finalist_lines(done), recipe)
    print(f"results: {out / 'RESULTS.md'}")
    failed = [j for j in done if j.rc]
    for j in failed:
        print(f"failed: {j.method} seed {j.seed} {j.kind}: {j.error}", file=sys.stderr)
    return 1 if failed else 0


def write_results(df, out: Path, run: dict[str, Any], finalists: list[str], recipe) -> None:  # noqa: ANN001
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    cpu = df.drop_duplicates(["budget", "method", "seed"])
    fe = frontend()
    lines = [
        "# Keyword spotting (synthetic speech) under a Cortex-M4 budget with the front-end",
        "",
        f"- Command: `{' '.join(['python benchmarks/kws/run.py', *run['argv']])}`",
        f"- Date: {run['date']}; commit {run['commit']}",
        f"- Machine: {run['machine']}",
        f"- Wall clock {run['wall_s'] / 60:.1f} min; CPU time of all searches "
        f"{cpu['search_cpu_s'].sum() / 3600:.2f} h, of all final trainings "
        f"{cpu['final_cpu_s'].sum() / 3600:.2f} h",
        "- **The speech is synthetic**: espeak-ng voices (`benchmarks/kws/make_dataset.py`, "
        f"seed 0, {run.get('per_word', 150)} clips per keyword, white noise under every clip "
        "at 5-30 dB SNR), the 12-class Speech Commands task (10 keywords, silence, unknown), "
        "splits by synthetic speaker; MFCC 49 x 10 (`nas.frontend`), one augmented copy of "
        "every training clip (time shift, background noise).",
        f"- Seeds {recipe.seeds}. Search: {recipe.trials[BUDGET]} trained candidates per run "
        f"(those that do not fit are rejected before training and not counted), "
        f"{recipe.search_epochs} epochs, batch {recipe.batch_size}, Adam lr {recipe.lr} "
        f"one-cycle. Final recipe for every model: {recipe.final_epochs} epochs; test "
        "accuracy on the whole test split, int8 in the TFLite Micro interpreter. "
        f"{fm.finalist_rule(recipe.finalists)}",
        f"- Front-end on the Cortex-M4 (QEMU-measured profile entries): "
        f"{fe['frontend_sram_bytes']:,} B RAM, {fe['frontend_flash_bytes']:,} B flash, "
        f"{fe['frontend_latency_ms']:.1f} ms per 1-s clip; included below in SRAM and latency.",
        "",
        f"## {BUDGET}",
        "",
        *notes(),
        "",
        *fm.table(df, BUDGET),
        "",
        *fm.plots(df, BUDGET, out),
        "",
        *finalists,
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
