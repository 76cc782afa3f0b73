"""One search space across model families (``search_space=families``): the first choice
is the family, then that family's own choices, as Optuna conditional parameters.

Families (``search_space.families`` restricts them):

- ``mobilenet``: the MobileNet-like space (`nas_space_mobilenet`), its options under
  ``search_space.mobilenet.*``;
- ``dscnn``, ``cnn``, ``mlp``, ``mobilenet_v1``: the hand-designed reference networks
  (`nas_space_reference`) with the choices a designer would try around each: the width
  of the first layer (``widths``) for all; DS-CNN's number of separable blocks
  (``dscnn_blocks``) and depthwise kernel (``kernels``); the small CNN's number of
  convolution + pooling stages (``cnn_layers``), convolutions per stage (``cnn_convs``, 2
  for VGG's stage), kernel (``kernels``) and a hidden fully connected layer before the
  classifier (``cnn_hidden`` units, 0 for none: LeNet's shape); the MLP's hidden layers
  (``mlp_layers``). Each reference network is a point of the space:
  ``family=dscnn, dscnn_width=48, dscnn_blocks=4, dscnn_kernel=3, resolution=28`` is the
  DS-CNN ``search_space=reference`` builds as ``{family: dscnn, width: 48, resolution:
  28}``;
- ``bonsai``: the Bonsai tree (`nas_space_bonsai`), options under ``search_space.bonsai.*``.

The input ``resolution`` is one choice shared by every family (``resolutions``; the
families' own resolution lists are not used). A family's choices are its space's, named
``<family>_<choice>`` (``mobilenet_s1_width``, ``dscnn_blocks``): one Optuna parameter and
one ``arch_`` column each, present only in that family's trials.

Each trial is scored by a backend that runs its family (`backend_for`): the selected one,
or for Bonsai trees, which TensorFlow Lite Micro cannot run, ``estimate`` (its int8
reference). A family that cannot run with the chip, backend or compression methods at
all is left out with a note (`restrict`), and the search goes on with the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from nas_space_bonsai import BonsaiConfig, BonsaiSearchSpace
from nas_space_bonsai.model import Bonsai
from nas_space_mobilenet import MobileNetConfig, MobileNetSearchSpace
from nas_space_reference import DEFAULTS, ReferenceSearchSpace
from torch import nn

from nas import hookimpl
from nas.cost import Cost
from nas.data import Arrays
from nas.errors import ConfigError
from nas.graph import Graph
from nas.hardware import HardwareProfile
from nas.spaces import ArchSpec, BaseSearchSpace, support_problem
from nas.train import TrainSettings

FAMILIES = ("mobilenet", "dscnn", "cnn", "mlp", "mobilenet_v1", "bonsai")
#: The reference families and the choices each searches (besides ``width``): the
#: `FamiliesConfig` list each takes its options from.
REFERENCE_CHOICES = {
    "dscnn": {"blocks": "dscnn_blocks", "kernel": "kernels"},
    "cnn": {
        "layers": "cnn_layers",
        "convs": "cnn_convs",
        "kernel": "kernels",
        "hidden": "cnn_hidden",
    },
    "mlp": {"layers": "mlp_layers"},
    "mobilenet_v1": {},
}
#: The backend a family's models fall back to when the selected one cannot run them.
FALLBACK_BACKEND = "estimate"


@dataclass
class FamiliesConfig:
    """Choices of the families space (each list is what the sampler may pick)."""

    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    resolutions: list[int] = field(default_factory=lambda: [8, 12, 14, 16, 20, 28])
    #: First-layer width (MLP: hidden units) of the reference families.
    widths: list[int] = field(
        default_factory=lambda: [2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]
    )
    dscnn_blocks: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    cnn_layers: list[int] = field(default_factory=lambda: [1, 2, 3])
    cnn_convs: list[int] = field(default_factory=lambda: [1, 2])
    mlp_layers: list[int] = field(default_factory=lambda: [1, 2])
    cnn_hidden: list[int] = field(default_factory=lambda: [0, 16, 32, 64, 128])
    kernels: list[int] = field(default_factory=lambda: [3, 5])
    mobilenet: MobileNetConfig = field(default_factory=MobileNetConfig)
    bonsai: BonsaiConfig = field(default_factory=BonsaiConfig)

    def __post_init__(self) -> None:
        # Hydra hands nested options over as dicts.
        if isinstance(self.mobilenet, dict):
            self.mobilenet = _nested(MobileNetConfig, self.mobilenet, "mobilenet")
        if isinstance(self.bonsai, dict):
            self.bonsai = _nested(BonsaiConfig, self.bonsai, "bonsai")
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ConfigError(
                f"search_space.families={list(self.families)}: "
                + (f"unknown family '{unknown[0]}'" if unknown else "no family")
                + f"; valid: {', '.join(FAMILIES)}"
            )


def _nested(cls: type, values: dict[str, Any], name: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    bad = [k for k in values if k not in known]
    if bad:
        raise ConfigError(
            f"search_space.{name}.{bad[0]} is not an option; valid: {', '.join(sorted(known))}"
        )
    return cls(**values)


class Prefixed:
    """An Optuna trial whose parameters get the family's prefix (``dscnn_blocks``); the
    shared ``resolution`` is the one already chosen."""

    def __init__(self, trial: optuna.Trial, family: str, resolution: int) -> None:
        self.trial, self.family, self.resolution = trial, family, resolution

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        if name == "resolution":
            return self.resolution
        return self.trial.suggest_categorical(_prefixed(self.family, name), list(choices))


class FamiliesSearchSpace(BaseSearchSpace):
    """MobileNet-like, DS-CNN, plain CNN, MLP, MobileNetV1 and Bonsai in one space."""

    name = "families"
    Config = FamiliesConfig
    mixed = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        c = self.config
        reference = ReferenceSearchSpace()
        self.parts: dict[str, BaseSearchSpace] = {
            "mobilenet": MobileNetSearchSpace(c.mobilenet),
            "bonsai": BonsaiSearchSpace(c.bonsai),
            **{f: reference for f in REFERENCE_CHOICES},
        }
        #: The families trials choose from (`restrict` may leave some out).
        self.active = list(dict.fromkeys(c.families))

    # ------------------------------------------------------------ specs

    def sample(self, trial: optuna.Trial) -> ArchSpec:
        family = trial.suggest_categorical("family", self.active)
        size = trial.suggest_categorical("resolution", list(self.config.resolutions))
        own = self._sample_own(Prefixed(trial, family, size), family)
        own.pop("resolution", None)
        return {"family": family, "resolution": size, **_prefix(family, own)}

    def _sample_own(self, trial: Prefixed, family: str) -> ArchSpec:
        if family not in REFERENCE_CHOICES:
            return self.parts[family].sample(trial)  # type: ignore[arg-type]
        c = self.config
        own = {"width": trial.suggest_categorical("width", c.widths)}
        for choice, option in REFERENCE_CHOICES[family].items():
            own[choice] = trial.suggest_categorical(choice, getattr(c, option))
        return own

    def split(self, spec: ArchSpec) -> tuple[BaseSearchSpace, ArchSpec]:
        """The family's space and ``spec`` in that space's own terms."""
        family = spec.get("family")
        if family not in self.parts:
            raise ConfigError(f"architecture {spec}: 'family' must be one of {FAMILIES}")
        mark = _prefixed(family, "")
        own = {k.removeprefix(mark): v for k, v in spec.items() if k.startswith(mark)}
        own["resolution"] = spec["resolution"]
        if family in REFERENCE_CHOICES:
            own["family"] = family
        return self.parts[family], own

    def complete(self, spec: ArchSpec) -> ArchSpec:
        """A reference family's choices that ``spec`` leaves out take the hand design's
        value (`nas_space_reference.DEFAULTS`), which is what the family builds without
        them: a small CNN from before ``cnn_convs`` has one convolution per stage."""
        family = spec.get("family")
        if family not in REFERENCE_CHOICES:
            return dict(spec)
        own = _prefix(str(family), {c: DEFAULTS[family][c] for c in REFERENCE_CHOICES[family]})
        return {**spec, **{name: v for name, v in own.items() if name not in spec}}

    def family(self, spec: ArchSpec) -> str:
        return str(spec["family"])

    def resolution(self, spec: ArchSpec) -> int:
        return int(spec["resolution"])

    def build(
        self,
        spec: ArchSpec,
        in_channels: int,
        num_classes: int,
        input_hw: tuple[int, int] | None = None,
    ) -> nn.Module:
        part, own = self.split(spec)
        return part.build(own, in_channels, num_classes, input_hw=input_hw)

    def random_model(self, spec: ArchSpec, in_channels: int, num_classes: int) -> nn.Module:
        part, own = self.split(spec)
        return part.random_model(own, in_channels, num_classes)

    # ------------------------------------------------------------ what runs where

    def restrict(self, hw: HardwareProfile, backend: str, methods: Sequence[Any]) -> list[str]:
        notes, kept = [], []
        for family in self.active:
            part = self.parts[family]
            runs_on = self._backend(part, backend)
            problem = support_problem(part, hw, runs_on, methods)
            if problem:
                notes.append(f"family '{family}' left out: {problem}")
            else:
                kept.append(family)
        if not kept:
            raise ConfigError("search_space=families: no family can run here; " + "; ".join(notes))
        self.active = kept
        return notes

    def backend_for(self, spec: ArchSpec, selected: str) -> str:
        return self._backend(self.split(spec)[0], selected)

    @staticmethod
    def _backend(part: BaseSearchSpace, selected: str) -> str:
        if part.backends is None or selected in part.backends:
            return selected
        return FALLBACK_BACKEND if FALLBACK_BACKEND in part.backends else part.backends[0]

    # ------------------------------------------------------------ per model kind

    def _part_of(self, module: nn.Module) -> BaseSearchSpace:
        return self.parts["bonsai"] if isinstance(module, Bonsai) else self.parts["mobilenet"]

    def trace(self, module: nn.Module, input_shape: tuple[int, ...], name: str) -> Graph | None:
        return self._part_of(module).trace(module, input_shape, name)

    def cost(self, module: nn.Module, graph: Graph | None, hw: HardwareProfile) -> Cost:
        return self._part_of(module).cost(module, graph, hw)

    def layers(
        self, module: nn.Module, graph: Graph | None, hw: HardwareProfile
    ) -> list[dict[str, Any]]:
        return self._part_of(module).layers(module, graph, hw)

    def fit(
        self,
        module: nn.Module,
        data: Arrays,
        settings: TrainSettings,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> list[float]:
        return self._part_of(module).fit(module, data, settings, on_epoch)


def _prefixed(family: str, choice: str) -> str:
    """A family's own choice as a parameter of the space (``dscnn_blocks``)."""
    return f"{family}_{choice}"


def _prefix(family: str, own: ArchSpec) -> ArchSpec:
    return {_prefixed(family, k): v for k, v in own.items()}


@hookimpl
def nas_register_search_spaces():
    return [FamiliesSearchSpace]
