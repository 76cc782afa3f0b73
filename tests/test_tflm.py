"""The TFLite Micro backend: real flatbuffers run in the real interpreter."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from nas_backend_tflm.runtime import (
    MIN_ARENA_BYTES,
    arena_usage,
    invoke_all,
    load,
    min_arena_bytes,
    runs_in,
    try_arena,
)
from torch import nn

import nas
from nas.cost import tflm_arena
from nas.errors import GraphError
from nas.graph import OP_KINDS, Graph, Op, Tensor, trace
from nas.int8 import BIAS_LIMIT, QGraph, QOp, QParams, quantize, run_int8
from nas.tflite import BUILTINS, builtin_ops, export


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(x + self.body(x))


OPERATOR_CASES = {
    # conv 3x3 SAME stride 1 + ReLU, depthwise 5x5 stride 2 TF-SAME (asymmetric) + ReLU6,
    # pointwise, residual add with fused ReLU, global average pool, reshape, FC
    "mobilenet_ops": nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        nn.ReLU(),
        nn.ZeroPad2d((1, 2, 1, 2)),
        nn.Conv2d(8, 8, 5, stride=2, groups=8),
        nn.ReLU6(),
        nn.Conv2d(8, 6, 1),
        Residual(6),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 10),
    ),
    # VALID conv, explicit symmetric padding with stride 2 (not SAME: exported as PAD),
    # AvgPool2d 2x2, flatten of a 2x2 map into FC + ReLU, FC
    "pad_valid_pool": nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 12),
        nn.ReLU(),
        nn.Linear(12, 5),
    ),
    # depthwise 3x3 stride 1 and 7x7 stride 2 with TF-SAME padding
    "depthwise": nn.Sequential(
        nn.Conv2d(2, 4, 1),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),
        nn.ReLU6(),
        nn.ZeroPad2d((2, 3, 2, 3)),
        nn.Conv2d(4, 4, 7, stride=2, groups=4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ),
}


def _quantized(module: nn.Module, size: int = 10, seed: int = 0, per_channel: bool = True):
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    module.eval()
    g = trace(module, (1, 2, size, size))
    x = np.random.default_rng(seed).random((128, size, size, 2))
    return quantize(g, x[:64], per_channel), x[64:]


def _interpreter_and_reference(qg: QGraph, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Int8 outputs of the exported model in TFLite Micro and of the int8 reference (int32,
    one row per input)."""
    x_q = qg.input_params.quantize(x)
    got = invoke_all(load(export(qg), 1 << 20), x_q).astype(np.int32)
    return got, run_int8(qg, x_q).reshape(len(x), -1).astype(np.int32)


@pytest.mark.parametrize("case", sorted(OPERATOR_CASES))
def test_every_exported_operator_matches_the_int8_reference(case):
    got, ref = _interpreter_and_reference(*_quantized(OPERATOR_CASES[case]))
    diff = np.abs(got - ref)
    assert (diff.max(axis=1) == 0).mean() >= 0.99, case
    assert diff.max() <= 1, case


def test_per_tensor_weights_run_unchanged_in_the_interpreter():
    """``ptq.per_channel=false``: one scale per convolution, stored per channel; the
    interpreter and the reference still agree bit for bit."""
    qg, x = _quantized(OPERATOR_CASES["depthwise"], per_channel=False)
    convs = [q for op, q in zip(qg.graph.ops, qg.ops, strict=True) if "conv" in op.kind]
    assert convs and all(len(set(q.weight_scale.tolist())) == 1 for q in convs)
    assert np.array_equal(*_interpreter_and_reference(qg, x))


def test_channel_with_vanishing_weights_keeps_interpreter_and_reference_equal():
    """A batch norm with gamma ~ 0 leaves a channel with near-zero weights and a bias that
    its tiny scale cannot hold in int32: the weight scale is raised so the bias fits, and
    the interpreter's 32-bit accumulator cannot wrap where the reference's does not."""
    module = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    with torch.no_grad():
        module[1].weight[0] = 1e-6
        module[1].bias[0] = 0.5
    qg, x = _quantized(module)
    assert np.abs(qg.ops[0].bias).max() <= BIAS_LIMIT
    assert np.array_equal(*_interpreter_and_reference(qg, x))


