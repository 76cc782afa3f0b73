"""Build the generated C and run it: on the host (gcc) and on a Cortex-M4 in QEMU.

Host: ``gcc -std=c99 -O2 -Wall -Wextra -Werror``, int8 inputs on stdin, outputs on stdout.

Cortex-M4: ``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -O2`` with newlib-nano and this
package's vector table and linker script (``csrc/``), run in ``qemu-system-arm -M
mps2-an386 -icount shift=0``. With ``shift=0`` QEMU's virtual clock advances exactly 1 ns
per executed instruction, and the SysTick counter runs from the board's 25 MHz clock, so
one tick is 40 instructions: ``instructions_measured`` is exact to within 40
instructions and the same on every run. QEMU counts instructions, not cycles (no
pipeline, no flash wait states); a profile's ``cycles_per_instruction`` turns one into the
other. Sizes come from the ELF: flash = ``.text + .rodata + .data`` (the test inputs sit in
their own section and are not counted), RAM = ``.data + .bss`` + the measured stack
high-water mark (the firmware paints its stack at reset).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.codegen import CSRC

MPS2_SYSCLK_HZ = 25_000_000  # QEMU hw/arm/mps2.c: SYSCLK_FRQ for AN385/AN386
INSTRUCTIONS_PER_TICK = 1_000_000_000 // MPS2_SYSCLK_HZ  # icount shift=0: 1 ns / insn
ARM_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")
ARM_TOOLS_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"  # Debian
ARM_CFLAGS = ["-std=c99", "-O2", "-mthumb", "-mfloat-abi=soft", "-Wall", "-Wextra"]


class ToolError(RuntimeError):
    """A compiler or simulator failed; the message names the tool and its output."""


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{Path(cmd[0]).name}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
        tail = " | ".join(err[-3:]) if err else f"exit code {proc.returncode}"
        raise ToolError(f"{Path(cmd[0]).name} failed: {tail}")
    return proc


def section_sizes(size_tool: str, elf: Path) -> dict[str, int]:
    """Bytes of every section of ``elf``, from binutils' ``size -A``."""
    listing = _run([size_tool, "-A", str(elf)], 60).stdout.decode()
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\.\w+)\s+(\d+)\s+\d+\s*$", listing, re.MULTILINE)
    }


def missing(tools: tuple[str, ...]) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def run_host(folder: Path, x_q: np.ndarray, output_bytes: int) -> np.ndarray:
    """Compile ``folder``'s model for the host and run it on int8 inputs ``x_q``."""
    shutil.copy(CSRC / "host_main.c", folder)
    exe = folder / "host_model"
    cflags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
    _run(["gcc", *cflags, "-o", str(exe), "host_main.c", "nas_model.c"], 120, cwd=folder)
    out = _run([str(exe)], 120, input=np.ascontiguousarray(x_q, dtype=np.int8).tobytes()).stdout
    return np.frombuffer(out, dtype=np.int8).reshape(len(x_q), output_bytes)


@dataclass(frozen=True)
class SimResult:
    """One firmware run in a simulator."""

    outputs: np.ndarray  # int8 bytes, one row per test input
    counts: list[int]  # per inference: instructions (QEMU) or cycles (simavr)
    op_counts: list[list[int]]  # per inference and marked op, with ``profile`` only
    flash_bytes: int
    ram_bytes: int
    stack_bytes: int


def _write_test_data(folder: Path, x_q: np.ndarray) -> np.ndarray:
    """``nas_test_data.h``: the inputs as one constant array; each harness defines
    ``NAS_TEST_DATA`` (where they are kept) before it includes the file."""
    x_q = np.ascontiguousarray(x_q, dtype=np.int8).reshape(len(x_q), -1)
    rows = ",\n".join("{" + ", ".join(str(int(v)) for v in row) + "}" for row in x_q)
    (folder / "nas_test_data.h").write_text(
        f"#define NAS_TEST_COUNT {len(x_q)}\n"
        f"static const int8_t NAS_TEST_DATA nas_test_inputs[{len(x_q)}][NAS_INPUT_BYTES] = "
        f"{{\n{rows}\n}};\n"
    )
    return x_q


def _parse_firmware(
    tool: str, text: str, inputs: int, output_bytes: int, per_tick: int
) -> tuple[np.ndarray, list[int], list[list[int]], int]:
    """(outputs, counts, per-op counts, stack bytes) from what every harness prints:
    ``out=<hex>;cnt=<hex>;`` per input, ``op=<hex>;`` per marked op after it, and
    ``stack=<hex>;``. Counts are multiplied by ``per_tick``."""
    runs: list[tuple[str, int]] = []
    ops: list[list[int]] = []
    for m in re.finditer(r"out=([0-9a-f]+);cnt=([0-9a-f]{8});|op=([0-9a-f]{8});", text):
        if m.group(1) is not None:
            runs.append((m.group(1), int(m.group(2), 16) * per_tick))
            ops.append([])
        elif ops:
            ops[-1].append(int(m.group(3), 16) * per_tick)
    stack = re.search(r"stack=([0-9a-f]{8});", text)
    if len(runs) != inputs or stack is None:
        raise ToolError(f"{tool}: unexpected firmware output {text[-200:]!r}")
    outputs = np.array(
        [np.frombuffer(bytes.fromhex(o), dtype=np.int8) for o, _ in runs], dtype=np.int8
    ).reshape(inputs, output_bytes)
    return outputs, [c for _, c in runs], ops, int(stack.group(1), 16)


