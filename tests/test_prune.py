"""Structured pruning removes channels: graph, MACs, flash and SRAM shrink; still accurate."""

from __future__ import annotations

import pandas as pd
import pytest
from nas_compress_prune import ChannelPruning, PruneConfig

from nas.cost import estimate
from nas.testing import check_compression_method, make_candidate


def test_pruning_shrinks_the_graph_and_its_cost():
    before = make_candidate()
    cost_before = estimate(before.graph, before.hw)
    out = check_compression_method(ChannelPruning)  # also: graph == module, still accurate
    cost_after = estimate(out.graph, out.hw)
    m = out.metrics
    assert m["prune_channels_removed"] > 0
    assert m["prune_macs_after"] < m["prune_macs_before"] == before.graph.macs
    assert cost_after.macs < cost_before.macs
    assert cost_after.flash_bytes < cost_before.flash_bytes
    assert cost_after.sram_bytes < cost_before.sram_bytes
    hidden = [op.out_channels for op in out.graph.ops if op.kind == "depthwise_conv2d"]
    # hidden channels: block 1 expands 8 -> 16, block 2 16 -> 32; half of each removed
    assert hidden == [8, 16]


def test_amount_zero_changes_nothing():
    out = ChannelPruning(PruneConfig(amount=0.0)).apply(make_candidate())
    assert out.metrics["prune_channels_removed"] == 0
    assert out.metrics["prune_macs_after"] == out.metrics["prune_macs_before"]


@pytest.mark.slow
def test_search_records_pruned_cost(cli, tmp_path):
    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "compression=[ptq,prune]",
        "search.n_trials=2",
        "search.epochs=2",
        "compression.prune.finetune_epochs=1",
        "search_space.resolutions=[8]",
        "search_space.expansions=[4]",
        "search_space.widths=[16]",
        "backend=estimate",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(run / "trials.csv")
    done = df[df.state == "COMPLETE"]
    assert len(done) == 2
    assert (done.macs < done.macs_uncompressed).all()
    assert (done.flash_bytes < done.flash_bytes_uncompressed).all()
    assert (done.prune_channels_removed > 0).all()
