"""The MobileNet-like space as one weight-sharing network (``search.strategy=supernet``).

Every architecture of the space is a subnet: each stage keeps its first ``depth`` blocks,
each convolution its first output (and input) channels, each depthwise convolution the
centred ``k x k`` window of the largest kernel (``k x 1`` on sensor windows, whose
networks run ``k x 1`` kernels), and each block's hidden layer its first ``cin x expand``
channels. Batch normalisation keeps one set of statistics per channel,
shared by every subnet that uses it; the search recalibrates them per subnet
(`nas.supernet.recalibrate_bn`) before scoring it. Resolution is a property of the input:
the caller feeds images resized to the subnet's resolution. This is Once-for-All's
elastic depth, width and kernel (Cai et al., ICLR 2020), with the kernel shared by
centre cropping instead of OFA's learned kernel transforms.

`extract` copies a subnet's weights into the module `MobileNetSearchSpace.build` makes for
the same choices, so an extracted subnet is an ordinary model of the space: the same
graph, static cost, int8 export and deploy artifacts as one trained alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from nas.graph import same_padding
from nas.spaces import ArchSpec, Supernet
from nas_space_mobilenet import choices


def non_square(x: torch.Tensor) -> bool:
    """Whether the NCHW batch ``x`` is not square (sensor windows, feature maps): its
    networks span each kernel only along axes longer than 1 (`nas.spaces.build_model`
    builds them with the size as a tuple), so (T, 1) windows run ``k x 1`` kernels."""
    return x.shape[-1] != x.shape[-2]


class ElasticConvBN(nn.Module):
    """The largest convolution (no bias) and batch norm of one position in the network;
    `run` uses a slice of it."""

    def __init__(self, cin: int, cout: int, kernel: int, depthwise: bool = False) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.conv = nn.Conv2d(cin, cout, kernel, groups=cout if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def weight(self, cin: int, cout: int, kh: int, kw: int) -> torch.Tensor:
        """The first ``cout`` filters over the first ``cin`` inputs, centre ``kh x kw``."""
        w = self.conv.weight[:cout] if self.depthwise else self.conv.weight[:cout, :cin]
        top, left = (w.shape[-2] - kh) // 2, (w.shape[-1] - kw) // 2
        return w[..., top : top + kh, left : left + kw]

    def run(
        self, x: torch.Tensor, cout: int, kernel: int, stride: int, act: bool, per_axis: bool
    ) -> torch.Tensor:
        """Convolution (TF ``SAME`` padding, as `nas.spaces.conv_bn`), batch norm on the
        first ``cout`` channels, then ReLU6 when ``act``. ``per_axis`` (a network whose
        input is not square): the kernel spans 1 along an axis of extent 1, as
        `nas.spaces.conv_bn` builds it."""
        h, w = x.shape[-2:]
        kh, kw = (kernel if h > 1 else 1, kernel if w > 1 else 1) if per_axis else (kernel,) * 2
        top, bottom, _ = same_padding(h, kh, stride)
        left, right, _ = same_padding(w, kw, stride)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        groups = cout if self.depthwise else 1
        y = F.conv2d(x, self.weight(x.shape[1], cout, kh, kw), None, stride, 0, 1, groups)
        bn = self.bn
        assert bn.running_mean is not None and bn.running_var is not None
        y = F.batch_norm(
            y,
            bn.running_mean[:cout],  # views: training updates the shared statistics
            bn.running_var[:cout],
            bn.weight[:cout],
            bn.bias[:cout],
            self.training,
            bn.momentum if bn.momentum is not None else 0.1,
            bn.eps,
        )
        return F.relu6(y) if act else y

    def copy_into(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, cin: int, cout: int) -> None:
        """Write this slice into a stand-alone ``conv`` and ``bn``, the centre window of
        ``conv``'s kernel shape (``k x k``, or ``k x 1`` in a window network)."""
        with torch.no_grad():
            conv.weight.copy_(self.weight(cin, cout, *conv.weight.shape[-2:]))
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(getattr(self.bn, name)[:cout])
            bn.num_batches_tracked.copy_(self.bn.num_batches_tracked)