def arm_object_sizes(folder: Path, mcpu: str, source: str) -> dict[str, int]:
    """Compile one C file of ``folder`` for ``mcpu`` and return its object's section sizes
    (what it alone adds to a firmware)."""
    obj = folder / (Path(source).stem + ".o")
    _run(
        ["arm-none-eabi-gcc", f"-mcpu={mcpu}", *ARM_CFLAGS, "-c", "-o", str(obj), source],
        120,
        cwd=folder,
    )
    return section_sizes("arm-none-eabi-size", obj)


def build_arm(
    folder: Path, mcpu: str, sources: list[str], elf_name: str, flags: list[str] | None = None
) -> Path:
    """Link ``sources`` (in ``folder``, with ``arm_startup.h``, ``arm.ld``...) into a
    bare-metal ELF for ``mcpu``: newlib-nano, unused sections dropped."""
    elf = folder / elf_name
    _run(
        [
            "arm-none-eabi-gcc", f"-mcpu={mcpu}", *ARM_CFLAGS, *(flags or []),
            "-ffunction-sections", "-fdata-sections", "-nostartfiles", "--specs=nano.specs",
            "-T", "arm.ld", "-Wl,--gc-sections", "-o", str(elf), *sources,
        ],
        300,
        cwd=folder,
    )  # fmt: skip
    return elf


def run_qemu(elf: Path) -> str:
    """Run a bare-metal ELF in QEMU ``mps2-an386`` with ``-icount shift=0`` (one
    instruction per nanosecond); what it printed through semihosting."""
    qemu = [
        "qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic",
        "-monitor", "none", "-serial", "none", "-semihosting-config",
        "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf),
    ]  # fmt: skip
    proc = _run(qemu, 600)
    return (proc.stdout + proc.stderr).decode()  # semihosting writes to stderr


def run_arm(
    folder: Path,
    x_q: np.ndarray,
    output_bytes: int,
    mcpu: str = "cortex-m4",
    profile: bool = False,
) -> SimResult:
    """Cross-compile for Cortex-M, read the ELF's sizes, run in QEMU mps2-an386; counts
    are instructions. ``profile`` also reads the instructions of every op (``op_counts``;
    the marks add a few instructions per op to ``counts``)."""
    x_q = _write_test_data(folder, x_q)
    for name in ("arm_main.c", "arm_startup.h", "arm_measure.h", "arm.ld"):
        shutil.copy(CSRC / name, folder)
    flags = ["-DNAS_PROFILE"] if profile else []
    elf = build_arm(folder, mcpu, ["arm_main.c", "nas_model.c"], "firmware.elf", flags)
    size = section_sizes("arm-none-eabi-size", elf).get
    text = run_qemu(elf)
    outputs, counts, ops, stack = _parse_firmware(
        "qemu-system-arm", text, len(x_q), output_bytes, INSTRUCTIONS_PER_TICK
    )
    return SimResult(
        outputs=outputs,
        counts=counts,
        op_counts=ops if profile else [],
        flash_bytes=size(".text", 0) + size(".rodata", 0) + size(".data", 0),
        ram_bytes=size(".data", 0) + size(".bss", 0) + stack,
        stack_bytes=stack,
    )


AVR_TOOLS = ("avr-gcc", "avr-size", "simavr")
AVR_TOOLS_PACKAGES = "gcc-avr avr-libc simavr"  # Debian
AVR_CLOCK_HZ = 16_000_000


def run_avr(
    folder: Path,
    x_q: np.ndarray,
    output_bytes: int,
    mcu: str = "atmega328p",
    profile: bool = False,
) -> SimResult:
    """Build for AVR with ``avr-gcc -Os``, read sizes with ``avr-size``, run in simavr;
    counts are cycles.

    Flash = ``.text + .data`` less the test inputs (kept in flash, streamed by the model);
    it includes the harness (UART, timer, C runtime). RAM = ``.data + .bss`` + the painted
    stack's high-water mark (the model's activations live on the stack). Cycles come from
    Timer1 counting every CPU cycle; they include its overflow interrupt (a few dozen
    cycles per 65,536). ``profile`` also reads the cycles of every phase the model marks
    (``op_counts``; Bonsai: the projection, then each tree level)."""
    x_q = _write_test_data(folder, x_q)
    shutil.copy(CSRC / "avr_main.c", folder)
    elf = folder / "firmware_avr.elf"
    _run(
        [
            "avr-gcc", f"-mmcu={mcu}", "-std=gnu99", "-Os", "-Wall", "-Wextra",
            *(["-DNAS_PROFILE"] if profile else []),
            "-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections",
            "-o", str(elf), "avr_main.c", "nas_model.c",
        ],
        300,
        cwd=folder,
    )  # fmt: skip
    size = section_sizes("avr-size", elf).get
    proc = _run(["simavr", "-m", mcu, "-f", str(AVR_CLOCK_HZ), str(elf)], 600)
    text = re.sub(r"\x1b\[[0-9;]*m", "", (proc.stdout + proc.stderr).decode(errors="replace"))
    outputs, counts, ops, stack = _parse_firmware("simavr", text, len(x_q), output_bytes, 1)
    return SimResult(
        outputs=outputs,
        counts=counts,
        op_counts=ops if profile else [],
        flash_bytes=size(".text", 0) + size(".data", 0) - x_q.size,
        ram_bytes=size(".data", 0) + size(".bss", 0) + stack,
        stack_bytes=stack,
    )
