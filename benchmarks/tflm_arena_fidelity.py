"""Fidelity of the static cost model against TensorFlow Lite Micro's own interpreter.

For N random architectures of a search space (untrained weights with non-trivial batch-norm
statistics, min/max calibration on random inputs), export the int8 model, load it in the
``tflite-micro`` interpreter and compare:

- the static arena estimate (head planned like TFLM's greedy planner + persistent tail,
  reference kernels, 64-bit pointers as in the wheel) with RecordingMicroAllocator's total;
- the estimated flatbuffer size with the exported ``.tflite``;
- the project's int8 reference outputs with the interpreter's, on random inputs.

Usage: python benchmarks/tflm_arena_fidelity.py [--n 100] [--seed 0] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from nas_backend_tflm.runtime import arena_usage, invoke_all, load
from torch import nn

import nas
from nas.cost import arena_bytes, model_bytes
from nas.graph import trace
from nas.int8 import quantize, run_int8
from nas.tflite import export


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
        module = space.build(spec, 1, 10)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        g = trace(module.eval(), (1, 1, r, r), f"arch {i}")
        qg = quantize(g, rng.random((32, r, r, 1)))
        model = export(qg)
        head, tail = arena_bytes(g, "reference", 8)
        interp = load(model, head + tail + 16384)
        x_q = qg.input_params.quantize(rng.random((64, r, r, 1)))
        got = invoke_all(interp, x_q).astype(np.int32)
        usage = arena_usage(interp)
        ref = run_int8(qg, x_q).reshape(len(x_q), -1).astype(np.int32)
        diff = np.abs(got - ref)
        rows.append(
            {
                "arena_est": head + tail,
                "arena_meas": usage.total_bytes,
                "head_est": head,
                "head_meas": usage.head_bytes,
                "model_est": model_bytes(g),
                "model_meas": len(model),
                "identical": float((diff.max(axis=1) == 0).mean()),
                "max_diff": int(diff.max()),
                "ops": len(g.ops),
                "macs": g.macs,
            }
        )
    return rows


def summary(err: np.ndarray) -> str:
    a = np.abs(err)
    return (
        f"max |err| {a.max():.3f}%, median |err| {np.median(a):.3f}%, p95 |err| "
        f"{np.percentile(a, 95):.3f}%, signed min {err.min():.3f}% / max {err.max():.3f}%"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--space", default="mobilenet")
    ap.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "tflm_arena_fidelity.md")
    )
    args = ap.parse_args()
    t0 = time.time()
    rows = measure(args.n, args.seed, args.space)
    arena_err = np.array(
        [100 * (r["arena_est"] - r["arena_meas"]) / r["arena_meas"] for r in rows]
    )
    model_err = np.array(
        [100 * (r["model_est"] - r["model_meas"]) / r["model_meas"] for r in rows]
    )
    head_exact = sum(r["head_est"] == r["head_meas"] for r in rows)
    identical = np.array([r["identical"] for r in rows])
    import tflite_micro

    lines = [
        "# Static cost model vs TensorFlow Lite Micro",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {platform.python_version()}, tflite-micro {tflite_micro.__version__}, "
        f"torch {torch.__version__}",
        f"- architectures: {len(rows)} random `{args.space}` candidates (seed {args.seed}), "
        f"{min(r['ops'] for r in rows)}-{max(r['ops'] for r in rows)} ops, "
        f"{min(r['arena_meas'] for r in rows)}-{max(r['arena_meas'] for r in rows)} B arena; "
        f"{time.time() - t0:.0f} s",
        "",
        "| quantity | error of the static estimate |",
        "|---|---|",
        f"| arena bytes (head + tail) | {summary(arena_err)} |",
        f"| arena head (memory planner) | exact on {head_exact}/{len(rows)} |",
        f"| flatbuffer bytes | {summary(model_err)} |",
        "",
        f"Int8 reference vs interpreter (64 random inputs each): bit-identical outputs on "
        f"{100 * identical.mean():.2f}% of samples overall, worst architecture "
        f"{100 * identical.min():.1f}%; largest difference "
        f"{max(r['max_diff'] for r in rows)} quantization step(s).",
        "",
        "Arena error distribution (estimate - measured, % of measured):",
        "",
        "```",
        " ".join(f"{e:+.2f}" for e in sorted(arena_err)),
        "```",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
