"""``huffman``: canonical Huffman coding of a model's weights (an ``encoding`` step).

Deep Compression (Han, Mao, Dally, ICLR 2016) reports 20-30% extra savings from Huffman
coding quantized weights (docs/references.md). One code is built per kind of symbol the
layers store -- int8 weights, or the codebook indices ``cluster`` leaves -- over all such
layers, and kept once, canonically (the maximum length, the number of codes of each
length, then the symbols in code order). Each layer's symbols are bit-packed MSB first
into a stream of their own (a layer is decoded on its own). A layer whose stream would
not be smaller than what it stores keeps its weights as they are, and so do all layers of
a kind whose savings would not pay for the kind's table. The encoder is checked by
decoding every stream and comparing; a mismatch fails the trial.

How the firmware decodes (`nas.compression.decoding_cost`): a coded layer is decoded into
one int8 scratch buffer, shared by all layers, just before it runs, once per inference:
SRAM grows by the largest coded layer, flash by the decoder's code
(``decoder_code_bytes.huffman``), latency by the profile's ``latency_lut.decode_huffman``
(per payload bit, per weight, per layer; fitted in QEMU by
``benchmarks/decoder_calibration.py``). A profile without them is refused.

Prediction before training: what trained weights will save cannot be known before they
are trained, and a layer is coded only when that saves bytes, so the prediction counts no
saving, and the decoder's code, its scratch and its time (at most ``b`` bits per ``b``-bit
symbol: a Huffman code is never longer than the fixed-length one) for every layer that
coding could shrink: an upper bound of the measurement. Huffman alone therefore never
makes a candidate feasible before training; after ``cluster`` it codes the indices.

Recorded metrics: ``huffman_payload_bytes``, ``huffman_table_bytes``, ``huffman_layers``
(coded layers), ``huffman_bits_per_weight`` (over the coded layers), and the decode work
(``huffman_decode_bits``, ``huffman_decode_symbols``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace

import numpy as np

from nas import hookimpl
from nas.compression import (
    Candidate,
    DecodedWeights,
    Plan,
    Stored,
    codebook_axis,
    codebook_indices,
)
from nas.cost import weight_storage_bytes
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

    def to_bytes(self) -> bytes:
        """The stored table the firmware's decoder reads (``nas_huffman_decode.c``): the
        maximum length, the count of each length, the symbols as bytes (int8 two's
        complement, or codebook indices)."""
        max_len = len(self.counts) - 1
        return bytes([max_len, *self.counts[1:], *(s & 0xFF for s in self.symbols)])

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


#: The smallest stored code: one symbol of length 1 (maximum length, one count, the symbol).
MIN_TABLE_BYTES = 3


class HuffmanCoding(DecodedWeights):
    """Canonical Huffman coding of each layer's stored weight symbols."""

    name = "huffman"
    stage = "encoding"
    Config = HuffmanConfig

    def apply(self, candidate: Candidate) -> Candidate:
        if candidate.qgraph is None:
            raise TrialError("huffman needs an int8 model: run it after a quantization method")
        return candidate

    def predict(self, plan: Plan) -> Plan:
        # Every layer that coding could shrink (one bit per symbol and the smallest table)
        # may be coded: its decoding is counted, with no saving.
        stored = [
            replace(s, decoders=(*s.decoders, self.name))
            if weight_storage_bytes(s.elements, 1) + MIN_TABLE_BYTES < s.payload_bytes
            else s
            for s in plan.stored
        ]
        return plan.with_storage(stored)

    def measure(self, candidate: Candidate, plan: Plan) -> Plan:
        qg = candidate.qgraph
        assert qg is not None and candidate.graph is not None
        weighted = [
            (op, q)
            for op, q in zip(candidate.graph.ops, qg.ops, strict=True)
            if q.weight is not None
        ]
        streams = []  # per weighted op: its symbols and the code group they belong to
        for (op, q), s in zip(weighted, plan.stored, strict=True):
            assert q.weight is not None
            if "cluster" in s.decoders:
                symbols = codebook_indices(q.weight, codebook_axis(op))[0]
                streams.append((symbols.ravel(), f"index{s.symbol_bits}"))
            else:
                streams.append((q.weight.astype(np.int64).ravel(), "int8"))
        codes = {
            group: build_code(np.concatenate([x for x, g in streams if g == group]))
            for group in sorted({g for _, g in streams})
        }
        encoded = []
        for (symbols, group), (op, _) in zip(streams, weighted, strict=True):
            payload, n_bits = encode(symbols, codes[group])
            if self.config.verify and not np.array_equal(
                decode(payload, n_bits, symbols.size, codes[group]), symbols
            ):
                raise TrialError(f"huffman: {op.name}: decoded symbols differ from the encoded")
            encoded.append((payload, n_bits))
        # a layer is coded when its stream is smaller than what it stores, and a group's
        # layers only when together they save more than the group's table
        shrinks = [
            len(p) < s.payload_bytes for (p, _), s in zip(encoded, plan.stored, strict=True)
        ]
        saving = dict.fromkeys(codes, 0)
        for (p, _), s, (_, group), small in zip(
            encoded, plan.stored, streams, shrinks, strict=True
        ):
            saving[group] += (s.payload_bytes - len(p)) if small else 0
        used = {g for g, saved in saving.items() if saved > codes[g].table_bytes}
        stored, tables, m = [], set(), dict.fromkeys(("payload", "bits", "symbols"), 0)
        for (payload, n_bits), s, (symbols, group), small in zip(
            encoded, plan.stored, streams, shrinks, strict=True
        ):
            if not small or group not in used:
                stored.append(s)  # stored as it is
                continue
            table = 0 if group in tables else codes[group].table_bytes  # stored once
            tables.add(group)
            stored.append(
                Stored(
                    s.elements,
                    s.symbol_bits,
                    len(payload),
                    s.table_bytes + table,
                    (*s.decoders, self.name),
                )
            )
            m["payload"] += len(payload)
            m["bits"] += n_bits
            m["symbols"] += symbols.size
        candidate.metrics.update(
            huffman_payload_bytes=m["payload"],
            huffman_table_bytes=sum(codes[g].table_bytes for g in tables),
            huffman_layers=sum(bool(s.decoders and s.decoders[-1] == self.name) for s in stored),
            huffman_bits_per_weight=m["bits"] / m["symbols"] if m["symbols"] else 0.0,
            huffman_decode_bits=m["bits"],
            huffman_decode_symbols=m["symbols"],
        )
        return plan.with_storage(stored)


@hookimpl
def nas_register_compression_methods():
    return [HuffmanCoding]
