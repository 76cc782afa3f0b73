"""The fixed-point C front-end (`nas.frontend_c`) against the Python MFCC (`nas.frontend`).

Deterministic synthetic audio (`nas.frontend_c.varied_audio`: silence, sine sweeps, clipped
square waves, white noise at many levels, tone bursts, speech-like formant signals and
full-scale extremes) goes through ``nas.frontend.mfcc`` and through the generated C
compiled with the host's gcc. Compared: the int8 features (quantized with the scale and
zero point ``nas.int8.QParams.from_range`` gives over the clips' float features) and, per
frame, the C's Q16 MFCC against the float64 log-mel and DCT. In QEMU (``mps2-an386
-icount shift=0``) the Cortex-M4 build's instructions per clip, flash and RAM, and the
same for code built for the Cortex-M0+ (ARMv6-M, run on the same QEMU core).

    python benchmarks/frontend_agreement.py    # about a minute; gcc, gcc-arm-none-eabi, qemu
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
from nas_backend_c_sim.frontend import frontend_on_arm

from nas.frontend import MfccConfig, dct_matrix, frames_of, log_mel, mfcc
from nas.frontend_c import (
    AUDIO_KINDS,
    MFCC_Q,
    frames_on_host,
    frontend_on_host,
    varied_audio,
)
from nas.int8 import QParams

CLIPS = 490  # 70 of every kind
CONFIGS = [
    ("default (30 ms / 20 ms, 40 mel, 10 coeff)", MfccConfig()),
    (
        "40 ms / 20 ms, 32 mel, 13 coeff",
        MfccConfig(window_ms=40, stride_ms=20, coefficients=13, mel_bands=32),
    ),
]
OUT = Path("benchmarks/results/frontend_agreement.md")


def agreement(cfg: MfccConfig, work: Path, seed: int) -> tuple[list[str], QParams]:
    """Markdown lines: int8 agreement and float error, overall and per kind of audio."""
    audio, kinds = varied_audio(CLIPS, cfg, seed)
    f32 = mfcc(audio, cfg)
    qp = QParams.from_range(float(f32.min()), float(f32.max()))
    py_q = qp.quantize(f32).reshape(len(audio), -1).astype(np.int32)
    c_q = frontend_on_host(work / "q", cfg, qp.scale, qp.zero_point, audio).astype(np.int32)
    diff = c_q - py_q
    exact = (log_mel(audio, cfg) @ dct_matrix(cfg).T).reshape(len(audio), -1)
    frames = frames_of(audio, cfg).reshape(-1, cfg.window)
    fixed = frames_on_host(work / "f", cfg, frames).reshape(len(audio), -1) / 2.0**MFCC_Q
    err = np.abs(fixed - exact)
    err32 = np.abs(fixed - f32.reshape(len(audio), -1).astype(np.float64))
    values, counts = np.unique(diff, return_counts=True)
    hist = ", ".join(f"{v:+d}: {c:,}" for v, c in zip(values, counts, strict=True))
    lines = [
        f"- {len(audio)} clips, {diff.size:,} int8 features; int8 scale {qp.scale:.6g}, "
        f"zero point {qp.zero_point}; float features {f32.min():.2f} to {f32.max():.2f}",
        f"- int8 equal: **{(diff == 0).mean():.4%}**; largest difference "
        f"{np.abs(diff).max()}; differences (C - Python): {hist}",
        f"- Q16 MFCC vs float64 log-mel/DCT: max abs error **{err.max():.3g}** (mean "
        f"{err.mean():.2g}); vs the float32 `mfcc()`: max {err32.max():.3g}",
        "",
        "| audio | clips | int8 equal | max int8 diff | max abs error (float64) |",
        "|---|---|---|---|---|",
    ]
    kinds_arr = np.array(kinds)
    for kind in AUDIO_KINDS:
        m = kinds_arr == kind
        lines.append(
            f"| {kind} | {m.sum()} | {(diff[m] == 0).mean():.4%} | {np.abs(diff[m]).max()} "
            f"| {err[m].max():.3g} |"
        )
    return lines, qp


def arm_figures(cfg: MfccConfig, qp: QParams, work: Path) -> list[str]:
    """Markdown rows: instructions per clip, flash and RAM on Cortex-M4 and M0+ code."""
    audio, kinds = varied_audio(2 * len(AUDIO_KINDS), cfg, seed=99)
    host = frontend_on_host(work / "host", cfg, qp.scale, qp.zero_point, audio)
    rows = []
    for mcpu in ("cortex-m4", "cortex-m0plus"):
        r = frontend_on_arm(work / mcpu, cfg, qp.scale, qp.zero_point, audio, mcpu=mcpu)
        same = bool((r["features"] == host).all())
        per = dict(zip(kinds, r["instructions_per_clip"], strict=False))
        rows.append(
            f"| {mcpu} | {per['speech']:,} | {per['silence']:,} | "
            f"{r['frontend_instructions']:,} | {r['frontend_flash_bytes']:,} | "
            f"{r['frontend_static_ram_bytes']:,} + {cfg.frames * cfg.coefficients} + "
            f"{r['frontend_stack_bytes']} = {r['frontend_sram_bytes']:,} | "
            f"{'yes' if same else 'NO'} |"
        )
    return rows


def main() -> None:
    # no options; -h says what the script writes instead of running it
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    t0, wall0 = os.times(), time.time()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    body: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i, (name, cfg) in enumerate(CONFIGS):
            lines, qp = agreement(cfg, work / f"c{i}", seed=2026 + i)
            body += [f"## {name}", "", *lines, ""]
            body += [
                "Cortex-M (QEMU `mps2-an386 -icount shift=0`; instructions, not cycles; "
                f"{2 * len(AUDIO_KINDS)} clips, the same int8 bytes as the host build):",
                "",
                "| code for | instructions, speech clip | silence | most of any clip "
                "| flash B (.text+.rodata) | RAM B (static + features + stack) | = host |",
                "|---|---|---|---|---|---|---|",
                *arm_figures(cfg, qp, work / f"arm{i}"),
                "",
            ]
    t1 = os.times()
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    cpu += (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
    head = [
        "# Fixed-point C front-end vs the Python MFCC",
        "",
        f"- Command: `python {' '.join(sys.argv)}`",
        f"- Commit {commit}; {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; gcc -O2 on the host, arm-none-eabi-gcc -O2; "
        f"CPU time {cpu:.0f} s (this process and its compilers, QEMU and C runs; "
        f"{time.time() - wall0:.0f} s wall)",
        "- Audio: `nas.frontend_c.varied_audio` (deterministic synthetic clips, equal "
        "numbers of every kind); int8 quantization `QParams.from_range` over the clips' "
        "float features, as a model calibrated on them would use",
        "- int8 compared with `QParams.quantize(mfcc(audio))`; the Q16 values of "
        "`nas_frontend_frame` with the float64 log-mel times the DCT matrix",
        "- Flash: the front-end's object file alone (`.text + .rodata + .data`: code and "
        "tables); RAM: its `.bss` (the FFT buffer), the int8 feature map, and the stack's "
        "high-water mark (the harness's `main` frame included); the M0+ code also calls "
        "libgcc's `__aeabi_lmul` (64-bit multiply), not counted in its flash",
        "",
    ]
    OUT.write_text("\n".join(head + body))
    print("\n".join(head + body))


if __name__ == "__main__":
    main()
