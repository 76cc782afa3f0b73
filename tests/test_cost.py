"""The static cost model on graphs small enough to compute by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.cost import estimate, executed_macs, per_op
from nas.graph import trace
from nas.hardware import load_profile
from nas.planner import Buffer, plan


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
    # Tail on a 32-bit target: 10 eval tensors (5 activations + conv/fc weights and biases
    # + the reshape shape) * 12 B; 4 nodes * 32 B; 2 IO tensors * 48 B; conv OpData 80 +
    # options 28; fc OpData 64; pool OpData 48; per-channel multiplier+shift 2 * 16; fixed 630.
    assert c.arena_tail_bytes == 120 + 128 + 96 + 108 + 64 + 48 + 32 + 630
    assert c.arena_bytes == 368 + 1226
    assert c.sram_bytes == 1594 + 4096
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
