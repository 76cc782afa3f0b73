"""Search spaces: sample an architecture from an Optuna trial, build it as a torch module.

A search space is a class with a unique ``name`` and a ``Config`` dataclass (its Hydra
options, e.g. ``search_space.resolutions=[8,16]``). ``sample`` turns a trial into an
``ArchSpec``: a flat dict of JSON-serialisable choices, one Optuna parameter each, which is
also one column of ``trials.csv``. ``build`` turns an ``ArchSpec`` back into the same
network, bit for bit, so any trial can be rebuilt from its parameters alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import optuna
from torch import nn

from nas.graph import LUT_KINDS

ArchSpec = dict[str, Any]


@dataclass
class SearchSpaceConfig:
    """Options every search space has (subclass it to add more)."""


class BaseSearchSpace(ABC):
    """One family of architectures (MobileNet-like, Bonsai-like, ...)."""

    name: ClassVar[str]
    Config: ClassVar[type] = SearchSpaceConfig
    #: Latency lookup-table entries a hardware profile needs for this space's networks.
    op_kinds: ClassVar[tuple[str, ...]] = LUT_KINDS

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def sample(self, trial: optuna.Trial) -> ArchSpec:
        """Suggest every choice of one architecture through ``trial``."""

    @abstractmethod
    def build(self, spec: ArchSpec, in_channels: int, num_classes: int) -> nn.Module:
        """The (untrained) network for ``spec``; its input is NCHW float."""

    @abstractmethod
    def resolution(self, spec: ArchSpec) -> int:
        """Input height and width the network expects for ``spec``."""
