"""The fixed-point C front-end (`nas.frontend_c`) against the Python MFCC (`nas.frontend`):
int8 features on the host, the Q16 values per frame, a Cortex-M4 build in QEMU, and a
second configuration. Tolerances are what the design guarantees, measured in
``benchmarks/results/frontend_agreement.md``."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import need_tools
from nas_backend_c_sim import sim
from nas_backend_c_sim.frontend import frontend_on_arm

from nas.frontend import MfccConfig, dct_matrix, frames_of, log_mel, mfcc
from nas.frontend_c import (
    MFCC_Q,
    build_host,
    frames_on_host,
    frontend_c,
    frontend_on_host,
    varied_audio,
)
from nas.int8 import QParams

DEFAULT = MfccConfig()
OTHER = MfccConfig(window_ms=40, stride_ms=20, coefficients=13, mel_bands=32)
#: Q16 rounding alone is 2^-17 = 7.6e-6; the FFT's rounding adds up to ~2e-4 in bands far
#: below a full-scale tone (measured: 1.6e-4 at most).
FLOAT_TOL = 4e-4
#: speech-like audio and noise: the Q16 rounding plus a little (measured 1.4e-5 at most)
FLOAT_TOL_SPEECH = 2.5e-5


def gcc():
    need_tools(("gcc",), "gcc")


@pytest.fixture(scope="module")
def clips():
    """35 varied clips (5 of every kind) at the default config."""
    return varied_audio(35, DEFAULT, seed=11)


def reference_q(audio: np.ndarray, cfg: MfccConfig) -> tuple[np.ndarray, QParams]:
    """Python's int8 features and the quantization a model calibrated on them would use."""
    f = mfcc(audio, cfg)
    qp = QParams.from_range(float(f.min()), float(f.max()))
    return qp.quantize(f).reshape(len(audio), -1), qp


def check_int8(c_q: np.ndarray, py_q: np.ndarray) -> None:
    diff = c_q.astype(np.int32) - py_q.astype(np.int32)
    assert np.abs(diff).max() <= 1, "a feature is more than one int8 step off"
    assert (diff == 0).mean() >= 0.999, f"only {(diff == 0).mean():.4%} exactly equal"


def test_host_int8_agrees_with_mfcc(tmp_path, clips):
    gcc()
    audio, kinds = clips
    py_q, qp = reference_q(audio, DEFAULT)
    assert 0.05 < qp.scale < 5  # a realistic scale: MFCC spans tens to ~100
    c_q = frontend_on_host(tmp_path, DEFAULT, qp.scale, qp.zero_point, audio)
    assert c_q.shape == (35, 49 * 10)
    check_int8(c_q, py_q)
    silence = np.array(kinds) == "silence"
    assert (c_q[silence] == qp.zero_point).all()  # MFCC 0 exactly


def test_frames_fixed_point_vs_float64(tmp_path, clips):
    """``nas_frontend_frame``'s Q16 output against the float64 log-mel and DCT."""
    gcc()
    audio, kinds = clips
    exact = (log_mel(audio, DEFAULT) @ dct_matrix(DEFAULT).T).reshape(-1, 10)
    fixed = frames_on_host(tmp_path, DEFAULT, frames_of(audio, DEFAULT).reshape(-1, 480))
    err = np.abs(fixed / 2.0**MFCC_Q - exact).reshape(len(audio), -1).max(axis=1)
    assert err.max() <= FLOAT_TOL
    quiet = np.isin(kinds, ["speech", "noise"])
    assert err[quiet].max() <= FLOAT_TOL_SPEECH
    assert (err[np.array(kinds) == "silence"] == 0).all()
    assert np.abs(exact).max() > 50  # the check covers large coefficients too


def test_other_config_agrees(tmp_path):
    gcc()
    audio, _ = varied_audio(21, OTHER, seed=4)
    py_q, qp = reference_q(audio, OTHER)
    c_q = frontend_on_host(tmp_path / "q", OTHER, qp.scale, qp.zero_point, audio)
    assert c_q.shape == (21, OTHER.frames * 13)
    check_int8(c_q, py_q)
    exact = (log_mel(audio, OTHER) @ dct_matrix(OTHER).T).reshape(-1, 13)
    fixed = frames_on_host(tmp_path / "f", OTHER, frames_of(audio, OTHER).reshape(-1, 640))
    assert np.abs(fixed / 2.0**MFCC_Q - exact).max() <= FLOAT_TOL


QUANT_MAIN = """
#include <stdio.h>
#include "nas_frontend.c"
int main(void) {
    int32_t v;
    while (fread(&v, sizeof v, 1, stdin) == 1) {
        int8_t q = quantize(v);
        fwrite(&q, 1, 1, stdout);
    }
    return 0;
}
"""


