"""The firmware's weight decoders (``nas/csrc/nas_*_decode.c``) on a Cortex-M in QEMU:
what they decode, the instructions each call takes, and their code size, measured with
this backend's toolchain, startup code and linker script (`sim`)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.codegen import CSRC
from nas_backend_c_sim import sim

DECODERS = ("huffman", "cluster", "int4")
SOURCES = {
    "huffman": "nas_huffman_decode.c",
    "cluster": "nas_cluster_decode.c",
    "int4": "nas_int4_unpack.c",
}


@dataclass(frozen=True)
class DecodeCase:
    """One call: ``huffman`` (``data``: the stream, ``table``: the canonical table),
    ``cluster`` (``data``: packed indices, ``table``: the codebooks, ``bits``, ``inner``,
    ``books``) or ``int4`` (``data``: packed int4); ``n`` weights decoded."""

    decoder: str
    data: bytes
    table: bytes
    n: int
    bits: int = 0
    inner: int = 1
    books: int = 1


def fnv1a(values: np.ndarray) -> int:
    """32-bit FNV-1a of bytes: how the harness reports what it decoded."""
    h = 0x811C9DC5
    for b in np.asarray(values).astype(np.uint8).tobytes():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _array(name: str, ctype: str, data: bytes) -> str:
    body = ",".join(str(b if ctype == "uint8_t" else (b - 256 if b > 127 else b)) for b in data)
    return f"static const {ctype} {name}[] = {{{body or '0'}}};\n"


def _harness(cases: list[DecodeCase]) -> str:
    out = [
        "/* QEMU harness of the weight decoders: decodes each case, prints the FNV-1a hash\n"
        " * of the output and the SysTick ticks of the call. */\n",
        '#include <stdint.h>\n#define NAS_PAINT_STACK\n#include "arm_startup.h"\n',
        '#include "nas_weight_decode.h"\n#include "arm_measure.h"\n',
        f"static uint8_t out[{max(c.n for c in cases)}];\nstatic char line[16];\n",
    ]
    calls = []
    for i, c in enumerate(cases):
        out.append(_array(f"d{i}", "uint8_t", c.data))
        if c.decoder == "huffman":
            out.append(_array(f"t{i}", "uint8_t", c.table))
            calls.append(f"nas_huffman_decode(d{i}, t{i}, {c.n}, out)")
        elif c.decoder == "int4":
            calls.append(f"nas_int4_unpack(d{i}, {c.n}, (int8_t *)out)")
        else:
            out.append(_array(f"t{i}", "int8_t", c.table))
            calls.append(
                f"nas_cluster_decode(d{i}, {c.bits}, t{i}, {c.n}, {c.inner}, {c.books}, "
                "(int8_t *)out)"
            )
    out.append(
        "static void report(int i, int32_t n, uint32_t ticks) {\n"
        "    uint32_t h = 0x811C9DC5u;\n"
        "    for (int32_t k = 0; k < n; ++k) h = (h ^ out[k]) * 0x01000193u;\n"
        '    put("case="); put_hex((uint32_t)i, 8, line); put(line);\n'
        '    put(";hash="); put_hex(h, 8, line); put(line);\n'
        '    put(";cnt="); put_hex(ticks, 8, line); put(line); put(";\\n");\n}\n'
        "int main(void) {\n    systick_start();\n    uint32_t start;\n"
    )
    for i, (c, call) in enumerate(zip(cases, calls, strict=True)):
        out.append(
            f"    start = SYST_CVR; {call}; "
            f"report({i}, {c.n}, (start - SYST_CVR) & 0x00FFFFFFu);\n"
        )
    out.append("    put_stack_used(line);\n    return 0;\n}\n")
    return "".join(out)


def decoders_on_arm(folder: Path, cases: list[DecodeCase], mcpu: str = "cortex-m4") -> dict:
    """Build the decoders and a harness for ``cases`` for ``mcpu``, run it in QEMU
    ``mps2-an386 -icount shift=0``. Returns ``hashes`` and ``instructions`` per case (QEMU
    counts instructions, exact to 40), ``code_bytes`` per decoder (its object's ``.text +
    .rodata + .data``) and the harness's ``stack_bytes`` (high-water mark)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("arm_startup.h", "arm_measure.h", "arm.ld", "nas_weight_decode.h"):
        shutil.copy(CSRC / name, folder)
    for name in SOURCES.values():
        shutil.copy(CSRC / name, folder)
    (folder / "decode_main.c").write_text(_harness(cases))
    code = {}
    for d in DECODERS:
        size = sim.arm_object_sizes(folder, mcpu, SOURCES[d]).get
        code[d] = size(".text", 0) + size(".rodata", 0) + size(".data", 0)
    sources = ["decode_main.c", *SOURCES.values()]
    text_s = sim.run_qemu(sim.build_arm(folder, mcpu, sources, "decode.elf"))
    runs = re.findall(r"case=([0-9a-f]{8});hash=([0-9a-f]{8});cnt=([0-9a-f]{8});", text_s)
    stack = re.search(r"stack=([0-9a-f]{8});", text_s)
    if len(runs) != len(cases) or stack is None:
        raise sim.ToolError(f"qemu-system-arm: unexpected output {text_s[-200:]!r}")
    return {
        "hashes": [int(h, 16) for _, h, _ in runs],
        "instructions": [int(c, 16) * sim.INSTRUCTIONS_PER_TICK for *_, c in runs],
        "code_bytes": code,
        "stack_bytes": int(stack.group(1), 16),
    }
