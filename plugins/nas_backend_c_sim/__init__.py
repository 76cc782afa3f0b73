"""``c_sim``: the int8 model as self-contained C99, compiled and run for real.

Every trial's int8 graph is turned into C (`.codegen`: constant weights, one static arena
planned like TFLite Micro's, the integer kernels of ``csrc/nas_kernels.h``) and:

1. compiled for the host with ``gcc`` and run on the whole validation and test splits:
   ``acc_int8`` and ``acc_int8_test`` are the C program's accuracies, and ``bit_exact`` says
   whether every output equals the project's int8 reference (`nas.int8.run_int8`);
2. on a Cortex-M4 profile, cross-compiled with ``arm-none-eabi-gcc`` (newlib-nano) and run
   in QEMU's ``mps2-an386`` with ``-icount shift=0`` (`.sim`) on ``arm_inputs`` test images:
   ``flash_bytes_measured`` and ``ram_bytes_measured`` from the ELF and the painted stack,
   ``instructions_measured`` (mean per inference), ``latency_ms_measured`` (instructions x
   the profile's ``cycles_per_instruction`` at its clock) and ``arm_bit_exact``.

Debian packages: ``gcc`` for the host; ``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi``
and ``qemu-system-arm`` for step 2 (``backend.arm=false`` skips it). The generated C of
each trial is saved with it under ``c/``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas import hookimpl
from nas.backends import BaseBackend
from nas.compression import Candidate
from nas.cost import Cost
from nas.errors import ConfigError
from nas.hardware import HardwareProfile
from nas.int8 import QGraph, run_int8

from . import codegen, sim

#: Profile cores that have a QEMU machine here, and their ``-mcpu``.
QEMU_CORES = {"Cortex-M4F": "cortex-m4", "Cortex-M4": "cortex-m4"}


@dataclass
class CSimConfig:
    #: Run the Cortex-M4 build in QEMU when the profile's core is a Cortex-M4.
    arm: bool = True
    #: Test images run in QEMU (each inference is counted).
    arm_inputs: int = 4


class CSimBackend(BaseBackend):
    """Generated C, checked bit-exact on the host, measured in a Cortex-M4 simulator."""

    name = "c_sim"
    Config = CSimConfig

    def check(self, hw: HardwareProfile) -> None:
        if sim.missing(("gcc",)):
            raise ConfigError("backend c_sim needs a host C compiler: apt-get install gcc")
        if self.config.arm and hw.core in QEMU_CORES and sim.missing(sim.ARM_TOOLS):
            raise ConfigError(
                f"backend c_sim on {hw.name}: missing {', '.join(sim.missing(sim.ARM_TOOLS))}; "
                f"apt-get install {sim.ARM_TOOLS_PACKAGES}, or backend.arm=false for "
                "host-only checks"
            )

    def score(self, candidate: Candidate, cost: Cost) -> dict[str, Any]:
        qg, d = candidate.qgraph, candidate.data
        if not isinstance(qg, QGraph):
            raise ConfigError("backend c_sim runs layer-graph int8 models (QGraph) only")
        self.check(candidate.hw)
        cpu = QEMU_CORES.get(candidate.hw.core) if self.config.arm else None
        model = codegen.generate(qg)
        x = {
            s: qg.input_params.quantize(getattr(d, f"x_{s}").transpose(0, 2, 3, 1))
            for s in ("val", "test")
        }
        with tempfile.TemporaryDirectory(prefix="nas_c_sim_") as tmp:
            folder = Path(tmp)
            files = codegen.write(model, folder)
            for f in files:
                candidate.artifacts[f"c/{f.name}"] = f.read_bytes()
            out = {s: sim.run_host(folder, x[s], model.output_bytes) for s in x}
            ref = {s: run_int8(qg, x[s]).reshape(len(x[s]), -1) for s in x}
            same = np.concatenate([(out[s] == ref[s]).all(axis=1) for s in x])
            metrics: dict[str, Any] = {
                "acc_int8": float((out["val"].argmax(axis=1) == d.y_val).mean()),
                "acc_int8_test": float((out["test"].argmax(axis=1) == d.y_test).mean()),
                "bit_exact": bool(same.all()),
                "bit_exact_fraction": float(same.mean()),
                "c_arena_bytes": model.arena_bytes,
            }
            if cpu is not None:
                n = max(1, min(self.config.arm_inputs, len(x["test"])))
                arm = sim.run_arm(folder, x["test"][:n], model.output_bytes, cpu)
                instructions = float(np.mean(arm.instructions))
                hw = candidate.hw
                metrics.update(
                    arm_bit_exact=bool((arm.outputs == ref["test"][:n]).all()),
                    flash_bytes_measured=arm.flash_bytes,
                    ram_bytes_measured=arm.ram_bytes,
                    stack_bytes_measured=arm.stack_bytes,
                    instructions_measured=instructions,
                    instructions_per_mac=instructions / max(cost.macs, 1),
                    latency_ms_measured=instructions
                    * hw.cycles_per_instruction
                    * 1000.0
                    / hw.clock_hz,
                )
        return metrics


@hookimpl
def nas_register_backends():
    return [CSimBackend]
