"""Fit the firmware's weight decoders' cost for a profile: instructions per call on a
Cortex-M core in QEMU, and their code size.

Cases: int4 weights packed two per byte (TFLM's unpacking before an int4 op), canonical
Huffman streams (`nas_compress_huffman`) of int8 weights drawn from
Laplace distributions of several widths and of codebook indices of 2-6 bits, and packed
codebook indices (`nas_compress_cluster`) of 2-7 bits in conv, depthwise and fully
connected layouts, 16 to 8,192 weights each. Every decoded output is checked against
Python's (FNV-1a hash). A non-negative least-squares fit of ``instructions = a * payload
bits + b * weights + c`` per decoder gives the profile's ``latency_lut.decode_<name>``
entry (``cycles_per_mac: a, cycles_per_output: b, cycles_per_op: c``), and each decoder's
object (``.text + .rodata + .data``) its ``decoder_code_bytes`` (not for int4: TFLM's
kernels hold their own unpacking, inside the runtime's flash allowance).

Usage: python benchmarks/decoder_calibration.py [--mcpu cortex-m4] [--out FILE]
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
from nas_backend_c_sim.decoders import DECODERS, DecodeCase, decoders_on_arm, fnv1a
from nas_compress_cluster import codebook_table, pack_indices
from nas_compress_huffman import build_code, encode

from nas.compression import codebook_indices
from nas.tflite import pack_int4

ROOT = Path(__file__).resolve().parents[1]
SIZES = (16, 128, 1024, 8192)


def cases(seed: int = 0) -> tuple[list[DecodeCase], list[int]]:
    """The calibration cases and the hash of what each must decode to."""
    rng = np.random.default_rng(seed)
    out: list[DecodeCase] = []
    want: list[int] = []
    for n in SIZES:
        w = rng.integers(-7, 8, n).astype(np.int8)
        out.append(DecodeCase("int4", pack_int4(w).tobytes(), b"", n))
        want.append(fnv1a(w))
        w = rng.integers(-7, 8, n + 1).astype(np.int8)  # an odd count
        out.append(DecodeCase("int4", pack_int4(w).tobytes(), b"", n + 1))
        want.append(fnv1a(w))
        streams = [np.clip(np.round(rng.laplace(0, w, n)), -127, 127) for w in (2, 12, 60)]
        streams += [rng.integers(0, 1 << b, n) for b in (2, 4, 6)]
        for s in streams:
            s = s.astype(np.int64)
            code = build_code(s)
            payload, _ = encode(s, code)
            out.append(DecodeCase("huffman", payload, code.to_bytes(), n))
            want.append(fnv1a(s))
        for bits in (2, 4, 7):
            for layout in ("conv", "depthwise", "dense"):
                channels = max(1, min(16, n // 8))
                if layout == "conv":
                    shape, axis = (channels, 1, 1, n // channels), 0
                elif layout == "depthwise":
                    shape, axis = (1, 1, n // channels, channels), 3
                else:
                    shape, axis = (channels, n // channels), None
                w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), shape).astype(np.int8)
                idx, _ = codebook_indices(w, axis)
                books = 1 if axis is None else channels
                inner = {0: w.size // channels, 3: 1}.get(axis, w.size)  # type: ignore[arg-type]
                out.append(
                    DecodeCase(
                        "cluster",
                        pack_indices(idx.ravel(), bits),
                        codebook_table(w, axis, bits),
                        w.size,
                        bits,
                        inner,
                        books,
                    )
                )
                want.append(fnv1a(w))
    return out, want


def payload_bits(c: DecodeCase) -> int:
    return 8 * len(c.data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mcpu", default="cortex-m4")
    ap.add_argument("--out", type=Path)
    opts = ap.parse_args(argv)
    out = opts.out or ROOT / f"benchmarks/results/decoder_calibration_{opts.mcpu}.md"
    t0, wall0 = os.times(), time.time()
    todo, want = cases()
    with tempfile.TemporaryDirectory() as tmp:
        r = decoders_on_arm(Path(tmp), todo, opts.mcpu)
    ok = sum(h == w for h, w in zip(r["hashes"], want, strict=True))
    if ok != len(todo):
        print(f"{len(todo) - ok} of {len(todo)} cases decoded wrongly", file=sys.stderr)
        return 1
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    cpu = os.times()
    lines = [
        f"# Weight decoders on {opts.mcpu} (QEMU instructions)",
        "",
        f"- Command: `python benchmarks/decoder_calibration.py --mcpu {opts.mcpu}`",
        f"- Commit {commit}; {platform.platform()}, {os.cpu_count()} CPUs; CPU time "
        f"{sum(cpu[:4]) - sum(t0[:4]):.0f} s ({time.time() - wall0:.0f} s wall)",
        "- QEMU `mps2-an386 -icount shift=0` counts instructions (exact to 40), not cycles; "
        f"arm-none-eabi-gcc `-mcpu={opts.mcpu} -O2 -mthumb`",
        f"- {len(todo)} calls, every output equal to Python's ({ok}/{len(todo)}); stack "
        f"high-water mark of the harness with the decoders: {r['stack_bytes']} B",
        "",
        "| decoder | calls | fit: per payload bit | per weight | per call | worst error "
        "| code B |",
        "|---|---|---|---|---|---|---|",
    ]
    entries = []
    for d in DECODERS:
        rows = [(c, n) for c, n in zip(todo, r["instructions"], strict=True) if c.decoder == d]
        a = np.array([[payload_bits(c), c.n, 1.0] for c, _ in rows])
        y = np.array([n for _, n in rows], dtype=float)
        coef, _ = scipy.optimize.nnls(a, y)
        # raised until no call takes more than the fit says: a bound, not an average
        coef *= max(1.0, float(np.max(y / (a @ coef))))
        err = np.abs(a @ coef - y) / y
        lines.append(
            f"| {d} | {len(rows)} | {coef[0]:.3f} | {coef[1]:.3f} | {coef[2]:.0f} | "
            f"{err.max():.1%} | {r['code_bytes'][d]} |"
        )
        entries.append(
            f"  decode_{d}: {{cycles_per_mac: {coef[0]:.4f}, cycles_per_output: "
            f"{coef[1]:.4f}, cycles_per_op: {coef[2]:.0f}}}"
        )
    lines += [
        "",
        "The fit is scaled up until it is at least every measured call (an upper bound, "
        "as the cost contract asks); the worst error is then its largest overestimate.",
        "",
        "Profile entries (instructions; the profile's `cycles_per_instruction` scales them):",
        "",
        "```yaml",
        "latency_lut:",
        *entries,
        "decoder_code_bytes: {"
        + ", ".join(f"{d}: {r['code_bytes'][d]}" for d in DECODERS if d != "int4")
        + "}",
        "```",
        "",
    ]
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
