"""From `best/` to a chip: the input contract's C equals the Python preprocessing, and
the firmware project a search writes builds and runs in QEMU / simavr as it is."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import need_tools, run_firmware
from nas_backend_c_sim import sim
from nas_dataset_digits import DigitsDataset

from nas import firmware
from nas.backends import CSource
from nas.data import WINDOWS, Arrays
from nas.int8 import QParams
from nas.synthetic import motion_windows


def _c_preprocess(
    folder: Path, data: Arrays, size: int, layout: str
) -> tuple[np.ndarray, QParams]:
    """Every test image through ``nas_preprocess`` compiled with gcc, and the int8 params."""
    at = data.resized(size)
    qp = QParams.from_range(at.x_train.min(), at.x_train.max())
    n_in = math.prod(at.input_shape)
    src = CSource("", n_in, 10, 0, input_scale=qp.scale, input_zero_point=qp.zero_point,
                  input_layout=layout)  # fmt: skip
    contract = firmware.input_contract(data, size, src)
    raw = firmware.raw_values(data.x_test, data.raw_scale).transpose(0, 2, 3, 1)
    files = firmware.io_c(contract, src)
    return firmware.preprocess_on_host(folder, files, raw, n_in), qp


def _python_preprocess(data: Arrays, size: int, qp: QParams, layout: str) -> np.ndarray:
    at = data.resized(size)
    x = at.x_test.transpose(0, 2, 3, 1) if layout == "HWC" else at.x_test
    return qp.quantize(x).reshape(len(x), -1)


@pytest.mark.parametrize("size", [8, 12, 16, 20, 28])
def test_nas_preprocess_equals_the_python_preprocessing_on_every_digits_test_image(tmp_path, size):
    need_tools(("gcc",), "gcc")
    data = DigitsDataset().load()
    got, qp = _c_preprocess(tmp_path / "c", data, size, "HWC")
    want = _python_preprocess(data, size, qp, "HWC")
    assert len(got) == len(data.y_test) > 200
    assert (got == want).all(), f"{(got != want).sum()} of {got.size} bytes differ"


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_nas_preprocess_handles_colour_and_float_sensor_values(tmp_path, layout):
    need_tools(("gcc",), "gcc")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 3, 10, 10)).astype(np.float32) * np.float32(1 / 255)
    y = np.arange(40) % 4
    data = Arrays(rgb, y, rgb, y, rgb, y, num_classes=4, raw_scale=float(np.float32(1 / 255)))
    got, qp = _c_preprocess(tmp_path / "rgb", data, 14, layout)
    assert (got == _python_preprocess(data, 14, qp, layout)).all()
    # values that are no bytes (a sensor's floats) stay floats
    accel = rng.normal(0.5, 0.2, (30, 2, 6, 6)).astype(np.float32)
    data = Arrays(accel, y[:30], accel, y[:30], accel, y[:30], num_classes=4)
    assert firmware.raw_values(data.x_test, data.raw_scale).dtype == np.float32
    got, qp = _c_preprocess(tmp_path / "accel", data, 9, layout)
    assert (got == _python_preprocess(data, 9, qp, layout)).all()


@pytest.mark.parametrize("size", [13, 40, 64])
def test_nas_preprocess_resamples_sensor_windows_as_python_does(tmp_path, size):
    need_tools(("gcc",), "gcc")
    x, y = motion_windows(60, length=40, seed=2)
    w = np.ascontiguousarray(x.transpose(0, 2, 1)[..., None])  # N, C, T, 1
    data = Arrays(w, y, w, y, w, y, num_classes=4, kind=WINDOWS)
    got, qp = _c_preprocess(tmp_path / "c", data, size, "HWC")
    assert got.shape == (60, size * 3)
    assert (got == _python_preprocess(data, size, qp, "HWC")).all()


@pytest.mark.slow
def test_best_firmware_builds_and_runs_in_qemu_with_the_python_prediction(cli, tmp_path):
    need_tools(("make", *sim.ARM_TOOLS), "make " + sim.ARM_TOOLS_PACKAGES)
    run = tmp_path / "run"
    proc = cli(
        "search", "+hw=cortex_m4", "search.n_trials=2", "search.epochs=1",
        "search_space.resolutions=[12]", "search_space.widths=[8]",
        "search_space.expansions=[1]", f"hydra.run.dir={run}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"make -C {run / 'best' / 'firmware'} run" in proc.stdout
    info = json.loads((run / "best" / "arch.json").read_text())
    contract = info["input"]
    assert contract["raw_shape"] == [8, 8, 1] and contract["model_shape"] == [12, 12, 1]
    assert contract["raw_scale"] == 1 / 16 and contract["resize"] == firmware.RESIZE
    assert "Input contract" in (run / "best" / "FIRMWARE.md").read_text()
    assert "nas_preprocess(nas_sample_raw, input)" in (run / "best" / "main.cc").read_text()
    run_firmware(run / "best" / "firmware")


@pytest.mark.slow
def test_bonsai_firmware_builds_and_runs_on_the_uno_in_simavr(cli, tmp_path):
    need_tools(("make", *sim.AVR_TOOLS), "make " + sim.AVR_TOOLS_PACKAGES)
    run = tmp_path / "uno"
    proc = cli(
        "search", "+hw=arduino_uno", "search_space=bonsai", "search.n_trials=2",
        "search.epochs=2", "backend=estimate", f"hydra.run.dir={run}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "backend=c_sim" in proc.stdout  # estimate compiled nothing: say who does
    text = run_firmware(run / "best" / "firmware", arm=False)
    assert "avr-size" in text
