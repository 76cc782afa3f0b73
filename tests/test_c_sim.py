"""Backend c_sim: generated C is bit-exact with the int8 reference on the host and on a
Cortex-M4 in QEMU; sizes and instruction counts come from the real toolchain."""

from __future__ import annotations

import shutil

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from conftest import need_tools
from nas_backend_c_sim import CSimConfig, sim
from nas_backend_c_sim.calibrate import pick_space
from torch import nn

from nas import codegen
from nas.backends import CExportable, CSource, c_array
from nas.compression import Candidate
from nas.cost import Cost
from nas.data import Arrays, calibration_batch
from nas.errors import ConfigError
from nas.graph import trace
from nas.hardware import load_profile
from nas.int8 import QParams, quantize, run_int8
from nas.plugin_manager import get_plugin_manager
from nas.testing import make_candidate


def arm_tools():
    need_tools(sim.ARM_TOOLS, sim.ARM_TOOLS_PACKAGES)


def avr_tools():
    need_tools(sim.AVR_TOOLS, sim.AVR_TOOLS_PACKAGES)


def quantized(module, size, seed=0, n=64):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, size, size)).astype(np.float32)
    qg = quantize(trace(module.eval(), (1, 1, size, size), "t"), calibration_batch(x, n, seed))
    return qg, qg.input_params.quantize(x.transpose(0, 2, 3, 1))


def test_host_c_is_bit_exact_on_a_trained_model(tmp_path):
    cand = make_candidate()
    calib = calibration_batch(cand.data.x_train, 256, 0)
    qg = quantize(cand.graph, calib)
    kinds = {op.kind for op in qg.graph.ops}
    assert kinds >= {"conv2d", "depthwise_conv2d", "add", "average_pool2d", "fully_connected"}
    model = codegen.generate(qg)
    codegen.write(model, tmp_path)
    x_q = qg.input_params.quantize(cand.data.x_test.transpose(0, 2, 3, 1))
    got = sim.run_host(tmp_path, x_q, model.output_bytes)
    np.testing.assert_array_equal(got, run_int8(qg, x_q).reshape(len(x_q), -1))


@pytest.mark.parametrize("seed", range(6))
def test_host_c_is_bit_exact_on_random_architectures(tmp_path, seed):
    """Random choices of the MobileNet space (kernels 3-7, strides, expansions, residuals)
    with random weights: every int8 output equal, not just the argmax."""
    space = get_plugin_manager().get("search_space", "mobilenet")()
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed)).ask()
    spec = space.sample(trial)
    torch.manual_seed(seed)
    module = space.build(spec, 1, 10)
    for m in module.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    qg, x_q = quantized(module, space.resolution(spec), seed)
    model = codegen.generate(qg)
    codegen.write(model, tmp_path)
    got = sim.run_host(tmp_path, x_q, model.output_bytes)
    np.testing.assert_array_equal(got, run_int8(qg, x_q).reshape(len(x_q), -1))


@pytest.mark.slow
def test_cortex_m4_in_qemu_is_bit_exact_and_counted(tmp_path):
    arm_tools()
    cand = make_candidate()
    qg = quantize(cand.graph, calibration_batch(cand.data.x_train, 256, 0))
    model = codegen.generate(qg)
    codegen.write(model, tmp_path)
    x_q = qg.input_params.quantize(cand.data.x_test[:3].transpose(0, 2, 3, 1))
    first = sim.run_arm(tmp_path, x_q, model.output_bytes)
    np.testing.assert_array_equal(first.outputs, run_int8(qg, x_q).reshape(3, -1))
    again = sim.run_arm(tmp_path, x_q, model.output_bytes)
    assert again.counts == first.counts  # -icount: deterministic
    macs = sum(op.macs for op in qg.graph.ops)
    assert macs < first.counts[0] < 100 * macs
    assert first.flash_bytes >= qg.weight_bytes()  # the weights are in flash
    assert first.ram_bytes >= model.arena_bytes + first.stack_bytes
    assert 0 < first.stack_bytes < 4096


