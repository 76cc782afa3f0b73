"""The one description of a candidate network that every later stage reads.

`trace(module, input_shape)` turns a PyTorch module into a `Graph` shaped the way the chip
will run it: batch-norm folded into the preceding convolution, ReLU/ReLU6 fused into their
producer, explicit zero padding folded into convolutions, activations in NHWC layout and
weights in TensorFlow Lite layout (conv ``OHWI``, depthwise ``1HWC``, fully connected
``[out, in]``). The cost model, the int8 quantizer, the reference interpreter and exporters
all read this `Graph`; none of them re-derives shapes or sizes.

Operator kinds: ``conv2d``, ``depthwise_conv2d``, ``fully_connected``, ``average_pool2d``,
``add``, ``reshape``. Anything else is a `GraphError` naming the operator.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from nas.errors import GraphError

OP_KINDS = (
    "conv2d",
    "depthwise_conv2d",
    "fully_connected",
    "average_pool2d",
    "add",
    "reshape",
)
#: Latency lookup-table keys: the op kinds plus ``pointwise_conv2d`` (a 1x1 ``conv2d``).
LUT_KINDS = (*OP_KINDS, "pointwise_conv2d")


@dataclass
class Tensor:
    """An activation tensor (weights live on their op). 4-D shapes are NHWC, batch 1."""

    id: int
    shape: tuple[int, ...]
    name: str = ""

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass
class Op:
    """One operator as the runtime executes it (fused activation, folded batch-norm)."""

    kind: str
    name: str
    inputs: list[int]
    outputs: list[int]
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right
    activation: str = "none"
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    macs: int = 0

    @property
    def params(self) -> int:
        return sum(int(a.size) for a in (self.weight, self.bias) if a is not None)

    @property
    def lut_kind(self) -> str:
        """Key into a profile's latency lookup table."""
        if self.kind == "conv2d" and self.kernel == (1, 1):
            return "pointwise_conv2d"
        return self.kind

    @property
    def out_channels(self) -> int:
        if self.weight is None:
            return 0
        return int(
            self.weight.shape[3] if self.kind == "depthwise_conv2d" else self.weight.shape[0]
        )


