"""Hand-designed reference networks, each scaled by one width and one input resolution:
the baselines a search has to beat.

Families (``family``), with ``width`` the channels (or units) of the first layer and every
later layer a fixed multiple of it, the way the original papers scale their models:

- ``dscnn``: the depthwise-separable CNN of the MLPerf Tiny keyword-spotting benchmark
  (Zhang et al., "Hello Edge", 2017; MLPerf Tiny's DS-CNN has 64 filters): a stride-2
  convolution, four depthwise-separable blocks at the same width, average pooling and a
  linear classifier. Its first kernel is 10 x 4 on inputs that are not square (the
  keyword-spotting model's, on 49 x 10 MFCC; 10 x 1 on sensor windows) and 3 x 3 on
  square images.
- ``mobilenet_v1``: MobileNetV1 (Howard et al., 2017): a stride-2 3x3 convolution and 13
  depthwise-separable blocks whose widths are 2, 4, 4, 8, 8, 16 (x6), 32, 32 times the
  first layer's (``width`` 8 is the paper's 0.25 width multiplier), ReLU6 activations.
- ``cnn``: a plain small CNN: 3x3 convolution, 2x2 average pooling, 3x3 convolution at
  twice the width, 2x2 average pooling, linear classifier (ReLU activations).
- ``mlp``: one hidden fully connected layer of ``width`` units with ReLU, on the
  flattened image.

A spec may also carry the choices the ``families`` space searches around each design
(absent, each takes the paper's value): ``blocks`` (DS-CNN's separable blocks, 4),
``kernel`` (DS-CNN's depthwise kernel, or the small CNN's kernel, 3), ``layers`` (the
small CNN's convolution + pooling stages, each twice as wide as the one before, 2; the
MLP's hidden layers, each half as wide as the one before, 1), ``convs`` (the small CNN's
convolutions per stage before its pooling, 1; 2 is VGG's stage, Simonyan and Zisserman,
2015) and ``hidden`` (the small CNN's fully connected layer of that many units with ReLU
between its last pooling and the classifier, as in LeNet-5; 0, none).

Every convolution has batch-norm (folded into it for the chip). `ReferenceSearchSpace`
is an ordinary search space (``search_space=reference`` samples family, width and
resolution), and `ReferenceSearchSpace.scaled` gives each family's largest version that
fits a hardware profile, which is how the benchmarks size their baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from torch import nn

from nas import hookimpl
from nas.errors import ConfigError
from nas.hardware import HardwareProfile
from nas.spaces import ArchSpec, BaseSearchSpace, Size, area, conv_bn, pool2

FAMILIES = ("dscnn", "mobilenet_v1", "cnn", "mlp")
#: MobileNetV1's block widths and strides, the widths in units of the first layer's.
MOBILENET_V1 = [(2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2), *[(16, 1)] * 5, (32, 2), (32, 1)]
DSCNN_BLOCKS = 4
#: The MLPerf Tiny keyword-spotting DS-CNN's first kernel (frames x coefficients).
DSCNN_KWS_KERNEL = (10, 4)


@dataclass
class ReferenceConfig:
    """Choices of the reference space (each list is what the sampler may pick)."""

    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    widths: list[int] = field(
        default_factory=lambda: [2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]
    )
    resolutions: list[int] = field(default_factory=lambda: [8, 12, 14, 16, 20, 28])


#: What a spec without the ``families`` choices gets, per family: the hand designs.
DEFAULTS: dict[str, dict[str, int]] = {
    "dscnn": {"blocks": DSCNN_BLOCKS, "kernel": 3},
    "mobilenet_v1": {},
    "cnn": {"layers": 2, "convs": 1, "kernel": 3, "hidden": 0},
    "mlp": {"layers": 1},
}


def separable(
    cin: int, cout: int, stride: int, size: Size, act: str, kernel: int = 3
) -> tuple[list, Size]:
    """Depthwise kxk + BN + act, then pointwise 1x1 + BN + act (MobileNetV1's block)."""
    dw, size = conv_bn(cin, cin, kernel, stride, size, cin, act)
    pw, size = conv_bn(cin, cout, 1, 1, size, 1, act)
    return dw + pw, size


class ReferenceSearchSpace(BaseSearchSpace):
    """DS-CNN, MobileNetV1, a small CNN and an MLP at any width and resolution."""

    name = "reference"
    Config = ReferenceConfig

    def sample(self, trial: optuna.Trial) -> ArchSpec:
        c = self.config
        return {
            "family": trial.suggest_categorical("family", list(c.families)),
            "width": trial.suggest_categorical("width", list(c.widths)),
            "resolution": trial.suggest_categorical("resolution", list(c.resolutions)),
        }

    def resolution(self, spec: ArchSpec) -> int:
        return int(spec["resolution"])

    def build(
        self,
        spec: ArchSpec,
        in_channels: int,
        num_classes: int,
        input_hw: tuple[int, int] | None = None,
    ) -> nn.Module:
        family, w = spec["family"], int(spec["width"])
        if family not in DEFAULTS:
            raise ConfigError(f"architecture {spec}: 'family' must be one of {FAMILIES}")
        spec = {**DEFAULTS[family], **spec}
        size: Size = input_hw or self.resolution(spec)
        kernel = int(spec.get("kernel", 3))  # MobileNetV1's: 3 x 3
        layers: list[nn.Module] = [nn.Flatten()] if family == "mlp" else []
        if family == "mlp":
            cin = in_channels * area(size)
            for i in range(int(spec["layers"])):
                units = max(2, w >> i)
                layers += [nn.Linear(cin, units), nn.ReLU()]
                cin = units
            return nn.Sequential(*layers, nn.Linear(cin, num_classes))
        if family == "cnn":
            cin = in_channels
            for i in range(int(spec["layers"])):
                for _ in range(int(spec["convs"])):
                    conv, size = conv_bn(cin, w << i, kernel, 1, size, 1, "relu")
                    layers += conv
                    cin = w << i
                pool, size = pool2(size)
                layers.append(pool)
            cin = cin * area(size)
            layers.append(nn.Flatten())
            hidden = int(spec["hidden"])
            if hidden:
                layers += [nn.Linear(cin, hidden), nn.ReLU()]
                cin = hidden
            return nn.Sequential(*layers, nn.Linear(cin, num_classes))
        act = "relu6" if family == "mobilenet_v1" else "relu"
        first = DSCNN_KWS_KERNEL if family == "dscnn" and not isinstance(size, int) else 3
        stem, size = conv_bn(in_channels, w, first, 2, size, 1, act)
        layers, cin = list(stem), w
        blocks = MOBILENET_V1 if family == "mobilenet_v1" else [(1, 1)] * int(spec["blocks"])
        for mult, stride in blocks:
            block, size = separable(cin, mult * w, stride, size, act, kernel)
            layers += block
            cin = mult * w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
        return nn.Sequential(*layers)

    def scaled(
        self, family: str, hw: HardwareProfile, in_channels: int, num_classes: int
    ) -> tuple[ArchSpec, dict[str, Any]] | None:
        """The version of ``family`` (a width and a resolution from the config) that fits
        ``hw`` with the most MACs, and its static cost; ``None`` when none fits. More
        compute is the usual way a hand-designed model is scaled up to a budget; ties go to
        the higher resolution."""
        best: tuple[tuple[int, int], ArchSpec, dict[str, Any]] | None = None
        for size in self.config.resolutions:
            for width in self.config.widths:
                spec = {"family": family, "width": width, "resolution": size}
                module = self.build(spec, in_channels, num_classes)
                shape = (1, in_channels, size, size)
                graph = self.trace(module, shape, f"{family} width {width} at {size}")
                cost = self.cost(module, graph, hw)
                key = (cost.macs, size)
                if not cost.infeasible_reason(hw) and (best is None or key > best[0]):
                    best = (key, spec, cost.as_dict())
        return None if best is None else (best[1], best[2])


@hookimpl
def nas_register_search_spaces():
    return [ReferenceSearchSpace]