@pytest.mark.slow
def test_instruction_count_is_exact_for_a_known_loop(tmp_path):
    """The counter reads 40 instructions per SysTick tick: a 2-instruction loop run
    100,000 times must read 200,000."""
    arm_tools()
    (tmp_path / "nas_model.h").write_text(
        "#include <stdint.h>\n#define NAS_INPUT_BYTES 1\n#define NAS_OUTPUT_BYTES 1\n"
        "void nas_model_run(const int8_t *input, int8_t *output);\n"
    )
    (tmp_path / "nas_model.c").write_text(
        '#include "nas_model.h"\n'
        "void nas_model_run(const int8_t *input, int8_t *output) {\n"
        '    register uint32_t n __asm__("r3") = 100000;\n'
        '    __asm__ volatile("1: subs %0, %0, #1\\n bne 1b" : "+r"(n));\n'
        "    output[0] = input[0];\n}\n"
    )
    r = sim.run_arm(tmp_path, np.zeros((1, 1), np.int8), 1)
    assert r.counts == [200_000]


@pytest.mark.slow
def test_search_with_c_sim_backend(cli, tmp_path):
    arm_tools()
    run = tmp_path / "run"
    r = cli(
        "search", "+hw=cortex_m4", "backend=c_sim", "search.n_trials=1", "search.epochs=1",
        "search_space.widths=[8]", "search_space.resolutions=[8]", f"hydra.run.dir={run}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    row = pd.read_csv(run / "trials.csv").iloc[0]
    assert row.state == "COMPLETE" and bool(row.bit_exact) and bool(row.arm_bit_exact)
    assert row.instructions_measured > row.macs
    assert 0 < row.flash_bytes_measured < row.flash_bytes
    assert (run / "best" / "c" / "nas_model.c").is_file()


@pytest.mark.slow
def test_missing_cross_compiler_is_one_clear_line(cli, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcc").symlink_to(shutil.which("gcc"))
    r = cli(
        "search", "+hw=cortex_m4", "backend=c_sim", "search.n_trials=1",
        f"hydra.run.dir={tmp_path / 'run'}", env={"PATH": str(bin_dir)},
    )  # fmt: skip
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "arm-none-eabi-gcc" in lines[0] and "apt-get install" in lines[0]
    assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def bonsai_models():
    """Two trained int8 Bonsai models: multiclass with sparse Z and V, dense W; binary
    (one score) with dense Z, V and theta, sparse W."""
    from nas_dataset_digits import DigitsDataset
    from nas_space_bonsai.model import Bonsai, BonsaiShape, fit_bonsai

    from nas.data import one_vs_rest
    from nas.train import TrainSettings

    digits = DigitsDataset().load()
    out = []
    for density, data in [
        ({"Z": 0.3, "W": 0.5, "V": 0.4, "theta": 0.5}, digits),
        ({"Z": 1.0, "W": 0.2, "V": 1.0, "theta": 1.0}, one_vs_rest(digits, 3)),
    ]:
        shape = BonsaiShape(64, 12, 2, 10 if data is digits else 1, density)
        model = Bonsai(shape, sigma=1.0, path_sigma_end=16.0)
        fit_bonsai(model, data, TrainSettings(3, 32, 0.02, 0.0, 0))
        qb = model.quantize_int8(data.x_train[:256])
        out.append((qb, shape, qb.input.quantize(data.x_test.reshape(len(data.x_test), -1))))
    return out


def test_bonsai_c_is_bit_exact_and_stored_as_the_cost_model_counts(tmp_path, bonsai_models):
    from nas_space_bonsai import cost as bc

    for k, (qb, shape, x_q) in enumerate(bonsai_models):
        model = qb.to_c()  # the space's own C generation, through nas.backends.CExportable
        assert isinstance(qb, CExportable) and model.targets == ("host", "avr")
        assert model.model_bytes == bc.model_bytes(shape)
        assert model.arena_bytes == bc.arena_bytes(shape, stream_input=True)
        assert list(model.ops) == [(o["kind"], o["macs"], o["outputs"]) for o in bc.ops(shape)]
        folder = tmp_path / str(k)
        codegen.write(model, folder)
        got = sim.run_host(folder, x_q, model.output_bytes).view("<i4")
        np.testing.assert_array_equal(got, qb.scores(x_q))
        # the constants the C holds are the bytes the cost model counts
        sizes = {}
        for name in ("z_data", "w_data", "v_data", "t_data", "tanh_table", "z_bias"):
            sizes[name] = int(model.source.split(f" {name}[")[1].split("]")[0])
        groups = {"Z": "z_data", "W": "w_data", "V": "v_data", "theta": "t_data"}
        for group, name in groups.items():
            stored = shape.matrices(group) * bc.matrix_layout(shape, group)[1]
            assert sizes[name] == max(stored, 1), group
        assert sizes["tanh_table"] == 256 and sizes["z_bias"] == shape.proj_dim


@pytest.mark.slow
def test_bonsai_on_atmega328p_in_simavr(tmp_path, bonsai_models):
    avr_tools()
    qb, shape, x_q = bonsai_models[0]
    model = qb.to_c()
    codegen.write(model, tmp_path)
    r = sim.run_avr(tmp_path, x_q[:3], model.output_bytes)
    np.testing.assert_array_equal(r.outputs.view("<i4"), qb.scores(x_q[:3]))
    assert all(10_000 < c < 2_000_000 for c in r.counts)
    assert r.ram_bytes < 2048 and r.flash_bytes < 32 * 1024  # fits the Uno
    # the stack holds the int32 projection and scores, as the cost model counts
    assert r.stack_bytes >= 4 * shape.proj_dim + 4 * shape.num_scores


@pytest.mark.slow
@pytest.mark.parametrize("hw", ["cortex_m4", "arduino_uno"])
def test_calibrate_writes_a_loadable_profile(cli, tmp_path, hw):
    (arm_tools if hw == "cortex_m4" else avr_tools)()
    out = tmp_path / "cal"
    r = cli("calibrate", f"+hw={hw}", "fit=3", "check=2", "max_macs=300000", f"out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    from nas.hardware import load_profile

    prof = load_profile(out / f"{hw}_c.yaml")
    assert prof.runtime == "c" and prof.name == f"{hw}_c"
    assert prof.calibration["check_models"] == 2
    assert prof.runtime_flash_bytes > 0 and prof.runtime_ram_bytes > 0
    kinds = ("pointwise_conv2d", "depthwise_conv2d") if hw == "cortex_m4" else ("tanh",)
    assert all(k in prof.latency_lut for k in kinds)
    text = (out / "calibration.md").read_text()
    assert "relative error" in text and "| op kind |" in text


@pytest.mark.slow
def test_calibrate_refuses_a_core_without_simulator(cli):
    r = cli("calibrate", "+hw=esp32")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Xtensa" in r.stderr and "Traceback" not in r.stderr


def test_calibrate_asks_the_spaces_which_one_runs_on_a_core():
    """No space name is written in calibrate: the built-in spaces' C decides."""
    assert pick_space(load_profile("cortex_m4"), "arm") == "mobilenet"
    assert pick_space(load_profile("arduino_uno"), "avr") == "bonsai"


@pytest.mark.slow
def test_calibrate_refuses_a_space_whose_c_cannot_run_there(cli):
    avr_tools()
    r = cli("calibrate", "+hw=arduino_uno", "space=mobilenet")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "search space 'mobilenet' does not run" in r.stderr


@pytest.mark.slow
def test_bonsai_search_on_the_uno_with_c_sim(cli, tmp_path):
    avr_tools()
    run = tmp_path / "run"
    r = cli(
        "search", "+hw=arduino_uno", "search_space=bonsai", "backend=c_sim",
        "search.n_trials=2", "search.epochs=3", f"hydra.run.dir={run}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(run / "trials.csv")
    assert (df.state == "COMPLETE").all() and df.bit_exact.all() and df.avr_bit_exact.all()
    assert (df.cycles_measured > 0).all() and (df.ram_bytes_measured < 2048).all()
    assert (run / "best" / "c" / "nas_bonsai.h").is_file()


# --------------------------------------------------------------------------- a third party


class QCentroid:
    """A model kind the core and c_sim know nothing of: int32 class scores
    ``W (x_q - zp) + b``, scoring each class by its nearest centroid. It brings its own C
    through `nas.backends.CExportable`, reading its input through ``NAS_RD8`` so it runs
    in every harness (on AVR the input is in flash)."""

    def __init__(self, data: Arrays) -> None:
        x = data.x_train.reshape(len(data.x_train), -1).astype(np.float64)
        centroids = np.stack([x[data.y_train == c].mean(0) for c in range(data.num_classes)])
        scale = float(np.abs(centroids).max()) / 127.0
        self.w = np.round(centroids / scale).astype(np.int8)  # (classes, features)
        self.input = QParams.from_range(0.0, 1.0)
        # nearest centroid: argmax of x.c - |c|^2 / 2, in units of the int8 products
        half_norm = 0.5 * (self.w.astype(np.float64) ** 2).sum(1) * scale / self.input.scale
        self.b = np.round(-half_norm).astype(np.int32)

    def predict(self, x_nchw: np.ndarray) -> np.ndarray:
        return self.c_outputs(self.c_inputs(x_nchw)).argmax(1)

    def save(self, path) -> None:
        np.savez(path, w=self.w, b=self.b)

    def c_inputs(self, x_nchw: np.ndarray) -> np.ndarray:
        return self.input.quantize(x_nchw.reshape(len(x_nchw), -1))

    def c_outputs(self, x_q: np.ndarray) -> np.ndarray:
        acc = (x_q.astype(np.int32) - self.input.zero_point) @ self.w.T.astype(np.int32)
        return (acc + self.b).astype("<i4")

    def to_c(self) -> CSource:
        classes, features = self.w.shape
        header = (
            f"#define CENTROID_CLASSES {classes}\n#define CENTROID_FEATURES {features}\n"
            f"#define CENTROID_ZP ({self.input.zero_point})\n"
        )
        source = (
            '#include "nas_rom.h"\n#include "nas_model.h"\n#include "centroid.h"\n'
            + c_array("int8_t", "w", self.w.T, "NAS_ROM")  # feature-major
            + c_array("int32_t", "b", self.b, "NAS_ROM")
            + "void nas_model_run(const int8_t *input, int8_t *output) {\n"
            "    int32_t s[CENTROID_CLASSES];\n"
            "    for (int l = 0; l < CENTROID_CLASSES; ++l) s[l] = NAS_RD32(&b[l]);\n"
            "    for (int f = 0; f < CENTROID_FEATURES; ++f) {\n"
            "        const int32_t x = (int32_t)(int8_t)NAS_RD8(input + f) - CENTROID_ZP;\n"
            "        for (int l = 0; l < CENTROID_CLASSES; ++l)\n"
            "            s[l] += x * (int8_t)NAS_RD8(&w[f * CENTROID_CLASSES + l]);\n"
            "    }\n"
            "    memcpy(output, s, sizeof s);\n}\n"
        )
        return CSource(
            source,
            input_bytes=features,
            output_bytes=4 * classes,
            arena_bytes=4 * classes,
            headers={"centroid.h": header},
            output_dtype="<i4",
            targets=("host", "arm", "avr"),
            model_bytes=self.w.size + 4 * classes,
        )


@pytest.mark.parametrize(
    ("hw", "simulate"),
    [
        ("cortex_m4", False),
        pytest.param("cortex_m4", True, marks=pytest.mark.slow),  # QEMU
        pytest.param("arduino_uno", True, marks=pytest.mark.slow),  # simavr
    ],
)
def test_a_third_party_model_kind_is_compiled_and_run(hw, simulate):
    if simulate:
        (arm_tools if hw == "cortex_m4" else avr_tools)()
    data = get_plugin_manager().get("dataset", "digits")().load()
    model = QCentroid(data)
    assert isinstance(model, CExportable)
    cand = Candidate("centroid", {}, nn.Identity(), None, data, load_profile(hw), qgraph=model)
    macs = model.w.size
    cost = Cost(0, 0, 0, 0, 0, 0, macs, macs, 0.0, 0.0)
    backend = get_plugin_manager().get("backend", "c_sim")(CSimConfig(simulate, sim_inputs=2))
    metrics = backend.score(cand, cost)
    assert metrics["bit_exact"] and metrics["bit_exact_fraction"] == 1.0
    assert metrics["acc_int8"] == float((model.predict(data.x_val) == data.y_val).mean()) > 0.8
    assert "c/centroid.h" in cand.artifacts and b"CENTROID_ZP" in cand.artifacts["c/centroid.h"]
    if not simulate:
        assert "latency_ms_measured" not in metrics
    elif hw == "cortex_m4":
        assert metrics["arm_bit_exact"] and metrics["instructions_measured"] > macs
    else:
        assert metrics["avr_bit_exact"] and metrics["cycles_measured"] > macs
        assert metrics["flash_bytes_measured"] > model.w.size  # the weights are in flash


def test_a_model_without_c_is_refused_in_one_line():
    cand = make_candidate()
    cand.qgraph = object()  # type: ignore[assignment]
    backend = get_plugin_manager().get("backend", "c_sim")(CSimConfig(simulate=False))
    with pytest.raises(ConfigError, match="cannot generate C for object: the model needs to_c"):
        backend.score(cand, Cost(0, 0, 0, 0, 0, 0, 1, 1, 0.0, 0.0))
