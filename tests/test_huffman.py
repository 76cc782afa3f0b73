"""Canonical Huffman coding of int8 weights: hand-computed codes and exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
from nas_compress_huffman import Code, build_code, code_lengths, decode, encode

from nas.testing import check_compression_method


def test_code_lengths_by_hand():
    # a:5 b:2 c:1 d:1 -> merge c+d (2), then b+(cd) (4), then a+(bcd) (9): a 1, b 2, c 3, d 3
    assert code_lengths({0: 5, 1: 2, 2: 1, 3: 1}) == {0: 1, 1: 2, 2: 3, 3: 3}
    assert code_lengths({-7: 10}) == {-7: 1}


def test_canonical_codewords_by_hand():
    code = build_code(np.array([0] * 5 + [1] * 2 + [2, 3], dtype=np.int8))
    assert code.counts == (0, 1, 1, 2) and code.symbols == (0, 1, 2, 3)
    assert code.codewords() == {0: (0b0, 1), 1: (0b10, 2), 2: (0b110, 3), 3: (0b111, 3)}
    data, n_bits = encode(np.array([1, 0, 3]), code)
    assert n_bits == 6 and data == bytes([0b10011100])
    assert code.table_bytes == 1 + 3 + 4


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_is_exact(seed):
    rng = np.random.default_rng(seed)
    w = np.clip(np.round(rng.laplace(0, 8 * (seed + 1), 4000)), -127, 127).astype(np.int8)
    code = build_code(w)
    data, n_bits = encode(w, code)
    assert np.array_equal(decode(data, n_bits, w.size, code), w.astype(np.int64))
    assert len(data) < w.size  # peaked weights compress


def test_single_symbol_and_corrupt_stream():
    code = build_code(np.zeros(10, dtype=np.int8))
    data, n_bits = encode(np.zeros(10, dtype=np.int8), code)
    assert n_bits == 10 and np.array_equal(decode(data, n_bits, 10, code), np.zeros(10))
    two = Code((0, 1), (5,))  # only code '0' exists
    with pytest.raises(Exception, match="invalid code"):
        decode(bytes([0b10000000]), 1, 1, two)


def _wider_candidate():
    """A MobileNet-like candidate with about 30 K weights, trained on digits: large enough
    for coding to pay for its table (the contract's candidate, 2 K weights, is not)."""
    import copy

    import torch

    from nas import create_search_space
    from nas.graph import trace
    from nas.testing import SPEC, make_candidate
    from nas.train import TrainSettings, fit

    cand = make_candidate()
    spec = {**copy.deepcopy(SPEC), "s1_width": 48, "s2_width": 64, "s1_expand": 4, "s2_expand": 4}
    torch.manual_seed(0)
    module = create_search_space("mobilenet").build(spec, 1, 10)
    fit(module, cand.data, TrainSettings(3, 32, 0.01, 1e-4, 0))
    module.eval()
    cand.module, cand.spec = module, spec
    cand.graph = trace(module, (1, 1, 8, 8), "wider")
    return cand


def test_huffman_keeps_the_contract():
    from nas_compress_huffman import HuffmanCoding

    out = check_compression_method(HuffmanCoding)  # the prediction bounds the measurement
    # 2 K weights: coding would save less than its table, so nothing is coded
    assert out.metrics["huffman_layers"] == 0


def test_huffman_on_a_trained_model():
    from nas_compress_huffman import HuffmanCoding
    from nas_compress_ptq import PostTrainingQuantization

    from nas.compression import measure, run_pipeline
    from nas.cost import estimate

    methods = [PostTrainingQuantization(), HuffmanCoding()]
    out = run_pipeline(methods, _wider_candidate())
    plain = estimate(out.graph, out.hw)
    cost = measure(methods, out, plain).cost
    m = out.metrics
    sizes = [q.weight.size for q in out.qgraph.ops if q.weight is not None]
    assert sum(sizes) > 20000
    assert 1 <= m["huffman_layers"] <= len(sizes)
    assert m["huffman_decode_symbols"] <= sum(sizes)
    assert m["huffman_bits_per_weight"] < 8  # trained int8 weights are not uniform
    whole = -(-m["huffman_decode_bits"] // 8)  # each layer's stream ends on a byte
    assert whole <= m["huffman_payload_bytes"] <= whole + m["huffman_layers"]
    # what the firmware stores: the coded layers' streams and the table instead of int8,
    # the decoder's code, and the largest coded layer's scratch buffer
    saved = m["huffman_decode_symbols"] - m["huffman_payload_bytes"] - m["huffman_table_bytes"]
    assert saved > 0
    code = out.hw.decoder_code_bytes["huffman"]
    assert cost.flash_bytes == plain.flash_bytes - saved + code
    assert plain.sram_bytes < cost.sram_bytes <= plain.sram_bytes + max(sizes)
    assert cost.latency_ms > plain.latency_ms
