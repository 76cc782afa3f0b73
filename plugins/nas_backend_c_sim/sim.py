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

from .codegen import CSRC

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
class ArmResult:
    outputs: np.ndarray  # int8, one row per test input
    instructions: list[int]  # per inference, to within INSTRUCTIONS_PER_TICK
    op_instructions: list[list[int]]  # per inference and op, with ``profile`` only
    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
    sections: dict[str, int]


def _test_data(x_q: np.ndarray) -> str:
    rows = ",\n".join("{" + ", ".join(str(int(v)) for v in row) + "}" for row in x_q)
    return (
        f"#define NAS_TEST_COUNT {len(x_q)}\n"
        '__attribute__((section(".nas_test"))) static const int8_t '
        f"nas_test_inputs[{len(x_q)}][NAS_INPUT_BYTES] = {{\n{rows}\n}};\n"
    )


def run_arm(
    folder: Path,
    x_q: np.ndarray,
    output_bytes: int,
    mcpu: str = "cortex-m4",
    profile: bool = False,
) -> ArmResult:
    """Cross-compile for Cortex-M, read the ELF's sizes, run in QEMU mps2-an386.

    ``profile`` also reads the instructions of every op (``op_instructions``, one list per
    input; the marks add a few instructions per op to ``instructions``)."""
    x_q = np.ascontiguousarray(x_q, dtype=np.int8).reshape(len(x_q), -1)
    (folder / "nas_test_data.h").write_text(_test_data(x_q))
    for name in ("arm_main.c", "arm.ld"):
        shutil.copy(CSRC / name, folder)
    elf = folder / "firmware.elf"
    _run(
        [
            "arm-none-eabi-gcc", f"-mcpu={mcpu}", *ARM_CFLAGS, "-ffunction-sections",
            *(["-DNAS_PROFILE"] if profile else []),
            "-fdata-sections", "-nostartfiles", "--specs=nano.specs", "-T", "arm.ld",
            "-Wl,--gc-sections", "-o", str(elf), "arm_main.c", "nas_model.c",
        ],
        300,
        cwd=folder,
    )  # fmt: skip
    sections = section_sizes("arm-none-eabi-size", elf)
    qemu = [
        "qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic",
        "-monitor", "none", "-serial", "none", "-semihosting-config",
        "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf),
    ]  # fmt: skip
    proc = _run(qemu, 600)
    text = (proc.stdout + proc.stderr).decode()  # semihosting writes to stderr
    rows = re.findall(r"^([0-9a-f]+) ([0-9a-f]{8})$", text, re.MULTILINE)
    stack = re.search(r"^stack ([0-9a-f]{8})$", text, re.MULTILINE)
    if len(rows) != len(x_q) or stack is None:
        raise ToolError(f"qemu-system-arm: unexpected firmware output {text[-200:]!r}")
    outputs = np.array(
        [np.frombuffer(bytes.fromhex(r[0]), dtype=np.int8) for r in rows], dtype=np.int8
    ).reshape(len(x_q), output_bytes)
    stack_bytes = int(stack.group(1), 16)
    ops: list[list[int]] = []
    for line in text.splitlines():
        if re.fullmatch(r"[0-9a-f]+ [0-9a-f]{8}", line):
            ops.append([])
        elif line.startswith("op ") and ops:
            ops[-1].append(int(line[3:], 16) * INSTRUCTIONS_PER_TICK)
    get = sections.get
    return ArmResult(
        outputs=outputs,
        instructions=[int(r[1], 16) * INSTRUCTIONS_PER_TICK for r in rows],
        op_instructions=ops if profile else [],
        flash_bytes=get(".text", 0) + get(".rodata", 0) + get(".data", 0),
        ram_bytes=get(".data", 0) + get(".bss", 0) + stack_bytes,
        stack_bytes=stack_bytes,
        sections=sections,
    )


AVR_TOOLS = ("avr-gcc", "avr-size", "simavr")
AVR_TOOLS_PACKAGES = "gcc-avr avr-libc simavr"  # Debian
AVR_CLOCK_HZ = 16_000_000


@dataclass(frozen=True)
class AvrResult:
    outputs: np.ndarray  # int8 bytes, one row per test input
    cycles: list[int]  # per inference: Timer1 at the CPU clock in simavr
    op_cycles: list[list[int]]  # per inference and marked phase, with ``profile`` only
    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
    sections: dict[str, int]


def run_avr(
    folder: Path,
    x_q: np.ndarray,
    output_bytes: int,
    mcu: str = "atmega328p",
    profile: bool = False,
) -> AvrResult:
    """Build for AVR with ``avr-gcc -Os``, read sizes with ``avr-size``, run in simavr.

    Flash = ``.text + .data`` less the test inputs (kept in flash, streamed by the model);
    it includes the harness (UART, timer, C runtime). RAM = ``.data + .bss`` + the painted
    stack's high-water mark (the model's activations live on the stack). Cycles come from
    Timer1 counting every CPU cycle; they include its overflow interrupt (a few dozen
    cycles per 65,536). ``profile`` also reads the cycles of every phase the model marks
    (``op_cycles``; Bonsai: the projection, then each tree level)."""
    x_q = np.ascontiguousarray(x_q, dtype=np.int8).reshape(len(x_q), -1)
    rows = ",\n".join("{" + ", ".join(str(int(v)) for v in row) + "}" for row in x_q)
    (folder / "nas_test_data.h").write_text(
        f"#define NAS_TEST_COUNT {len(x_q)}\n"
        f"static const int8_t NAS_ROM nas_test_inputs[{len(x_q)}][NAS_INPUT_BYTES] = "
        f"{{\n{rows}\n}};\n"
    )
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
    sections = section_sizes("avr-size", elf)
    proc = _run(["simavr", "-m", mcu, "-f", str(AVR_CLOCK_HZ), str(elf)], 600)
    text = re.sub(r"\x1b\[[0-9;]*m", "", (proc.stdout + proc.stderr).decode(errors="replace"))
    found = re.findall(r"out=([0-9a-f]+);cyc=([0-9a-f]{8});", text)
    stack = re.search(r"stack=([0-9a-f]{8});", text)
    if len(found) != len(x_q) or stack is None:
        raise ToolError(f"simavr: unexpected firmware output {text[-200:]!r}")
    outputs = np.array(
        [np.frombuffer(bytes.fromhex(o), dtype=np.int8) for o, _ in found], dtype=np.int8
    ).reshape(len(x_q), output_bytes)
    stack_bytes = int(stack.group(1), 16)
    phases: list[list[int]] = []
    for m in re.finditer(r"(out=[0-9a-f]+;)|op=([0-9a-f]{8});", text):
        if m.group(1):
            phases.append([])
        elif phases:
            phases[-1].append(int(m.group(2), 16))
    get = sections.get
    return AvrResult(
        outputs=outputs,
        cycles=[int(c, 16) for _, c in found],
        op_cycles=phases if profile else [],
        flash_bytes=get(".text", 0) + get(".data", 0) - x_q.size,
        ram_bytes=get(".data", 0) + get(".bss", 0) + stack_bytes,
        stack_bytes=stack_bytes,
        sections=sections,
    )
