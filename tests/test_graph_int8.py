"""Tracing to the graph and int8 inference agree with torch."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch
from torch import nn

import nas
from nas.errors import GraphError
from nas.graph import trace
from nas.int8 import (
    QParams,
    multiply_by_quantized_multiplier,
    predict_int8,
    quantize,
    quantize_multiplier,
    rounding_divide_by_pot,
    run_float,
    run_int8,
)


def sampled_models(n: int, seed: int = 0):
    space = nas.create_search_space("mobilenet")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        spec = space.sample(study.ask())
        torch.manual_seed(seed)
        m = space.build(spec, 1, 10)
        for mod in m.modules():  # non-trivial batch-norm statistics to fold
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.2, 0.2)
        yield spec, m.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_traced_graph_computes_what_torch_computes(seed):
    rng = np.random.default_rng(seed)
    for spec, m in sampled_models(4, seed):
        r = spec["resolution"]
        x = rng.random((8, 1, r, r), dtype=np.float32)
        with torch.no_grad():
            ref = m(torch.from_numpy(x)).numpy()
        g = trace(m, (1, 1, r, r))
        out = run_float(g, x.transpose(0, 2, 3, 1)).reshape(ref.shape)
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


def test_int8_model_tracks_float_model():
    rng = np.random.default_rng(0)
    for spec, m in sampled_models(4, 3):
        r = spec["resolution"]
        x = rng.random((64, 1, r, r), dtype=np.float32)
        g = trace(m, (1, 1, r, r))
        qg = quantize(g, x.transpose(0, 2, 3, 1))
        ref = run_float(g, x.transpose(0, 2, 3, 1)).reshape(64, -1)
        q = run_int8(qg, qg.input_params.quantize(x.transpose(0, 2, 3, 1)))
        deq = qg.output_params.dequantize(q).reshape(64, -1)
        span = ref.max() - ref.min()
        assert np.abs(deq - ref).max() < 0.1 * span
        pred = predict_int8(qg, x.transpose(0, 2, 3, 1))
        assert (pred == ref.argmax(1)).mean() >= 0.8


def test_weights_are_per_channel_int8_and_bias_int32():
    _, m = next(sampled_models(1))
    g = trace(m, (1, 1, 8, 8))
    qg = quantize(g, np.random.default_rng(0).random((16, 8, 8, 1)))
    for op, q in zip(g.ops, qg.ops, strict=True):
        if op.weight is None:
            continue
        assert q.weight.dtype == np.int8 and np.abs(q.weight.astype(int)).max() <= 127
        assert q.bias.dtype == np.int32
        expected = 1 if op.kind == "fully_connected" else op.out_channels
        assert q.weight_scale.size == expected


def test_quantize_multiplier_matches_tflite_rule():
    # 0.5 = 2**30 * 2**(0 - 30)... TFLite: q = round(0.5 * 2**31) with shift 0
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(0.25) == (1 << 30, -1)
    q, shift = quantize_multiplier(0.1)
    assert q * 2.0 ** (shift - 31) == pytest.approx(0.1, rel=1e-9)
    assert quantize_multiplier(0.0) == (0, 0)


def test_requantization_rounds_like_tflite():
    # shift 0: only SaturatingRoundingDoublingHighMul, whose nudge rounds an exact
    # negative half up: -1.5 -> -1, -2.5 -> -2 (worked by hand from gemmlowp fixedpoint.h)
    q, shift = quantize_multiplier(0.5)
    x = np.array([3, -3, 5, -5, 100], dtype=np.int64)
    assert multiply_by_quantized_multiplier(x, q, shift).tolist() == [2, -1, 3, -2, 50]
    # shift -1: RoundingDivideByPOT then rounds halves away from zero: -1.5 -> -2
    q, shift = quantize_multiplier(0.25)
    x = np.array([6, -6, 10, -10], dtype=np.int64)
    assert multiply_by_quantized_multiplier(x, q, shift).tolist() == [2, -2, 3, -3]


def test_rounding_divide_by_pot_is_gemmlowps_definition():
    """The shortcut in `rounding_divide_by_pot` against gemmlowp's own steps (remainder,
    threshold, floor plus one), on every exponent and on small, random and extreme
    int32 values."""
    rng = np.random.default_rng(0)
    edges = [-(2**31), 2**31 - 1, -(2**30), 2**30]
    x = np.concatenate([np.arange(-4096, 4097), rng.integers(-(2**31), 2**31, 20000), edges])
    x = x.astype(np.int64)[:, None]
    exponent = np.arange(32, dtype=np.int64)[None, :]
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    gemmlowp = (x >> exponent) + ((x & mask) > threshold)
    np.testing.assert_array_equal(rounding_divide_by_pot(x, exponent), gemmlowp)
    halves = rounding_divide_by_pot(np.array([-3, -1, 1, 3]), 1).tolist()
    assert halves == [-2, -1, 1, 2]  # -1.5, -0.5, 0.5, 1.5: halves away from zero


@pytest.mark.parametrize("kernel,stride,padding", [(7, 1, (3, 3, 3, 3)), (3, 2, (0, 1, 0, 1))])
def test_int8_depthwise_accumulators_are_exact_integers(kernel, stride, padding):
    """The int8 interpreter's depthwise convolution runs in torch float32 when no partial
    sum can leave float32's exact integers: its accumulators equal the float64 loop's
    (the float interpreter's path) bit for bit, at the largest magnitudes int8 gives.
    Past that bound float32 would round, and it falls back to the float64 loop."""
    from nas import kernels

    rng = np.random.default_rng(kernel)
    x = rng.integers(-255, 256, (3, 9, 9, 5)).astype(np.float64)
    x[0, 0, 0, :] = -255  # an int8 activation less its zero point reaches -255
    w = rng.integers(-127, 128, (1, kernel, kernel, 5)).astype(np.float64)
    w[0, 0, 0, :] = -127
    loop = kernels.depthwise_conv2d(x, w, stride, padding)
    fast = kernels.depthwise_conv2d(x, w, stride, padding, integers=True)
    np.testing.assert_array_equal(fast, loop)
    assert np.abs(loop).max() > 2**16  # large sums, not a trivially small case
    big = x * 4099  # partial sums past 2**24, where float32 rounds
    loop = kernels.depthwise_conv2d(big, w, stride, padding)
    padded = kernels.pad_nhwc(big.astype(np.float32), padding)
    rounded = kernels._depthwise_float32(padded, w.astype(np.float32), stride)
    assert rounded is None or not np.array_equal(rounded, loop)  # the bound matters
    np.testing.assert_array_equal(
        kernels.depthwise_conv2d(big, w, stride, padding, integers=True), loop
    )


def test_qparams_cover_zero_and_range():
    qp = QParams.from_range(-1.0, 3.0)
    assert -128 <= qp.zero_point <= 127
    assert qp.dequantize(qp.quantize(np.array([0.0])))[0] == 0.0
    assert math.isclose(float(qp.scale), 4.0 / 255, rel_tol=1e-6)


def test_unsupported_operator_names_operator_and_candidate():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(144, 10))
    with pytest.raises(GraphError, match=r"candidate trial 7: unsupported operator 'Sigmoid'"):
        trace(m, (1, 1, 8, 8), "trial 7")
