"""``huffman``: canonical Huffman coding of a model's int8 weights (an ``encoding`` step).

Deep Compression (Han, Mao, Dally, ICLR 2016) reports 20-30% extra savings from Huffman
coding quantized weights (docs/references.md). One code is built per model over the 256
int8 values, stored canonically (the number of codes of each length, then the symbols in
code order), and the weights are bit-packed MSB first. The encoder is checked by decoding
the stream and comparing with the original weights; a mismatch fails the trial.

Recorded metrics: ``huffman_payload_bytes``, ``huffman_table_bytes``,
``flash_bytes_huffman`` (the static flash estimate with int8 weights replaced by payload +
table), ``huffman_bits_per_weight``, and the decode cost in work done
(``huffman_decode_bits``, ``huffman_decode_symbols``, read once per inference when weights
are decoded on the fly). The cycles this takes on a chip are for a simulator backend to
measure.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from nas import hookimpl
from nas.compression import BaseCompressionMethod, Candidate
from nas.cost import estimate
from nas.errors import TrialError

MAX_CODE_BITS = 32


@dataclass(frozen=True)
class Code:
    """A canonical Huffman code: ``counts[l]`` codes of length ``l``; ``symbols`` in code
    order. ``lengths`` maps symbol -> code length (0: unused)."""

    counts: tuple[int, ...]
    symbols: tuple[int, ...]

    @property
    def table_bytes(self) -> int:
        """Stored size: one byte for the maximum length, one per count, one per symbol."""
        return 1 + (len(self.counts) - 1) + len(self.symbols)

    def codewords(self) -> dict[int, tuple[int, int]]:
        """symbol -> (code, length), assigned canonically."""
        out, code, k = {}, 0, 0
        for length in range(1, len(self.counts)):
            for _ in range(self.counts[length]):
                out[self.symbols[k]] = (code, length)
                code += 1
                k += 1
            code <<= 1
        return out


def code_lengths(freq: dict[int, int]) -> dict[int, int]:
    """Huffman code length of each symbol with a non-zero count (one symbol: length 1)."""
    if len(freq) == 1:
        return {next(iter(freq)): 1}
    heap = [(n, i, (s,)) for i, (s, n) in enumerate(sorted(freq.items()))]
    heapq.heapify(heap)
    lengths = dict.fromkeys(freq, 0)
    tie = len(heap)
    while len(heap) > 1:
        n1, _, a = heapq.heappop(heap)
        n2, _, b = heapq.heappop(heap)
        for s in a + b:
            lengths[s] += 1
        heapq.heappush(heap, (n1 + n2, tie, a + b))
        tie += 1
    return lengths


def build_code(values: np.ndarray) -> Code:
    sym, counts = np.unique(values.astype(np.int64), return_counts=True)
    lengths = code_lengths(dict(zip(sym.tolist(), counts.tolist(), strict=True)))
    max_len = max(lengths.values())
    if max_len > MAX_CODE_BITS:
        raise TrialError(f"huffman: code length {max_len} exceeds {MAX_CODE_BITS} bits")
    per_len = [0] * (max_len + 1)
    for length in lengths.values():
        per_len[length] += 1
    order = sorted(lengths, key=lambda s: (lengths[s], s))
    return Code(tuple(per_len), tuple(order))


def encode(values: np.ndarray, code: Code) -> tuple[bytes, int]:
    """The bit-packed stream (MSB first) and its length in bits."""
    words = code.codewords()
    bits: list[str] = [format(words[v][0], f"0{words[v][1]}b") for v in values.tolist()]
    stream = "".join(bits)
    n_bits = len(stream)
    stream += "0" * (-n_bits % 8)
    return int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b"", n_bits


def decode(data: bytes, n_bits: int, n_values: int, code: Code) -> np.ndarray:
    """Canonical decoding, one bit at a time (the way a small MCU decoder works)."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:n_bits].tolist()
    out = np.empty(n_values, dtype=np.int64)
    pos = 0
    for i in range(n_values):
        code_val, first, index = 0, 0, 0
        for length in range(1, len(code.counts)):
            code_val |= bits[pos]
            pos += 1
            count = code.counts[length]
            if code_val - first < count:
                out[i] = code.symbols[index + code_val - first]
                break
            index += count
            first = (first + count) << 1
            code_val <<= 1
        else:
            raise TrialError("huffman: invalid code in the stream")
    return out


@dataclass
class HuffmanConfig:
    verify: bool = True


class HuffmanCoding(BaseCompressionMethod):
    """Canonical Huffman coding of all int8 weights of the model."""

    name = "huffman"
    stage = "encoding"
    Config = HuffmanConfig

    def apply(self, candidate: Candidate) -> Candidate:
        qg = candidate.qgraph
        if qg is None:
            raise TrialError("huffman needs an int8 model: run it after a quantization method")
        weights = np.concatenate([q.weight.ravel() for q in qg.ops if q.weight is not None])
        code = build_code(weights)
        payload, n_bits = encode(weights, code)
        if self.config.verify and not np.array_equal(
            decode(payload, n_bits, weights.size, code), weights.astype(np.int64)
        ):
            raise TrialError("huffman: decoded weights differ from the encoded ones")
        cost = estimate(candidate.graph, candidate.hw)
        saved = weights.size - len(payload) - code.table_bytes
        candidate.metrics.update(
            huffman_payload_bytes=len(payload),
            huffman_table_bytes=code.table_bytes,
            huffman_bits_per_weight=n_bits / weights.size,
            flash_bytes_huffman=cost.flash_bytes - saved,
            huffman_decode_bits=n_bits,
            huffman_decode_symbols=int(weights.size),
        )
        return candidate


@hookimpl
def nas_register_compression_methods():
    return [HuffmanCoding]
