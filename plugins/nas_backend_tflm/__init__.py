"""``tflm``: every candidate scored by the real TensorFlow Lite Micro interpreter.

For each trained, quantized candidate the backend writes the int8 ``.tflite`` flatbuffer
(`nas.tflite`), runs it in the ``tflite-micro`` Python interpreter, and reports:

- ``acc_int8`` / ``acc_int8_test``: validation / test accuracy computed by the interpreter
  (``acc_int8_tflm`` repeats the test figure under the name the reports use);
- ``tflm_ref_identical``: fraction of test samples whose int8 outputs are bit-identical to
  the project's reference (`nas.int8.run_int8`), and ``tflm_ref_max_diff`` in
  quantization steps;
- ``arena_bytes_measured``: the smallest arena, exact to 1 byte, with which the
  flatbuffer loads, allocates and invokes (`runtime.min_arena_bytes`, by bisection), next
  to ``arena_bytes_estimated``, the static estimate of the same figure
  (`nas.cost.tflm_arena`; reference kernels, 64-bit pointers, as in the wheel);
- ``arena_bytes_allocated``: what TFLM's RecordingMicroAllocator reports as allocated once
  allocation is done, in that smallest arena (``arena_head_bytes_measured`` +
  ``arena_tail_bytes_measured``). It leaves out the temporary space TFLM needs while it
  allocates, so it can be below ``arena_bytes_measured``, never above;
- ``model_bytes`` (the flatbuffer) next to ``model_bytes_estimated``.

``deploy`` writes what a firmware needs into ``best/`` (`nas_backend_tflm.firmware`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nas import hookimpl
from nas.backends import BaseBackend
from nas.compression import Candidate
from nas.cost import Cost, tflm_arena
from nas.errors import GraphError, TrialError
from nas.int8 import run_int8
from nas.tflite import export

from .runtime import arena_usage, invoke_all, load, min_arena_bytes

HOST_POINTER_BYTES = 8  # the tflite-micro wheel is built for x86-64


class TflmBackend(BaseBackend):
    """Int8 accuracy and arena measured in the TensorFlow Lite Micro interpreter."""

    name = "tflm"

    def score(self, candidate: Candidate, cost: Cost) -> dict[str, Any]:
        qg = candidate.qgraph
        assert qg is not None
        try:
            model = export(qg, description=f"mcu-nas {candidate.name}")
        except GraphError as exc:
            raise TrialError(f"{candidate.name}: {exc}") from None
        estimated = tflm_arena(qg.graph, "reference", HOST_POINTER_BYTES, qg.weight_bits)
        measured = min_arena_bytes(model, guess=estimated.min_bytes)
        interp = load(model, measured, known_to_fit=True)
        d = candidate.data
        x_val = qg.input_params.quantize(d.x_val.transpose(0, 2, 3, 1))
        x_test = qg.input_params.quantize(d.x_test.transpose(0, 2, 3, 1))
        out_val = invoke_all(interp, x_val)
        out_test = invoke_all(interp, x_test)
        usage = arena_usage(interp)
        ref = run_int8(qg, x_test).reshape(len(x_test), -1).astype(np.int32)
        diff = np.abs(out_test.astype(np.int32) - ref)
        acc_test = float((out_test.argmax(1) == d.y_test).mean())
        candidate.artifacts["model.tflite"] = model
        return {
            "acc_int8": float((out_val.argmax(1) == d.y_val).mean()),
            "acc_int8_test": acc_test,
            "acc_int8_tflm": acc_test,
            "tflm_ref_identical": float((diff.max(axis=1) == 0).mean()),
            "tflm_ref_max_diff": int(diff.max()),
            "arena_bytes_measured": measured,
            "arena_bytes_allocated": usage.total_bytes,
            "arena_head_bytes_measured": usage.head_bytes,
            "arena_tail_bytes_measured": usage.tail_bytes,
            "arena_bytes_estimated": estimated.min_bytes,
            "model_bytes": len(model),
            "model_bytes_estimated": cost.model_bytes,
        }

    def deploy(self, best_dir: Path) -> None:
        from .firmware import write_firmware

        write_firmware(best_dir)


@hookimpl
def nas_register_backends():
    return [TflmBackend]