@dataclass
class Graph:
    """Ordered operators over activation tensors; graph inputs and outputs by tensor id."""

    tensors: dict[int, Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def params(self) -> int:
        return sum(op.params for op in self.ops)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.tensors[self.inputs[0]].shape

    def describe(self) -> list[dict[str, Any]]:
        """One plain row per op (for reports and JSON): no weights, just shapes and counts."""
        rows = []
        for op in self.ops:
            rows.append(
                {
                    "name": op.name,
                    "kind": op.kind,
                    "inputs": [list(self.tensors[t].shape) for t in op.inputs],
                    "output": list(self.tensors[op.outputs[0]].shape),
                    "kernel": list(op.kernel),
                    "stride": op.stride,
                    "activation": op.activation,
                    "params": op.params,
                    "macs": op.macs,
                }
            )
        return rows

    def to_json(self) -> str:
        return json.dumps({"ops": self.describe(), "meta": self.meta}, indent=1)


# --------------------------------------------------------------------------- tracing


class _Builder:
    def __init__(self) -> None:
        self.tensors: dict[int, Tensor] = {}
        self.ops: list[Op] = []
        self.producer: dict[int, Op] = {}

    def tensor(self, shape: tuple[int, ...], name: str) -> int:
        tid = len(self.tensors)
        self.tensors[tid] = Tensor(tid, tuple(int(s) for s in shape), name)
        return tid

    def add_op(self, op: Op) -> None:
        self.ops.append(op)
        for t in op.outputs:
            self.producer[t] = op


def _nhwc(shape: torch.Size) -> tuple[int, ...]:
    dims = tuple(int(s) for s in shape)
    if dims[0] != 1:
        raise GraphError(f"trace expects batch size 1, got shape {dims}")
    if len(dims) == 4:
        return (1, dims[2], dims[3], dims[1])
    return dims


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


_ADD_FUNCS = {operator.add, torch.add}
_RELU_FUNCS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6"}
_FLATTEN_FUNCS = {torch.flatten}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow ``SAME`` padding along one axis: (before, after, output size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def trace(module: nn.Module, input_shape: tuple[int, ...], name: str = "candidate") -> Graph:
    """Describe ``module`` (in eval mode, batch 1, NCHW ``input_shape``) as a `Graph`.

    Raises:
        GraphError: the module uses an operator the graph cannot express; the message names
            the operator and the candidate.
    """
    was_training = module.training
    module.eval()
    try:
        gm = fx.symbolic_trace(module)
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(input_shape))
        return _convert(gm, name)
    except GraphError as exc:
        raise GraphError(f"candidate {name}: {exc}") from None
    finally:
        module.train(was_training)


def _single_use(node: fx.Node) -> bool:
    """Whether the node's first input feeds nothing else (so it may be fused into)."""
    arg = node.args[0]
    return isinstance(arg, fx.Node) and len(arg.users) == 1


def _fuse_activation(b: _Builder, node: fx.Node, src: int, act: str, what: str) -> int:
    op = b.producer.get(src)
    if (
        op is None
        or op.kind not in ("conv2d", "depthwise_conv2d", "fully_connected", "add")
        or op.activation != "none"
        or not _single_use(node)
    ):
        raise GraphError(f"unsupported operator '{what}' (only fused after conv/fc/add)")
    op.activation = act
    return src


def _convert(gm: fx.GraphModule, name: str) -> Graph:
    b = _Builder()
    env: dict[str, int] = {}
    pads: dict[str, tuple[int, tuple[int, int, int, int]]] = {}
    nchw_flat: dict[int, tuple[int, int, int]] = {}
    inputs: list[int] = []
    outputs: list[int] = []

    def src_of(n: Any) -> int:
        if isinstance(n, fx.Node) and n.name in pads:
            raise GraphError(f"unsupported operator 'ZeroPad2d' (only before a Conv2d: {n.name})")
        if not isinstance(n, fx.Node) or n.name not in env:
            raise GraphError(f"unsupported operand {n!r}")
        return env[n.name]

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            tid = b.tensor(_nhwc(node.meta["tensor_meta"].shape), node.name)
            env[node.name] = tid
            inputs.append(tid)
            continue
        if node.op == "output":
            res = node.args[0]
            for r in res if isinstance(res, (tuple, list)) else [res]:
                outputs.append(src_of(r))
            continue
        what = _describe(node, gm)
        if node.op == "get_attr":
            raise GraphError(f"unsupported operator 'get_attr:{node.target}'")
        out_shape = _nhwc(node.meta["tensor_meta"].shape) if "tensor_meta" in node.meta else None
        mod = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        if isinstance(mod, (nn.Identity, nn.Dropout)):
            env[node.name] = src_of(node.args[0])
        elif isinstance(mod, nn.ZeroPad2d):
            left, right, top, bottom = (int(p) for p in mod.padding)
            pads[node.name] = (src_of(node.args[0]), (top, bottom, left, right))
        elif isinstance(mod, nn.Conv2d):
            env[node.name] = _conv(b, node, mod, pads, out_shape, src_of)
        elif isinstance(mod, nn.BatchNorm2d):
            env[node.name] = _fold_bn(b, node, src_of(node.args[0]), mod, node.name)
        elif isinstance(mod, (nn.ReLU, nn.ReLU6)):
            act = "relu6" if isinstance(mod, nn.ReLU6) else "relu"
            env[node.name] = _fuse_activation(b, node, src_of(node.args[0]), act, what)
        elif node.op == "call_function" and node.target in _RELU_FUNCS:
            env[node.name] = _fuse_activation(
                b, node, src_of(node.args[0]), _RELU_FUNCS[node.target], what
            )
        elif node.op == "call_method" and node.target == "relu":
            env[node.name] = _fuse_activation(b, node, src_of(node.args[0]), "relu", what)
        elif isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            env[node.name] = _avg_pool(b, node, mod, src_of(node.args[0]), out_shape)
        elif (
            isinstance(mod, nn.Flatten)
            or (node.op == "call_function" and node.target in _FLATTEN_FUNCS)
            or (node.op == "call_method" and node.target in ("flatten", "view", "reshape"))
        ):
            src = src_of(node.args[0])
            assert out_shape is not None
            out = b.tensor(out_shape, node.name)
            in_shape = b.tensors[src].shape
            if len(in_shape) == 4 and len(out_shape) == 2:
                nchw_flat[out] = (in_shape[3], in_shape[1], in_shape[2])
            b.add_op(Op("reshape", node.name, [src], [out]))
            env[node.name] = out
        elif isinstance(mod, nn.Linear):
            env[node.name] = _linear(b, node, mod, src_of(node.args[0]), out_shape, nchw_flat)
        elif node.op == "call_function" and node.target in _ADD_FUNCS:
            a, c = (src_of(x) for x in node.args[:2])
            if b.tensors[a].shape != b.tensors[c].shape:
                raise GraphError(f"unsupported operator 'add' with broadcasting ({node.name})")
            assert out_shape is not None
            out = b.tensor(out_shape, node.name)
            b.add_op(Op("add", node.name, [a, c], [out]))
            env[node.name] = out
        else:
            raise GraphError(f"unsupported operator '{what}' (node {node.name})")
    return Graph(b.tensors, b.ops, inputs, outputs, meta={"name": name})


def _conv(b: _Builder, node: fx.Node, mod: nn.Conv2d, pads: dict, out_shape, src_of) -> int:
    arg = node.args[0]
    pad = (0, 0, 0, 0)
    if isinstance(arg, fx.Node) and arg.name in pads:
        src, pad = pads[arg.name]
    else:
        src = src_of(arg)
    if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
        raise GraphError(f"unsupported operator 'Conv2d(padding={mod.padding!r})' ({node.name})")
    ph, pw = _pair(mod.padding)
    pad = (pad[0] + ph, pad[1] + ph, pad[2] + pw, pad[3] + pw)
    if _pair(mod.dilation) != (1, 1):
        raise GraphError(f"unsupported operator 'Conv2d(dilation={mod.dilation})' ({node.name})")
    sh, sw = _pair(mod.stride)
    if sh != sw:
        raise GraphError(f"unsupported operator 'Conv2d(stride={mod.stride})' ({node.name})")
    w = mod.weight.detach().cpu().numpy().astype(np.float64)
    bias = (
        mod.bias.detach().cpu().numpy().astype(np.float64)
        if mod.bias is not None
        else np.zeros(mod.out_channels)
    )
    kh, kw = _pair(mod.kernel_size)
    out = b.tensor(out_shape, node.name)
    _, oh, ow, oc = out_shape
    if mod.groups == 1:
        kind, weight = "conv2d", w.transpose(0, 2, 3, 1)  # OIHW -> OHWI
        macs = oh * ow * oc * kh * kw * mod.in_channels
    elif mod.groups == mod.in_channels == mod.out_channels:
        kind, weight = "depthwise_conv2d", w.transpose(1, 2, 3, 0)  # C1HW -> 1HWC
        macs = oh * ow * oc * kh * kw
    else:
        raise GraphError(f"unsupported operator 'Conv2d(groups={mod.groups})' ({node.name})")
    op = Op(kind, node.name, [src], [out], (kh, kw), sh, pad, "none", weight, bias, macs)
    b.add_op(op)
    return out


def _fold_bn(b: _Builder, node: fx.Node, src: int, bn: nn.BatchNorm2d, name: str) -> int:
    op = b.producer.get(src)
    if (
        op is None
        or op.kind not in ("conv2d", "depthwise_conv2d")
        or op.activation != "none"
        or not _single_use(node)
    ):
        raise GraphError(f"unsupported operator 'BatchNorm2d' not after a conv ({name})")
    assert op.weight is not None and op.bias is not None and bn.running_var is not None
    var = bn.running_var.detach().cpu().numpy().astype(np.float64)
    mean = bn.running_mean.detach().cpu().numpy().astype(np.float64)  # type: ignore[union-attr]
    gamma = bn.weight.detach().cpu().numpy() if bn.weight is not None else np.ones_like(var)
    beta = bn.bias.detach().cpu().numpy() if bn.bias is not None else np.zeros_like(var)
    k = gamma.astype(np.float64) / np.sqrt(var + bn.eps)
    axis_shape = [1, 1, 1, 1]
    axis_shape[0 if op.kind == "conv2d" else 3] = -1
    op.weight = op.weight * k.reshape(axis_shape)
    op.bias = (op.bias - mean) * k + beta.astype(np.float64)
    return src


def _avg_pool(b: _Builder, node: fx.Node, mod: nn.Module, src: int, out_shape) -> int:
    _, h, w, _ = b.tensors[src].shape
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        if _pair(mod.output_size) != (1, 1):  # type: ignore[arg-type]
            raise GraphError(f"unsupported operator 'AdaptiveAvgPool2d' to non-1x1 ({node.name})")
        kernel, stride = (h, w), 1
    else:
        assert isinstance(mod, nn.AvgPool2d)
        if _pair(mod.padding) != (0, 0) or mod.ceil_mode:
            raise GraphError(f"unsupported operator 'AvgPool2d' with padding ({node.name})")
        kernel = _pair(mod.kernel_size)
        stride = _pair(mod.stride or mod.kernel_size)[0]
    out = b.tensor(out_shape, node.name)
    macs = math.prod(out_shape) * kernel[0] * kernel[1]
    b.add_op(Op("average_pool2d", node.name, [src], [out], kernel, stride, macs=macs))
    return out


def _linear(b: _Builder, node, mod: nn.Linear, src: int, out_shape, nchw_flat) -> int:
    if len(b.tensors[src].shape) != 2:
        raise GraphError(f"unsupported operator 'Linear' on a {b.tensors[src].shape} tensor")
    w = mod.weight.detach().cpu().numpy().astype(np.float64)
    if src in nchw_flat:  # torch flattened C,H,W; the chip flattens H,W,C
        c, h, wd = nchw_flat[src]
        w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
    bias = (
        mod.bias.detach().cpu().numpy().astype(np.float64)
        if mod.bias is not None
        else np.zeros(mod.out_features)
    )
    out = b.tensor(out_shape, node.name)
    macs = mod.in_features * mod.out_features
    b.add_op(Op("fully_connected", node.name, [src], [out], weight=w, bias=bias, macs=macs))
    return out
