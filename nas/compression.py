"""Compression methods and the pipeline that runs them on a trained candidate.

A compression method has a unique ``name``, a ``stage`` and a ``Config`` dataclass. The
pipeline runs the methods the user selected (``compression=[prune,ptq]``) ordered by
stage -- structure changes, then training-time methods, then quantization, then
encoding -- whatever the order on the command line. Each method reads and updates one
`Candidate`: plain data handed from stage to stage.

Compression changes what fits, so a method also declares, before any training, how it
changes a candidate's cost (the cost contract): ``predict`` takes the `Plan` of the
stages before it -- the structure the candidate will have, its static cost on the chip
and how its weights will be stored -- and returns its own. The search composes the
selected methods' predictions in stage order (`predict`) and decides feasibility on the
result, so a network that fits only once pruned or encoded is trained. After
compression, ``measure`` replaces each prediction with the cost of what the method
produced (`measure`); a trial whose measured cost no longer fits is recorded infeasible
with both figures. A prediction must be an upper bound of the measurement: the contract
checks of `nas.testing` test it on random candidates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from torch import nn

from nas.cost import Cost
from nas.data import Arrays
from nas.errors import ConfigError, NasError, TrialError
from nas.graph import Graph, Op, trace
from nas.hardware import HardwareProfile
from nas.int8 import QuantizedModel, weight_scale_axis
from nas.record import check_plugin_metrics
from nas.train import TrainSettings

STAGES = ("structure", "training", "quantization", "encoding")


@dataclass
class Candidate:
    """A trained candidate as it moves through compression to a backend.

    Attributes:
        name: label used in messages (``trial 12``).
        spec: the architecture choices.
        module: the trained float network (NCHW input).
        graph: its traced graph (BN folded, activations fused); methods that change the
            module re-trace it. ``None`` for models that are not layer graphs (Bonsai).
        data: the dataset at the candidate's input resolution.
        hw: the target profile.
        qgraph: the int8 model, set by the quantization method.
        metrics: extra numbers methods report (``huffman_bytes``...), merged into the row;
            never a core column (`nas.record.CORE_COLUMNS`).
        artifacts: files for the trial directory (``model.tflite``...), name -> bytes.
        train: the search's training recipe, for methods that fine-tune.
    """

    name: str
    spec: dict[str, Any]
    module: nn.Module
    graph: Graph | None
    data: Arrays
    hw: HardwareProfile
    qgraph: QuantizedModel | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    train: TrainSettings | None = None

    def retrace(self) -> None:
        """Trace ``module`` again after a method changed it."""
        self.graph = trace(self.module, self.data.input_shape, self.name)


@dataclass(frozen=True)
class Stored:
    """How one op's weights are stored in flash and decoded on the chip.

    Attributes:
        elements: weights of the op.
        symbol_bits: bits per stored symbol before entropy coding (8: int8, 4: int4 or a
            16-entry codebook's index); a Huffman code over them is never longer.
        payload_bytes: the stored weights (packed symbols, or a Huffman stream).
        table_bytes: what decoding needs besides: codebooks, code tables.
        decoders: the firmware decoders the op's weights pass through, in order
            (``cluster``, ``huffman``); empty when the runtime reads them as stored.
    """

    elements: int
    symbol_bits: int
    payload_bytes: int
    table_bytes: int = 0
    decoders: tuple[str, ...] = ()

    @property
    def flash_bytes(self) -> int:
        return self.payload_bytes + self.table_bytes


@dataclass
class Plan:
    """What compression will make of a candidate, known before training (its weights are
    untrained): the composed prediction of the selected methods.

    Attributes:
        module: the structure the candidate will have (a structure method's copy).
        graph: its traced graph; ``None`` for models that are not layer graphs.
        cost: the predicted cost on the chip, an upper bound of what compression produces.
        stored: how each weighted op's weights are stored, in graph order.
        hw: the target profile.
        restructure: the core's cost of a new structure: ``restructure(module)`` traces it
            and returns ``(graph, cost)`` of its uncompressed int8 form (``None`` once
            trained: `measure` does not change structures).

    The same object carries the measurement after compression (`measure`).
    """

    module: nn.Module
    graph: Graph | None
    cost: Cost
    stored: list[Stored]
    hw: HardwareProfile
    restructure: Callable[[nn.Module], tuple[Graph | None, Cost]] | None = None

    @classmethod
    def plain(
        cls,
        module: nn.Module,
        graph: Graph | None,
        cost: Cost,
        hw: HardwareProfile,
        restructure: Callable[[nn.Module], tuple[Graph | None, Cost]] | None = None,
    ) -> Plan:
        """The uncompressed int8 candidate: every weight one byte."""
        return cls(module, graph, cost, int8_storage(graph), hw, restructure)

    def with_structure(self, module: nn.Module) -> Plan:
        """This plan for a new structure (weights stored as int8 again)."""
        assert self.restructure is not None, "only a prediction changes the structure"
        graph, cost = self.restructure(module)
        return replace(self, module=module, graph=graph, cost=cost, stored=int8_storage(graph))

    def with_storage(self, stored: list[Stored]) -> Plan:
        """This plan with the weights stored as ``stored``: flash changes by the stored
        bytes; decoding (`decoding_cost`) adds each decoder's code to flash, the scratch
        buffer a layer is decoded into to SRAM, and the decoding to the latency."""
        assert len(stored) == len(self.stored), "one Stored per weighted op"
        before, after = decoding_cost(self.stored, self.hw), decoding_cost(stored, self.hw)
        flash = sum(s.flash_bytes for s in stored) - sum(s.flash_bytes for s in self.stored)
        flash += after.code_bytes - before.code_bytes
        sram = after.scratch_bytes - before.scratch_bytes
        ms = after.latency_ms - before.latency_ms
        cost = replace(
            self.cost,
            flash_bytes=self.cost.flash_bytes + flash,
            model_bytes=self.cost.model_bytes + flash,
            sram_bytes=self.cost.sram_bytes + sram,
            latency_ms=self.cost.latency_ms + ms,
            energy_uj=self.cost.energy_uj + ms * self.hw.active_power_mw,
        )
        return replace(self, stored=stored, cost=cost)


def int8_storage(graph: Graph | None) -> list[Stored]:
    """One `Stored` per weighted op of ``graph``: int8, one byte per weight."""
    if graph is None:
        return []
    return [Stored(op.weight.size, 8, op.weight.size) for op in graph.ops if op.weight is not None]


def channel_rows(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """``weight`` as one row per output channel (along ``axis``; a single row for the whole
    tensor when None), and the shape of ``weight`` with that axis first."""
    moved = weight.reshape(1, -1) if axis is None else np.moveaxis(weight, axis, 0)
    return moved.reshape(moved.shape[0], -1), moved.shape


def codebook_indices(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, int]:
    """Each weight's index in its codebook -- the sorted distinct values of its output
    channel (along ``axis``; the whole tensor when None) -- in the weight's order, and the
    largest codebook's size."""
    rows, moved_shape = channel_rows(weight, axis)
    out = np.empty_like(rows, dtype=np.int64)
    largest = 0
    for c, row in enumerate(rows):
        book, out[c] = np.unique(row, return_inverse=True)
        largest = max(largest, book.size)
    out = out.reshape(moved_shape)
    return (out.reshape(weight.shape) if axis is None else np.moveaxis(out, 0, axis)), largest


def codebook_axis(op: Op) -> int | None:
    """The axis along which an op has one codebook per output channel: that of its
    per-channel weight scales (`nas.int8.weight_scale_axis`); None for one per tensor."""
    return weight_scale_axis(op.kind)


def codebooks(op: Op) -> int:
    """How many codebooks an op's weights need: one per quantization scale."""
    return op.out_channels if codebook_axis(op) is not None else 1


@dataclass(frozen=True)
class Decoding:
    """What decoding stored weights costs on the chip (`decoding_cost`)."""

    code_bytes: int
    scratch_bytes: int
    latency_ms: float


def decoder_lut_kind(decoder: str) -> str:
    """The latency table entry of a weight decoder: ``decode_<name>``."""
    return f"decode_{decoder}"


def decoding_cost(stored: Sequence[Stored], hw: HardwareProfile) -> Decoding:
    """The firmware decodes an encoded layer's weights, just before the layer runs, into
    one int8 scratch buffer that every layer shares (so SRAM grows by the largest decoded
    layer), once per inference. Each decoder's code is in flash once
    (``decoder_code_bytes`` of the profile); its time is the profile's
    ``latency_lut.decode_<name>`` entry: cycles per payload bit (``cycles_per_mac``), per
    decoded weight (``cycles_per_output``) and per layer (``cycles_per_op``)."""
    used = sorted({d for s in stored for d in s.decoders})
    code = sum(hw.decoder_code_bytes[d] for d in used)
    scratch = max((s.elements for s in stored if s.decoders), default=0)
    ms = 0.0
    for s in stored:
        for d in s.decoders:
            entry = hw.latency_entry(decoder_lut_kind(d))
            ms += hw.instructions_to_ms(entry.cycles(8 * s.payload_bytes, s.elements))
    return Decoding(code, scratch, ms)


def check_decoder(method: str, hw: HardwareProfile) -> None:
    """A `ConfigError` when ``hw`` has no measured decoder for ``method``'s weights."""
    kind = decoder_lut_kind(method)
    if method not in hw.decoder_code_bytes or kind not in hw.latency_lut:
        raise ConfigError(
            f"compression={method}: no measured '{method}' weight decoder for {hw.name} "
            f"(decoder_code_bytes.{method} and latency_lut.{kind} in "
            f"{hw.source_file or 'the profile'}); measure them with "
            "python benchmarks/decoder_calibration.py, or leave out this method"
        )


@dataclass
class CompressionConfig:
    """Options every compression method has."""


class BaseCompressionMethod(ABC):
    """One compression step, selectable by name in ``compression=[...]``."""

    name: ClassVar[str]
    stage: ClassVar[str]
    Config: ClassVar[type] = CompressionConfig

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def apply(self, candidate: Candidate) -> Candidate:
        """Compress ``candidate`` (in place or a new one) and return it."""

    def check(
        self, hw: HardwareProfile, backend: str, methods: Sequence[BaseCompressionMethod]
    ) -> None:
        """Refuse, before anything runs, options that cannot work on ``hw`` with the
        backend named ``backend`` and the other selected ``methods``: raise `ConfigError`
        naming the option and what is valid. Default: every target, backend and method."""
        return None

    def predict(self, plan: Plan) -> Plan:
        """The plan after this method, from the plan of the stages before it, before any
        training. Its cost must be an upper bound of what ``measure`` later gives.
        Default: the method does not change the cost (distillation, int8 PTQ)."""
        return plan

    def measure(self, candidate: Candidate, plan: Plan) -> Plan:
        """What this method produced, measured on the compressed ``candidate``, from the
        measurement of the stages before it (at first: the traced compressed graph, int8
        weights); called once the whole pipeline has run. Default: unchanged."""
        return plan


def order(methods: Sequence[BaseCompressionMethod]) -> list[BaseCompressionMethod]:
    """Methods sorted by stage; exactly one quantization method is required."""
    for m in methods:
        if m.stage not in STAGES:
            raise ConfigError(
                f"compression method '{m.name}' has stage '{m.stage}'; valid: {', '.join(STAGES)}"
            )
    quant = [m.name for m in methods if m.stage == "quantization"]
    if len(quant) != 1:
        raise ConfigError(
            "compression must hold exactly one quantization method (e.g. compression=[ptq]); "
            f"got {quant or 'none'}"
        )
    return sorted(methods, key=lambda m: STAGES.index(m.stage))


class DecodedWeights(BaseCompressionMethod):
    """A method whose stored weights the firmware decodes before a layer runs (a
    `Stored.decoders` entry of its ``name``; `decoding_cost`): refused on a profile without
    a measured decoder of that name."""

    def check(
        self, hw: HardwareProfile, backend: str, methods: Sequence[BaseCompressionMethod]
    ) -> None:
        check_decoder(self.name, hw)


def predict(methods: Sequence[BaseCompressionMethod], plan: Plan) -> Plan:
    """The selected methods' predictions composed in stage order."""
    for method in order(methods):
        plan = method.predict(plan)
    return plan


def measure(methods: Sequence[BaseCompressionMethod], candidate: Candidate, cost: Cost) -> Plan:
    """The measurement of the compressed candidate: ``cost`` (its traced graph's, int8
    weights) changed by each method's ``measure`` in stage order."""
    plan = Plan.plain(candidate.module, candidate.graph, cost, candidate.hw)
    for method in order(methods):
        plan = method.measure(candidate, plan)
    return plan


def run_pipeline(
    methods: Sequence[BaseCompressionMethod],
    candidate: Candidate,
    before_quantization: Callable[[Candidate], None] | None = None,
) -> Candidate:
    """Apply ``methods`` in stage order; a method that raises, or that adds a core column
    to ``metrics``, fails the trial with a `TrialError` naming the method.
    ``before_quantization`` sees the float candidate the quantization method starts from
    (after structure and training methods: pruned, distilled)."""
    for method in order(methods):
        if method.stage == "quantization" and before_quantization is not None:
            before_quantization(candidate)
        candidate = apply_method(method, candidate)
        who = f"{candidate.name}: compression method '{method.name}'"
        check_plugin_metrics(who, candidate.metrics)  # the first method to add one is named
    return candidate


def apply_method(method: BaseCompressionMethod, candidate: Candidate) -> Candidate:
    """``method.apply(candidate)``; any error but a `NasError` becomes a `TrialError`."""
    try:
        return method.apply(candidate)
    except NasError:
        raise
    except Exception as exc:
        raise TrialError(
            f"{candidate.name}: compression method '{method.name}' failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
