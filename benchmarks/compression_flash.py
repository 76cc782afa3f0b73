"""Compression that changes what fits: the same search on a flash-bound budget with four
compression settings, 3 seeds each, and the prediction error of every trained trial.

    python benchmarks/compression_flash.py            # results/compression_flash.md
    python benchmarks/compression_flash.py --quick    # the same pipeline in a few minutes

Budget ``m0plus-64k``: the ``cortex_m0plus`` profile (TFLM reference kernels; its 40,000 B
runtime allowance) with 64 KiB of flash, which leaves 25,536 B for the model: a flash-bound
part such as a 64 KB STM32G0 or SAMD21, with at most ``--max-latency-ms`` (150 ms) per
inference at the M0+'s 133 MHz. Data: Fashion-MNIST (``--train`` training images, a tenth
of them for validation; ``--test`` test images). Space: the MobileNet-like one at 14
pixels, 3 stages. Every trial is scored in the TFLite Micro interpreter (``backend=tflm``,
reference kernels: its x86 build takes milliseconds per image, which sets the data sizes);
the TPE sampler, accuracy first, ``--trials`` candidates that fit per search (rejected
ones do not count), the same recipe for all settings.

Settings (``compression=...``):

- ``ptq``: int8 post-training quantization, the baseline: a candidate fits as int8;
- ``prune``: ``[prune,ptq]``, half the hidden channels of each inverted-residual block
  removed, then fine-tuned; predicted exactly before training;
- ``cluster+huffman``: ``[cluster,ptq,huffman]``, 16 shared values per output channel
  (4-bit indices and codebooks), Huffman-coded indices, decoded per layer on the chip
  (decoder code, scratch buffer and decode time included);
- ``int4``: ``[ptq]`` with ``compression.ptq.weight_bits=4``, packed int4 weights that
  TFLM's kernels unpack (the unpacked filter's scratch in the arena included).

Each run is one ``python -m nas search`` process (``command.txt`` next to its output under
``benchmarks/results/compression_flash_work/``); a finished run is kept and reused, so an
interrupted benchmark resumes. CPU time is the process's user+system time (``os.wait4``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
WORK = OUT / "compression_flash_work"
FLASH = 65536
HW = ["+hw=cortex_m0plus", f"hw.flash_bytes={FLASH}"]
SPACE = [
    "search_space.resolutions=[14]",
    "search_space.stem_channels=[8,16]",
    "search_space.widths=[8,16,24,32,48]",
    "search_space.expansions=[1,2,4,6]",
]
SETTINGS = {
    "ptq": ["compression=[ptq]"],
    "prune": ["compression=[prune,ptq]", "compression.prune.finetune_epochs=1"],
    "cluster+huffman": [
        "compression=[cluster,ptq,huffman]",
        "compression.cluster.bits=4",
        "compression.cluster.finetune_epochs=1",
    ],
    "int4": ["compression=[ptq]", "compression.ptq.weight_bits=4"],
}
SEEDS = (0, 1, 2)
RUNTIME_FLASH_BYTES = 40_000  # hardware_profiles/cortex_m0plus.yaml: runtime_flash_bytes


def run_search(name: str, seed: int, args: list[str], quick: bool) -> float:
    """One search (skipped when its ``trials.csv`` exists); its CPU seconds."""
    run_dir = WORK / ("quick" if quick else "full") / name / f"seed{seed}"
    done = run_dir / "cpu_s.txt"
    if done.exists() and (run_dir / "trials.csv").exists():
        return float(done.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "nas", "search", *args, f"hydra.run.dir={run_dir}"]
    (run_dir / "command.txt").write_text(" ".join(cmd[1:]) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc:
        tail = (run_dir / "log.txt").read_text().strip().splitlines()[-1:]
        raise SystemExit(f"{name} seed {seed}: exit {rc}: {tail}")
    cpu = usage.ru_utime + usage.ru_stime
    done.write_text(f"{cpu:.1f}\n")
    print(f"[{datetime.datetime.now():%H:%M:%S}] {name} seed {seed}: {cpu:.0f} s CPU", flush=True)
    return cpu


def summarize(name: str, seed: int, cpu_s: float, quick: bool) -> dict:
    df = pd.read_csv(WORK / ("quick" if quick else "full") / name / f"seed{seed}" / "trials.csv")
    sampled = df[df.get("duplicate_of", pd.Series(index=df.index)).isna()]
    after = sampled.reason.fillna("").str.startswith("after compression")
    fits = sampled[sampled.feasible.astype(bool) | after]
    only = fits[fits.get("fits_uncompressed", pd.Series(True, index=fits.index)).eq(False)]
    trained = df[(df.state == "COMPLETE") & df.feasible.astype(bool) & df.acc_int8_test.notna()]
    trained = trained[trained.get("duplicate_of", pd.Series(index=trained.index)).isna()]
    best = trained.sort_values(["acc_int8", "number"], ascending=[False, True]).iloc[0]
    measured = df[df.state == "COMPLETE"].dropna(subset=["acc_int8_test"])
    over = (measured.flash_bytes_predicted - measured.flash_bytes) / measured.flash_bytes
    return {
        "setting": name,
        "seed": seed,
        "acc_int8_test": best.acc_int8_test,
        "acc_int8": best.acc_int8,
        "flash_bytes": int(best.flash_bytes),
        # what the model adds to the runtime's flash (encoded weights included; the
        # backend's model_bytes is the flatbuffer it ran, decoded, with cluster/huffman)
        "model_bytes": int(best.flash_bytes) - RUNTIME_FLASH_BYTES,
        "sram_bytes": int(best.sram_bytes),
        "params": int(best.params),
        "latency_ms": best.latency_ms,
        "sampled": len(sampled),
        "fit": len(fits),
        "fit_only_compressed": len(only),
        "trained": len(trained),
        "after_compression_infeasible": int(
            df.reason.fillna("").str.startswith("after compression").sum()
        ),
        "pred_over_min": over.min(),
        "pred_over_max": over.max(),
        "cpu_s": cpu_s,
        "best_trial": int(best.number),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 trials, 1 epoch, 1 seed")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train", type=int, default=6000)
    ap.add_argument("--test", type=int, default=5000)
    ap.add_argument("--max-latency-ms", type=float, default=150.0)
    opts = ap.parse_args(argv)
    trials, epochs, seeds = (2, 1, (0,)) if opts.quick else (opts.trials, opts.epochs, SEEDS)
    common = [
        *HW,
        "dataset=fashion_mnist",
        f"dataset.train_subset={opts.train}",
        f"dataset.test_subset={opts.test}",
        f"search.max_latency_ms={opts.max_latency_ms}",
        "backend=tflm",
        *SPACE,
        "search.objectives=[acc_int8]",
        "search.count_infeasible=false",
        f"search.n_trials={trials}",
        f"search.epochs={epochs}",
        "search.save_models=false",
    ]
    started, wall0 = datetime.datetime.now(), time.time()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    rows = []
    for seed in seeds:
        for name, args in SETTINGS.items():
            cpu = run_search(name, seed, [*common, f"search.seed={seed}", *args], opts.quick)
            rows.append(summarize(name, seed, cpu, opts.quick))
    df = pd.DataFrame(rows)
    end_commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    if end_commit != commit:
        commit = f"{commit} (at the start; {end_commit} at the end)"
    out = OUT / ("compression_flash_quick" if opts.quick else "compression_flash")
    df.to_csv(out.with_suffix(".csv"), index=False)
    write(df, out.with_suffix(".md"), opts, commit, started, time.time() - wall0)
    print(out.with_suffix(".md").read_text())
    return 0


def write(df: pd.DataFrame, out: Path, opts, commit: str, started, wall_s: float) -> None:
    g = df.groupby("setting", sort=False)
    lines = [
        "# Compression that changes what fits: Fashion-MNIST on a 64 KiB-flash Cortex-M0+",
        "",
        f"- Command: `python benchmarks/compression_flash.py{' --quick' if opts.quick else ''}`"
        f" (--trials {opts.trials} --epochs {opts.epochs} --train {opts.train} --test "
        f"{opts.test} --max-latency-ms {opts.max_latency_ms:g})",
        f"- Commit {commit}; started {started:%Y-%m-%d %H:%M}; {platform.platform()}, "
        f"{os.cpu_count()} CPUs; searches' CPU time {df.cpu_s.sum() / 3600:.2f} h "
        f"({wall_s / 3600:.2f} h wall, one search at a time, OMP_NUM_THREADS=1)",
        f"- Budget: `cortex_m0plus` with `hw.flash_bytes={FLASH}` (25,536 B for the model "
        f"after the 40,000 B runtime allowance), at most {opts.max_latency_ms:g} ms; TFLM "
        f"scores every trial; test accuracy on {opts.test:,} Fashion-MNIST test images, of "
        "the search's most accurate model on validation (no final retraining)",
        "",
        "| setting | test acc (mean ± sd) | flash B (measured) | model B | params | SRAM B | "
        "latency ms | fit / sampled | fit only compressed | CPU h per search |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in g:
        lines.append(
            f"| {name} | {r.acc_int8_test.mean():.4f} ± {r.acc_int8_test.std(ddof=0):.4f} | "
            f"{r.flash_bytes.mean():,.0f} | {r.model_bytes.mean():,.0f} | {r.params.mean():,.0f}"
            f" | {r.sram_bytes.mean():,.0f} | {r.latency_ms.mean():,.1f} | "
            f"{r.fit.sum()} / {r.sampled.sum()} | {r.fit_only_compressed.sum()} | "
            f"{r.cpu_s.mean() / 3600:.2f} |"
        )
    lines += [
        "",
        "Per seed:",
        "",
        "| setting | seed | test acc | val acc | flash B | params | fit / sampled | "
        "fit only compressed | trained | infeasible after compression | best trial |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in df.iterrows():
        lines.append(
            f"| {r.setting} | {r.seed} | {r.acc_int8_test:.4f} | {r.acc_int8:.4f} | "
            f"{r.flash_bytes:,} | {r.params:,} | {r.fit} / {r.sampled} | "
            f"{r.fit_only_compressed} | {r.trained} | {r.after_compression_infeasible} | "
            f"{r.best_trial} |"
        )
    lines += [
        "",
        "Prediction error of flash over every trained trial, (predicted - measured) / "
        "measured: never negative means the prediction was never below the measurement.",
        "",
        "| setting | smallest | largest | target: >= 0 and <= 10% |",
        "|---|---|---|---|",
    ]
    for name, r in g:
        lo, hi = r.pred_over_min.min(), r.pred_over_max.max()
        ok = "met" if lo >= 0 and hi <= 0.10 else "MISSED"
        lines.append(f"| {name} | {lo:+.2%} | {hi:+.2%} | {ok} |")
    lines.append("")
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
