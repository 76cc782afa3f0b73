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


def test_huffman_on_a_trained_model():
    from nas_compress_huffman import HuffmanCoding

    from nas.cost import estimate

    out = check_compression_method(HuffmanCoding)
    m = out.metrics
    weights = sum(q.weight.size for q in out.qgraph.ops if q.weight is not None)
    assert m["huffman_decode_symbols"] == weights
    assert m["huffman_bits_per_weight"] < 8  # trained int8 weights are not uniform
    assert m["huffman_payload_bytes"] == -(-m["huffman_decode_bits"] // 8)
    flash = estimate(out.graph, out.hw).flash_bytes
    saved = weights - m["huffman_payload_bytes"] - m["huffman_table_bytes"]
    assert m["flash_bytes_huffman"] == flash - saved