def test_export_covers_every_graph_op_kind_and_pad():
    kinds = set()
    used = set()
    for module in OPERATOR_CASES.values():
        qg, _ = _quantized(module)
        kinds |= {op.kind for op in qg.graph.ops}
        used |= set(builtin_ops(export(qg)))
    assert kinds == set(OP_KINDS)
    assert used == set(BUILTINS.values())  # PAD included


def test_per_channel_weight_quantization_in_flatbuffer():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as tfl

    qg, _ = _quantized(OPERATOR_CASES["mobilenet_ops"])
    model = tfl.ModelT.InitFromPackedBuf(bytearray(export(qg)), 0)
    conv_weights = [
        t for t in model.subgraphs[0].tensors if t.name.endswith(b"_weights") and len(t.shape) == 4
    ]
    assert conv_weights
    for t in conv_weights:
        channels = t.shape[t.quantization.quantizedDimension]
        assert len(t.quantization.scale) == channels > 1
        assert t.type == tfl.TensorType.INT8


def _smallest_arena(g: Graph, model: bytes) -> int:
    """The bisected smallest arena, checked at its boundary: the model runs in it and not
    in one byte less."""
    smallest = min_arena_bytes(model, guess=tflm_arena(g, "reference", 8).min_bytes)
    assert runs_in(model, smallest)
    assert not runs_in(model, smallest - 1)
    return smallest


def test_arena_estimate_is_the_smallest_arena_the_interpreter_runs_in():
    space = nas.create_search_space("mobilenet")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=11))
    for i in range(6):
        spec = space.sample(study.ask())
        r = spec["resolution"]
        torch.manual_seed(i)
        g = trace(space.build(spec, 1, 10).eval(), (1, 1, r, r))
        qg = quantize(g, np.random.default_rng(i).random((8, r, r, 1)))
        model = export(qg)
        smallest = _smallest_arena(g, model)
        assert tflm_arena(g, "reference", 8).min_bytes == smallest, spec
        # what stays allocated fits in it; the smallest arena is never below that
        assert arena_usage(load(model, smallest)).total_bytes <= smallest


# Both need more than RecordingMicroAllocator reports once allocation is done: a chain of
# small layers (one AllocationInfo per tensor and the planner's arrays while it plans) and
# a 64-channel convolution on a 2x2 map (the seven per-channel tensors its Prepare builds).
TEMPORARY_PEAKS = {
    "planning": nn.Sequential(
        nn.Flatten(),
        nn.Linear(32, 12),
        nn.ReLU(),
        nn.Linear(12, 12),
        nn.ReLU(),
        nn.Linear(12, 12),
        nn.ReLU(),
        nn.Linear(12, 3),
    ),
    "prepare": nn.Sequential(
        nn.Conv2d(2, 64, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 3)
    ),
}


@pytest.mark.parametrize("phase", sorted(TEMPORARY_PEAKS))
def test_the_allocated_total_is_not_an_arena_that_runs(phase):
    """The measured arena used to be RecordingMicroAllocator's total after allocation; a
    model whose allocation needs temporary space does not run in that many bytes."""
    qg, _ = _quantized(TEMPORARY_PEAKS[phase], size=4 if phase == "planning" else 2)
    model = export(qg)
    allocated = arena_usage(load(model, 1 << 16)).total_bytes
    assert not runs_in(model, allocated)
    estimated = tflm_arena(qg.graph, "reference", 8)
    assert estimated.phase.split()[0] == phase
    assert estimated.min_bytes == _smallest_arena(qg.graph, model) > allocated


def test_an_arena_that_crashes_the_interpreter_is_too_small():
    """The wheel dies with SIGSEGV for some arenas that are too small (always below 512
    B): each try runs in a child process, so that is a "no", not the end of the caller."""
    qg, _ = _quantized(TEMPORARY_PEAKS["prepare"], size=2)
    attempt = try_arena(export(qg), 256)
    assert not attempt.ok
    assert "signal" in attempt.message


