"""Static cost model: flash, peak SRAM, MACs, latency and energy of a `Graph` on a chip.

Everything is computed from the graph before any training, the way the chip runs an int8
model under TensorFlow Lite Micro:

- ``arena_bytes`` is the smallest TFLM arena with which the model allocates and runs
  (`tflm_arena`). That is at least head + tail, what stays allocated: the head is planned
  exactly like TFLM's greedy planner (`nas.planner`) over int8 activations plus per-op
  kernel scratch (CMSIS-NN's buffer sizes when the profile says ``kernels: cmsis_nn``, none
  for the reference kernels); the tail holds TFLM's persistent allocations (one
  ``TfLiteEvalTensor`` per tensor, one ``NodeAndRegistration`` per op, builtin options,
  kernel OpData, per-channel requantization arrays, the graph's I/O tensors). While it
  allocates, TFLM also needs temporary space: the memory planner's working arrays and one
  ``AllocationInfo`` per tensor, or the tensors a kernel builds in its Prepare. For models
  with many small tensors that peak, not head + tail, sets the arena
  (``arena_head_bytes`` and ``arena_tail_bytes`` report head and tail).
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
``benchmarks/results/tflm_arena_fidelity.md``): the arena estimate equals, on 100/100, the
smallest arena in which the interpreter loads, allocates and invokes the model (bisection,
exact to 1 byte); it is set by what stays allocated on 95, by memory planning on 3, by an
op's Prepare on 2, and exceeds RecordingMicroAllocator's total after allocation by up to
1,728 B. The head is exact on 100/100, the flatbuffer within 0.13% (median 0.01%). Two
constants were fitted, the fixed tail and the fully connected options (the other sizes
come from RecordingMicroAllocator, TFLM's error messages and struct members), on 216 other
graphs (random candidates of this space and of the ``reference`` space, single ops); 21
graphs left out of the fit (chains of 1-5 fully connected layers, 1-200-channel
convolutions on a 2x2 map, 1-4 residual adds) are exact too. Explicit padding that
`nas.tflite` exports as a PAD operator is outside the model.
On a 32-bit target `tflm_arena` uses the 32-bit struct sizes and keeps the 64-bit OpData,
builtin-option and fixed sizes, an upper bound not yet measured on a chip; CMSIS-NN
kernels are assumed to allocate like the reference ones, plus their scratch buffers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from nas.hardware import HardwareProfile
from nas.planner import ALIGN, Alloc, align, head_end, lifetimes, plan, tail_start

if TYPE_CHECKING:  # annotations only: the cost's names (nas.record) need no torch
    from nas.graph import Graph, Op

# TFLM arena model (`tflm_arena`). Sizes of TFLM structs that hold pointers, per pointer
# width. 64-bit: measured on the x86-64 ``tflite-micro`` wheel (RecordingMicroAllocator's
# per-category bytes; the sizes its allocation errors print for TfLiteAffineQuantization and
# the AllocationInfo list). 32-bit: TfLiteEvalTensor, NodeAndRegistration, TfLiteTensor
# (``TF_LITE_STATIC_MEMORY``) and TfLiteAffineQuantization measured with arm-none-eabi-gcc
# 12.2; AllocationInfo (size_t, pointer, three int32, bool; ``micro_allocation_info.h``).
# ScratchBufferRequest (size_t, two int; ``micro_allocator.h``) on both: from its members.


@dataclass(frozen=True)
class Structs:
    """Bytes of TFLM's pointer-holding structs on one pointer width (alignment: pointer)."""

    pointer: int
    eval_tensor: int  # TfLiteEvalTensor, one per tensor of the flatbuffer
    node_and_registration: int  # one per op
    tensor: int  # TfLiteTensor: persistent for graph I/O, temporary in kernels' Prepare
    quantization: int  # TfLiteAffineQuantization of such a tensor
    allocation_info: int  # memory planning: one per tensor and scratch buffer
    scratch_request: int  # ScratchBufferRequest, kept at the head during Prepare


