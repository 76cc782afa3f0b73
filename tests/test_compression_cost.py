"""The cost contract of compression methods: predicted before training, used for
feasibility, replaced by the measurement after compression, never below it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from nas_compress_cluster import WeightSharing, kmeans_1d
from nas_compress_huffman import HuffmanCoding
from nas_compress_prune import ChannelPruning
from nas_compress_ptq import PostTrainingQuantization, PtqConfig

from nas import create_search_space
from nas.compression import Plan, order, predict
from nas.testing import SPEC, check_compression_method, check_cost_contract, plan_for

# One MobileNet-like architecture, as `search.enqueue` and as a spec.
ARCH = {**SPEC, "s1_width": 24, "s2_width": 32, "s1_expand": 4, "s2_expand": 4}
PINNED = [
    "search.enqueue=[{" + ",".join(f"{k}:{v}" for k, v in ARCH.items()) + "}]",
    "search.n_trials=1",
    "search_space.stages=2",
]


def _plan(methods) -> tuple[Plan, Plan]:
    torch.manual_seed(0)
    module = create_search_space("mobilenet").build(ARCH, 1, 10)
    plain = plan_for(module)
    return plain, predict(order(methods), plain)


def test_prune_predicts_its_structure_exactly():
    methods = [ChannelPruning(), PostTrainingQuantization()]
    (predicted, measured) = check_cost_contract(methods, candidates=2)[0]
    assert predicted == measured  # the same structure, traced and costed the same way
    plain, plan = _plan(methods)
    assert plan.cost.flash_bytes < plain.cost.flash_bytes
    assert plan.cost.macs < plain.cost.macs


def test_cluster_predicts_its_storage_exactly_and_keeps_the_contract():
    out = check_compression_method(WeightSharing)
    assert out.metrics["cluster_max_values"] <= 16
    methods = [WeightSharing(), PostTrainingQuantization()]
    for predicted, measured in check_cost_contract(methods, candidates=2, seed=1):
        assert predicted == measured


def test_cluster_then_huffman_keeps_the_contract_within_ten_percent():
    methods = order([WeightSharing(), PostTrainingQuantization(), HuffmanCoding()])
    for predicted, measured in check_cost_contract(methods, candidates=2, seed=2):
        assert measured.flash_bytes <= predicted.flash_bytes <= 1.1 * measured.flash_bytes


def test_int4_predicts_flatbuffer_and_arena():
    methods = [PostTrainingQuantization(PtqConfig(weight_bits=4))]
    for predicted, measured in check_cost_contract(methods, candidates=2, seed=3):
        assert predicted == measured
    plain, plan = _plan(methods)
    weights = sum(s.elements for s in plain.stored)
    assert plain.cost.model_bytes - plan.cost.model_bytes == pytest.approx(weights / 2, abs=8)
    assert plan.cost.arena_bytes > plain.cost.arena_bytes  # the unpacked filter's scratch
    # TFLM unpacks every int4 filter on every inference: about 5.5 instructions a weight
    entry = plain.hw.latency_entry("decode_int4")
    unpack = plain.hw.instructions_to_ms(entry.cycles(4 * weights, weights) + 0)
    assert plan.cost.latency_ms - plain.cost.latency_ms >= unpack


def test_kmeans_shares_values_and_training_keeps_them_shared():
    values = torch.randn(500).double().numpy()
    centroids, assign = kmeans_1d(values, 8)
    assert len(centroids) <= 8 and (centroids[1:] > centroids[:-1]).all()
    assert abs(centroids[assign] - values).mean() < abs(values - values.mean()).mean()
    out = check_compression_method(WeightSharing)
    for layer in out.module.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            assert layer.weight.unique().numel() <= 16


def _search(cli, tmp_path, name, *args):
    run = tmp_path / name
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "backend=estimate",
        "search.epochs=1",
        *PINNED,
        *args,
        f"hydra.run.dir={run}",
    )
    return proc, run


@pytest.mark.slow
def test_a_network_that_fits_only_once_pruned_is_trained(cli, tmp_path):
    methods = [ChannelPruning(), PostTrainingQuantization()]
    plain, plan = _plan(methods)
    limit = (plain.cost.flash_bytes + plan.cost.flash_bytes) // 2
    flash = f"hw.flash_bytes={limit}"
    proc, run = _search(cli, tmp_path, "ptq", flash, "compression=[ptq]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = pd.read_csv(run / "trials.csv").iloc[0]
    assert not row.feasible and row.train_s == 0  # rejected before training
    proc, run = _search(
        cli,
        tmp_path,
        "prune",
        flash,
        "compression=[prune,ptq]",
        "compression.prune.finetune_epochs=0",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = pd.read_csv(run / "trials.csv").iloc[0]
    assert row.feasible and row.train_s > 0 and not row.fits_uncompressed
    assert row.flash_bytes_predicted == row.flash_bytes == plan.cost.flash_bytes
    assert row.flash_bytes_uncompressed == plain.cost.flash_bytes > limit
    assert row.sram_bytes_predicted == row.sram_bytes
    report = (run / "report.md").read_text()
    assert "1 of 1 candidates predicted to fit the chip fit only through compression" in report


@pytest.mark.slow
def test_a_candidate_over_the_limit_once_measured_is_recorded_infeasible(tmp_path):
    """A method whose prediction is too low (built-ins bound theirs) lets a candidate be
    trained that does not fit once measured: recorded infeasible with both figures, not
    scored, and the contract check names the method."""
    from faulty_plugins import UnderpredictPlugin, Underpredicts
    from hydra import compose, initialize_config_module

    from nas.config import register_configs
    from nas.plugin_manager import PluginManager, reset_plugin_manager
    from nas.search import run_search

    with pytest.raises(AssertionError, match="measured flash_bytes .* above the prediction"):
        check_cost_contract([Underpredicts(), PostTrainingQuantization()], candidates=1)
    plain, _ = _plan([PostTrainingQuantization()])
    pm = PluginManager()
    pm.register(UnderpredictPlugin, name="underpredict_plugin")
    reset_plugin_manager(pm)
    try:
        register_configs()
        with initialize_config_module("nas.conf", version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    "+hw=cortex_m4",
                    f"hw.flash_bytes={plain.cost.flash_bytes - 5000}",
                    "compression=[ptq,underpredict]",
                    "backend=estimate",
                    "search.epochs=1",
                    *PINNED,
                ],
            )
        frame = run_search(cfg, tmp_path)
    finally:
        reset_plugin_manager(None)
    row = frame.iloc[0]
    assert row.state == "COMPLETE" and not row.feasible and row.train_s > 0
    assert row.reason.startswith("after compression: flash"), row.reason
    assert f"predicted flash {plain.cost.flash_bytes - 10_000} B" in row.reason
    assert row.flash_bytes == plain.cost.flash_bytes > row.flash_bytes_predicted
    assert pd.isna(row.get("acc_int8_test"))  # not scored


@pytest.mark.slow
def test_the_firmware_decoders_decode_what_python_encodes(tmp_path):
    """``nas_huffman_decode.c`` and ``nas_cluster_decode.c`` on a Cortex-M in QEMU give
    back the weights the Python encoders stored (conv, depthwise and dense layouts)."""
    import numpy as np
    from conftest import need_tools
    from nas_backend_c_sim import sim
    from nas_backend_c_sim.decoders import DecodeCase, decoders_on_arm, fnv1a
    from nas_compress_cluster import codebook_table, pack_indices
    from nas_compress_huffman import build_code, encode

    from nas.compression import codebook_indices

    need_tools(sim.ARM_TOOLS, sim.ARM_TOOLS_PACKAGES)
    rng = np.random.default_rng(0)
    cases, want = [], []
    for n in (40, 700):
        w = np.clip(np.round(rng.laplace(0, 15, n)), -127, 127).astype(np.int64)
        code = build_code(w)
        cases.append(DecodeCase("huffman", encode(w, code)[0], code.to_bytes(), n))
        want.append(fnv1a(w))
    for shape, axis, bits in (((6, 3, 3, 4), 0, 3), ((1, 3, 3, 5), 3, 2), ((4, 10), None, 4)):
        w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), shape).astype(np.int8) * 9
        idx, most = codebook_indices(w, axis)
        assert most <= 1 << bits
        books = 1 if axis is None else shape[axis]
        inner = w.size // books if axis == 0 else (1 if axis == 3 else w.size)
        table = codebook_table(w, axis, bits)
        cases.append(
            DecodeCase(
                "cluster", pack_indices(idx.ravel(), bits), table, w.size, bits, inner, books
            )
        )
        want.append(fnv1a(w))
    got = decoders_on_arm(tmp_path, cases, "cortex-m0plus")
    assert got["hashes"] == want
    assert all(n > 0 for n in got["instructions"])


@pytest.mark.slow
def test_encoded_weights_in_a_tflm_search(cli, tmp_path):
    """cluster + huffman end to end with TFLM: the stored model is the measured encoded
    one, the flatbuffer TFLM ran (decoded int8 weights) is ``model_bytes_decoded``."""
    proc, run = _search(
        cli,
        tmp_path,
        "tflm",
        "backend=tflm",
        "compression=[cluster,ptq,huffman]",
        "compression.cluster.finetune_epochs=1",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = pd.read_csv(run / "trials.csv").iloc[0]
    assert row.state == "COMPLETE" and row.feasible and row.acc_int8 > 0.3
    assert row.cluster_layers > 0 and row.cluster_max_values <= 16
    runtime = row.flash_bytes - row.model_bytes  # the profile's runtime allowance
    assert runtime == row.flash_bytes_uncompressed - row.model_bytes_uncompressed
    assert row.model_bytes < row.model_bytes_decoded  # encoded below the int8 flatbuffer
    assert row.flash_bytes <= row.flash_bytes_predicted < row.flash_bytes_uncompressed
    assert row.sram_bytes == row.sram_bytes_predicted > row.sram_bytes_uncompressed
    assert row.latency_ms <= row.latency_ms_predicted
