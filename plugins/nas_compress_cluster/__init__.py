"""``cluster``: weight sharing, the second stage of Deep Compression (a ``training`` step).

Each layer's weights are clustered into ``2^bits`` shared values by one-dimensional
k-means (centroids initialised evenly between the smallest and largest weight, which Han,
Mao and Dally, ICLR 2016, found best), every weight is replaced by its centroid, and the
network is fine-tuned for ``finetune_epochs`` with the assignments fixed and the centroids
trained: each centroid's gradient is the sum of its weights' (a
``torch.nn.utils.parametrize`` parametrization, removed after training).

Batch-norm folding scales each output channel and per-channel int8 quantization divides
it by the channel's scale, so after ``ptq`` each output channel holds at most ``2^bits``
distinct int8 values. The firmware stores, per layer, one ``2^bits``-entry int8 codebook
per output channel (per tensor for fully connected layers) and ``bits``-bit indices,
packed; a layer where that is not smaller than its int8 weights keeps them. It decodes a
layer into a shared int8 scratch buffer just before the layer runs
(`nas.compression.decoding_cost`: the decoder's code, the buffer and the decoding time
come from the profile: ``decoder_code_bytes.cluster`` and ``latency_lut.decode_cluster``).
The storage depends on the architecture and ``bits`` only, so the prediction before
training equals the measurement. ``huffman`` after it codes the indices.

Recorded: ``cluster_layers`` (layers stored as indices), ``cluster_codebook_bytes``,
``cluster_index_bytes``, ``cluster_max_values`` (the most distinct int8 values of any
output channel; at most ``2^bits``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from nas import hookimpl
from nas.compression import (
    BaseCompressionMethod,
    Candidate,
    DecodedWeights,
    Plan,
    Stored,
    channel_rows,
    codebook_axis,
    codebook_indices,
    codebooks,
)
from nas.cost import weight_storage_bytes
from nas.errors import ConfigError, TrialError, check_option
from nas.graph import Graph
from nas.hardware import HardwareProfile
from nas.train import DEFAULT_SETTINGS, fit

MAX_BITS = 8
KMEANS_ITERATIONS = 30


@dataclass
class ClusterConfig:
    bits: int = 4
    finetune_epochs: int = 2
    lr_scale: float = 0.3

    def __post_init__(self) -> None:
        check_option(
            "compression.cluster.bits",
            self.bits,
            1 <= self.bits < MAX_BITS,
            f"1 to {MAX_BITS - 1} (2 to {2 ** (MAX_BITS - 1)} shared values per layer; "
            "8 bits would store as much as int8)",
        )
        check_option(
            "compression.cluster.finetune_epochs",
            self.finetune_epochs,
            self.finetune_epochs >= 0,
            "0 or more",
        )
        check_option("compression.cluster.lr_scale", self.lr_scale, self.lr_scale > 0, "above 0")


def kmeans_1d(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (``k`` or fewer, ascending) and each value's assignment, by Lloyd's
    algorithm from centroids spread evenly over the values' range."""
    lo, hi = float(values.min()), float(values.max())
    centroids = np.linspace(lo, hi, k) if hi > lo else np.array([lo])
    for _ in range(KMEANS_ITERATIONS):
        assign = nearest(centroids, values)
        sums = np.bincount(assign, weights=values, minlength=len(centroids))
        counts = np.bincount(assign, minlength=len(centroids))
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(moved, centroids):
            break
        centroids = moved
    centroids = centroids[np.unique(nearest(centroids, values))]  # drop unused ones
    return centroids, nearest(centroids, values)


def nearest(centroids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The index of each value's nearest centroid (``centroids`` ascending)."""
    return np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)


