"""The Bonsai space: cost model against hand-computed sizes, exact sparsity after
training, int8 inference, and searches from the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from nas_space_bonsai import BonsaiSearchSpace
from nas_space_bonsai import cost as bc
from nas_space_bonsai.model import Bonsai, BonsaiShape, fit_bonsai, top_k_mask

from nas import report
from nas.data import calibration_batch, one_vs_rest
from nas.errors import ConfigError
from nas.hardware import LatencyEntry, load_profile
from nas.int8 import accuracy_int8
from nas.train import TrainSettings, accuracy

DENSITY = {"Z": 0.25, "W": 0.2, "V": 1.0, "theta": 0.5}
SHAPE = BonsaiShape(in_features=64, proj_dim=8, depth=1, num_scores=10, density=DENSITY)


def test_sizes_match_hand_computation():
    # Z 8x64, 128 kept: sparse 128 values + 128 indices + 64 column counts = 320 < 512.
    assert bc.matrix_layout(SHAPE, "Z") == ("sparse", 320)
    # W 10x8, 16 kept: 16 + 16 + 10 row counts = 42 < 80.
    assert bc.matrix_layout(SHAPE, "W") == ("sparse", 42)
    # V dense 10x8 = 80; theta 1x8 with 4 kept: 4 + 4 + 1 = 9 > 8, so dense.
    assert bc.matrix_layout(SHAPE, "V") == ("dense", 80)
    assert bc.matrix_layout(SHAPE, "theta") == ("dense", 8)
    # 3 nodes, 1 internal: 320 + 3*42 + 3*80 + 8, bias 4*8, multipliers 5 + 3*2*5, table 256.
    assert bc.model_bytes(SHAPE) == 320 + 126 + 240 + 8 + 32 + 35 + 256 == 1017
    # int32 projection (32) + int32 scores (40) + one streamed input byte, or all 64.
    assert bc.arena_bytes(SHAPE, stream_input=True) == 73
    assert bc.arena_bytes(SHAPE, stream_input=False) == 136
    # MACs on a path: Z 128 + 2 levels x (W 16 + V 80 + 10 products) + theta 8.
    assert sum(o["macs"] for o in bc.ops(SHAPE)) == 128 + 2 * 106 + 8 == 348
    assert bc.stored_params(SHAPE) == 8 + 128 + 3 * 16 + 3 * 80 + 4


def test_latency_from_the_lookup_table():
    hw = load_profile("arduino_uno")
    lut = {
        "fully_connected": LatencyEntry(24.0, 300.0, 200.0),
        "sparse_fully_connected": LatencyEntry(30.0, 300.0, 200.0),
        "sparse_projection": LatencyEntry(28.0, 310.0, 210.0),
        "projection": LatencyEntry(1000.0, 0.0, 0.0),  # Z is sparse here: unused
        "tanh": LatencyEntry(12.0, 10.0, 0.0),
        "stream_input": LatencyEntry(0.0, 7.0, 0.0),
    }
    hw = type(hw)(**{**hw.__dict__, "latency_lut": lut, "cycles_per_instruction": 1.0})
    project = 7 * 64 + 28 * 128 + 310 * 8 + 210  # 64 input features read, then sparse Z
    level = (30 * 16 + 300 * 10 + 200) + (24 * 80 + 300 * 10 + 200) + (12 * 10 + 10 * 10)
    theta = 24 * 8 + 300 * 1 + 200
    cost = bc.estimate(SHAPE, hw)
    assert cost.latency_ms == pytest.approx((project + 2 * level + theta) / 16e6 * 1e3)
    assert cost.flash_bytes == 1017 + hw.runtime_flash_bytes
    assert cost.sram_bytes == 73 + hw.runtime_ram_bytes
    assert cost.arena_tail_bytes == 0


def test_top_k_keeps_exactly_k_even_with_ties():
    w = torch.ones(3, 4, 5)
    mask = top_k_mask(w, 7)
    assert mask.reshape(3, -1).sum(1).tolist() == [7, 7, 7]


@pytest.fixture(scope="module")
def digits():
    from nas_dataset_digits import DigitsDataset

    return DigitsDataset().load()


@pytest.fixture(scope="module")
def trained(digits):
    shape = BonsaiShape(64, 12, 2, 10, {"Z": 0.3, "W": 0.5, "V": 0.4, "theta": 0.5})
    model = Bonsai(shape, sigma=1.0, path_sigma_end=16.0)
    fit_bonsai(model, digits, TrainSettings(12, 32, 0.02, 0.0, 0))
    return model


def test_training_meets_the_sparsity_targets_exactly(trained):
    shape = trained.shape
    for group, counts in trained.nonzeros().items():
        assert counts == [shape.nnz(group)] * shape.matrices(group), group
        values = trained.params(group).detach()[: shape.matrices(group)]
        per_matrix = (values != 0).reshape(len(values), -1).sum(1)
        assert (per_matrix <= shape.nnz(group)).all(), group
    # What the int8 model stores is that support, so the cost model's sizes hold.
    q = trained.quantize_int8(np.zeros((4, 1, 8, 8), np.float32))
    assert int(q.support["Z"].sum()) == shape.nnz("Z")
    assert (q.W[~q.support["W"].astype(bool)] == 0).all()


def test_int8_model_knows_its_shape_and_brings_its_c(trained):
    q = trained.quantize_int8(np.zeros((4, 1, 8, 8), np.float32))
    shape = q.shape  # read back from the stored support, not from the float model
    for group in ("Z", "W", "V", "theta"):
        assert shape.nnz(group) == trained.shape.nnz(group), group
        assert shape.matrices(group) == trained.shape.matrices(group), group
    assert bc.model_bytes(shape) == bc.model_bytes(trained.shape)
    src = q.to_c()
    assert src.model_bytes == bc.model_bytes(trained.shape)
    assert src.output_dtype == "<i4" and src.output_bytes == 4 * shape.num_scores
    assert "nas_bonsai.h" in src.headers and '#include "nas_bonsai.h"' in src.source
    # one mark after the projection and after each level: every op is in one phase
    assert src.marks == (2, 4, 4, 3) and sum(src.marks) == len(bc.ops(trained.shape))


def test_random_model_has_the_sampled_sparsity():
    space = BonsaiSearchSpace()
    spec = {
        "resolution": 8, "proj_dim": 6, "depth": 1, "z_density": 0.3, "w_density": 0.5,
        "v_density": 1.0, "theta_density": 0.5, "sigma": 1.0, "path_sigma_end": 16.0,
    }  # fmt: skip
    module = space.random_model(spec, 1, 10)
    assert not module.training
    for group, counts in module.nonzeros().items():
        assert counts == [module.shape.nnz(group)] * module.shape.matrices(group), group


def test_int8_model_follows_the_float_model(trained, digits):
    calib = calibration_batch(digits.x_train, 256, 0).transpose(0, 3, 1, 2)
    q = trained.quantize_int8(calib)
    float_acc = accuracy(trained, digits.x_val, digits.y_val)
    int8_acc = accuracy_int8(q, digits.x_val, digits.y_val)
    assert float_acc > 0.85
    assert int8_acc > float_acc - 0.03
    with torch.no_grad():
        float_pred = trained(torch.from_numpy(digits.x_val)).argmax(1).numpy()
    assert (q.predict(digits.x_val) == float_pred).mean() > 0.95
    # Scores are int32 and the table lookup stays in range.
    scores = q.scores(q.input.quantize(digits.x_val.reshape(len(digits.x_val), -1)))
    assert np.abs(scores).max() < 2**31


def test_one_vs_rest_and_binary_tree(digits):
    binary = one_vs_rest(digits, 3)
    assert binary.num_classes == 2 and set(np.unique(binary.y_train)) == {0, 1}
    assert binary.y_val.sum() == (digits.y_val == 3).sum()
    with pytest.raises(ConfigError, match="positive_class=10"):
        one_vs_rest(digits, 10)
    space = BonsaiSearchSpace()
    spec = {
        "resolution": 8,
        "proj_dim": 6,
        "depth": 1,
        "z_density": 0.3,
        "w_density": 1.0,
        "v_density": 1.0,
        "theta_density": 1.0,
        "sigma": 1.0,
        "path_sigma_end": 16.0,
    }
    model = space.build(spec, 1, 2)
    assert model.shape.num_scores == 1
    space.fit(model, binary, TrainSettings(9, 32, 0.02, 0.0, 0))
    q = model.quantize_int8(calibration_batch(binary.x_train, 256, 0).transpose(0, 3, 1, 2))
    assert accuracy_int8(q, binary.x_val, binary.y_val) > 0.95


@pytest.mark.slow
def test_search_on_arduino_uno_picks_a_backend_that_runs_bonsai(cli, tmp_path):
    run = tmp_path / "uno"
    args = (
        "search",
        "+hw=arduino_uno",
        "search_space=bonsai",
        "search.n_trials=3",
        "search.epochs=6",
        f"hydra.run.dir={run}",
    )
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "backend: estimate" in r.stderr
    df = pd.read_csv(run / "trials.csv")
    done = df[df["state"] == "COMPLETE"]
    assert len(done) == 3
    assert (done["sram_bytes"] <= 2048).all() and (done["flash_bytes"] <= 32256).all()
    assert done["acc_int8"].between(0.0, 1.0).all() and done["acc_int8"].max() > 0.5
    assert (run / "best" / "model_int8.npz").exists()


@pytest.mark.slow
def test_mismatched_backend_or_compression_is_refused(cli, tmp_path):
    for extra, words in (
        ("backend=tflm", "runs on backend estimate or c_sim, not 'tflm'"),
        ("compression=[prune,ptq]", "'prune' cannot compress its models"),
    ):
        r = cli(
            "search",
            "+hw=arduino_uno",
            "search_space=bonsai",
            extra,
            f"hydra.run.dir={tmp_path / 'x'}",
        )
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_both_spaces_side_by_side_in_one_report(cli, tmp_path):
    sweep = tmp_path / "sweep"
    r = cli(
        "search",
        "-m",
        "+hw=cortex_m4",
        "search_space=mobilenet,bonsai",
        "backend=estimate",
        "search.n_trials=2",
        "search.epochs=2",
        f"hydra.sweep.dir={sweep}",
    )
    assert r.returncode == 0, r.stderr
    df = report.load([sweep])
    assert set(df["search_space"]) == {"mobilenet", "bonsai"}
    out = tmp_path / "report"
    r = cli("report", str(sweep), "--out", str(out))
    assert r.returncode == 0, r.stderr
    text = (out / "report.md").read_text()
    assert "bonsai" in text and "mobilenet" in text
