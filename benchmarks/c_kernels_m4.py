"""Instructions per MAC of the c_sim backend's generated C on a Cortex-M4 (QEMU), at the
layer shapes of the CMSIS-NN figures in ``docs/references.md``.

Each layer is a one-layer network, traced and quantized like a search candidate, generated
as C and run in QEMU ``mps2-an386 -icount shift=0`` with a mark after every op; the
layer's instructions are divided by its executed MACs (`nas.cost.executed_macs`).

    python benchmarks/c_kernels_m4.py     # about 10 s; needs gcc-arm-none-eabi, qemu-system-arm
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from nas_backend_c_sim import sim
from torch import nn

from nas import codegen
from nas.cost import executed_macs
from nas.data import calibration_batch
from nas.graph import trace
from nas.int8 import quantize

# (layer, module, input channels, input side, CMSIS-NN instructions/MAC on M4 from
# docs/references.md)
LAYERS = [
    ("conv 3x3, 32->32, 16x16", nn.Conv2d(32, 32, 3, padding=1), 32, 16, "1.93"),
    ("conv 3x3, Cin 3 (->32, 16x16)", nn.Conv2d(3, 32, 3, padding=1), 3, 16, "4.82"),
    ("1x1 conv, Cin 64 (->64, 8x8)", nn.Conv2d(64, 64, 1), 64, 8, "2.07"),
    ("1x1 conv, Cin 8 (->32, 16x16)", nn.Conv2d(8, 32, 1), 8, 16, "6.63"),
    (
        "depthwise 3x3 (32 ch, 16x16)",
        nn.Conv2d(32, 32, 3, padding=1, groups=32),
        32,
        16,
        "8.3-9.95",
    ),
    ("FC 1024->256", nn.Sequential(nn.Flatten(), nn.Linear(1024, 256)), 1024, 1, "1.92"),
    ("avgpool 2x2 (32 ch, 16x16), per input", nn.AvgPool2d(2), 32, 16, "9.8"),
]


def measure(module: nn.Module, channels: int, side: int) -> tuple[int, int]:
    """(instructions, executed MACs) of the network's first op (its only compute op)."""
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((16, channels, side, side)).astype(np.float32)
    graph = trace(nn.Sequential(module).eval(), (1, channels, side, side), "layer")
    qg = quantize(graph, calibration_batch(x, 16, 0))
    model = codegen.generate(qg)
    with tempfile.TemporaryDirectory() as tmp:
        codegen.write(model, Path(tmp))
        x_q = np.zeros((1, model.input_bytes), np.int8)
        r = sim.run_arm(Path(tmp), x_q, model.output_bytes, profile=True)
    i = next(k for k, op in enumerate(graph.ops) if op.kind != "reshape")
    return r.op_counts[0][i], executed_macs(graph, graph.ops[i])


def main() -> None:
    # no options; -h says what the script writes instead of running it
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# Generated C kernels on a Cortex-M4: instructions per MAC",
        "",
        f"- command: `python {' '.join(sys.argv)}`; date {datetime.date.today()}, commit {commit}",
        "- QEMU 7.2 `mps2-an386 -icount shift=0`, arm-none-eabi-gcc 12.2 `-O2 -mcpu=cortex-m4`",
        "- CMSIS-NN column: `docs/references.md` (QEMU -icount, CMSIS-NN 99f736a6, gcc 12.2 -O3)",
        "- generated C per executed MAC (taps on the zero padding are skipped, as CMSIS-NN's "
        "kernels skip them too); average pool per input read",
        "",
        "| layer | executed MACs | instructions | generated C, instr/MAC | CMSIS-NN, instr/MAC |",
        "|---|---|---|---|---|",
    ]
    for name, module, channels, side, cmsis in LAYERS:
        n, macs = measure(module, channels, side)
        lines.append(f"| {name} | {macs:,} | {n:,} | {n / macs:.2f} | {cmsis} |")
    out = Path("benchmarks/results/c_kernels_cortex_m4.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
