"""The static cost model on graphs small enough to compute by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.cost import estimate, executed_macs, per_op, tflm_arena
from nas.graph import trace
from nas.hardware import load_profile
from nas.planner import Buffer, head_end, plan, tail_start


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def test_graph_shapes_params_macs():
    g = trace(tiny(), (1, 1, 8, 8))
    assert [op.kind for op in g.ops] == ["conv2d", "average_pool2d", "reshape", "fully_connected"]
    assert g.ops[0].activation == "relu"
    assert [g.tensors[op.outputs[0]].shape for op in g.ops] == [
        (1, 8, 8, 4),
        (1, 1, 1, 4),
        (1, 4),
        (1, 10),
    ]
    # conv 8*8*4 outputs x 9 taps x 1 channel; pool reads 64 inputs per channel; fc 4x10
    assert [op.macs for op in g.ops] == [2304, 256, 0, 40]
    assert g.params == 36 + 4 + 40 + 10


def test_executed_macs_skip_the_zero_padding():
    net = nn.Sequential(nn.Conv2d(8, 8, 7, padding=3, groups=8), nn.Conv2d(8, 4, 1))
    g = trace(net, (1, 8, 4, 4))
    dw, pw = g.ops
    assert dw.macs == 4 * 4 * 8 * 49
    # a 7x7 kernel on a 4x4 map: every output sees all 4 rows and 4 columns, 16 taps
    assert executed_macs(g, dw) == 4 * 4 * 8 * 16
    assert executed_macs(g, pw) == pw.macs == 4 * 4 * 4 * 8


def test_cortex_m4_hand_computed():
    c = estimate(trace(tiny(), (1, 1, 8, 8)), load_profile("cortex_m4"))
    # Head: conv output 256 B at 0, input 64 B at 256, conv im2col scratch
    # 2*align4(9)*2 = 48 B at 320 -> 368 B (see the placement worked out in planner tests).
    assert c.arena_head_bytes == 368
    # Tail on a 32-bit target, replayed from the last allocation back to the first
    # (`tail_start`): from 368, output zero points 8 -> 376, quantization 12 -> 388,
    # TfLiteTensor 32 -> 420, pointer array 4 at 16 -> 436; the same for the input -> 500;
    # 2 scratch handles * 4 -> 508; conv shift and multiplier 16 each at 16 -> 544; OpData
    # fc 72 -> 616, pool 32 at 16 -> 656, conv 80 -> 736; builtin options fc 32, reshape
    # 36, pool 40, conv 28 -> 872; 4 nodes * 32 -> 1000; 10 eval tensors (5 activations +
    # conv/fc weights and biases + the reshape shape) * 12 -> 1120; fixed 488 -> 1608.
    assert c.arena_tail_bytes == 1608 - 368
    # Planning needs more: at the head, 12 B * (2 requests + 12), a 4 B subgraph offset and
    # 24 B * (10 tensors + 2 requests) of AllocationInfo end at 460 -> 464; the planner's
    # 40 B * 7 buffers = 280 -> 288, so the tail (all of it but the I/O tensors) must stay
    # above 752: 760, 800 (conv arrays), 992 (OpData), 1128 (options), 1256, 1376, 1864.
    assert c.arena_bytes == 1864 > c.arena_head_bytes + c.arena_tail_bytes
    assert c.sram_bytes == 1864 + 4096
    # Flatbuffer: 338 fixed + 4 ops * 21 + 5 activations * 125 + 5 constants * 108
    # + conv weights 36 + 4 channels * 12 + bias 16 + 4 * 12 + fc weights 40 + 12 + bias 40 + 12
    # + reshape shape 8.
    assert c.model_bytes == 338 + 84 + 625 + 540 + 84 + 64 + 52 + 52 + 8
    assert c.flash_bytes == c.model_bytes + 40000
    assert c.macs == 2600
    # Latency counts executed MACs: the padded 3x3 conv on 8x8 skips the taps on the zero
    # border: per axis 2 + 6 * 3 + 2 = 22 valid taps, 22 * 22 * 4 channels = 1936.
    cycles = (
        (1.631 * 1936 + 86.1 * 256 + 500) + (9.8 * 256 + 300) + 100 + (1.92 * 40 + 20 * 10 + 300)
    )
    assert c.latency_ms == pytest.approx(cycles / 120e6 * 1e3)
    assert c.energy_uj == pytest.approx(c.latency_ms * 40.0)


def test_plain_c_runtime_hand_computed():
    c = estimate(trace(tiny(), (1, 1, 8, 8)), load_profile("arduino_uno"))
    assert c.arena_tail_bytes == 0
    assert c.arena_head_bytes == 320  # conv out 256 + input 64; no scratch (reference kernels)
    assert c.sram_bytes == 320 + 256
    # weights + int32 bias + (int32 multiplier + int8 shift) per output channel
    assert c.model_bytes == (36 + 16 + 5 * 4) + (40 + 40 + 5 * 10)
    cycles = (
        (24.4 * 1936 + 351 * 256 + 200)  # executed MACs, as above
        + (8 * 256 + 351 * 4 + 200)
        + 0
        + (28.55 * 40 + 123.2 * 10 + 61)
    )
    assert c.latency_ms == pytest.approx(cycles / 16e6 * 1e3)


def test_per_op_latency_sums_to_total():
    g = trace(tiny(), (1, 1, 8, 8))
    hw = load_profile("cortex_m7")
    rows = per_op(g, hw)
    assert sum(r["latency_ms"] for r in rows) == pytest.approx(estimate(g, hw).latency_ms)


def test_tail_start_is_the_smallest_end_that_keeps_every_allocation_above_the_floor():
    # 10 B at 8-byte alignment, then 3 B at 4-byte alignment, above offset 16: replayed
    # backwards, align(16, 4) + 3 = 19, align(19, 8) + 10 = 34.
    allocs = [(10, 8), (3, 4)]
    assert tail_start(allocs, 16) == 34

    def lowest(end: int) -> int:  # TFLM's placement: below the last one, aligned down
        for nbytes, alignment in allocs:
            end = (end - nbytes) // alignment * alignment
        return end

    assert lowest(34) == 20 >= 16 and lowest(33) == 12 < 16
    # upwards: 3 + 5 = 8, then align(8, 8) + 8 = 16
    assert head_end([(5, 1), (8, 8)], 3) == 16


def test_arena_covers_each_allocation_step():
    g = trace(tiny(), (1, 1, 8, 8))
    host = tflm_arena(g, "reference", 8)  # the x86-64 wheel: reference kernels, no scratch
    assert host.head_bytes == 320
    assert host.min_bytes >= host.head_bytes + host.tail_bytes
    # the conv's Prepare holds 7 tensors at once (3 of them with 4 channels of zero points)
    assert host.phase == "prepare _0"
    target = tflm_arena(g, "cmsis_nn", 4)
    assert target.phase == "planning"
    assert target.min_bytes < host.min_bytes  # 32-bit structs are smaller


def test_planner_reuses_memory_of_dead_tensors():
    # a chain of three 64 B tensors: the first and third never live together
    bufs = [Buffer(0, 0, 64, 0, 1), Buffer(1, 1, 64, 1, 2), Buffer(2, 2, 64, 2, 2)]
    p = plan(bufs)
    assert p.head_bytes == 128
    assert p.offsets[0] == p.offsets[2] != p.offsets[1]


def test_planner_first_fit_into_gap():
    # X [0,0] and Y [2,2] (112 B) share offset 0; Z (64 B, alive throughout) goes above them;
    # W (32 B, scope 1) only overlaps Z, so it takes the gap at offset 0.
    bufs = [
        Buffer(0, 0, 112, 0, 0),
        Buffer(1, 1, 112, 2, 2),
        Buffer(2, 2, 64, 0, 2),
        Buffer(3, 3, 32, 1, 1),
    ]
    p = plan(bufs)
    assert p.offsets == [0, 0, 112, 0] and p.head_bytes == 176


def test_infeasible_reason_and_violations():
    g = trace(tiny(), (1, 1, 8, 8))
    hw = load_profile("arduino_uno")
    c = estimate(g, hw)
    assert c.infeasible_reason(hw) == ""
    assert all(v < 0 for v in c.violations(hw).values())
    small = type(hw)(**{**hw.__dict__, "sram_bytes": 512})
    assert "sram 576 B > 512 B" in c.infeasible_reason(small)
    assert c.violations(small)["sram"] == pytest.approx((576 - 512) / 512)
