"""Bonsai-like search space: one sparse projection and one shallow sparse tree, for chips
with kilobytes of memory (Kumar, Goyal, Varma, ICML 2017; see `.model`).

Choices (one Optuna parameter each): ``resolution`` (input side; the image is flattened
to ``channels * resolution**2`` features), ``proj_dim`` (rows of ``Z``), ``depth`` (tree
depth; 0 is a single node), ``z_density``, ``w_density``, ``v_density`` and
``theta_density`` (fraction of each matrix kept non-zero by iterative hard thresholding),
``sigma`` (sharpness of the node non-linearity ``tanh(sigma V_k z)``) and
``path_sigma_end`` (the soft-path sharpness reached at the end of annealing).

Models are scored as int8 (`.quant`) by the ``estimate`` backend or as generated C by
``c_sim`` (simavr on the Uno): the int8 model brings its own C (`.codegen`, through
`nas.backends.CExportable`), so the backend knows nothing of trees. TFLite Micro has no
operator for a path-dependent tree, so ``backend=tflm`` is refused with a clear message,
and ``ptq`` is the compression method that applies. A binary one-vs-rest task
(``dataset.positive_class=3``) gives a tree with one score, whose sign decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from torch import nn

from nas import hookimpl
from nas.cost import Cost
from nas.data import Arrays
from nas.errors import ConfigError
from nas.graph import Graph
from nas.hardware import HardwareProfile
from nas.spaces import ArchSpec, BaseSearchSpace, area
from nas.train import TrainSettings

from . import cost as bonsai_cost
from .model import Bonsai, BonsaiShape, fit_bonsai, num_scores

MAX_INDEXED = 255  # one-byte indices and counts (see .cost)


@dataclass
class BonsaiConfig:
    """Choices of the Bonsai space (each list is what the sampler may pick)."""

    resolutions: list[int] = field(default_factory=lambda: [8, 14])
    proj_dims: list[int] = field(default_factory=lambda: [4, 6, 8, 12, 16, 24])
    depths: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    densities: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.5, 1.0])
    sigmas: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])
    path_sigma_ends: list[float] = field(default_factory=lambda: [4.0, 16.0, 64.0])
    #: The projection reads each input feature once, so the input need not be held in
    #: SRAM; set false when the whole input sits in SRAM anyway (e.g. a camera frame).
    stream_input: bool = True


class BonsaiSearchSpace(BaseSearchSpace):
    """Sparse projection + shallow sparse tree, sized for 2 KB of SRAM."""

    name = "bonsai"
    Config = BonsaiConfig
    op_kinds = bonsai_cost.OP_KINDS
    backends = ("estimate", "c_sim")
    compression = ("ptq",)

    def sample(self, trial: optuna.Trial) -> ArchSpec:
        c = self.config
        spec: ArchSpec = {
            "resolution": trial.suggest_categorical("resolution", list(c.resolutions)),
            "proj_dim": trial.suggest_categorical("proj_dim", list(c.proj_dims)),
            "depth": trial.suggest_categorical("depth", list(c.depths)),
        }
        for group in ("z", "w", "v", "theta"):
            key = f"{group}_density"
            spec[key] = trial.suggest_categorical(key, list(c.densities))
        spec["sigma"] = trial.suggest_categorical("sigma", list(c.sigmas))
        spec["path_sigma_end"] = trial.suggest_categorical(
            "path_sigma_end", list(c.path_sigma_ends)
        )
        return spec

    def resolution(self, spec: ArchSpec) -> int:
        return int(spec["resolution"])

    def shape(
        self,
        spec: ArchSpec,
        in_channels: int,
        num_classes: int,
        input_hw: tuple[int, int] | None = None,
    ) -> BonsaiShape:
        """The sizes of the model for ``spec`` (``input_hw``: as in `build`)."""
        proj = int(spec["proj_dim"])
        if not 1 <= proj <= MAX_INDEXED or num_scores(num_classes) > MAX_INDEXED:
            raise ConfigError(
                f"search_space.proj_dims: {proj} is out of range; valid: 1 to {MAX_INDEXED} "
                f"(and at most {MAX_INDEXED} classes)"
            )
        density = {g: float(spec[f"{g.lower()}_density"]) for g in ("Z", "W", "V", "theta")}
        for g, d in density.items():
            if not 0.0 < d <= 1.0:
                raise ConfigError(
                    f"search_space.densities: {d} for {g} is out of range; valid: (0, 1]"
                )
        return BonsaiShape(
            in_features=in_channels * area(input_hw or self.resolution(spec)),
            proj_dim=proj,
            depth=int(spec["depth"]),
            num_scores=num_scores(num_classes),
            density=density,
        )

    def build(
        self,
        spec: ArchSpec,
        in_channels: int,
        num_classes: int,
        input_hw: tuple[int, int] | None = None,
    ) -> nn.Module:
        shape = self.shape(spec, in_channels, num_classes, input_hw)
        return Bonsai(shape, float(spec["sigma"]), float(spec["path_sigma_end"]))

    def random_model(self, spec: ArchSpec, in_channels: int, num_classes: int) -> nn.Module:
        """Random weights with exactly the sampled number of entries per matrix, as after
        training (the support frozen)."""
        module = self.build(spec, in_channels, num_classes).eval()
        assert isinstance(module, Bonsai)
        module.threshold(freeze=True)
        return module

    def trace(self, module: nn.Module, input_shape: tuple[int, ...], name: str) -> Graph | None:
        return None

    def cost(self, module: nn.Module, graph: Graph | None, hw: HardwareProfile) -> Cost:
        assert isinstance(module, Bonsai)
        return bonsai_cost.estimate(module.shape, hw, self.config.stream_input)

    def layers(
        self, module: nn.Module, graph: Graph | None, hw: HardwareProfile
    ) -> list[dict[str, Any]]:
        assert isinstance(module, Bonsai)
        return bonsai_cost.per_op(module.shape, hw, self.config.stream_input)

    def fit(
        self,
        module: nn.Module,
        data: Arrays,
        settings: TrainSettings,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> list[float]:
        assert isinstance(module, Bonsai)
        return fit_bonsai(module, data, settings, on_epoch)


@hookimpl
def nas_register_search_spaces():
    return [BonsaiSearchSpace]