STRUCTS = {8: Structs(8, 24, 64, 64, 24, 32, 16), 4: Structs(4, 12, 32, 32, 12, 24, 12)}
# Not pointer-sized, measured on the wheel and kept on 32-bit targets (an upper bound there
# until measured on a chip): the allocator, planner and interpreter objects the arena holds
# before any model data (FIXED_TAIL_BYTES, fitted), each kernel's OpData (allocated
# 16-byte aligned in Init; RecordingMicroAllocator's requested bytes) and builtin options
# (4-byte aligned, parsed from the flatbuffer; from the option structs' members, but
# fully connected's 32 B, fitted).
FIXED_TAIL_BYTES = 488
OPDATA_BYTES = {
    "conv2d": 80,
    "depthwise_conv2d": 80,
    "fully_connected": 72,
    "average_pool2d": 32,
    "add": 64,
}
BUILTIN_DATA_BYTES = {
    "conv2d": 28,
    "depthwise_conv2d": 28,
    "fully_connected": 32,
    "average_pool2d": 40,
    "add": 8,
    "reshape": 36,
}
# ``greedy_memory_planner.h``: per planned buffer, its requirements (4 int), sorted size and
# id, list entry (3 int) and offset; ``micro_allocator.cc``: room for 12 scratch-buffer
# requests per op is kept at the head while ops are prepared.
PLANNER_BYTES_PER_BUFFER = 40
SCRATCH_REQUESTS_PER_OP = 12
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
    #: The share of an on-chip front-end (keyword spotting's MFCC, `nas.frontend_c`),
    #: included in ``sram_bytes``, ``flash_bytes``, ``latency_ms`` and ``energy_uj``.
    frontend_sram_bytes: int = 0
    frontend_flash_bytes: int = 0
    frontend_latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def changed_by(self, before: Cost, after: Cost) -> Cost:
        """This cost with ``after - before`` added to every model field: how a compression
        method changes a cost (`nas.compression.Plan`); the front-end's share stays."""
        model = [f for f in COST_FIELDS if not f.startswith("frontend_")]
        return replace(
            self,
            **{f: getattr(self, f) + getattr(after, f) - getattr(before, f) for f in model},
        )

    def with_frontend(self, fe: dict[str, float]) -> Cost:
        """This model's cost with a front-end's (`nas.frontend_c.frontend_cost`) added."""
        return replace(
            self,
            sram_bytes=self.sram_bytes + int(fe["frontend_sram_bytes"]),
            flash_bytes=self.flash_bytes + int(fe["frontend_flash_bytes"]),
            latency_ms=self.latency_ms + fe["frontend_latency_ms"],
            energy_uj=self.energy_uj + fe["frontend_energy_uj"],
            frontend_sram_bytes=int(fe["frontend_sram_bytes"]),
            frontend_flash_bytes=int(fe["frontend_flash_bytes"]),
            frontend_latency_ms=fe["frontend_latency_ms"],
        )

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


COST_FIELDS = tuple(f.name for f in fields(Cost))

#: Weight formats a runtime stores: 8-bit (int8) and 4-bit (int4, two per byte). TFLM's
#: kernels unpack an int4 filter into a scratch buffer of one byte per weight before the
#: op runs (``conv.cc``, ``depthwise_conv.cc``, ``fully_connected.cc``: kTfLiteInt4).
WEIGHT_BITS = (4, 8)


