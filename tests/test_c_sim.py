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


def arm_tools():
    absent = sim.missing(sim.ARM_TOOLS)
    if absent:
        if os.environ.get("NAS_REQUIRE_SIMULATORS") == "1":
            pytest.fail(f"NAS_REQUIRE_SIMULATORS=1 but {', '.join(absent)} not found")
        pytest.skip(f"{', '.join(absent)} not found (apt-get install {sim.ARM_TOOLS_PACKAGES})")


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
    assert again.instructions == first.instructions  # -icount: deterministic
    macs = sum(op.macs for op in qg.graph.ops)
    assert macs < first.instructions[0] < 100 * macs
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
    assert r.instructions == [200_000]


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
