"""``c_sim``: the int8 model as self-contained C99, compiled and run for real.

Every trial's int8 model is turned into C: layer graphs (`nas.int8.QGraph`) by
`nas.codegen` (constant weights, one static arena planned like TFLite Micro's, the integer
kernels of ``nas/csrc/nas_kernels.h``); any other model kind brings its own C through
`nas.backends.CExportable` (``to_c()``; the Bonsai space's trees do, stored as the Bonsai
cost model counts them). The C is then:

1. compiled for the host with ``gcc`` and run on the whole validation and test splits:
   ``acc_int8`` and ``acc_int8_test`` are the C program's accuracies, and ``bit_exact`` says
   whether every output equals the model's own int8 reference (``c_outputs``);
2. on a Cortex-M4 profile, when the C supports the ``arm`` harness (layer graphs):
   cross-compiled with ``arm-none-eabi-gcc`` (newlib-nano) and run in QEMU's
   ``mps2-an386`` with ``-icount shift=0`` (`.sim`): ``instructions_measured`` (mean per
   inference) and ``arm_bit_exact``;
3. on an AVR profile, when the C supports the ``avr`` harness (Bonsai models): built with
   ``avr-gcc -mmcu=atmega328p``, run in simavr: ``cycles_measured`` from Timer1 at the CPU
   clock and ``avr_bit_exact``.

Steps 2 and 3 also give ``flash_bytes_measured``, ``ram_bytes_measured`` (sections +
painted stack), ``stack_bytes_measured`` and ``latency_ms_measured``; they run on
``sim_inputs`` test images (``backend.simulate=false`` skips them). Debian packages:
``gcc``; ``gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm`` for Cortex-M4;
``gcc-avr avr-libc simavr`` for AVR. The generated C of each trial is saved under ``c/``.

The plugin also adds the command ``python -m nas calibrate`` (`.calibrate`), which fits
a profile's latency table from simulator counts of generated C.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas import codegen, hookimpl
from nas.backends import BaseBackend
from nas.codegen import as_c
from nas.compression import Candidate
from nas.cost import Cost
from nas.errors import ConfigError, check_option
from nas.hardware import HardwareProfile
from nas.plugin_manager import Command

from . import sim

#: Profile cores with a simulator here: QEMU's ``-mcpu`` for Cortex-M4, simavr for AVR.
QEMU_CORES = {"Cortex-M4F": "cortex-m4", "Cortex-M4": "cortex-m4"}
AVR_CORES = {"AVR8 ATmega328P": "atmega328p"}


@dataclass
class CSimConfig:
    #: Run the cross-compiled model in the simulator when the profile's core has one.
    simulate: bool = True
    #: Test images run in the simulator (each inference is measured).
    sim_inputs: int = 4

    def __post_init__(self) -> None:
        check_option("backend.sim_inputs", self.sim_inputs, self.sim_inputs >= 1, "1 or more")


def sim_target(hw: HardwareProfile) -> str | None:
    """The harness (`nas.backends.C_TARGETS`) whose simulator runs ``hw``'s core here."""
    if hw.core in QEMU_CORES:
        return "arm"
    if hw.core in AVR_CORES:
        return "avr"
    return None


