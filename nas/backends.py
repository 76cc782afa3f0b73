"""Backends: score a quantized candidate the way the chip runs it.

A backend has a unique ``name`` and a ``Config`` dataclass; ``score`` returns a flat dict
of metrics with names carrying units. ``acc_int8`` (validation accuracy of the int8
model, the search objective) and ``acc_int8_test`` are required; a backend may add
measured figures (``arena_bytes_measured``, ``latency_ms_measured``...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas.compression import Candidate
from nas.cost import Cost
from nas.hardware import HardwareProfile

REQUIRED_METRICS = ("acc_int8", "acc_int8_test")


@dataclass
class BackendConfig:
    """Options every backend has."""


class BaseBackend(ABC):
    """A target runtime selectable with ``backend=<name>``."""

    name: ClassVar[str]
    Config: ClassVar[type] = BackendConfig

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def score(self, candidate: Candidate, cost: Cost) -> dict[str, Any]:
        """Metrics of the quantized ``candidate`` (``candidate.qgraph`` is set). Files to
        keep with the trial go into ``candidate.artifacts``."""

    def check(self, hw: HardwareProfile) -> None:  # noqa: B027 - optional hook
        """Raise `nas.errors.ConfigError` before the search starts when this backend cannot
        run on ``hw`` here (a missing compiler or simulator, an unsupported core)."""

    def deploy(self, best_dir: Path) -> None:  # noqa: B027 - optional hook
        """Add what a firmware needs to the best trial's folder (default: nothing)."""
