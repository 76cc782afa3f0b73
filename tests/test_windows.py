"""Sensor windows ((N, T, C) arrays): every space builds them as a T x 1 input with k x 1
kernels, and the chip's kernels (TFLite Micro, the generated C) compute what the int8
reference does on them; a search on an .npz of windows ends in firmware that runs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import optuna
import pytest
import torch
from conftest import need_tools, random_bn, run_firmware
from nas_backend_c_sim import sim
from nas_backend_tflm.runtime import invoke_all, load, min_arena_bytes
from nas_dataset_arrays import ArraysConfig, ArraysDataset
from torch import nn

from nas import codegen
from nas.cost import tflm_arena
from nas.data import WINDOWS, Arrays, calibration_batch
from nas.errors import ConfigError
from nas.graph import Graph
from nas.int8 import quantize, run_int8
from nas.plugin_manager import get_plugin_manager
from nas.spaces import BaseSearchSpace, build_model, check_kind
from nas.synthetic import MOTIONS, motion_windows
from nas.tflite import export

T, C = 40, 3


def _spec(space_name: str, seed: int, **fixed) -> tuple[BaseSearchSpace, dict]:
    cls = get_plugin_manager().get("search_space", space_name)
    space = cls(cls.Config(resolutions=[T, 24]))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed)).ask()
    return space, {**space.sample(trial), **fixed}


def _windows_graph(space: BaseSearchSpace, spec: dict, seed: int) -> tuple[Graph, tuple]:
    torch.manual_seed(seed)
    module, shape = build_model(space, spec, C, len(MOTIONS), WINDOWS)
    graph = space.trace(random_bn(module), shape, "window")
    assert graph is not None
    return graph, shape


CASES = [("mobilenet", s, {}) for s in range(4)] + [
    ("reference", 0, {"family": f}) for f in ("dscnn", "mobilenet_v1", "cnn", "mlp")
]


@pytest.mark.parametrize(("space_name", "seed", "fixed"), CASES)
def test_windows_are_a_t_by_1_input_with_k_by_1_kernels(space_name, seed, fixed):
    space, spec = _spec(space_name, seed, **fixed)
    graph, shape = _windows_graph(space, spec, seed)
    t = space.resolution(spec)
    assert shape == (1, C, t, 1) and graph.input_shape == (1, t, 1, C)
    for op in graph.ops:
        assert all(
            graph.tensors[o].shape[2] == 1 for o in op.outputs if len(graph.tensors[o].shape) == 4
        )
        if op.kind in ("conv2d", "depthwise_conv2d", "average_pool2d"):
            assert op.kernel[1] == 1, (op.name, op.kernel)
    # a k x 1 kernel holds k weights per input channel, not k x k
    convs = [op for op in graph.ops if op.kind == "depthwise_conv2d"]
    for op in convs:
        assert op.weight is not None and op.weight.shape[2] == 1


#: Each space's image networks before sensor windows and feature maps existed (commit
#: d65b7c4): a hash of the module (kernels, strides, paddings) and its parameter shapes,
#: for the random architectures of `_arch_hash`. A stored study's trials must rebuild as
#: they were trained.
IMAGE_NETWORKS = {
    "bonsai-0": "81d6e629fca2bae7",
    "bonsai-1": "0fa40614df613116",
    "bonsai-2": "4e6721c9d1476662",
    "bonsai-3": "39238e765fd86480",
    "bonsai-4": "684893c540af75e8",
    "bonsai-5": "6ef0135dc9e94a3e",
    "mobilenet-0": "0925211d100b3efd",
    "mobilenet-1": "4e3055d6dee71e2e",
    "mobilenet-2": "5f87a3b74c14c039",
    "mobilenet-3": "7caf6ea602200081",
    "mobilenet-4": "d2da9817ddbb1607",
    "mobilenet-5": "5e0b4a5d83bcc4da",
    "reference-0": "2f129840a4a25ae0",
    "reference-1": "a6867f1332985e1c",
    "reference-2": "bffb693df7f8a0aa",
    "reference-3": "1bc90757974f8881",
    "reference-4": "26858762e21f8e0e",
    "reference-5": "54de7a29d1503e75",
}


def _arch_hash(space_name: str, seed: int) -> str:
    cls = get_plugin_manager().get("search_space", space_name)
    space = cls()
    spec = space.sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed)).ask())
    torch.manual_seed(seed)
    module, shape = build_model(space, spec, 1, 10, "images")
    assert shape == (1, 1, space.resolution(spec), space.resolution(spec))
    desc = [str(module), [(k, list(v.shape)) for k, v in module.state_dict().items()]]
    return hashlib.sha1(json.dumps(desc).encode()).hexdigest()[:16]


@pytest.mark.parametrize("key", sorted(IMAGE_NETWORKS))
def test_images_build_as_before(key):
    space_name, seed = key.rsplit("-", 1)
    assert _arch_hash(space_name, int(seed)) == IMAGE_NETWORKS[key]


@pytest.mark.parametrize(("space_name", "seed", "fixed"), CASES)
def test_tflm_and_the_generated_c_equal_the_int8_reference_on_windows(
    tmp_path, space_name, seed, fixed
):
    need_tools(("gcc",), "gcc")
    space, spec = _spec(space_name, seed, **fixed)
    graph, shape = _windows_graph(space, spec, seed)
    x = np.random.default_rng(seed).normal(0, 0.6, (48, C, shape[2], 1)).astype(np.float32)
    qg = quantize(graph, calibration_batch(x, 32, seed))
    x_q = qg.input_params.quantize(x.transpose(0, 2, 3, 1))
    ref = run_int8(qg, x_q).reshape(len(x), -1)
    model = export(qg)
    smallest = min_arena_bytes(model, guess=tflm_arena(graph, "reference", 8).min_bytes)
    assert tflm_arena(graph, "reference", 8).min_bytes == smallest, spec
    got = invoke_all(load(model, 1 << 20), x_q).reshape(len(x), -1)
    diff = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    assert diff.max() <= 1 and (diff.max(axis=1) == 0).mean() >= 0.95, spec
    src = codegen.generate(qg)
    codegen.write(src, tmp_path)
    np.testing.assert_array_equal(sim.run_host(tmp_path, x_q, src.output_bytes), ref)


def test_bonsai_flattens_a_window():
    space, spec = _spec("bonsai", 0)
    module, shape = build_model(space, spec, C, 4, WINDOWS)
    assert module.shape.in_features == C * space.resolution(spec) == shape[1] * shape[2]


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return ArraysDataset(ArraysConfig(path=str(path))).load()


def test_windows_load_from_an_npz_and_resample_along_time(tmp_path):
    x, y = motion_windows(80, length=T, seed=1)
    data = _npz(tmp_path, x_train=x, y_train=y, class_names=np.array(MOTIONS))
    assert data.class_names == MOTIONS
    assert data.kind == WINDOWS and data.x_train.shape[1:] == (C, T, 1)
    assert data.in_channels == C and data.resolution == T and data.raw_scale == 1.0
    assert "40 samples x 3 channels" in data.raw_source
    half = data.resized(T // 2)
    assert half.x_train.shape[1:] == (C, T // 2, 1)
    # linear along time: halving averages neighbouring samples
    np.testing.assert_allclose(
        half.x_train[..., 0], (data.x_train[:, :, 0::2, 0] + data.x_train[:, :, 1::2, 0]) / 2,
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    ints = _npz(tmp_path, x_train=np.round(x * 1000).astype(np.int16), y_train=y)
    assert ints.kind == WINDOWS and ints.x_train.dtype == np.float32 and ints.raw_scale == 1.0


@pytest.mark.parametrize(
    ("x", "needles"),
    [
        (np.zeros((12, 1, 3)), ["windows of 1 sample", "2 samples or more"]),
        (np.zeros((12, 8, 0)), ["empty axis"]),
        (np.zeros((12, 40)), ["(N, H, W, C) images or", "(N, T, C) windows"]),
        (np.full((12, 8, 3), np.inf), ["NaN or infinite"]),
        (np.zeros((12, 28, 28), np.uint8), ["looks like gray images", "(N, H, W, 1)"]),
    ],
)
def test_wrong_windows_are_one_line(tmp_path, x, needles):
    with pytest.raises(ConfigError) as exc:
        _npz(tmp_path, x_train=x, y_train=np.arange(12) % 3)
    text = str(exc.value)
    assert "\n" not in text and str(tmp_path / "data.npz") in text
    for needle in needles:
        assert needle in text, text


def test_class_names_must_name_every_class(tmp_path):
    x, y = motion_windows(24, length=8)
    with pytest.raises(ConfigError, match="class_names must be 4 strings"):
        _npz(tmp_path, x_train=x, y_train=y, class_names=np.array(["a", "b"]))


def test_a_space_that_cannot_take_windows_says_so():
    class SquareOnly(BaseSearchSpace):
        name = "square_only"

        def sample(self, trial):
            return {}

        def build(self, spec, in_channels, num_classes):
            return nn.Identity()

        def resolution(self, spec):
            return 8

    check_kind(SquareOnly, "images")
    with pytest.raises(ConfigError, match="'square_only' takes square images only"):
        check_kind(SquareOnly, WINDOWS)
    check_kind(get_plugin_manager().get("search_space", "mobilenet"), WINDOWS)


@pytest.mark.slow
def test_search_on_windows_ends_in_firmware_that_runs_in_qemu(cli, tmp_path):
    need_tools(sim.ARM_TOOLS, sim.ARM_TOOLS_PACKAGES)
    x, y = motion_windows(160, length=T, seed=0)
    np.savez(tmp_path / "motion.npz", x_train=x, y_train=y)
    run = tmp_path / "run"
    proc = cli(
        "search", "+hw=cortex_m4", "dataset=arrays", f"dataset.path={tmp_path / 'motion.npz'}",
        "search.n_trials=2", "search.epochs=2", "search_space.resolutions=[20]",
        "backend=tflm", f"hydra.run.dir={run}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((run / "best" / "arch.json").read_text())
    contract = info["input"]
    assert contract["kind"] == WINDOWS and contract["raw_shape"] == [T, 1, C]
    assert contract["model_shape"] == [20, 1, C] and "along time" in contract["resize"]
    assert info["input_kind"] == WINDOWS
    run_firmware(run / "best" / "firmware")
    # the supernet strategy on the same windows: its subnets inherit k x 1 kernels
    sn = cli(
        "search", "+hw=cortex_m4", "dataset=arrays", f"dataset.path={tmp_path / 'motion.npz'}",
        "search.strategy=supernet", "search.supernet.epochs=1", "search.n_trials=6",
        "search_space.resolutions=[20]", "backend=estimate", f"hydra.run.dir={tmp_path / 'sn'}",
    )  # fmt: skip
    assert sn.returncode == 0, sn.stderr[-3000:]
    assert (
        json.loads((tmp_path / "sn" / "best" / "arch.json").read_text())["input"]["kind"]
        == WINDOWS
    )


def test_arrays_kind_defaults_to_images():
    x = np.zeros((4, 1, 8, 8), np.float32)
    y = np.arange(4) % 2
    data = Arrays(x, y, x, y, x, y, num_classes=2)
    assert data.kind == "images" and data.resized(4).x_train.shape == (4, 1, 4, 4)