class CSimBackend(BaseBackend):
    """Generated C: bit-exact on the host, measured in an instruction-set simulator."""

    name = "c_sim"
    Config = CSimConfig

    def check(self, hw: HardwareProfile) -> None:
        if sim.missing(("gcc",)):
            raise ConfigError("backend c_sim needs a host C compiler: apt-get install gcc")
        if not self.config.simulate:
            return
        for cores, tools, packages in (
            (QEMU_CORES, sim.ARM_TOOLS, sim.ARM_TOOLS_PACKAGES),
            (AVR_CORES, sim.AVR_TOOLS, sim.AVR_TOOLS_PACKAGES),
        ):
            if hw.core in cores and sim.missing(tools):
                raise ConfigError(
                    f"backend c_sim on {hw.name}: missing {', '.join(sim.missing(tools))}; "
                    f"apt-get install {packages}, or backend.simulate=false for host-only "
                    "checks"
                )

    def score(self, candidate: Candidate, cost: Cost) -> dict[str, Any]:
        d, hw = candidate.data, candidate.hw
        self.check(hw)
        try:
            model = as_c(candidate.qgraph)
        except ConfigError as exc:
            raise ConfigError(f"backend c_sim {exc}") from None
        src = model.to_c()
        splits = {"val": d.x_val, "test": d.x_test}
        x = {s: model.c_inputs(v) for s, v in splits.items()}
        ref = {s: model.c_outputs(x[s]) for s in x}
        n = max(1, min(self.config.sim_inputs, len(x["test"])))
        with tempfile.TemporaryDirectory(prefix="nas_c_sim_") as tmp:
            folder = Path(tmp)
            for f in codegen.write(src, folder):
                candidate.artifacts[f"c/{f.name}"] = f.read_bytes()
            out = {
                s: sim.run_host(folder, x[s], src.output_bytes).view(src.output_dtype) for s in x
            }
            same = np.concatenate([(out[s] == ref[s]).all(axis=1) for s in x])
            metrics: dict[str, Any] = {
                "acc_int8": _accuracy(out["val"], d.y_val),
                "acc_int8_test": _accuracy(out["test"], d.y_test),
                "bit_exact": bool(same.all()),
                "bit_exact_fraction": float(same.mean()),
            }
            target = sim_target(hw)
            if not self.config.simulate or target not in src.targets:
                return metrics
            expected = ref["test"][:n]
            if target == "arm":
                arm = sim.run_arm(folder, x["test"][:n], src.output_bytes, QEMU_CORES[hw.core])
                instructions = float(np.mean(arm.counts))
                metrics.update(
                    arm_bit_exact=bool((arm.outputs.view(src.output_dtype) == expected).all()),
                    instructions_measured=instructions,
                    instructions_per_mac=instructions / max(cost.macs, 1),
                    latency_ms_measured=hw.instructions_to_ms(instructions),
                    **_memory(arm),
                )
            else:
                avr = sim.run_avr(folder, x["test"][:n], src.output_bytes, AVR_CORES[hw.core])
                cycles = float(np.mean(avr.counts))
                metrics.update(
                    avr_bit_exact=bool((avr.outputs.view(src.output_dtype) == expected).all()),
                    cycles_measured=cycles,
                    latency_ms_measured=cycles * 1000.0 / hw.clock_hz,
                    **_memory(avr),
                )
        return metrics


def _accuracy(outputs: np.ndarray, y: np.ndarray) -> float:
    """Argmax of the scores, or the sign of a single (binary) score."""
    pred = (outputs[:, 0] > 0).astype(np.int64) if outputs.shape[1] == 1 else outputs.argmax(1)
    return float((pred == y).mean())


def _memory(result: sim.SimResult) -> dict[str, int]:
    return {
        "flash_bytes_measured": result.flash_bytes,
        "ram_bytes_measured": result.ram_bytes,
        "stack_bytes_measured": result.stack_bytes,
    }


def _calibrate(args: list[str]) -> int:
    from .calibrate import main  # scipy, optuna and torch: only when the command runs

    return main(args)


CALIBRATE = Command(
    name="calibrate",
    usage="+hw=<profile> [space=<name>] [fit=60] [check=50] [seed=0] [out=DIR]",
    help=(
        "Fit the profile's latency lookup table from counts of generated C in a simulator\n"
        "(Cortex-M4: QEMU; ATmega328P: simavr); writes <profile>_c.yaml and\n"
        "calibration.md to outputs/calibrate_<profile>."
    ),
    run=_calibrate,
)


@hookimpl
def nas_register_backends():
    return [CSimBackend]


@hookimpl
def nas_register_commands():
    return [CALIBRATE]