class Shared(nn.Module):
    """A weight made of trainable centroids picked by fixed assignments."""

    def __init__(self, assign: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("assign", assign)

    def forward(self, centroids: torch.Tensor) -> torch.Tensor:
        return centroids[self.assign]

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """The centroids of ``weight`` (already shared): each assignment's value."""
        flat = weight.detach().reshape(-1)
        out = torch.zeros(int(self.assign.max()) + 1, dtype=weight.dtype)
        return out.scatter(0, self.assign.reshape(-1), flat)


def weighted_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def cluster_module(module: nn.Module, bits: int) -> None:
    """Share each layer's weights among ``2^bits`` k-means centroids, in place, as a
    parametrization whose centroids train (`remove_sharing` makes the weights plain)."""
    for layer in weighted_layers(module):
        w = layer.weight.detach()
        centroids, assign = kmeans_1d(w.reshape(-1).double().numpy(), 1 << bits)
        shared = torch.from_numpy(centroids[assign]).to(w.dtype).reshape(w.shape)
        layer.weight.data.copy_(shared)
        param = Shared(torch.from_numpy(assign).reshape(w.shape))
        parametrize.register_parametrization(layer, "weight", param)


def remove_sharing(module: nn.Module) -> None:
    for layer in weighted_layers(module):
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    """``bits``-bit indices packed MSB first (``nas_cluster_decode.c``)."""
    as_bits = (indices.reshape(-1, 1) >> np.arange(bits - 1, -1, -1)) & 1
    return np.packbits(as_bits.astype(np.uint8).ravel()).tobytes()


def codebook_table(weight: np.ndarray, axis: int | None, bits: int) -> bytes:
    """The stored codebooks: per output channel (along ``axis``; one for the tensor when
    None) its sorted distinct int8 values, padded with zeros to ``2^bits`` entries."""
    rows, _ = channel_rows(weight, axis)
    books = np.zeros((len(rows), 1 << bits), dtype=np.int8)
    for c, row in enumerate(rows):
        values = np.unique(row)
        books[c, : values.size] = values
    return books.tobytes()


def storage(graph: Graph, bits: int) -> list[Stored]:
    """How the clustered layers of ``graph`` are stored: ``bits``-bit indices and one
    ``2^bits``-entry codebook per output channel, or int8 where that is not smaller."""
    out = []
    for op in graph.ops:
        if op.weight is None:
            continue
        n = op.weight.size
        index_bytes = weight_storage_bytes(n, bits)
        book_bytes = codebooks(op) << bits
        if index_bytes + book_bytes < n:
            out.append(Stored(n, bits, index_bytes, book_bytes, ("cluster",)))
        else:
            out.append(Stored(n, 8, n))
    return out


class WeightSharing(DecodedWeights):
    """k-means weight sharing per layer with trained centroids, stored as packed indices."""

    name = "cluster"
    stage = "training"
    Config = ClusterConfig

    def check(
        self, hw: HardwareProfile, backend: str, methods: Sequence[BaseCompressionMethod]
    ) -> None:
        super().check(hw, backend, methods)
        quant = [m.name for m in methods if m.stage == "quantization"]
        if quant != ["ptq"]:
            raise ConfigError(
                f"compression=[cluster,{','.join(quant)}]: shared weights stay shared only "
                "through post-training quantization; use compression=[cluster,ptq] "
                "(quantization-aware training moves each weight on its own)"
            )

    def apply(self, candidate: Candidate) -> Candidate:
        c = self.config
        module = copy.deepcopy(candidate.module)
        cluster_module(module, c.bits)
        if c.finetune_epochs > 0:
            base = candidate.train or DEFAULT_SETTINGS
            fit(
                module,
                candidate.data,
                replace(base, epochs=c.finetune_epochs, lr=base.lr * c.lr_scale),
            )
        remove_sharing(module)
        module.eval()
        candidate.module = module
        candidate.retrace()
        return candidate

    def predict(self, plan: Plan) -> Plan:
        if plan.graph is None:
            return plan
        return plan.with_storage(storage(plan.graph, self.config.bits))

    def measure(self, candidate: Candidate, plan: Plan) -> Plan:
        qg, graph = candidate.qgraph, candidate.graph
        assert qg is not None and graph is not None
        most = 0
        for op, q in zip(graph.ops, qg.ops, strict=True):
            if q.weight is not None:
                most = max(most, codebook_indices(q.weight, codebook_axis(op))[1])
        if most > 1 << self.config.bits:
            raise TrialError(
                f"cluster: an output channel holds {most} distinct int8 weights after "
                f"quantization, more than 2^{self.config.bits}"
            )
        stored = storage(graph, self.config.bits)
        coded = [s for s in stored if s.decoders]
        candidate.metrics.update(
            cluster_layers=len(coded),
            cluster_codebook_bytes=sum(s.table_bytes for s in coded),
            cluster_index_bytes=sum(s.payload_bytes for s in coded),
            cluster_max_values=most,
        )
        return plan.with_storage(stored)


@hookimpl
def nas_register_compression_methods():
    return [WeightSharing]
