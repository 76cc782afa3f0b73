"""MobileNet-like search space: a stem convolution, stages of inverted-residual blocks,
global average pooling and a linear classifier.

Choices (one Optuna parameter each, also one ``arch_`` column in ``trials.csv``):
``resolution`` (input size), ``stem_channels``, ``stem_stride`` (only when
``stem_strides`` offers more than one: 2 halves a large input at the first convolution,
as MobileNetV1 and V2 do), and for each stage ``s<i>_width``,
``s<i>_depth`` (blocks; stages after the first may be skipped with depth 0),
``s<i>_kernel`` (depthwise kernel 3/5/7), ``s<i>_expand`` (expansion ratio; 1 gives a
depthwise-separable block) and ``s<i>_stride`` (2 downsamples at the stage's first block).

Blocks follow MobileNetV2 (Sandler et al., CVPR 2018): 1x1 expansion + BN + ReLU6,
depthwise kxk + BN + ReLU6, 1x1 projection + BN, and a residual add when the shape is
kept. Stride-2 depthwise convolutions pad the way TensorFlow Lite's ``SAME`` padding does
(extra row/column at the bottom/right), so the exported model computes the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
from torch import nn

from nas import hookimpl
from nas.spaces import ArchSpec, BaseSearchSpace, Size, Supernet, conv_bn


@dataclass
class MobileNetConfig:
    """Choices of the MobileNet-like space (each list is what the sampler may pick)."""

    resolutions: list[int] = field(default_factory=lambda: [8, 12, 16])
    stem_channels: list[int] = field(default_factory=lambda: [4, 8, 16])
    stem_strides: list[int] = field(default_factory=lambda: [1])
    stages: int = 3
    widths: list[int] = field(default_factory=lambda: [8, 16, 24, 32, 48])
    depths: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    kernels: list[int] = field(default_factory=lambda: [3, 5, 7])
    expansions: list[int] = field(default_factory=lambda: [1, 2, 4, 6])
    strides: list[int] = field(default_factory=lambda: [1, 2])


def choices(c: MobileNetConfig) -> list[tuple[str, list[int]]]:
    """Every choice of the space in sampling order: (Optuna parameter, options). The
    first stage is never skipped; ``stem_stride`` is a choice only when it has options."""
    out = [("resolution", list(c.resolutions)), ("stem_channels", list(c.stem_channels))]
    if len(c.stem_strides) > 1:
        out.append(("stem_stride", list(c.stem_strides)))
    for i in range(1, c.stages + 1):
        out += [
            (f"s{i}_width", list(c.widths)),
            (f"s{i}_depth", [d for d in c.depths if d > 0] if i == 1 else list(c.depths)),
            (f"s{i}_kernel", list(c.kernels)),
            (f"s{i}_expand", list(c.expansions)),
            (f"s{i}_stride", list(c.strides)),
        ]
    return out


class InvertedResidual(nn.Module):
    """MobileNetV2 block; ``expand == 1`` drops the expansion convolution."""

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int, size: Size):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += conv_bn(cin, hidden, 1, 1, size, 1, act="relu6")[0]
        dw, out = conv_bn(hidden, hidden, kernel, stride, size, hidden, act="relu6")
        layers += dw
        layers += conv_bn(hidden, cout, 1, 1, out, 1, act="none")[0]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.out_size = out

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetSearchSpace(BaseSearchSpace):
    """Inverted-residual networks sized for kilobytes of SRAM."""

    name = "mobilenet"
    Config = MobileNetConfig

    def sample(self, trial: optuna.Trial) -> ArchSpec:
        return {name: trial.suggest_categorical(name, opts) for name, opts in choices(self.config)}

    def resolution(self, spec: ArchSpec) -> int:
        return int(spec["resolution"])

    def build(
        self,
        spec: ArchSpec,
        in_channels: int,
        num_classes: int,
        input_hw: tuple[int, int] | None = None,
    ) -> nn.Module:
        size: Size = input_hw or self.resolution(spec)
        stride = spec.get("stem_stride", self.config.stem_strides[0])
        stem, size = conv_bn(in_channels, spec["stem_channels"], 3, stride, size, 1, "relu6")
        layers: list[nn.Module] = list(stem)
        cin = spec["stem_channels"]
        i = 1
        while f"s{i}_width" in spec:
            for b in range(spec[f"s{i}_depth"]):
                stride = spec[f"s{i}_stride"] if b == 0 else 1
                block = InvertedResidual(
                    cin,
                    spec[f"s{i}_width"],
                    spec[f"s{i}_kernel"],
                    spec[f"s{i}_expand"],
                    stride,
                    size,
                )
                layers.append(block)
                size, cin = block.out_size, spec[f"s{i}_width"]
            i += 1
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
        return nn.Sequential(*layers)

    def supernet(self, in_channels: int, num_classes: int) -> Supernet:
        from nas_space_mobilenet.supernet import MobileNetSupernet

        return MobileNetSupernet(self.config, in_channels, num_classes)


@hookimpl
def nas_register_search_spaces():
    return [MobileNetSearchSpace]
