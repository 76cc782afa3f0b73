"""Backend c_sim: generated C is bit-exact with the int8 reference on the host and on a
Cortex-M4 in QEMU; sizes and instruction counts come from the real toolchain."""

from __future__ import annotations

import os
import shutil

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from nas_backend_c_sim import codegen, sim

from nas.data import calibration_batch
from nas.graph import trace
from nas.int8 import quantize, run_int8
from nas.plugin_manager import get_plugin_manager
from nas.testing import make_candidate


def _tools(tools: tuple[str, ...], packages: str) -> None:
    absent = sim.missing(tools)
    if absent:
        if os.environ.get("NAS_REQUIRE_SIMULATORS") == "1":
            pytest.fail(f"NAS_REQUIRE_SIMULATORS=1 but {', '.join(absent)} not found")
        pytest.skip(f"{', '.join(absent)} not found (apt-get install {packages})")


def arm_tools():
    _tools(sim.ARM_TOOLS, sim.ARM_TOOLS_PACKAGES)


def avr_tools():
    _tools(sim.AVR_TOOLS, sim.AVR_TOOLS_PACKAGES)


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
    from nas_backend_c_sim import bonsai_codegen
    from nas_space_bonsai import cost as bc

    for k, (qb, shape, x_q) in enumerate(bonsai_models):
        model = bonsai_codegen.generate(qb)
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


def test_bonsai_on_atmega328p_in_simavr(tmp_path, bonsai_models):
    from nas_backend_c_sim import bonsai_codegen

    avr_tools()
    qb, shape, x_q = bonsai_models[0]
    model = bonsai_codegen.generate(qb)
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
    assert prof.extra["calibration"]["check_models"] == 2
    assert prof.runtime_flash_bytes > 0 and prof.runtime_ram_bytes > 0
    kinds = ("pointwise_conv2d", "depthwise_conv2d") if hw == "cortex_m4" else ("tanh",)
    assert all(k in prof.latency_lut for k in kinds)
    text = (out / "calibration.md").read_text()
    assert "relative error" in text and "| op kind |" in text


def test_calibrate_refuses_a_core_without_simulator(cli):
    r = cli("calibrate", "+hw=esp32")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Xtensa" in r.stderr and "Traceback" not in r.stderr


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