def test_unsupported_operator_is_named():
    g = Graph(
        {0: Tensor(0, (1, 4)), 1: Tensor(1, (1, 4))}, [Op("softmax", "probs", [0], [1])], [0], [1]
    )
    qp = QParams(np.float32(0.1), 0)
    with pytest.raises(GraphError, match="operator 'softmax' \\(probs\\)"):
        export(QGraph(g, {0: qp, 1: qp}, [QOp()]))


def test_too_small_arena_grows_until_it_fits():
    wide = nn.Sequential(
        nn.Conv2d(2, 32, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4)
    )
    qg, _ = _quantized(wide, size=16)  # needs > 8 KB: the 16x16x32 activation alone
    interp = load(export(qg), 64)  # raised to the safe minimum, then doubled until it fits
    assert arena_usage(interp).total_bytes > MIN_ARENA_BYTES


@pytest.mark.slow
def test_search_with_tflm_backend_writes_a_deployable_model(cli, tmp_path):
    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "backend=tflm",
        "search.n_trials=2",
        "search.epochs=6",
        "search_space.resolutions=[8]",
        "search_space.widths=[8,16]",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(run / "trials.csv")
    for col in (
        "acc_int8_tflm",
        "arena_bytes_measured",
        "arena_bytes_allocated",
        "arena_bytes_estimated",
        "model_bytes",
        "model_bytes_estimated",
        "tflm_ref_identical",
    ):
        assert col in df.columns, col
    done = df[df.state == "COMPLETE"]
    assert (done.tflm_ref_identical >= 0.99).all()
    assert (done.arena_bytes_estimated == done.arena_bytes_measured).all()
    assert (done.arena_bytes_allocated <= done.arena_bytes_measured).all()
    assert "Static estimate vs measured" in (run / "report.md").read_text()

    best = run / "best"
    info = json.loads((best / "arch.json").read_text())
    model = (best / "model.tflite").read_bytes()
    assert len(model) == info["metrics"]["model_bytes"]
    # the C array holds exactly the flatbuffer
    body = (best / "model_data.cc").read_text()
    assert "alignas(16)" in body
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))
    assert data == model
    # the resolver registers exactly the operators the model uses
    main = (best / "main.cc").read_text()
    adds = re.findall(r"resolver\.(Add\w+)\(\)", main)
    assert len(adds) == len(set(adds)) == len(builtin_ops(model))
    assert f"MicroMutableOpResolver<{len(adds)}>" in main
    arena = int(re.search(r"kArenaSize = (\d+);", main).group(1))
    assert arena >= info["metrics"]["arena_bytes_measured"]
    assert (best / "FIRMWARE.md").is_file()

    # the model runs in the interpreter, in the arena main.cc declares, with the reported
    # test accuracy
    d = nas.create_dataset("digits").load()
    qg_in = json.loads(np.load(best / "model_int8.npz")["header"].tobytes())
    in_scale, in_zp = qg_in["tensors"]["0"]
    x = d.x_test.transpose(0, 2, 3, 1)
    x_q = np.clip(np.round(x / np.float32(in_scale)) + in_zp, -128, 127).astype(np.int8)
    out = invoke_all(load(model, arena), x_q)
    acc = float((out.argmax(1) == d.y_test).mean())
    assert acc == pytest.approx(info["metrics"]["acc_int8_tflm"])


def test_a_try_in_a_child_reports_its_error_and_cannot_hang(monkeypatch):
    from nas_backend_tflm import runtime

    def fails():
        raise RuntimeError("arena too small: boom")

    attempt = runtime._in_child(fails)
    assert not attempt.ok and "boom" in attempt.message, attempt
    monkeypatch.setattr(runtime, "CHILD_TIMEOUT_S", 0.5)
    attempt = runtime._in_child(lambda: time.sleep(30))
    assert not attempt.ok and "no answer within 0.5 s" in attempt.message, attempt
