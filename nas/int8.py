"""Int8 quantization and the project's reference interpreters (float and int8).

Follows the TensorFlow Lite int8 specification (TensorFlow's ``quantization_spec.md``;
``docs/references.md``): ``real = (q - zero_point) * scale``; weights int8 in [-127, 127],
symmetric, zero point 0, per output channel for convolutions and per tensor for fully
connected layers; activations int8 per tensor with any zero point; bias int32 with scale
``input_scale * weight_scale[c]``. Requantization uses a Q31 multiplier and a shift from
``QuantizeMultiplier`` and TFLite's default double rounding
(``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``), so the integer outputs
are the ones TFLite Micro's reference kernels compute. Scales are float32, as stored in a
``.tflite`` flatbuffer.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from nas import kernels
from nas.graph import Graph, Op

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD pre-shift
#: Largest quantized bias allowed: a weight scale is raised until the bias fits in 2**30,
#: leaving room in the int32 accumulator for the products (TFLite's converter likewise
#: adjusts weight scales so that the bias scale can represent the bias).
BIAS_LIMIT = 2**30
#: Images per pass of the reference interpreters: a batch's arrays stay in a 2 MiB L2 cache
#: (with the shorter rounding below, 1.13 times faster than 64 per m4-tight candidate:
#: `benchmarks/results/int8_speed.md`).
BATCH = 32


# --------------------------------------------------------------------------- fixed point


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: real = q * 2**(shift - 31) with q a Q31 integer."""
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    q = int(math.floor(mantissa * (1 << 31) + 0.5))  # std::round: half away from zero (>0)
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return INT32_MAX, 30
    return q, shift


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul``: ``(a*b + nudge) / 2**31`` with the
    nudge of the sign of ``a*b`` and C's truncating division, which for integers equals
    ``floor((a*b + 2**30) / 2**31)``, an arithmetic shift; saturates the one overflow."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    res = a * b  # a new array: the steps below work in place
    res += 1 << 30
    res >>= 31
    if not (b == INT32_MIN).any():  # quantized multipliers are positive: the usual case
        return res
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, res)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero.
    gemmlowp adds one to the floor when the remainder exceeds half less one (or half, for
    a negative ``x``); adding half (less one for a negative ``x``) before the arithmetic
    shift gives the same integer in fewer passes over the array."""
    exponent = np.asarray(exponent, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    out = np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, exponent.shape)))
    return _divide_by_pot_in_place(out, exponent)


def _divide_by_pot_in_place(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """`rounding_divide_by_pot` overwriting ``x`` (int64, at least ``exponent``'s shape)."""
    if not exponent.any():
        return x
    negative = x < 0
    if not (exponent > 0).all():
        negative &= exponent > 0
    x += (np.int64(1) << exponent) >> 1
    x -= negative
    x >>= exponent
    return x


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier, shift) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier`` (double rounding), element-wise."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.asarray(x, dtype=np.int64)
    if left.any():
        x = x * (np.int64(1) << left)
    high = saturating_rounding_doubling_high_mul(x, multiplier)
    if high.shape != np.broadcast_shapes(high.shape, right.shape):
        return rounding_divide_by_pot(high, right)
    return _divide_by_pot_in_place(high, right)  # a new array, the rounding's to overwrite


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class QParams:
    """Per-tensor affine quantization of an activation: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int

    @classmethod
    def from_range(cls, lo: float, hi: float) -> QParams:
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo < 1e-8:
            hi = lo + 1e-8
        scale = float(np.float32((hi - lo) / 255.0))
        zp = int(np.clip(round(-128 - lo / scale), -128, 127))
        return cls(scale, zp)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x / self.scale) + self.zero_point, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float64) - self.zero_point) * self.scale


@dataclass
class QOp:
    """Integer parameters of one op; fields unused by an op kind stay ``None``."""

    weight: np.ndarray | None = None  # int8, TFLite layout
    weight_scale: np.ndarray | None = None  # float32 per output channel (or one value)
    bias: np.ndarray | None = None  # int32
    multiplier: np.ndarray | None = None  # int64 Q31, per channel
    shift: np.ndarray | None = None
    act_min: int = -128
    act_max: int = 127
    add: dict[str, int] = field(default_factory=dict)
    #: Bits the runtime stores each weight in: 8, or 4 (int4 values in [-7, 7], packed two
    #: per byte in the ``.tflite`` file; still held one per int8 here).
    weight_bits: int = 8


class QuantizedModel(Protocol):
    """What every int8 model offers the search (`QGraph`, or a space's own integer model)."""

    def predict(self, x_nchw: np.ndarray) -> np.ndarray:
        """Class predictions for float NCHW inputs, quantized the way the firmware does."""
        ...

    def save(self, path) -> None:
        """Write the int8 model to ``path`` (``.npz``)."""
        ...


@dataclass
class QGraph:
    """A `Graph` with int8 parameters: what the chip stores and runs."""

    graph: Graph
    tensors: dict[int, QParams]
    ops: list[QOp]

    @property
    def input_params(self) -> QParams:
        return self.tensors[self.graph.inputs[0]]

    @property
    def output_params(self) -> QParams:
        return self.tensors[self.graph.outputs[0]]

    @property
    def weight_bits(self) -> int:
        """Bits the weights are stored in (one width for the whole model: 8 or 4)."""
        return min((q.weight_bits for q in self.ops if q.weight is not None), default=8)

    def weight_bytes(self) -> int:
        """Bytes of int8 weights plus int32 biases."""
        total = 0
        for q in self.ops:
            if q.weight is not None:
                total += q.weight.size
            if q.bias is not None:
                total += 4 * q.bias.size
        return total

    def predict(self, x_nchw: np.ndarray) -> np.ndarray:
        return predict_int8(self, x_nchw.transpose(0, 2, 3, 1))

    def save(self, path) -> None:
        """Write the int8 model as ``.npz``: arrays plus a JSON header with the graph."""
        arrays: dict[str, np.ndarray] = {}
        header = {
            "graph": json.loads(self.graph.to_json()),
            "tensors": {str(t): [p.scale, p.zero_point] for t, p in self.tensors.items()},
            "ops": [],
        }
        for i, q in enumerate(self.ops):
            entry = {
                "act_min": q.act_min,
                "act_max": q.act_max,
                "add": q.add,
                "weight_bits": q.weight_bits,
            }
            for key in ("weight", "weight_scale", "bias", "multiplier", "shift"):
                value = getattr(q, key)
                if value is not None:
                    arrays[f"op{i}.{key}"] = value
            header["ops"].append(entry)
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        with open(path, "wb") as fh:
            fh.write(buf.getvalue())


def activation_range(act: str, qp: QParams) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for a fused activation."""
    lo, hi = -128, 127
    if act in ("relu", "relu6"):
        lo = max(lo, qp.zero_point + int(round(0.0 / qp.scale)))
    if act == "relu6":
        hi = min(hi, qp.zero_point + int(math.floor(6.0 / qp.scale + 0.5)))
    return lo, hi


def weight_scale_axis(kind: str) -> int | None:
    """The axis of a weighted op's output channels, along which its weights have one scale
    each (TFLite layout); None for one scale per tensor (fully connected)."""
    return {"conv2d": 0, "depthwise_conv2d": 3}.get(kind)


def _quantize_weights(
    w: np.ndarray,
    axis: int | None,
    min_scale: np.ndarray | float = 0.0,
    per_channel: bool = True,
    bits: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric weights of ``bits`` bits (int8: [-127, 127]; int4: [-7, 7]), held as int8:
    one scale per channel along ``axis``, or one for the whole tensor when ``axis`` is
    None. No scale below ``min_scale`` (per channel, or one value).

    ``per_channel=False`` gives every channel the whole tensor's scale: per-tensor
    quantization, still stored per channel so the kernels and the TFLite file are the same.
    """
    shape = [1] * w.ndim
    if axis is None:
        amax, min_scale = np.array([np.abs(w).max()]), np.max(min_scale)
    else:
        moved = np.moveaxis(w, axis, 0)
        amax = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
        if not per_channel:
            amax = np.full_like(amax, amax.max())
            min_scale = np.full_like(amax, np.max(min_scale))
        shape[axis] = -1
    top = (1 << (bits - 1)) - 1
    scale = np.maximum(np.maximum(amax / top, min_scale), 1e-12).astype(np.float32)
    q = np.clip(np.round(w / scale.astype(np.float64).reshape(shape)), -top, top)
    return q.astype(np.int8), scale


# --------------------------------------------------------------------------- float reference


def _float_op(op: Op, x: list[np.ndarray]) -> np.ndarray:
    w, b = op.weight, op.bias
    if op.kind == "conv2d":
        assert w is not None
        y = kernels.conv2d(x[0], w, op.stride, op.padding) + b
    elif op.kind == "depthwise_conv2d":
        assert w is not None
        y = kernels.depthwise_conv2d(x[0], w, op.stride, op.padding) + b
    elif op.kind == "fully_connected":
        assert w is not None
        y = kernels.fully_connected(x[0], w) + b
    elif op.kind == "average_pool2d":
        y = kernels.pool_sum(x[0], op.kernel, op.stride) / (op.kernel[0] * op.kernel[1])
    elif op.kind == "add":
        y = x[0] + x[1]
    elif op.kind == "reshape":
        y = x[0].reshape(x[0].shape[0], -1)
    else:  # pragma: no cover - trace() only emits known kinds
        raise ValueError(op.kind)
    if op.activation == "relu":
        y = np.maximum(y, 0.0)
    elif op.activation == "relu6":
        y = np.clip(y, 0.0, 6.0)
    return y


def _run(graph: Graph, x: np.ndarray, op_fn: Callable, observe=None) -> np.ndarray:
    values = {graph.inputs[0]: x}
    if observe:
        observe(graph.inputs[0], x)
    for i, op in enumerate(graph.ops):
        y = op_fn(i, op, [values[t] for t in op.inputs])
        values[op.outputs[0]] = y
        if observe:
            observe(op.outputs[0], y)
    return values[graph.outputs[0]]


def run_float(graph: Graph, x_nhwc: np.ndarray) -> np.ndarray:
    """Float outputs of the folded graph (checks the fold against the torch module)."""
    outs = [
        _run(graph, x_nhwc[s : s + BATCH].astype(np.float64), lambda i, op, x: _float_op(op, x))
        for s in range(0, len(x_nhwc), BATCH)
    ]
    return np.concatenate(outs)


# --------------------------------------------------------------------------- quantization


def quantize(
    graph: Graph, calib_nhwc: np.ndarray, per_channel: bool = True, weight_bits: int = 8
) -> QGraph:
    """Post-training int8 quantization calibrated on min/max of ``calib_nhwc`` activations;
    convolution weights per output channel, or per tensor with ``per_channel=False``;
    weights of ``weight_bits`` bits (8, or 4: int4)."""
    lo: dict[int, float] = {}
    hi: dict[int, float] = {}

    def observe(tid: int, y: np.ndarray) -> None:
        lo[tid] = min(lo.get(tid, 0.0), float(y.min()))
        hi[tid] = max(hi.get(tid, 0.0), float(y.max()))

    for s in range(0, len(calib_nhwc), BATCH):
        _run(
            graph,
            calib_nhwc[s : s + BATCH].astype(np.float64),
            lambda i, op, x: _float_op(op, x),
            observe,
        )
    tq: dict[int, QParams] = {}
    qops: list[QOp] = []
    tq[graph.inputs[0]] = QParams.from_range(lo[graph.inputs[0]], hi[graph.inputs[0]])
    for op in graph.ops:
        out = op.outputs[0]
        if op.kind in ("reshape", "average_pool2d"):
            tq[out] = tq[op.inputs[0]]  # the spec keeps the input's scale and zero point
        else:
            tq[out] = QParams.from_range(lo[out], hi[out])
        qin = [tq[t] for t in op.inputs]
        qops.append(_quantize_op(op, qin, tq[out], per_channel, weight_bits))
    return QGraph(graph, tq, qops)


def _quantize_op(
    op: Op, qin: list[QParams], qout: QParams, per_channel: bool, weight_bits: int = 8
) -> QOp:
    act_min, act_max = activation_range(op.activation, qout)
    q = QOp(act_min=act_min, act_max=act_max)
    if op.kind in ("conv2d", "depthwise_conv2d", "fully_connected"):
        assert op.weight is not None and op.bias is not None
        axis = weight_scale_axis(op.kind)
        in_scale = np.float64(np.float32(qin[0].scale))
        # A channel whose weights are (nearly) zero, e.g. after a batch norm with gamma ~ 0,
        # would need a bias beyond int32: raise its scale so the bias fits.
        min_scale = np.abs(op.bias.astype(np.float64)) / (in_scale * BIAS_LIMIT)
        q.weight, q.weight_scale = _quantize_weights(
            op.weight, axis, min_scale, per_channel, weight_bits
        )
        q.weight_bits = weight_bits
        bias_scale = in_scale * q.weight_scale.astype(np.float64)
        q.bias = np.clip(np.round(op.bias / bias_scale), INT32_MIN, INT32_MAX).astype(np.int32)
        out_scale = np.float64(np.float32(qout.scale))
        mults = [quantize_multiplier(float(in_scale * ws / out_scale)) for ws in q.weight_scale]
        q.multiplier = np.array([m for m, _ in mults], dtype=np.int64)
        q.shift = np.array([s for _, s in mults], dtype=np.int64)
    elif op.kind == "add":
        s1, s2 = float(np.float32(qin[0].scale)), float(np.float32(qin[1].scale))
        twice_max = 2.0 * max(s1, s2)
        m1, sh1 = quantize_multiplier(s1 / twice_max)
        m2, sh2 = quantize_multiplier(s2 / twice_max)
        mo, sho = quantize_multiplier(
            twice_max / ((1 << ADD_LEFT_SHIFT) * float(np.float32(qout.scale)))
        )
        q.add = {"m1": m1, "s1": sh1, "m2": m2, "s2": sh2, "mo": mo, "so": sho}
    return q


# --------------------------------------------------------------------------- int8 reference


def _requantize(acc: np.ndarray, q: QOp, qout: QParams) -> np.ndarray:
    """Int8 outputs of integer accumulators (float arrays holding exact integers)."""
    acc = acc.astype(np.int64)
    acc += q.bias
    y = multiply_by_quantized_multiplier(acc, q.multiplier, q.shift)
    y += qout.zero_point
    return np.clip(y, q.act_min, q.act_max, out=y)


def _int8_op(op: Op, q: QOp, qin: list[QParams], qout: QParams, x: list[np.ndarray]):
    if op.kind in ("conv2d", "depthwise_conv2d", "fully_connected"):
        # integers of at most 9 bits, exact in float32; the kernels widen them to float64
        # where their sums would not be (padding is real zero)
        centred = x[0].astype(np.float32) - np.float32(qin[0].zero_point)
        assert q.weight is not None
        w = q.weight.astype(np.float32)
        if op.kind == "conv2d":
            acc = kernels.conv2d(centred, w, op.stride, op.padding, integers=True)
        elif op.kind == "depthwise_conv2d":
            acc = kernels.depthwise_conv2d(centred, w, op.stride, op.padding, integers=True)
        else:
            acc = kernels.fully_connected(centred, w, integers=True)
        return _requantize(acc, q, qout)
    if op.kind == "average_pool2d":
        count = op.kernel[0] * op.kernel[1]
        acc = np.rint(kernels.pool_sum(x[0].astype(np.float64), op.kernel, op.stride))
        acc = acc.astype(np.int64)
        half = count // 2
        avg = np.where(acc > 0, (acc + half) // count, -((-acc + half) // count))
        return np.clip(avg, q.act_min, q.act_max)
    if op.kind == "add":
        a = q.add
        x1 = (x[0].astype(np.int64) - qin[0].zero_point) << ADD_LEFT_SHIFT
        x2 = (x[1].astype(np.int64) - qin[1].zero_point) << ADD_LEFT_SHIFT
        y1 = multiply_by_quantized_multiplier(x1, a["m1"], a["s1"])
        y2 = multiply_by_quantized_multiplier(x2, a["m2"], a["s2"])
        y = multiply_by_quantized_multiplier(y1 + y2, a["mo"], a["so"]) + qout.zero_point
        return np.clip(y, q.act_min, q.act_max)
    if op.kind == "reshape":
        return x[0].reshape(x[0].shape[0], -1)
    raise ValueError(op.kind)  # pragma: no cover


def run_int8(qg: QGraph, x_q: np.ndarray) -> np.ndarray:
    """Int8 outputs for int8 inputs (NHWC), exactly as the integer kernels compute them."""
    g = qg.graph

    def step(i: int, op: Op, x: list[np.ndarray]) -> np.ndarray:
        qin = [qg.tensors[t] for t in op.inputs]
        return _int8_op(op, qg.ops[i], qin, qg.tensors[op.outputs[0]], x)

    outs = [_run(g, x_q[s : s + BATCH], step) for s in range(0, len(x_q), BATCH)]
    return np.concatenate(outs).astype(np.int8)


def predict_int8(qg: QGraph, x_nhwc: np.ndarray) -> np.ndarray:
    """Class predictions of the int8 model for float inputs (quantized like the firmware)."""
    logits = run_int8(qg, qg.input_params.quantize(x_nhwc))
    return logits.reshape(len(x_nhwc), -1).argmax(axis=1)


def accuracy_int8(qm: QuantizedModel, x_nchw: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of an int8 model on NCHW float images (the datasets' layout)."""
    return float((qm.predict(x_nchw) == y).mean())