class ElasticBlock(nn.Module):
    """An inverted-residual block at its largest; `convs` lists the slices one choice uses."""

    def __init__(self, cin: int, cout: int, kernel: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = ElasticConvBN(cin, hidden, 1)
        self.depthwise = ElasticConvBN(hidden, hidden, kernel, depthwise=True)
        self.project = ElasticConvBN(hidden, cout, 1)

    def convs(self, cin: int, cout: int, expand: int) -> list[tuple[ElasticConvBN, int, int]]:
        """(layer, cin, cout) of each convolution this choice runs, in order."""
        hidden = cin * expand
        first = [(self.expand, cin, hidden)] if expand != 1 else []
        return [*first, (self.depthwise, hidden, hidden), (self.project, hidden, cout)]

    def run(
        self, x: torch.Tensor, cout: int, kernel: int, expand: int, stride: int, per_axis: bool
    ) -> torch.Tensor:
        cin = x.shape[1]
        y = x
        if expand != 1:
            y = self.expand.run(y, cin * expand, 1, 1, True, per_axis)
        y = self.depthwise.run(y, cin * expand, kernel, stride, True, per_axis)
        y = self.project.run(y, cout, 1, 1, False, per_axis)
        return x + y if stride == 1 and cin == cout else y


class MobileNetSupernet(Supernet):
    """Every architecture of a `MobileNetConfig` in one network."""

    def __init__(self, config, in_channels: int, num_classes: int) -> None:  # noqa: ANN001
        super().__init__()
        c = self.config = config
        self.in_channels, self.num_classes = in_channels, num_classes
        stem, width = max(c.stem_channels), max(c.widths)
        self.stem = ElasticConvBN(in_channels, stem, 3)
        self.stages = nn.ModuleList()
        for i in range(c.stages):
            first_in = stem if i == 0 else width
            blocks = [
                ElasticBlock(
                    first_in if b == 0 else width, width, max(c.kernels), max(c.expansions)
                )
                for b in range(max(c.depths))
            ]
            self.stages.append(nn.ModuleList(blocks))
        self.head = nn.Linear(max(width, stem), num_classes)

    # -------------------------------------------------------------- choices

    def _pick(self, pick: Callable[[str, list[int]], int]) -> ArchSpec:
        """A spec with each choice of the space made by ``pick(name, options)``."""
        return {name: pick(name, opts) for name, opts in choices(self.config)}

    def largest(self) -> ArchSpec:
        # The most compute: every size at its largest, strides at their smallest.
        return self._pick(lambda name, opts: min(opts) if "stride" in name else max(opts))

    def smallest(self) -> ArchSpec:
        return self._pick(lambda name, opts: max(opts) if "stride" in name else min(opts))

    def random(self, rng: random.Random) -> ArchSpec:
        return self._pick(lambda name, opts: rng.choice(list(opts)))

    def resolution(self, spec: ArchSpec) -> int:
        return int(spec["resolution"])

    # -------------------------------------------------------------- running a subnet

    def _blocks(self, spec: ArchSpec) -> Iterator[tuple[ElasticBlock, int, int, int, int]]:
        """(block, cout, kernel, expand, stride) of each block ``spec`` runs, in order."""
        for i, stage in enumerate(self.stages, start=1):
            for b in range(int(spec[f"s{i}_depth"])):
                stride = int(spec[f"s{i}_stride"]) if b == 0 else 1
                w, k, e = spec[f"s{i}_width"], spec[f"s{i}_kernel"], spec[f"s{i}_expand"]
                yield stage[b], int(w), int(k), int(e), stride

    def forward(self, x: torch.Tensor, spec: ArchSpec) -> torch.Tensor:  # type: ignore[override]
        per_axis = non_square(x)
        stride = int(spec.get("stem_stride", self.config.stem_strides[0]))
        x = self.stem.run(x, int(spec["stem_channels"]), 3, stride, True, per_axis)
        for block, cout, kernel, expand, stride in self._blocks(spec):
            x = block.run(x, cout, kernel, expand, stride, per_axis)
        x = x.mean(dim=(2, 3))
        return F.linear(x, self.head.weight[:, : x.shape[1]], self.head.bias)

    def extract(self, spec: ArchSpec, module: nn.Module) -> nn.Module:
        convs = [(self.stem, self.in_channels, int(spec["stem_channels"]))]
        cin = int(spec["stem_channels"])
        for block, cout, _, expand, _ in self._blocks(spec):
            convs += block.convs(cin, cout, expand)
            cin = cout
        conv2d = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        linear = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if not len(conv2d) == len(norms) == len(convs) or len(linear) != 1:
            raise ValueError("the module is not the space's network for this spec")
        for (layer, ci, co), conv, bn in zip(convs, conv2d, norms, strict=True):
            layer.copy_into(conv, bn, ci, co)
        with torch.no_grad():
            linear[0].weight.copy_(self.head.weight[:, :cin])
            linear[0].bias.copy_(self.head.bias)
        return module.eval()
