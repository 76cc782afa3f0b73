"""Static cost model: flash, peak SRAM, MACs, latency and energy of a `Graph` on a chip.

Everything is computed from the graph before any training, the way the chip runs an int8
model under TensorFlow Lite Micro:

- ``arena_bytes`` = head + tail. The head is planned exactly like TFLM's greedy planner
  (`nas.planner`) over int8 activations plus per-op kernel scratch (CMSIS-NN's buffer sizes
  when the profile says ``kernels: cmsis_nn``, none for the reference kernels). The tail
  counts TFLM's persistent allocations: one ``TfLiteEvalTensor`` per tensor, one
  ``NodeAndRegistration`` per op, per-channel requantization arrays and kernel op data, at
  the struct sizes measured for 32-bit Arm (``shared/REFERENCES.md``; doubled on 64-bit).
- ``sram_bytes`` = arena + the profile's ``runtime_ram_bytes``.
- ``model_bytes`` estimates the ``.tflite`` flatbuffer: int8 weights, int32 biases,
  quantization parameters and per-tensor / per-op metadata;
  ``flash_bytes`` = model + the profile's ``runtime_flash_bytes``.
- ``runtime: c`` profiles (a model compiled to plain C, e.g. for an 8-bit AVR) have no
  tail and no flatbuffer: ``model_bytes`` is weights, biases and requantization constants.
- ``latency_ms`` = sum over ops of the profile's lookup table
  (``cycles_per_mac * executed MACs + cycles_per_output * outputs + cycles_per_op``; see
  `executed_macs`) times
  ``cycles_per_instruction``, at the profile's clock; ``energy_uj`` = latency x active power.

Fidelity (``benchmarks/tflm_arena_fidelity.py``, 100 random MobileNet-like candidates
against the x86-64 ``tflite-micro`` interpreter, results in
``benchmarks/results/tflm_arena_fidelity.md``): the head is exact on 100/100, the arena
(head + tail) within 0.21% (median 0.02%), the flatbuffer within 0.13% (median 0.01%).
On a 32-bit target the tail uses the halved pointer-struct sizes and keeps the 64-bit
OpData sizes, an upper bound not yet measured on a chip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nas.graph import Graph, Op
from nas.hardware import HardwareProfile
from nas.planner import align, lifetimes, plan

# Tail (persistent) allocations, in bytes, measured on the x86-64 ``tflite-micro`` wheel
# with its RecordingMicroAllocator over random candidates (benchmarks/tflm_arena_fidelity.py).
# Structs made of pointers scale with ``pointer_bytes / 8``: on 32-bit Arm TfLiteEvalTensor
# is 12 B, NodeAndRegistration 32 B, TfLiteTensor 32 B (shared/REFERENCES.md). Kernel OpData,
# builtin options and the interpreter's fixed allocations are kept at their 64-bit size: an
# upper bound on a 32-bit target until measured there.
EVAL_TENSOR_BYTES = 24  # per tensor, constants included
NODE_AND_REGISTRATION_BYTES = 64  # per op
IO_TENSOR_BYTES = 64 + 32  # persistent TfLiteTensor + quantization, per graph input/output
OPDATA_BYTES = {
    "conv2d": 80,
    "depthwise_conv2d": 80,
    "add": 64,
    "fully_connected": 64,
    "average_pool2d": 48,
}
BUILTIN_DATA_BYTES = {"conv2d": 28, "depthwise_conv2d": 28, "add": 8}
FIXED_TAIL_BYTES = 630
# Flatbuffer layout, least-squares fit of the exporter's output (nas.tflite; max error 8 B
# over 60 random candidates; the benchmark checks it on 100 others): fixed, per activation
# tensor, per constant tensor, per op, per quantization parameter (float32 scale + int64
# zero point).
FLATBUFFER_FIXED_BYTES = 338
FLATBUFFER_TENSOR_BYTES = 125
FLATBUFFER_CONST_TENSOR_BYTES = 108
FLATBUFFER_OP_BYTES = 21
FLATBUFFER_QPARAM_BYTES = 12


@dataclass(frozen=True)
class Cost:
    """Static cost of one candidate on one chip (units in the names)."""

    flash_bytes: int
    sram_bytes: int
    model_bytes: int
    arena_bytes: int
    arena_head_bytes: int
    arena_tail_bytes: int
    macs: int
    params: int
    latency_ms: float
    energy_uj: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def violations(self, hw: HardwareProfile) -> dict[str, float]:
        """Relative excess over each limit (> 0 is infeasible): Optuna constraint values."""
        return {
            "sram": (self.sram_bytes - hw.sram_bytes) / hw.sram_bytes,
            "flash": (self.flash_bytes - hw.flash_bytes) / hw.flash_bytes,
        }

    def infeasible_reason(self, hw: HardwareProfile) -> str:
        """Empty when the candidate fits, else which limits it breaks and by how much."""
        parts = []
        if self.sram_bytes > hw.sram_bytes:
            parts.append(f"sram {self.sram_bytes} B > {hw.sram_bytes} B")
        if self.flash_bytes > hw.flash_bytes:
            parts.append(f"flash {self.flash_bytes} B > {hw.flash_bytes} B")
        return "; ".join(parts)


def scratch_bytes(graph: Graph, op: Op, kernels: str) -> int:
    """Kernel scratch an op asks the arena for (CMSIS-NN DSP path; reference kernels: 0)."""
    if kernels != "cmsis_nn":
        return 0
    cin = graph.tensors[op.inputs[0]].shape[-1]
    kh, kw = op.kernel
    if op.kind == "conv2d":
        if (kh, kw) == (1, 1) and op.stride == 1 and not any(op.padding):
            return 0
        return 2 * align(kh * kw * cin, 4) * 2
    if op.kind == "depthwise_conv2d":
        if (kh, kw) == (3, 3) and max(op.padding) <= 1:
            return 0
        return cin * kh * kw * 2
    if op.kind == "average_pool2d":
        return cin * 4
    return 0


def _const_tensors(graph: Graph) -> int:
    """Constant tensors the exporter writes: weights, biases and reshape shapes."""
    return sum(
        (op.weight is not None) + (op.bias is not None) + (op.kind == "reshape")
        for op in graph.ops
    )


def tail_bytes(graph: Graph, pointer_bytes: int = 4) -> int:
    """TFLM persistent (tail) allocations for the graph on a ``pointer_bytes`` target."""
    k = pointer_bytes / 8
    total = int(EVAL_TENSOR_BYTES * k) * (len(graph.tensors) + _const_tensors(graph))
    total += int(NODE_AND_REGISTRATION_BYTES * k) * len(graph.ops)
    total += int(IO_TENSOR_BYTES * k) * (len(graph.inputs) + len(graph.outputs))
    for op in graph.ops:
        total += OPDATA_BYTES.get(op.kind, 0) + BUILTIN_DATA_BYTES.get(op.kind, 0)
        if op.kind in ("conv2d", "depthwise_conv2d"):
            total += 2 * align(4 * op.out_channels)  # per-channel multiplier and shift
    return total + FIXED_TAIL_BYTES


def c_model_bytes(graph: Graph) -> int:
    """Constant data of a model compiled to plain C (``runtime: c``): int8 weights, int32
    biases and per-channel requantization (int32 multiplier + int8 shift) in flash."""
    total = 0
    for op in graph.ops:
        if op.weight is not None:
            total += op.weight.size + 5 * op.out_channels
        if op.bias is not None:
            total += 4 * op.bias.size
    return total


def model_bytes(graph: Graph) -> int:
    """Estimated size of the int8 ``.tflite`` flatbuffer `nas.tflite.export` writes."""
    total = FLATBUFFER_FIXED_BYTES + FLATBUFFER_OP_BYTES * len(graph.ops)
    total += FLATBUFFER_TENSOR_BYTES * len(graph.tensors)
    total += FLATBUFFER_CONST_TENSOR_BYTES * _const_tensors(graph)
    for op in graph.ops:
        if op.weight is not None:
            per_channel = op.kind != "fully_connected"
            n_q = op.out_channels if per_channel else 1
            total += op.weight.size + FLATBUFFER_QPARAM_BYTES * n_q
        if op.bias is not None:
            total += 4 * op.bias.size + FLATBUFFER_QPARAM_BYTES * n_q
        if op.kind == "reshape":
            total += 4 * len(graph.tensors[op.outputs[0]].shape)
    return total


def _valid_taps(out_size: int, in_size: int, k: int, stride: int, pad: int) -> int:
    """Kernel taps, summed over the output positions of one axis, that land inside the
    input rather than on its zero padding."""
    return sum(sum(0 <= o * stride - pad + t < in_size for t in range(k)) for o in range(out_size))


def executed_macs(graph: Graph, op: Op) -> int:
    """MACs the kernels execute: for a padded convolution, taps that fall on the zero
    padding are skipped (TFLite Micro's reference kernels, CMSIS-NN's generic kernels and
    the generated C all bound the tap loops by the input), so a 7x7 kernel on a 4x4 map
    runs far fewer than ``op.macs``. The latency tables are per executed MAC."""
    if op.kind not in ("conv2d", "depthwise_conv2d") or not any(op.padding):
        return op.macs
    _, ih, iw, cin = graph.tensors[op.inputs[0]].shape
    _, oh, ow, oc = graph.tensors[op.outputs[0]].shape
    rows = _valid_taps(oh, ih, op.kernel[0], op.stride, op.padding[0])
    cols = _valid_taps(ow, iw, op.kernel[1], op.stride, op.padding[2])
    return rows * cols * oc * (cin if op.kind == "conv2d" else 1)


def lut_terms(graph: Graph) -> list[tuple[str, int, int]]:
    """What a latency table reads of each op: (kind, executed MACs, outputs)."""
    return [
        (op.lut_kind, executed_macs(graph, op), graph.tensors[op.outputs[0]].elements)
        for op in graph.ops
    ]


def op_latency_ms(graph: Graph, hw: HardwareProfile) -> list[float]:
    """Latency of each op from the profile's lookup table (`lut_terms`)."""
    return [
        hw.instructions_to_ms(hw.latency_entry(kind).cycles(macs, outputs))
        for kind, macs, outputs in lut_terms(graph)
    ]


