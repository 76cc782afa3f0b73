"""From a trained model to a board: the input contract and a firmware project.

**The input contract** (`input_contract`, saved in every trial's ``arch.json`` as
``input``) is everything between the sensor and the model's first int8 byte: the raw
values' shape and type, the factor that scaled them (to [0, 1] for 8-bit pixels), the
resize to the candidate's resolution (a sensor window's: its length in samples; bilinear
with half-pixel centres, as ``torch.nn.functional.interpolate(..., align_corners=False)``
did in training), the layout and the int8 scale and zero point. `io_c` states it as C:
``nas_preprocess(raw, input)`` and ``nas_predicted_class(output)`` in ``nas_io.c``.

**The firmware project** (`write_project`, a trial's ``firmware/`` folder) is the model's
generated C (`nas.codegen`: no runtime to download), ``nas_io.c``, one test sample
(``nas_sample.h``: its raw values, label, and the class the Python model predicts for
it), startup code, a linker script and a ``Makefile``: ``make`` builds ``firmware.elf``
for the profile's core and ``make run`` runs it in a simulator, which prints the
predicted class. Cortex-M cores: ``arm-none-eabi-gcc`` with newlib-nano, QEMU's
``mps2-an386`` board (a Cortex-M4; its memory map is the linker script's). The
ATmega328P (Arduino Uno): ``avr-gcc`` and simavr; the model reads its input from flash
there, so the sample is stored already converted to int8.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from nas import codegen
from nas.backends import CExportable, CSource, c_array
from nas.data import FEATURES, IMAGES, WINDOWS, Arrays
from nas.frontend import MfccConfig
from nas.frontend_c import frontend_c
from nas.hardware import HardwareProfile

#: ``arm-none-eabi-gcc -mcpu=`` for the Cortex-M cores of the profiles.
ARM_MCPU = {
    "Cortex-M0+": "cortex-m0plus",
    "Cortex-M4": "cortex-m4",
    "Cortex-M4F": "cortex-m4",
    "Cortex-M7": "cortex-m7",
}
#: ``avr-gcc -mmcu=`` for the AVR cores.
AVR_MCU = {"AVR8 ATmega328P": "atmega328p"}
AVR_CLOCK_HZ = 16_000_000
RESIZE = "bilinear, half-pixel centres (torch.nn.functional.interpolate, align_corners=False)"
CHANNELS = {1: "gray", 3: "RGB"}
QUANTIZE = "q = clamp(round_half_to_even(x / int8_scale) + int8_zero_point, -128, 127)"
#: A window's resize: the same interpolation along time only (its width stays 1).
RESIZE_TIME = "linear along time, half-pixel centres (torch bilinear to (T', 1))"
README = "README.md"


def target(hw: HardwareProfile) -> tuple[str, str] | None:
    """(``arm`` or ``avr``, the compiler's CPU name) for ``hw``'s core, or None."""
    if hw.core in ARM_MCPU:
        return "arm", ARM_MCPU[hw.core]
    if hw.core in AVR_MCU:
        return "avr", AVR_MCU[hw.core]
    return None


def raw_values(x_nchw: np.ndarray, raw_scale: float) -> np.ndarray:
    """The sensor's values behind float images: uint8 when the dataset scaled integer
    readings (``raw_scale`` below 1, e.g. pixels 0..255), float32 as they are otherwise."""
    if raw_scale == 1.0:
        return np.asarray(x_nchw, dtype=np.float32)
    whole = np.round(np.asarray(x_nchw, dtype=np.float64) / raw_scale)
    return np.clip(whole, 0, 255).astype(np.uint8)


def input_contract(data: Arrays, size: int, src: CSource) -> dict[str, Any]:
    """How raw sensor values become the model's int8 input (module docstring). With a
    front-end (keyword spotting's MFCC) the raw values are its audio samples, and
    ``nas_preprocess`` runs the fixed-point front-end (`nas.frontend_c`)."""
    _, c, h, w = data.input_shape
    oh, ow = data.input_hw(size)
    model_side = {
        "model_shape": [oh, ow, c],
        "layout": src.input_layout,
        "int8_scale": src.input_scale,
        "int8_zero_point": src.input_zero_point,
        "quantize": QUANTIZE,
        "class_names": list(data.class_names),
    }
    if data.frontend is not None:
        fe = data.frontend
        return {
            "kind": data.kind,
            "frontend": {"name": "mfcc", **asdict(fe)},
            "raw_shape": [fe.clip_samples, 1, 1],
            "raw_dtype": "int16",
            "raw_layout": f"{fe.clip_samples} samples of {fe.sample_rate} Hz mono audio",
            "channels": "mono audio",
            "raw_scale": 1.0,
            "raw_source": f"16-bit PCM audio; the model's input is its {data.raw_source}",
            "scaling": "none: the front-end reads the int16 samples",
            "resize": "none",
            "c_function": "nas_preprocess(raw, input) in firmware/nas_io.c, which calls "
            "nas_frontend() of firmware/nas_frontend.c (fixed point)",
            **model_side,
        }
    raw = raw_values(data.x_test[:64], data.raw_scale)
    windows = data.kind == WINDOWS
    return {
        "kind": data.kind,
        "raw_shape": [h, w, c],
        "raw_dtype": str(raw.dtype),
        "raw_layout": (
            "(T, 1, C): one row of C channel values per sample, in time order"
            if windows
            else "HWC (row-major, channels last)"
        ),
        "channels": CHANNELS.get(c, f"{c} channels") if data.kind == IMAGES else f"{c} channels",
        "raw_scale": data.raw_scale,
        "raw_source": data.raw_source,
        "scaling": "x = float32(raw) * raw_scale"
        + (", in [0, 1]" if raw.dtype == np.uint8 else ""),
        "resize": "none" if (oh, ow) == (h, w) else (RESIZE_TIME if windows else RESIZE),
        "c_function": "nas_preprocess(raw, input) in firmware/nas_io.c",
        **model_side,
    }


def frontend_config(entry: dict[str, Any]) -> MfccConfig:
    """The `MfccConfig` a contract's ``frontend`` entry describes."""
    return MfccConfig(**{k: v for k, v in entry.items() if k != "name"})


def _float(v: float) -> str:
    return f"{np.float32(v)!r}".removeprefix("np.float32(").removesuffix(")") + "f"


def io_c(contract: dict[str, Any], src: CSource) -> dict[str, str]:
    """``nas_io.h`` / ``nas_io.c``: the input contract and the output's class, in C99
    (with a front-end, also its ``nas_frontend.h`` / ``nas_frontend.c``)."""
    h, w, c = contract["raw_shape"]
    oh, ow, _ = contract["model_shape"]
    fe = contract.get("frontend")
    raw_t = {"uint8": "uint8_t", "int16": "int16_t"}.get(contract["raw_dtype"], "float")
    header = (
        "/* The model's input and output contract (mcu-nas; see README.md). */\n"
        "#ifndef NAS_IO_H\n#define NAS_IO_H\n#include <stdint.h>\n"
        f"#define NAS_RAW_H {h}\n#define NAS_RAW_W {w}\n#define NAS_RAW_C {c}\n"
        f"typedef {raw_t} nas_raw_t;\n"
        "/* raw: NAS_RAW_H x NAS_RAW_W x NAS_RAW_C sensor values, row-major, channels last;\n"
        " * input: the model's NAS_INPUT_BYTES int8 bytes. */\n"
        '#ifdef __cplusplus\nextern "C" {\n#endif\n'
        "void nas_preprocess(const nas_raw_t *raw, int8_t *input);\n"
        "/* the predicted class from the bytes nas_model_run() wrote */\n"
        "int nas_predicted_class(const int8_t *output);\n"
        "#ifdef __cplusplus\n}\n#endif\n#endif\n"
    )
    if src.output_dtype == "int8" and src.output_bytes == 1:
        decode = "    return output[0] > 0;\n"  # one score: its sign
    elif src.output_dtype == "int8":
        n = src.output_bytes
        decode = (
            f"    int best = 0;\n    for (int i = 1; i < {n}; ++i)\n"
            "        if (output[i] > output[best]) best = i;\n    return best;\n"
        )
    else:  # little-endian int32 scores
        n = src.output_bytes // 4
        score = (
            "(int32_t)((uint32_t)(uint8_t)output[4 * {i}] | "
            "(uint32_t)(uint8_t)output[4 * {i} + 1] << 8 | "
            "(uint32_t)(uint8_t)output[4 * {i} + 2] << 16 | "
            "(uint32_t)(uint8_t)output[4 * {i} + 3] << 24)"
        )
        if n == 1:
            decode = f"    return {score.format(i=0)} > 0;\n"
        else:
            decode = (
                f"    int best = 0;\n    int32_t top = {score.format(i=0)};\n"
                f"    for (int i = 1; i < {n}; ++i) {{\n"
                f"        int32_t s = {score.format(i='i')};\n"
                "        if (s > top) {\n            top = s;\n            best = i;\n        }\n"
                "    }\n    return best;\n"
            )
    if fe is not None:
        return {
            "nas_io.h": header,
            "nas_io.c": (
                "/* The model's input and output contract, generated by mcu-nas (see "
                'README.md). */\n#include "nas_frontend.h"\n#include "nas_io.h"\n\n'
                "/* raw: one clip of int16 audio; the fixed-point MFCC front-end writes the\n"
                " * model's int8 feature map (frames x coefficients, one channel). */\n"
                "void nas_preprocess(const nas_raw_t *raw, int8_t *input) {\n"
                "    nas_frontend(raw, input);\n}\n\n"
                "int nas_predicted_class(const int8_t *output) {\n" + decode + "}\n"
            ),
            **frontend_c(frontend_config(fe), contract["int8_scale"], contract["int8_zero_point"]),
        }
    if contract["layout"] == "HWC":
        index = f"(y * {ow} + x) * {c} + ch"
    else:
        index = f"(ch * {oh} + y) * {ow} + x"
    if contract["resize"] == "none":
        value = "        float v = at(raw, y, x, ch);\n"
        helpers = ""
    else:
        # torch's upsample_bilinear2d on the CPU: source index scale * (dst + 0.5) - 0.5
        # (one fused multiply-add), clamped at 0; the four weights as products, summed
        # with fused multiply-adds in its order (bit-exact with torch 2.13 on x86-64)
        helpers = (
            "static void source(int dst, int in, int out, int *i0, int *i1, float *l1) {\n"
            "    float scale = (float)in / (float)out;\n"
            "    float s = fmaf(scale, (float)dst + 0.5f, -0.5f);\n"
            "    if (s < 0.0f) s = 0.0f;\n"
            "    int i = (int)s;\n"
            "    if (i > in - 1) i = in - 1;\n"
            "    float l = s - (float)i;\n"
            "    *l1 = l < 0.0f ? 0.0f : (l > 1.0f ? 1.0f : l);\n"
            "    *i0 = i;\n"
            "    *i1 = i < in - 1 ? i + 1 : i;\n"
            "}\n\n"
        )
        value = (
            "        int y0, y1, x0, x1;\n        float ly, lx;\n"
            f"        source(y, {h}, {oh}, &y0, &y1, &ly);\n"
            f"        source(x, {w}, {ow}, &x0, &x1, &lx);\n"
            "        float hy = 1.0f - ly, hx = 1.0f - lx;\n"
            "        float v = at(raw, y0, x1, ch) * (hy * lx);\n"
            "        v = fmaf(at(raw, y0, x0, ch), hy * hx, v);\n"
            "        v = fmaf(at(raw, y1, x0, ch), ly * hx, v);\n"
            "        v = fmaf(at(raw, y1, x1, ch), ly * lx, v);\n"
        )
    source = (
        "/* The model's input and output contract, generated by mcu-nas (see README.md). */\n"
        '#include <math.h>\n\n#include "nas_io.h"\n\n'
        "#ifdef __AVR__ /* avr-libc: float is double, lrint rounds halves to even */\n"
        "#define rintf(v) ((float)lrint(v))\n#endif\n\n"
        f"#define RAW_SCALE {_float(contract['raw_scale'])}\n"
        f"#define INT8_SCALE {_float(contract['int8_scale'])}\n"
        f"#define INT8_ZERO_POINT {int(contract['int8_zero_point'])}\n\n"
        "static float at(const nas_raw_t *raw, int y, int x, int ch) {\n"
        f"    return (float)raw[(y * {w} + x) * {c} + ch] * RAW_SCALE;\n}}\n\n"
        + helpers
        + "void nas_preprocess(const nas_raw_t *raw, int8_t *input) {\n"
        f"    for (int y = 0; y < {oh}; ++y)\n"
        f"    for (int x = 0; x < {ow}; ++x)\n"
        f"    for (int ch = 0; ch < {c}; ++ch) {{\n"
        + value
        + "        float q = rintf(v / INT8_SCALE) + (float)INT8_ZERO_POINT;\n"
        f"        input[{index}] = (int8_t)(q < -128.0f ? -128 : (q > 127.0f ? 127 : (int)q));\n"
        "    }\n}\n\n"
        "int nas_predicted_class(const int8_t *output) {\n" + decode + "}\n"
    )
    return {"nas_io.h": header, "nas_io.c": source}


def _sample_header(
    raw: np.ndarray, x_q: np.ndarray, label: int, expected: int, tolerance: int = 0
) -> str:
    text = (
        "/* One test sample (mcu-nas): its raw sensor values, its label, and the class the\n"
        " * Python int8 model predicts for it. */\n#ifndef NAS_SAMPLE_H\n#define NAS_SAMPLE_H\n"
        '#include <stdint.h>\n#include "nas_io.h"\n#include "nas_rom.h"\n'
        f"#define NAS_SAMPLE_LABEL {label}\n#define NAS_SAMPLE_EXPECTED {expected}\n"
        f"#define NAS_INPUT_TOLERANCE {tolerance}\n"
    )
    unused = "__attribute__((unused))"
    if raw.dtype.kind in "iu":
        text += c_array("nas_raw_t", "nas_sample_raw", raw, qualifier=unused)
    else:
        values = ", ".join(_float(v) for v in raw.reshape(-1))
        text += f"static const nas_raw_t {unused} nas_sample_raw[{raw.size}] = {{{values}}};\n"
    # the int8 input the Python pipeline made of it: the check of nas_preprocess(), and on
    # AVR the model's input itself (it reads its input from flash)
    text += c_array("int8_t", "nas_sample_input", x_q, qualifier="NAS_ROM " + unused)
    return text + "#endif\n"


def makefile(hw: HardwareProfile, kind: str, cpu: str, frontend: bool = False) -> str:
    """``make`` builds ``firmware.elf``; ``make run`` runs it in the simulator."""
    extra = " nas_frontend.c" if frontend else ""
    head = f"# {hw.board} ({hw.core}), written by mcu-nas. `make` builds, `make run` simulates.\n"
    if kind == "arm":
        return head + (
            "CC = arm-none-eabi-gcc\n"
            f"CFLAGS = -mcpu={cpu} -mthumb -mfloat-abi=soft -std=c99 -O2 -Wall -Wextra \\\n"
            "\t-ffunction-sections -fdata-sections\n"
            "LDFLAGS = -nostartfiles --specs=nano.specs -T board.ld -Wl,--gc-sections\n"
            f"SRC = main.c nas_model.c nas_io.c{extra}\n\n"
            "firmware.elf: $(SRC) $(wildcard *.h) board.ld\n"
            "\t$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(SRC) -lm\n"
            "\tarm-none-eabi-size $@\n\n"
            "# QEMU's Arm MPS2 board with a Cortex-M4 (AN386): prints the class, exits\n"
            "run: firmware.elf\n"
            "\tqemu-system-arm -M mps2-an386 -cpu cortex-m4 -nographic -monitor none \\\n"
            "\t\t-serial none -semihosting-config enable=on,target=native -kernel $<\n\n"
            "clean:\n\trm -f firmware.elf\n\n.PHONY: run clean\n"
        )
    return head + (
        "CC = avr-gcc\n"
        f"CFLAGS = -mmcu={cpu} -DF_CPU={AVR_CLOCK_HZ}UL -std=gnu99 -Os -Wall -Wextra \\\n"
        "\t-ffunction-sections -fdata-sections -Wl,--gc-sections\n"
        f"SRC = main.c nas_model.c nas_io.c{extra}\n\n"
        "firmware.elf: $(SRC) $(wildcard *.h)\n"
        "\t$(CC) $(CFLAGS) -o $@ $(SRC) -lm\n"
        "\tavr-size $@\n\n"
        "firmware.hex: firmware.elf\n\tavr-objcopy -O ihex -R .eeprom $< $@\n\n"
        "# simavr prints the UART; the firmware sleeps with interrupts off, which ends it\n"
        "run: firmware.elf\n"
        f"\tsimavr -m {cpu} -f {AVR_CLOCK_HZ} $<\n\n"
        "# an Uno on /dev/ttyACM0 (avrdude), then read it at 115200 baud\n"
        "flash: firmware.hex\n"
        f"\tavrdude -p {cpu} -c arduino -P /dev/ttyACM0 -b 115200 -U flash:w:$<:i\n\n"
        "clean:\n\trm -f firmware.elf firmware.hex\n\n.PHONY: run flash clean\n"
    )


def raw_step(contract: dict[str, Any]) -> str:
    """Step 1 of the contract: what the raw values are, by the input's kind."""
    h, w, c = contract["raw_shape"]
    dtype = f"`{contract['raw_dtype']}`"
    if contract.get("kind") == WINDOWS:
        return (
            f"1. Raw values: a window of {h} samples x {c} channels, {dtype}, one row of "
            "channel values per sample, in time order."
        )
    if contract.get("kind") == FEATURES:
        return (
            f"1. Raw values: the {h} x {w} feature map (frames x coefficients) of step 0, "
            f"{dtype}, row-major (one row per frame)."
        )
    return (
        f"1. Raw values: {h} x {w} x {c} ({contract['channels']}), {dtype}, row-major, "
        "channels last."
    )


def contract_steps(contract: dict[str, Any]) -> list[str]:
    """The input contract as numbered Markdown steps (this README and ``FIRMWARE.md``)."""
    oh, ow, _ = contract["model_shape"]
    zp = int(contract["int8_zero_point"])
    source = contract.get("raw_source")
    classes = contract.get("class_names")
    names = (
        [
            "",
            "Classes, by the index `nas_predicted_class` returns: "
            + ", ".join(f"{i} {name}" for i, name in enumerate(classes))
            + ".",
        ]
        if classes
        else []
    )
    quantize = (
        f"`q = clamp(round_half_to_even(x / {contract['int8_scale']!r}) "
        f"{'-' if zp < 0 else '+'} {abs(zp)}, -128, 127)`"
    )
    if contract.get("frontend"):
        fe = frontend_config(contract["frontend"])
        return [
            f"1. Raw values: {fe.clip_samples} samples of {fe.sample_rate} Hz mono 16-bit "
            "audio (`int16`), one clip.",
            f"2. MFCC front-end: {fe.window_ms} ms Hann windows every {fe.stride_ms} ms "
            f"({fe.frames} frames), {fe.fft_size}-point FFT, power, {fe.mel_bands} mel bands "
            f"({fe.lower_hz:g}-{fe.upper_hz:g} Hz), ln(max(mel, 1)), orthonormal DCT-II, "
            f"{fe.coefficients} coefficients: an {oh} x {ow} map x.",
            f"3. Quantize: {quantize}, frame by frame.",
            "",
            "`nas_preprocess(raw, input)` in `nas_io.c` calls `nas_frontend()` of "
            "`nas_frontend.c`, which does steps 2 and 3 in fixed point (no FPU needed). Its "
            "int8 features agree with the training features (`nas.frontend.mfcc`) within one "
            "int8 step, and were equal on every feature of the measured clips "
            "(benchmarks/results/frontend_agreement.md in mcu-nas). Its RAM, flash and time "
            "per clip are part of the budget the search checked (`frontend_*` in "
            "`arch.json`'s cost).",
            *names,
        ]
    return [
        *([f"0. Where the raw values come from: {source}.", ""] if source else []),
        raw_step(contract),
        f"2. Scale{' to [0, 1]' if contract['raw_dtype'] == 'uint8' else ''}: "
        f"`x = float(raw) * {contract['raw_scale']!r}`.",
        (
            f"3. Resample to {oh} samples: {contract['resize']}."
            if contract.get("kind") == WINDOWS
            else f"3. Resize to {oh} x {ow}: {contract['resize']}."
        ),
        f"4. Quantize: {quantize}, stored {contract['layout']}.",
        "",
        "`nas_preprocess(raw, input)` in `nas_io.c` does steps 2 to 4 in float32 with the "
        "operations of the training pipeline: its bytes equal the Python preprocessing's.",
        *names,
    ]


def readme(hw: HardwareProfile, kind: str, contract: dict[str, Any], src: CSource) -> str:
    sim = "QEMU (`qemu-system-arm`)" if kind == "arm" else "simavr"
    tools = (
        "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
        if kind == "arm"
        else "gcc-avr avr-libc simavr"
    )
    lines = [
        f"# Firmware for {hw.board} ({hw.core})",
        "",
        "```sh",
        f"sudo apt-get install make {tools}   # Debian / Ubuntu",
        "make run",
        "```",
        "",
        f"builds `firmware.elf` and runs it in {sim}, which prints the class the model "
        "predicts for the test sample in `nas_sample.h`, the class the Python int8 model "
        "predicted for it and its label"
        + (
            "; the exit status is 0 when the input bytes and the class agree with Python's."
            if kind == "arm"
            else " (compare the two: a simulated Uno has no exit status)."
        ),
        "",
        "## Files",
        "",
        "- `nas_model.c` / `.h`: the int8 model as C99 (weights as constants, one static "
        f"arena of {src.arena_bytes} B), `nas_model_run(input, output)`; it uses "
        "`nas_kernels.h` and `nas_rom.h`.",
        "- `nas_io.c` / `.h`: the input contract as code, `nas_preprocess(raw, input)`, "
        "and `nas_predicted_class(output)`.",
        "- `nas_sample.h`: one test sample's raw values and label, and the int8 input the "
        "Python pipeline made of it.",
    ]
    if contract.get("frontend"):
        lines += [
            "- `nas_frontend.c` / `.h`: the fixed-point MFCC front-end, `nas_frontend(audio, "
            "features)` for a whole clip and `nas_frontend_frame(samples, mfcc)` for one "
            "frame, to run as audio arrives (keep the feature map between inferences and "
            "compute only the new frames). The firmware check allows its int8 features 1 "
            "step from Python's, its stated tolerance.",
        ]
    if kind == "arm":
        lines += [
            "- `main.c` and `arm_startup.h`: vector table, reset handler, the inference, "
            "output through Arm semihosting (`fw_print.h` prints numbers).",
            "- `board.ld`: the memory map of QEMU's MPS2 AN386 board (code at 0, RAM at "
            "0x20000000). For your board, set `FLASH` and `RAM` to its memory (an "
            "STM32L4R5: flash at 0x08000000, SRAM at 0x20000000) and replace `put()` with "
            "your UART.",
        ]
    else:
        lines += [
            "- `main.c`: UART at 115200 baud, the inference, then sleep. `make flash` "
            "writes it to an Uno with avrdude. The model reads its input from flash "
            "(`NAS_RD8`), so the sample is stored there already in int8 "
            "(`nas_sample_input`); for live data, keep the int8 input in flash or change "
            "`NAS_RD8` for the input.",
        ]
    lines += ["", "## Input contract", "", *contract_steps(contract), ""]
    return "\n".join(lines)


def preprocess_on_host(folder: Path, files: dict[str, str], raw: np.ndarray, n: int) -> np.ndarray:
    """Compile ``nas_io.c`` (from `io_c`, into ``folder``) with the host's ``gcc`` and run
    ``raw`` (N x H x W x C sensor values) through ``nas_preprocess``: N rows of ``n``
    int8 input bytes. How the tests and ``benchmarks/input_contract.py`` check the C
    against the Python preprocessing."""
    import subprocess

    codegen.write_files(folder, files)
    exe = folder / "io_host"
    subprocess.run(
        ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(folder),
         "-o", str(exe), str(codegen.CSRC / "io_host_main.c"),
         *(str(folder / f) for f in ("nas_io.c", "nas_frontend.c") if f in files), "-lm"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    out = subprocess.run(
        [str(exe), str(n)], input=np.ascontiguousarray(raw).tobytes(),
        capture_output=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    return np.frombuffer(out, np.int8).reshape(len(raw), n)


def write_project(
    folder: Path, model: CExportable, hw: HardwareProfile, data: Arrays, at_size: Arrays
) -> dict[str, Any]:
    """Write ``folder`` (module docstring) and return the input contract. ``data`` is the
    dataset as loaded (the raw side of the contract), ``at_size`` the same at the model's
    resolution. A core without a compiler setup here, or C that does not run on it, gets
    only ``nas_io.c`` and the model's C, and the contract says why (``firmware``)."""
    src = model.to_c()
    contract = input_contract(data, at_size.resolution, src)
    codegen.write(src, folder)
    files = io_c(contract, src)
    which = target(hw)
    kind = which[0] if which else None
    if kind is None or kind not in src.targets:
        contract["firmware"] = (
            f"no firmware project: no build for {hw.core} here"
            if kind is None
            else f"no firmware project: this model's C does not run on {hw.core}"
        )
    else:
        assert which is not None
        x_q = model.c_inputs(at_size.x_test[:1])
        out = np.asarray(model.c_outputs(x_q)).reshape(-1).view(src.output_dtype)
        expected = int(out[0] > 0) if out.size == 1 else int(out.argmax())
        if data.raw_test is not None:  # the audio a front-end reads
            raw = np.asarray(data.raw_test[0], dtype=np.int16)
        else:
            raw = raw_values(data.x_test[:1], data.raw_scale)[0].transpose(1, 2, 0)  # HWC
        tolerance = 1 if data.frontend is not None else 0  # the front-end's stated one
        files["nas_sample.h"] = _sample_header(raw, x_q, int(data.y_test[0]), expected, tolerance)
        files["main.c"] = (codegen.CSRC / f"fw_{kind}_main.c").read_text()
        files["fw_print.h"] = (codegen.CSRC / "fw_print.h").read_text()
        files["Makefile"] = makefile(hw, kind, which[1], "nas_frontend.c" in files)
        files[README] = readme(hw, kind, contract, src)
        if kind == "arm":
            files["board.ld"] = (codegen.CSRC / "arm.ld").read_text()
            files["arm_startup.h"] = (codegen.CSRC / "arm_startup.h").read_text()
        contract["firmware"] = f"firmware/: make run ({kind}, {which[1]})"
    codegen.write_files(folder, files)
    return contract