@pytest.mark.parametrize("scale,zp", [(0.5, -80), (0.125, 3), (4.0, 127), (0.4816, -81)])
def test_int8_step_rounds_half_to_even(tmp_path, scale, zp):
    """The C's integer quantizer against ``QParams.quantize`` on every Q16 value around
    the ties (power-of-two scales make them exact) and the clamps."""
    gcc()
    for name, text in frontend_c(DEFAULT, scale, zp).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "q.c").write_text(QUANT_MAIN)
    exe = tmp_path / "q"
    subprocess.run(["gcc", "-std=c99", "-O2", "-o", str(exe), "q.c"], cwd=tmp_path, check=True)
    step = scale * 2**MFCC_Q  # Q16 units per int8 step
    ties = (np.arange(-300, 300) + 0.5) * step
    v = np.unique(np.round(ties[:, None] + np.arange(-2, 3)[None, :]).astype(np.int64))
    v = np.concatenate([v, [-(2**31), 2**31 - 1, 0, 1, -1]]).astype("<i4")
    out = subprocess.run([str(exe)], input=v.tobytes(), capture_output=True, check=True).stdout
    c_q = np.frombuffer(out, np.int8)
    py_q = QParams(scale, zp).quantize(v.astype(np.float64) / 2**MFCC_Q)
    exact_scale = np.log2(scale).is_integer()
    if exact_scale:
        assert (c_q == py_q).all()
    else:  # M / 2^T carries 31 bits: only values within 1e-6 of a tie may differ
        x = v.astype(np.float64) / 2**MFCC_Q / scale
        near_tie = np.abs(np.abs(x - np.floor(x)) - 0.5) < 1e-6
        assert (c_q[~near_tie] == py_q[~near_tie]).all()


def test_sanitizers_on_extremes(tmp_path):
    """No undefined behaviour (signed overflow, bad shifts) nor out-of-bounds access, on
    full-scale and silent audio, in both configurations."""
    gcc()
    for i, cfg in enumerate((DEFAULT, OTHER)):
        audio, kinds = varied_audio(14, cfg, seed=2)
        pick = np.isin(kinds, ["extreme", "square", "sweep", "silence"])
        flags = ("-fsanitize=undefined,address", "-fno-sanitize-recover=all", "-g")
        try:
            exe = build_host(tmp_path / str(i), cfg, 0.5, 0, flags)
        except RuntimeError as e:
            if "asan" in str(e) or "ubsan" in str(e):
                pytest.skip("gcc's sanitizer libraries are not installed")
            raise
        out = subprocess.run(
            [str(exe)], input=audio[pick].astype("<i2").tobytes(), capture_output=True
        )
        assert out.returncode == 0, out.stderr.decode()[-1000:]
        assert len(out.stdout) == pick.sum() * cfg.frames * cfg.coefficients


def test_bad_parameters():
    with pytest.raises(ValueError, match="input_scale"):
        frontend_c(DEFAULT, 0.0, 0)
    with pytest.raises(ValueError, match="zero_point"):
        frontend_c(DEFAULT, 0.5, 200)


def test_builds_for_avr_with_16_bit_int(tmp_path):
    """Portable C99: ``int`` is 16 bits on AVR, and the C still compiles warning-free."""
    need_tools(("avr-gcc",), "gcc-avr avr-libc")
    for name, text in frontend_c(DEFAULT, 0.5, 0).items():
        (tmp_path / name).write_text(text)
    subprocess.run(
        ["avr-gcc", "-mmcu=atmega328p", "-std=c99", "-Os", "-Wall", "-Wextra", "-Werror",
         "-pedantic", "-c", "nas_frontend.c"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip


@pytest.mark.slow
def test_cortex_m4_matches_host(tmp_path, clips):
    """The Cortex-M4 build in QEMU gives the host's bytes; its figures are plausible."""
    need_tools(sim.ARM_TOOLS, sim.ARM_TOOLS_PACKAGES)
    audio, kinds = clips
    pick = [kinds.index(k) for k in ("speech", "sweep", "extreme", "silence")]
    host = frontend_on_host(tmp_path / "host", DEFAULT, 0.48, -81, audio[pick])
    r = frontend_on_arm(tmp_path / "m4", DEFAULT, 0.48, -81, audio[pick])
    assert (r["features"] == host).all()
    one = frontend_on_arm(tmp_path / "one", DEFAULT, 0.48, -81, audio[pick[0]])
    assert one["features"].shape == (490,) and (one["features"] == host[0]).all()
    tables = 2 * 480 + 4 * 129 + 8 * 32 + 4 * 10 * 40  # window, twiddles, log, DCT
    assert tables < r["frontend_flash_bytes"] < tables + 6000
    assert 49 * 512 * 9 < r["frontend_instructions"] < 10_000_000
    assert max(r["instructions_per_clip"]) == r["frontend_instructions"]
    assert 8 * 257 <= r["frontend_static_ram_bytes"] <= 8 * 257 + 64  # the FFT buffer
    assert 0 < r["frontend_stack_bytes"] < 2048
    assert r["frontend_sram_bytes"] == (
        r["frontend_static_ram_bytes"] + 490 + r["frontend_stack_bytes"]
    )


@pytest.mark.slow
def test_cortex_m0plus_code_matches_host(tmp_path, clips):
    """Built for the FPU-less Cortex-M0+ (ARMv6-M code, run on QEMU's Cortex-M4)."""
    need_tools(sim.ARM_TOOLS, sim.ARM_TOOLS_PACKAGES)
    audio, kinds = clips
    pick = [kinds.index(k) for k in ("speech", "square")]
    host = frontend_on_host(tmp_path / "host", OTHER, 0.5, -70, audio[pick])
    r = frontend_on_arm(tmp_path / "m0", OTHER, 0.5, -70, audio[pick], mcpu="cortex-m0plus")
    assert (r["features"] == host).all()
