"""C99 source for an int8 `QGraph`: constant weights, one static arena, one call per op.

The arena is planned by `nas.planner` (TFLite Micro's greedy planner), so the C model
holds the activations the cost model counts. ``nas_model_run(input, output)`` copies the
int8 input into the arena, runs every op with the kernels of ``csrc/nas_kernels.h`` and
copies the int8 logits out. Other model kinds bring their own C (`nas.backends.CSource`);
`as_c` gives either kind the `nas.backends.CExportable` interface and `write` lays out its
C with the runtime headers. The ``c_sim`` backend compiles and runs it, `nas.firmware`
turns it into a firmware project; ``csrc/`` also holds the harnesses both use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nas.backends import CExportable, CSource, c_array
from nas.cost import c_model_bytes, lut_terms
from nas.errors import ConfigError
from nas.int8 import QGraph
from nas.planner import lifetimes, plan

CSRC = Path(__file__).parent / "csrc"
#: Headers every generated model may include (`nas.backends.CSource`).
RUNTIME_HEADERS = ("nas_kernels.h", "nas_rom.h")
__all__ = ["CSRC", "RUNTIME_HEADERS", "GraphC", "as_c", "c_array", "generate", "write"]


def _per_channel(values: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    return np.repeat(values, n) if values.size == 1 else values


def generate(qg: QGraph) -> CSource:
    """The C of ``qg``: ``nas_model.c`` (includes ``nas_kernels.h``), for the host and the
    Cortex-M harness (it copies its input from RAM)."""
    g = qg.graph
    p = plan(lifetimes(g))
    offset = {b.tensor: p.offsets[i] for i, b in enumerate(p.buffers) if b.tensor >= 0}
    consts: list[str] = []
    body: list[str] = []

    def buf(tid: int) -> str:
        return f"(arena + {offset[tid]})"

    for i, (op, q) in enumerate(zip(g.ops, qg.ops, strict=True)):
        if i:
            body.append(f"    NAS_MARK({i - 1});")
        src, dst = op.inputs[0], op.outputs[0]
        qin, qout = qg.tensors[src], qg.tensors[dst]
        in_shape, out_shape = g.tensors[src].shape, g.tensors[dst].shape
        weighted = op.kind in ("conv2d", "depthwise_conv2d", "fully_connected")
        mult, shift = q.multiplier, q.shift
        if weighted:
            assert q.weight is not None and q.bias is not None
            consts.append(c_array("int8_t", f"w{i}", q.weight))
            consts.append(c_array("int32_t", f"b{i}", q.bias))
        if op.kind in ("conv2d", "depthwise_conv2d"):
            assert mult is not None and shift is not None
            n = out_shape[-1]
            consts.append(c_array("int32_t", f"m{i}", _per_channel(mult, n)))
            consts.append(c_array("int8_t", f"s{i}", _per_channel(shift, n)))
            fields = [
                in_shape[1], in_shape[2], in_shape[3], out_shape[1], out_shape[2],
                out_shape[3], op.kernel[0], op.kernel[1], op.stride, op.padding[0],
                op.padding[2], qin.zero_point, qout.zero_point, q.act_min, q.act_max,
            ]  # fmt: skip
            consts.append(f"static const nas_conv_t p{i} = {{{', '.join(map(str, fields))}}};\n")
            fn = "nas_conv2d" if op.kind == "conv2d" else "nas_depthwise"
            body.append(f"    {fn}(&p{i}, {buf(src)}, w{i}, b{i}, m{i}, s{i}, {buf(dst)});")
        elif op.kind == "fully_connected":
            assert mult is not None and shift is not None
            n_in, n_out = int(np.prod(in_shape[1:])), out_shape[-1]
            body.append(
                f"    nas_fully_connected({n_in}, {n_out}, {buf(src)}, w{i}, b{i}, "
                f"{int(mult[0])}, {int(shift[0])}, {qin.zero_point}, "
                f"{qout.zero_point}, {q.act_min}, {q.act_max}, {buf(dst)});"
            )
        elif op.kind == "average_pool2d":
            body.append(
                f"    nas_average_pool({in_shape[2]}, {in_shape[3]}, "
                f"{out_shape[1]}, {out_shape[2]}, {op.kernel[0]}, {op.kernel[1]}, "
                f"{op.stride}, {q.act_min}, {q.act_max}, {buf(src)}, {buf(dst)});"
            )
        elif op.kind == "add":
            a, qb = q.add, qg.tensors[op.inputs[1]]
            fields = [
                qin.zero_point, qb.zero_point, qout.zero_point, a["m1"], a["m2"], a["mo"],
                q.act_min, q.act_max, a["s1"], a["s2"], a["so"],
            ]  # fmt: skip
            consts.append(f"static const nas_add_t p{i} = {{{', '.join(map(str, fields))}}};\n")
            n = int(np.prod(out_shape))
            body.append(f"    nas_add(&p{i}, {n}, {buf(src)}, {buf(op.inputs[1])}, {buf(dst)});")
        elif op.kind == "reshape":
            n = int(np.prod(out_shape))
            body.append(f"    memmove({buf(dst)}, {buf(src)}, {n});")
        else:  # pragma: no cover - trace() emits only these kinds
            raise ValueError(f"no C kernel for operator '{op.kind}'")
    n_in = int(np.prod(g.tensors[g.inputs[0]].shape))
    n_out = int(np.prod(g.tensors[g.outputs[0]].shape))
    source = (
        f"/* Generated by mcu-nas ({len(g.ops)} ops). */\n"
        '#include "nas_kernels.h"\n#include "nas_model.h"\n\n'
        + "".join(consts)
        + f"\nstatic int8_t arena[{max(p.head_bytes, 16)}] __attribute__((aligned(16)));\n\n"
        "void nas_model_run(const int8_t *input, int8_t *output) {\n"
        f"    memcpy({buf(g.inputs[0])}, input, {n_in});\n"
        + "\n".join(body)
        + f"\n    NAS_MARK({len(g.ops) - 1});"
        + f"\n    memcpy(output, {buf(g.outputs[0])}, {n_out});\n}}\n"
    )
    ops = tuple(lut_terms(g))
    return CSource(
        source,
        n_in,
        n_out,
        p.head_bytes,
        targets=("host", "arm"),
        model_bytes=c_model_bytes(g),
        ops=ops,
        marks=(1,) * len(ops),  # NAS_MARK after every op
        input_scale=qg.input_params.scale,
        input_zero_point=qg.input_params.zero_point,
        input_layout="HWC",
    )


def write(model: CSource, folder: Path) -> list[Path]:
    """``nas_model.c``, ``nas_model.h``, the runtime headers and the model's own headers
    in ``folder``."""
    clash = sorted({"nas_model.c", "nas_model.h", *RUNTIME_HEADERS} & set(model.headers))
    if clash:
        raise ValueError(f"c_sim: a model's header may not be named {clash[0]}")
    folder.mkdir(parents=True, exist_ok=True)
    header = (
        "#ifndef NAS_MODEL_H\n#define NAS_MODEL_H\n#include <stdint.h>\n"
        f"#define NAS_INPUT_BYTES {model.input_bytes}\n"
        f"#define NAS_OUTPUT_BYTES {model.output_bytes}\n"
        f"#define NAS_ARENA_BYTES {model.arena_bytes}\n"
        "void nas_model_run(const int8_t *input, int8_t *output);\n#endif\n"
    )
    files = {"nas_model.c": model.source, "nas_model.h": header}
    files.update({name: (CSRC / name).read_text() for name in RUNTIME_HEADERS})
    files.update(model.headers)
    write_files(folder, files)
    return [folder / n for n in files]


def write_files(folder: Path, files: dict[str, str]) -> None:
    """Write ``files`` (name -> text) into ``folder``, creating it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


class GraphC:
    """`nas.backends.CExportable` for a layer graph: `generate` writes its C."""

    def __init__(self, qg: QGraph) -> None:
        self.qg = qg

    def to_c(self) -> CSource:
        return generate(self.qg)

    def c_inputs(self, x_nchw: np.ndarray) -> np.ndarray:
        return self.qg.input_params.quantize(x_nchw.transpose(0, 2, 3, 1))

    def c_outputs(self, x_q: np.ndarray) -> np.ndarray:
        from nas.int8 import run_int8

        return run_int8(self.qg, x_q).reshape(len(x_q), -1)


def as_c(model: object) -> CExportable:
    """``model`` as something that has C, or a one-line `ConfigError`."""
    if isinstance(model, QGraph):
        return GraphC(model)
    if isinstance(model, CExportable):
        return model
    raise ConfigError(
        f"cannot generate C for {type(model).__name__}: the model needs to_c(), c_inputs() "
        "and c_outputs() (nas.backends.CExportable)"
    )
