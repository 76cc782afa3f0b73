"""The keyword-spotting front-end (`nas.frontend_c`) on a Cortex-M in QEMU: its int8
features, instructions per clip, flash and RAM, measured with this backend's toolchain,
startup code and linker script (`sim`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from nas.codegen import CSRC, write_files
from nas.frontend import MfccConfig
from nas.frontend_c import frontend_c
from nas_backend_c_sim import sim

_ARM_MAIN = """\
/* Cortex-M harness of nas_frontend.c for QEMU (mps2-an386): runs the front-end on each
 * embedded clip and prints the c_sim protocol (nas_backend_c_sim/sim.py): the features in
 * hex and the SysTick ticks per clip, then the stack's high-water mark. */
#include <stdint.h>

#define NAS_PAINT_STACK
#include "arm_startup.h"
#include "nas_frontend.h"
#include "nas_test_audio.h"

#include "arm_measure.h"

static int8_t features[NAS_FRONTEND_FEATURE_BYTES];
static char line[2 * NAS_FRONTEND_FEATURE_BYTES + 9]; /* static: not on the measured stack */

int main(void) {
    systick_start();
    for (int n = 0; n < NAS_TEST_CLIPS; ++n) {
        uint32_t start = SYST_CVR;
        nas_frontend(nas_test_audio[n], features);
        uint32_t ticks = (start - SYST_CVR) & 0x00FFFFFFu;
        for (int i = 0; i < NAS_FRONTEND_FEATURE_BYTES; ++i)
            put_hex((uint8_t)features[i], 2, line + 2 * i);
        put("out=");
        put(line);
        put_hex(ticks, 8, line);
        put(";cnt=");
        put(line);
        put(";\\n");
    }
    put_stack_used(line);
    return 0;
}
"""


def frontend_on_arm(
    folder: Path,
    cfg: MfccConfig,
    input_scale: float,
    input_zero_point: int,
    audio_one_clip: np.ndarray,
    mcpu: str = "cortex-m4",
) -> dict[str, Any]:
    """Build the front-end for a Cortex-M (``arm-none-eabi-gcc`` with the c_sim backend's
    flags, startup code and linker script), run it in QEMU ``mps2-an386 -icount shift=0``
    on one clip (or several: (N, clip_samples)) and measure it.

    Returns ``features`` (frames * coefficients int8; (N, ...) for several clips),
    ``frontend_instructions`` per clip (QEMU counts instructions, not cycles, exact to 40;
    the most of the clips) and ``instructions_per_clip``; ``frontend_flash_bytes``: the
    front-end's object file alone, ``.text + .rodata + .data``; ``frontend_sram_bytes``:
    its ``.data + .bss`` (the FFT buffer) + the int8 feature map + the measured stack
    high-water mark (``frontend_stack_bytes``: the harness's ``main`` frame included, a few
    dozen bytes); ``firmware_flash_bytes``: the whole ELF without the test audio."""
    clips = np.asarray(audio_one_clip).reshape(-1, cfg.clip_samples)
    write_files(folder, frontend_c(cfg, input_scale, input_zero_point))
    rows = ",\n".join("{" + ",".join(str(int(v)) for v in clip) + "}" for clip in clips)
    (folder / "nas_test_audio.h").write_text(
        f"#define NAS_TEST_CLIPS {len(clips)}\n"
        'static const int16_t __attribute__((section(".nas_test"))) '
        f"nas_test_audio[{len(clips)}][NAS_FRONTEND_CLIP_SAMPLES] = {{\n{rows}\n}};\n"
    )
    (folder / "frontend_arm_main.c").write_text(_ARM_MAIN)
    for name in ("arm_startup.h", "arm_measure.h", "arm.ld"):
        shutil.copy(CSRC / name, folder)
    o = sim.arm_object_sizes(folder, mcpu, "nas_frontend.c").get
    elf = sim.build_arm(folder, mcpu, ["frontend_arm_main.c", "nas_frontend.c"], "frontend.elf")
    text = sim.run_qemu(elf)
    features, counts, _, stack = sim._parse_firmware(
        "qemu-system-arm",
        text,
        len(clips),
        cfg.frames * cfg.coefficients,
        sim.INSTRUCTIONS_PER_TICK,
    )
    e = sim.section_sizes("arm-none-eabi-size", elf).get
    feature_bytes = cfg.frames * cfg.coefficients
    return {
        "features": features[0] if np.ndim(audio_one_clip) == 1 else features,
        "frontend_instructions": max(counts),
        "instructions_per_clip": counts,
        "frontend_flash_bytes": o(".text", 0) + o(".rodata", 0) + o(".data", 0),
        "frontend_static_ram_bytes": o(".data", 0) + o(".bss", 0),
        "frontend_stack_bytes": stack,
        "frontend_sram_bytes": o(".data", 0) + o(".bss", 0) + feature_bytes + stack,
        "firmware_flash_bytes": e(".text", 0) + e(".rodata", 0) + e(".data", 0),
        "mcpu": mcpu,
    }
