"""Fit the MFCC front-end's cost for a profile: instructions per frame on a Cortex-M core
in QEMU for several front-end settings, and the code's flash and stack.

For each setting, the C of `nas.frontend_c` runs on 14 clips of `varied_audio` (silence,
sweeps, square waves, noise, bursts, speech-like, extremes) and the most instructions of
any clip (a worst case: quiet frames take a shortcut) divided by the frames is the cost
of a frame. A least-squares fit of ``instructions = a * frame_work + b * mel_bands + c``
(`nas.frontend.frame_work`: the frame's multiply-accumulates; non-negative least squares)
gives a profile's
``latency_lut.mfcc_frame`` entry (``cycles_per_mac: a, cycles_per_output: b,
cycles_per_op: c``), and the code's size (``.text``, without the tables, which
`nas.frontend_c.table_bytes` counts) and the largest stack its ``frontend_code_bytes`` and
``frontend_stack_bytes``.

Usage: python benchmarks/frontend_calibration.py [--mcpu cortex-m4] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.optimize
from nas_backend_c_sim.frontend import frontend_on_arm

from nas.frontend import MfccConfig, frame_work
from nas.frontend_c import AUDIO_KINDS, buffer_bytes, table_bytes, varied_audio

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [
    MfccConfig(),
    MfccConfig(window_ms=40, stride_ms=20, mel_bands=32, coefficients=13),
    MfccConfig(window_ms=20, stride_ms=10, mel_bands=40, coefficients=10),
    MfccConfig(window_ms=16, stride_ms=16, mel_bands=20, coefficients=10),
    MfccConfig(window_ms=64, stride_ms=32, mel_bands=40, coefficients=10),
    MfccConfig(window_ms=30, stride_ms=20, mel_bands=64, coefficients=20),
    MfccConfig(window_ms=25, stride_ms=10, mel_bands=40, coefficients=13),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mcpu", default="cortex-m4")
    ap.add_argument("--out", type=Path)
    opts = ap.parse_args(argv)
    out = opts.out or ROOT / f"benchmarks/results/frontend_calibration_{opts.mcpu}.md"
    t0, wall0 = os.times(), time.time()
    rows, fit_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, cfg in enumerate(SETTINGS):
            audio, _ = varied_audio(2 * len(AUDIO_KINDS), cfg, seed=7)
            r = frontend_on_arm(Path(tmp) / str(i), cfg, 0.5, -70, audio, mcpu=opts.mcpu)
            per_frame = r["frontend_instructions"] / cfg.frames
            code = r["frontend_flash_bytes"] - table_bytes(cfg)
            fit_rows.append((frame_work(cfg), cfg.mel_bands, per_frame))
            rows.append((cfg, r, per_frame, code))
    a = np.array([[w, b, 1.0] for w, b, _ in fit_rows])
    y = np.array([p for _, _, p in fit_rows])
    coef, _ = scipy.optimize.nnls(a, y)  # no negative cost per unit
    pred = a @ coef
    cpu = os.times()
    cpu_s = sum(cpu[:4]) - sum(t0[:4])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    code_bytes = max(code for *_, code in rows)
    stack = max(r["frontend_stack_bytes"] for _, r, *_ in rows)
    lines = [
        f"# MFCC front-end cost on {opts.mcpu} (QEMU instructions)",
        "",
        f"- Command: `python benchmarks/frontend_calibration.py --mcpu {opts.mcpu}`",
        f"- Commit {commit}; {platform.platform()}, {os.cpu_count()} CPUs; CPU time "
        f"{cpu_s:.0f} s ({time.time() - wall0:.0f} s wall)",
        "- QEMU `mps2-an386 -icount shift=0` counts instructions (exact to 40), not cycles; "
        "per setting the most instructions of 14 varied clips, divided by the frames",
        "",
        "| window / stride ms | mel | coeff | FFT | frame_work | instructions / frame | fit "
        "| error | flash: code + tables B | RAM: buffer + features + stack B |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (cfg, r, per_frame, code), p in zip(rows, pred, strict=True):
        lines.append(
            f"| {cfg.window_ms} / {cfg.stride_ms} | {cfg.mel_bands} | {cfg.coefficients} | "
            f"{cfg.fft_size} | {frame_work(cfg):,} | {per_frame:,.0f} | {p:,.0f} | "
            f"{(p - per_frame) / per_frame:+.1%} | {code:,} + {table_bytes(cfg):,} | "
            f"{buffer_bytes(cfg):,} + {cfg.frames * cfg.coefficients} + "
            f"{r['frontend_stack_bytes']} |"
        )
    entry = (
        f"mfcc_frame: {{cycles_per_mac: {coef[0]:.4f}, cycles_per_output: {coef[1]:.2f}, "
        f"cycles_per_op: {coef[2]:.0f}}}"
    )
    lines += [
        "",
        "Profile entries (instructions; the profile's `cycles_per_instruction` scales them):",
        "",
        "```yaml",
        f"latency_lut:\n  {entry}",
        f"frontend_code_bytes: {code_bytes}",
        f"frontend_stack_bytes: {stack}",
        "```",
        "",
        "The buffer column is `nas.frontend_c.buffer_bytes` (the measured `.bss` equals it: "
        f"{all(r['frontend_static_ram_bytes'] == buffer_bytes(c) for c, r, *_ in rows)}).",
        "",
    ]
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
