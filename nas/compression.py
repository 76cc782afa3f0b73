"""Compression methods and the pipeline that runs them on a trained candidate.

A compression method has a unique ``name``, a ``stage`` and a ``Config`` dataclass. The
pipeline runs the methods the user selected (``compression=[prune,ptq]``) ordered by
stage -- structure changes, then training-time methods, then quantization, then
encoding -- whatever the order on the command line. Each method reads and updates one
`Candidate`: plain data handed from stage to stage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from nas.data import Arrays
from nas.errors import ConfigError, NasError, TrialError
from nas.graph import Graph, trace
from nas.hardware import HardwareProfile
from nas.int8 import QuantizedModel
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


def run_pipeline(methods: Sequence[BaseCompressionMethod], candidate: Candidate) -> Candidate:
    """Apply ``methods`` in stage order; a method that raises, or that adds a core column
    to ``metrics``, fails the trial with a `TrialError` naming the method."""
    for method in order(methods):
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