def weight_storage_bytes(elements: int, bits: int) -> int:
    """Bytes of ``elements`` weights packed at ``bits`` bits each."""
    return -(-elements * bits // 8)


def unpack_scratch_bytes(op: Op, bits: int) -> int:
    """The scratch an op with packed (sub-byte) weights asks for to unpack them."""
    return op.weight.size if op.weight is not None and bits < 8 else 0


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


def model_bytes(graph: Graph, weight_bits: int = 8) -> int:
    """Estimated size of the ``.tflite`` flatbuffer `nas.tflite.export` writes, with
    weights of ``weight_bits`` bits (int8 or packed int4)."""
    total = FLATBUFFER_FIXED_BYTES + FLATBUFFER_OP_BYTES * len(graph.ops)
    total += FLATBUFFER_TENSOR_BYTES * len(graph.tensors)
    total += FLATBUFFER_CONST_TENSOR_BYTES * _const_tensors(graph)
    for op in graph.ops:
        if op.weight is not None:
            per_channel = op.kind != "fully_connected"
            n_q = op.out_channels if per_channel else 1
            total += weight_storage_bytes(op.weight.size, weight_bits)
            total += FLATBUFFER_QPARAM_BYTES * n_q
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


@dataclass(frozen=True)
class Arena:
    """A TFLM arena, in bytes: what stays allocated and the smallest arena that works."""

    head_bytes: int  # the memory plan: activations and kernel scratch buffers
    tail_bytes: int  # persistent allocations once allocation is done, alignment included
    min_bytes: int  # smallest arena with which the model allocates and invokes
    phase: str  # the step that needs ``min_bytes``: "allocated", "planning", "prepare <op>"


def structs(pointer_bytes: int) -> Structs:
    """The struct sizes for a target with ``pointer_bytes``-byte pointers (a 16-bit target
    gets the 32-bit sizes, an upper bound)."""
    return STRUCTS[8 if pointer_bytes > 4 else 4]


def _temp_tensor(s: Structs, channels: int) -> list[Alloc]:
    """A TfLiteTensor built from the flatbuffer: the struct, its quantization and its zero
    points (an int array: size, then one entry per quantization channel)."""
    return [(s.tensor, s.pointer), (s.quantization, s.pointer), (4 + 4 * channels, 4)]


def _prepare_temps(op: Op, s: Structs) -> list[Alloc]:
    """Temporary tensors the op's Prepare builds, in order, as quantization channels (the
    reference kernels: ``conv_common.cc`` and ``depthwise_conv_common.cc`` build output,
    input and filter, then input, filter, bias and output again; ``fully_connected.cc``
    input, filter, bias and output; add two inputs and the output; the others input and
    output). None is released before the op's Prepare ends."""
    c = op.out_channels
    channels = {
        "conv2d": [1, 1, c, 1, c, c, 1],
        "depthwise_conv2d": [1, 1, c, 1, c, c, 1],
        "fully_connected": [1, 1, 1, 1],
        "add": [1, 1, 1],
    }.get(op.kind, [1, 1])
    return [alloc for n in channels for alloc in _temp_tensor(s, n)]


def _prepare_persistent(op: Op) -> list[Alloc]:
    """What the op's Prepare keeps: per-channel requantization multipliers and shifts."""
    if op.kind in ("conv2d", "depthwise_conv2d"):
        return [(4 * op.out_channels, ALIGN)] * 2
    return []


def _io_tensors(graph: Graph, s: Structs) -> list[Alloc]:
    """What the interpreter keeps for the graph's inputs, then its outputs, once planning is
    done: an array of pointers, then a TfLiteTensor with quantization per tensor."""
    allocs: list[Alloc] = []
    for tensors in (graph.inputs, graph.outputs):
        allocs.append((s.pointer * len(tensors), ALIGN))
        for _ in tensors:
            allocs += _temp_tensor(s, 1)
    return allocs


def _model_tail(graph: Graph, s: Structs, tensors: int) -> list[Alloc]:
    """Persistent allocations made before any op is prepared, in order: the fixed objects,
    the eval tensors, the nodes, every op's builtin options, then every op's OpData."""
    tail: list[Alloc] = [
        (FIXED_TAIL_BYTES, s.pointer),
        (s.eval_tensor * tensors, s.pointer),
        (s.node_and_registration * len(graph.ops), s.pointer),
    ]
    tail += [(BUILTIN_DATA_BYTES[op.kind], 4) for op in graph.ops if op.kind in BUILTIN_DATA_BYTES]
    tail += [(OPDATA_BYTES[op.kind], ALIGN) for op in graph.ops if op.kind in OPDATA_BYTES]
    return tail


def _planning_end(s: Structs, tensors: int, requests: int, buffers: int) -> int:
    """Where the head must reach while the greedy planner runs (``micro_allocator.cc``
    ``CommitStaticMemoryPlan``): the scratch-buffer requests, one subgraph offset and one
    AllocationInfo per tensor and request, then the planner's arrays, 16-byte aligned."""
    info = [(s.pointer, s.pointer), (s.allocation_info * (tensors + requests), s.pointer)]
    info_end = head_end(info, s.scratch_request * (requests + SCRATCH_REQUESTS_PER_OP))
    return align(info_end) + align(PLANNER_BYTES_PER_BUFFER * buffers)


def tflm_arena(graph: Graph, kernels: str, pointer_bytes: int, weight_bits: int = 8) -> Arena:
    """The TFLM arena of ``graph`` with ``kernels`` (``cmsis_nn`` or ``reference``) on a
    target with ``pointer_bytes``-byte pointers (8 for the x86-64 ``tflite-micro`` wheel),
    with weights of ``weight_bits`` bits (int4 weights add each op's unpacking scratch).

    Replays, in TFLM's order, every allocation ``MicroInterpreter::AllocateTensors`` makes
    (`nas.planner.tail_start`) and takes the largest of three needs:

    - *allocated*: the persistent tail (fixed objects, one TfLiteEvalTensor per tensor, one
      NodeAndRegistration per op, builtin options, OpData, per-channel arrays, scratch
      buffer handles, the graph I/O tensors) above the planned head;
    - *planning*: while the greedy planner runs, the head holds the scratch-buffer requests,
      one AllocationInfo per tensor and scratch buffer, and the planner's 40 B per buffer;
    - *prepare <op>*: while an op is prepared, the temporary tensors it builds.
    """
    s = structs(pointer_bytes)
    kernel = [scratch_bytes(graph, op, kernels) for op in graph.ops]
    unpack = [unpack_scratch_bytes(op, weight_bits) for op in graph.ops]
    scratch = [k + u for k, u in zip(kernel, unpack, strict=True)]
    buffers = lifetimes(graph, scratch)
    head = plan(buffers).head_bytes
    tensors = len(graph.tensors) + _const_tensors(graph)
    tail = _model_tail(graph, s, tensors)
    needs: dict[str, int] = {}
    requests = 0
    for op, k, u in zip(graph.ops, kernel, unpack, strict=True):
        tail += _prepare_persistent(op)
        start = s.scratch_request * (requests + SCRATCH_REQUESTS_PER_OP)
        needs[f"prepare {op.name}"] = tail_start(tail, head_end(_prepare_temps(op, s), start))
        requests += (k > 0) + (u > 0)
    if requests:
        tail.append((s.pointer * requests, s.pointer))  # ScratchBufferHandle per request
    needs["planning"] = tail_start(tail, _planning_end(s, tensors, requests, len(buffers)))
    allocated = tail_start(tail + _io_tensors(graph, s), head)
    needs = {"allocated": allocated, **needs}  # on a tie, the usual case names the phase
    phase = max(needs, key=lambda k: needs[k])
    return Arena(head, allocated - head, needs[phase], phase)


def estimate(graph: Graph, hw: HardwareProfile, weight_bits: int = 8) -> Cost:
    """Static cost of ``graph`` on ``hw`` with weights of ``weight_bits`` bits (8, or 4 on
    TFLM); raises `ProfileError` for a missing LUT entry."""
    if hw.runtime == "c":  # generated C: no interpreter structures, no flatbuffer
        assert weight_bits == 8, "generated C stores int8 weights"
        scratch = [scratch_bytes(graph, op, hw.kernels) for op in graph.ops]
        head = plan(lifetimes(graph, scratch)).head_bytes
        arena, tail, mbytes = head, 0, c_model_bytes(graph)
    else:
        tflm = tflm_arena(graph, hw.kernels, hw.pointer_bytes, weight_bits)
        arena, head, tail = tflm.min_bytes, tflm.head_bytes, tflm.tail_bytes
        mbytes = model_bytes(graph, weight_bits)
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


#: How reports name an op kind.
SHORT_KIND = {
    "conv2d": "conv",
    "depthwise_conv2d": "depthwise",
    "fully_connected": "dense",
    "average_pool2d": "avg pool",
    "add": "add",
    "reshape": "flatten",
}


def op_label(graph: Graph, i: int) -> str:
    """A readable name for op ``i``: ``3 depthwise 5x5/2 -> 8x8x48``."""
    op = graph.ops[i]
    shape = graph.tensors[op.outputs[0]].shape[1:]
    kind = SHORT_KIND.get(op.kind, op.kind)
    if op.kind in ("conv2d", "depthwise_conv2d", "average_pool2d"):
        stride = f"/{op.stride}" if op.stride > 1 else ""
        kind += f" {op.kernel[0]}x{op.kernel[1]}{stride}"
    return f"{i} {kind} -> {'x'.join(map(str, shape))}"


def per_op(graph: Graph, hw: HardwareProfile) -> list[dict[str, Any]]:
    """One row per op: its name and readable label, kind, MACs, latency and the activation
    bytes live while it runs."""
    scratch = [scratch_bytes(graph, op, hw.kernels) for op in graph.ops]
    p = plan(lifetimes(graph, scratch))
    rows = []
    for i, (op, ms) in enumerate(zip(graph.ops, op_latency_ms(graph, hw), strict=True)):
        rows.append(
            {
                "op": op.name,
                "label": op_label(graph, i),
                "kind": op.kind,
                "macs": op.macs,
                "params": op.params,
                "latency_ms": ms,
                "live_bytes": p.live_bytes(i + 1),
                "scratch_bytes": scratch[i],
            }
        )
    return rows
