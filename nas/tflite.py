"""Export an int8 `QGraph` as a ``.tflite`` flatbuffer that TensorFlow Lite Micro runs.

Uses the TFLite schema (object API) that ships in the PyPI package ``tflite-micro``.
Every op of the graph maps to one builtin operator with the quantization parameters of
`nas.int8` (per-channel int8 or packed int4 weights, int32 bias, per-tensor int8
activations), so the interpreter computes the same integers as the project's reference.
Explicit padding that is neither ``VALID`` nor TensorFlow's ``SAME`` becomes a ``PAD``
operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as tfl

from nas.errors import GraphError
from nas.graph import Op, same_padding
from nas.int8 import QGraph, QParams

_ACT = {
    "none": tfl.ActivationFunctionType.NONE,
    "relu": tfl.ActivationFunctionType.RELU,
    "relu6": tfl.ActivationFunctionType.RELU6,
}
#: graph op kind -> TFLite builtin operator (plus PAD, inserted for explicit padding).
BUILTINS = {
    "conv2d": tfl.BuiltinOperator.CONV_2D,
    "depthwise_conv2d": tfl.BuiltinOperator.DEPTHWISE_CONV_2D,
    "fully_connected": tfl.BuiltinOperator.FULLY_CONNECTED,
    "average_pool2d": tfl.BuiltinOperator.AVERAGE_POOL_2D,
    "add": tfl.BuiltinOperator.ADD,
    "reshape": tfl.BuiltinOperator.RESHAPE,
    "pad": tfl.BuiltinOperator.PAD,
}
#: builtin -> the ``MicroMutableOpResolver`` method that registers it.
RESOLVER_METHODS = {
    tfl.BuiltinOperator.CONV_2D: "AddConv2D",
    tfl.BuiltinOperator.DEPTHWISE_CONV_2D: "AddDepthwiseConv2D",
    tfl.BuiltinOperator.FULLY_CONNECTED: "AddFullyConnected",
    tfl.BuiltinOperator.AVERAGE_POOL_2D: "AddAveragePool2D",
    tfl.BuiltinOperator.ADD: "AddAdd",
    tfl.BuiltinOperator.RESHAPE: "AddReshape",
    tfl.BuiltinOperator.PAD: "AddPad",
}


@dataclass
class _Model:
    tensors: list = field(default_factory=list)
    buffers: list = field(default_factory=lambda: [tfl.BufferT()])  # buffer 0: empty
    operators: list = field(default_factory=list)
    opcodes: list[int] = field(default_factory=list)

    def buffer(self, data: np.ndarray | None) -> int:
        b = tfl.BufferT()
        if data is not None:
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
        self.buffers.append(b)
        return len(self.buffers) - 1

    def tensor(
        self,
        name: str,
        shape,
        dtype: int,
        data: np.ndarray | None = None,
        scale=None,
        zero_point=None,
        axis: int = 0,
    ) -> int:
        t = tfl.TensorT()
        t.name, t.shape, t.type = name, [int(s) for s in shape], dtype
        t.buffer = self.buffer(data) if data is not None else 0
        if scale is not None:
            q = tfl.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            q.zeroPoint = [int(z) for z in np.atleast_1d(zero_point)]
            q.quantizedDimension = axis
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(
        self, builtin: int, inputs: list[int], outputs: list[int], opt_type: int = 0, options=None
    ) -> None:
        if builtin not in self.opcodes:
            self.opcodes.append(builtin)
        o = tfl.OperatorT()
        o.opcodeIndex = self.opcodes.index(builtin)
        o.inputs, o.outputs = inputs, outputs
        o.builtinOptionsType, o.builtinOptions = opt_type, options
        self.operators.append(o)


def _activation(m: _Model, name: str, shape, qp: QParams) -> int:
    return m.tensor(name, shape, tfl.TensorType.INT8, scale=qp.scale, zero_point=qp.zero_point)


def _padding(m: _Model, qg: QGraph, op: Op, src: int) -> tuple[int, int]:
    """TFLite padding enum for ``op``, inserting a PAD op first when neither fits."""
    shape = qg.graph.tensors[op.inputs[0]].shape
    top, bottom, left, right = op.padding
    if not any(op.padding):
        return tfl.Padding.VALID, src
    (kh, kw), s = op.kernel, op.stride
    same = same_padding(shape[1], kh, s)[:2] + same_padding(shape[2], kw, s)[:2]
    if op.padding == same:
        return tfl.Padding.SAME, src
    pads = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], dtype=np.int32)
    padded = (shape[0], shape[1] + top + bottom, shape[2] + left + right, shape[3])
    out = _activation(m, f"{op.name}_pad", padded, qg.tensors[op.inputs[0]])
    pads_t = m.tensor(f"{op.name}_paddings", (4, 2), tfl.TensorType.INT32, pads)
    m.op(BUILTINS["pad"], [src, pads_t], [out], tfl.BuiltinOptions.PadOptions, tfl.PadOptionsT())
    return tfl.Padding.VALID, out


def pack_int4(values: np.ndarray) -> np.ndarray:
    """int4 values (held as int8, in [-8, 7]) packed two per byte in TFLite's order: the
    first of each pair in the low nibble (``UnpackDenseInt4IntoInt8``); an odd count ends
    with a zero nibble."""
    flat = values.astype(np.int16).ravel() & 0xF
    if flat.size % 2:
        flat = np.append(flat, 0)
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def export(qg: QGraph, description: str = "mcu-nas") -> bytes:
    """The ``.tflite`` flatbuffer of ``qg``.

    Raises:
        GraphError: an op kind has no TFLite equivalent here (names the op).
    """
    g = qg.graph
    m = _Model()
    ids: dict[int, int] = {}
    for tid in [*g.inputs, *(o for op in g.ops for o in op.outputs)]:
        t = g.tensors[tid]
        ids[tid] = _activation(m, t.name or f"t{tid}", t.shape, qg.tensors[tid])
    for op, q in zip(g.ops, qg.ops, strict=True):
        if op.kind not in BUILTINS:
            raise GraphError(f"operator '{op.kind}' ({op.name}) has no TFLite export")
        src, out = ids[op.inputs[0]], ids[op.outputs[0]]
        act = _ACT[op.activation]
        if op.kind in ("conv2d", "depthwise_conv2d", "fully_connected"):
            assert q.weight is not None and q.weight_scale is not None and q.bias is not None
            in_scale = np.float64(np.float32(qg.tensors[op.inputs[0]].scale))
            axis = 3 if op.kind == "depthwise_conv2d" else 0
            zeros = np.zeros(q.weight_scale.size, dtype=np.int64)
            int4 = q.weight_bits == 4
            w = m.tensor(
                f"{op.name}_weights",
                q.weight.shape,
                tfl.TensorType.INT4 if int4 else tfl.TensorType.INT8,
                pack_int4(q.weight) if int4 else q.weight,
                q.weight_scale,
                zeros,
                axis,
            )
            b = m.tensor(
                f"{op.name}_bias",
                q.bias.shape,
                tfl.TensorType.INT32,
                q.bias,
                (in_scale * q.weight_scale.astype(np.float64)).astype(np.float32),
                zeros,
                0,
            )
            if op.kind == "fully_connected":
                opt = tfl.FullyConnectedOptionsT()
                opt.fusedActivationFunction = act
                m.op(
                    BUILTINS[op.kind],
                    [src, w, b],
                    [out],
                    tfl.BuiltinOptions.FullyConnectedOptions,
                    opt,
                )
                continue
            padding, src = _padding(m, qg, op, src)
            if op.kind == "conv2d":
                opt, opt_type = tfl.Conv2DOptionsT(), tfl.BuiltinOptions.Conv2DOptions
            else:
                opt, opt_type = (
                    tfl.DepthwiseConv2DOptionsT(),
                    tfl.BuiltinOptions.DepthwiseConv2DOptions,
                )
                opt.depthMultiplier = 1
            opt.padding, opt.strideH, opt.strideW = padding, op.stride, op.stride
            opt.dilationHFactor = opt.dilationWFactor = 1
            opt.fusedActivationFunction = act
            m.op(BUILTINS[op.kind], [src, w, b], [out], opt_type, opt)
        elif op.kind == "average_pool2d":
            opt = tfl.Pool2DOptionsT()
            opt.padding = tfl.Padding.VALID
            opt.strideH = opt.strideW = op.stride
            opt.filterHeight, opt.filterWidth = op.kernel
            opt.fusedActivationFunction = act
            m.op(BUILTINS[op.kind], [src], [out], tfl.BuiltinOptions.Pool2DOptions, opt)
        elif op.kind == "add":
            opt = tfl.AddOptionsT()
            opt.fusedActivationFunction = act
            m.op(
                BUILTINS[op.kind],
                [src, ids[op.inputs[1]]],
                [out],
                tfl.BuiltinOptions.AddOptions,
                opt,
            )
        elif op.kind == "reshape":
            shape = np.array(g.tensors[op.outputs[0]].shape, dtype=np.int32)
            shape_t = m.tensor(f"{op.name}_shape", shape.shape, tfl.TensorType.INT32, shape)
            opt = tfl.ReshapeOptionsT()
            opt.newShape = [int(s) for s in shape]
            m.op(BUILTINS[op.kind], [src, shape_t], [out], tfl.BuiltinOptions.ReshapeOptions, opt)
    return _pack(m, [ids[t] for t in g.inputs], [ids[t] for t in g.outputs], description)


def _pack(m: _Model, inputs: list[int], outputs: list[int], description: str) -> bytes:
    sub = tfl.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = m.tensors, inputs, outputs, m.operators
    sub.name = "main"
    model = tfl.ModelT()
    model.version = 3
    model.description = description
    model.subgraphs = [sub]
    model.buffers = m.buffers
    model.operatorCodes = []
    for builtin in m.opcodes:
        code = tfl.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = 1
        model.operatorCodes.append(code)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def builtin_ops(model: bytes) -> list[int]:
    """Builtin operator codes used by a ``.tflite`` model, in first-use order."""
    obj = tfl.ModelT.InitFromPackedBuf(bytearray(model), 0)
    return [c.builtinCode for c in obj.operatorCodes]
