"""Fidelity of the static cost model against TensorFlow Lite Micro's own interpreter.

For N random architectures of a search space (untrained weights with non-trivial batch-norm
statistics, min/max calibration on random inputs), export the int8 model, run it in the
``tflite-micro`` interpreter and compare:

- the static arena estimate (`nas.cost.tflm_arena`: reference kernels, 64-bit pointers as
  in the wheel) with the smallest arena in which the model loads, allocates and invokes,
  found by bisection (`nas_backend_tflm.runtime.min_arena_bytes`, exact to 1 byte);
- the estimated memory plan (head) with the one RecordingMicroAllocator reports, and the
  smallest arena with RecordingMicroAllocator's total (what this project called the
  measured arena before: it leaves out the temporary space TFLM needs while allocating);
- the estimated flatbuffer size with the exported ``.tflite``;
- the project's int8 reference outputs with the interpreter's, on random inputs.

Usage: python benchmarks/tflm_arena_fidelity.py [--n 100] [--seed 0] [--out FILE]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from nas_backend_tflm.runtime import arena_usage, invoke_all, load, min_arena_bytes

import nas
from nas.cost import model_bytes, tflm_arena
from nas.graph import trace
from nas.int8 import quantize, run_int8
from nas.tflite import export

ROOT = Path(__file__).resolve().parents[1]


def measure_one(g, qg, resolution: int, rng: np.random.Generator) -> dict:
    """Estimate and measurement of one candidate."""
    model = export(qg)
    est = tflm_arena(g, "reference", 8)
    smallest = min_arena_bytes(model, guess=est.min_bytes)
    interp = load(model, smallest, known_to_fit=True)  # min_arena_bytes has run it
    x_q = qg.input_params.quantize(rng.random((64, resolution, resolution, 1)))
    got = invoke_all(interp, x_q).astype(np.int32)
    usage = arena_usage(interp)
    ref = run_int8(qg, x_q).reshape(len(x_q), -1).astype(np.int32)
    diff = np.abs(got - ref)
    return {
        "arena_est": est.min_bytes,
        "arena_meas": smallest,
        "phase": est.phase.split()[0],
        "allocated": usage.total_bytes,
        "head_est": est.head_bytes,
        "head_meas": usage.head_bytes,
        "model_est": model_bytes(g),
        "model_meas": len(model),
        "identical": float((diff.max(axis=1) == 0).mean()),
        "max_diff": int(diff.max()),
        "ops": len(g.ops),
    }


def measure(n: int, seed: int, space_name: str) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = nas.create_search_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        spec = space.sample(study.ask())
        r = space.resolution(spec)
        torch.manual_seed(seed * 100_000 + i)
        module = space.random_model(spec, 1, 10)  # eval mode, non-trivial BN statistics
        g = trace(module, (1, 1, r, r), f"arch {i}")
        qg = quantize(g, rng.random((32, r, r, 1)))
        rows.append(measure_one(g, qg, r, rng))
    return rows


def summary(err: np.ndarray) -> str:
    a = np.abs(err)
    return (
        f"max |err| {a.max():.3f}%, median |err| {np.median(a):.3f}%, p95 |err| "
        f"{np.percentile(a, 95):.3f}%, signed min {err.min():.3f}% / max {err.max():.3f}%"
    )


def percent(est: list[int], meas: list[int]) -> np.ndarray:
    """(estimate - measured) as % of measured."""
    return np.array([100 * (e - m) / m for e, m in zip(est, meas, strict=True)])


def provenance() -> str:
    """Commit (and whether the tree had changes) the run measures."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    dirty = " (with uncommitted changes)" if git("status", "--porcelain").strip() else ""
    return (git("rev-parse", "--short", "HEAD").strip() or "unknown") + dirty


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the tries)."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def arena_lines(rows: list[dict]) -> list[str]:
    """The arena rows of the table."""
    est, meas = [r["arena_est"] for r in rows], [r["arena_meas"] for r in rows]
    exact = sum(e == m for e, m in zip(est, meas, strict=True))
    gap = [r["arena_meas"] - r["allocated"] for r in rows]
    above = [g for g in gap if g > 0]
    worst = max(rows, key=lambda r: r["arena_meas"] / r["allocated"])
    counts = collections.Counter(r["phase"] for r in rows).most_common()
    phases = ", ".join(f"{phase} {n}" for phase, n in counts)
    return [
        f"| smallest arena that runs (bisection, 1 B) | exact on {exact}/{len(rows)}; "
        f"{summary(percent(est, meas))} |",
        f"| arena head (memory planner) | exact on "
        f"{sum(r['head_est'] == r['head_meas'] for r in rows)}/{len(rows)} |",
        f"| what sets the smallest arena (estimate) | {phases} |",
        f"| smallest arena vs RecordingMicroAllocator total | above it on {len(above)}/"
        f"{len(rows)}, by up to {max(above, default=0):,} B (relatively most: "
        f"{worst['arena_meas']:,} vs {worst['allocated']:,} B); never below: "
        f"{min(gap) >= 0} |",
    ]


def report(rows: list[dict], args: argparse.Namespace, t0: float, cpu0: float) -> list[str]:
    import tflite_micro

    meas = [r["arena_meas"] for r in rows]
    model_err = percent([r["model_est"] for r in rows], [r["model_meas"] for r in rows])
    identical = np.array([r["identical"] for r in rows])
    arena_bytes_err = collections.Counter(r["arena_est"] - r["arena_meas"] for r in rows)
    return [
        "# Static cost model vs TensorFlow Lite Micro",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- date: {datetime.date.today().isoformat()}, commit {provenance()}",
        f"- machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {platform.python_version()}, tflite-micro {tflite_micro.__version__}, "
        f"torch {torch.__version__}",
        f"- architectures: {len(rows)} random `{args.space}` candidates (seed {args.seed}), "
        f"{min(r['ops'] for r in rows)}-{max(r['ops'] for r in rows)} ops, "
        f"{min(meas):,}-{max(meas):,} B arena; {time.time() - t0:.0f} s wall clock, "
        f"{cpu_seconds() - cpu0:.0f} CPU-s",
        "",
        "| quantity | static estimate vs interpreter |",
        "|---|---|",
        *arena_lines(rows),
        f"| flatbuffer bytes | {summary(model_err)} |",
        "",
        f"Int8 reference vs interpreter (64 random inputs each): bit-identical outputs on "
        f"{100 * identical.mean():.2f}% of samples overall, worst architecture "
        f"{100 * identical.min():.1f}%; largest difference "
        f"{max(r['max_diff'] for r in rows)} quantization step(s).",
        "",
        "Arena error distribution (estimate - measured, bytes: candidates): "
        + ", ".join(f"{d:+,} B: {n}" for d, n in sorted(arena_bytes_err.items()))
        + ".",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--space", default="mobilenet")
    ap.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "tflm_arena_fidelity.md")
    )
    args = ap.parse_args()
    t0, cpu0 = time.time(), cpu_seconds()
    rows = measure(args.n, args.seed, args.space)
    lines = report(rows, args, t0, cpu0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