def arena_bytes(graph: Graph, kernels: str, pointer_bytes: int) -> tuple[int, int]:
    """TFLM arena (head, tail) for ``kernels`` (``cmsis_nn`` or ``reference``) on a target
    with ``pointer_bytes``-byte pointers (8 for the x86-64 ``tflite-micro`` wheel)."""
    scratch = [scratch_bytes(graph, op, kernels) for op in graph.ops]
    return plan(lifetimes(graph, scratch)).head_bytes, tail_bytes(graph, pointer_bytes)


def estimate(graph: Graph, hw: HardwareProfile) -> Cost:
    """Static cost of ``graph`` on ``hw``; raises `ProfileError` for a missing LUT entry."""
    if hw.runtime == "c":  # generated C: no interpreter structures, no flatbuffer
        head, _ = arena_bytes(graph, hw.kernels, hw.pointer_bytes)
        tail, mbytes = 0, c_model_bytes(graph)
    else:
        head, tail = arena_bytes(graph, hw.kernels, hw.pointer_bytes)
        mbytes = model_bytes(graph)
    arena = head + tail
    latency = sum(op_latency_ms(graph, hw))
    return Cost(
        flash_bytes=mbytes + hw.runtime_flash_bytes,
        sram_bytes=arena + hw.runtime_ram_bytes,
        model_bytes=mbytes,
        arena_bytes=arena,
        arena_head_bytes=head,
        arena_tail_bytes=tail,
        macs=graph.macs,
        params=graph.params,
        latency_ms=latency,
        energy_uj=latency * hw.active_power_mw,
    )


def per_op(graph: Graph, hw: HardwareProfile) -> list[dict[str, Any]]:
    """One row per op: kind, MACs, latency and the activation bytes live while it runs."""
    scratch = [scratch_bytes(graph, op, hw.kernels) for op in graph.ops]
    p = plan(lifetimes(graph, scratch))
    rows = []
    for i, (op, ms) in enumerate(zip(graph.ops, op_latency_ms(graph, hw), strict=True)):
        rows.append(
            {
                "op": op.name,
                "kind": op.kind,
                "macs": op.macs,
                "params": op.params,
                "latency_ms": ms,
                "live_bytes": p.live_bytes(i + 1),
                "scratch_bytes": scratch[i],
            }
        )
    return rows
