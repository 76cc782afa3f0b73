"""Search spaces: sample an architecture from an Optuna trial, build it as a torch module.

A search space is a class with a unique ``name`` and a ``Config`` dataclass (its Hydra
options, e.g. ``search_space.resolutions=[8,16]``). ``sample`` turns a trial into an
``ArchSpec``: a flat dict of JSON-serialisable choices, one Optuna parameter each, which is
also one column of ``trials.csv``. ``build`` turns an ``ArchSpec`` back into the same
network, bit for bit, so any trial can be rebuilt from its parameters alone.

Most spaces produce layer networks that `nas.graph.trace` turns into a `Graph`; the
defaults of ``trace``, ``cost``, ``layers`` and ``fit`` handle them. A space whose models
are not layer graphs (Bonsai's tree) overrides those four, returns ``None`` from
``trace``, gives its modules a ``quantize_int8(calib_nchw)`` method (used by the ``ptq``
method) and declares the ``backends`` and ``compression`` methods that can handle its
models; the search refuses any other with a clear message (`check_supported`). For C
backends (``c_sim``), its int8 model implements `nas.backends.CExportable` (``to_c``);
tools that measure generated code on random models (``python -m nas calibrate``) build
them with `BaseSearchSpace.random_model`, which such a space may override.

A space may also offer its architectures as one weight-sharing network: ``supernet``
returns a `Supernet` whose ``extract`` copies a subnet's weights into the module ``build``
makes for the same spec. ``search.strategy=supernet`` (`nas.supernet`) then scores
candidates with inherited weights instead of training each.
"""

from __future__ import annotations

import inspect
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import optuna
import torch
from torch import nn

from nas.cost import Cost, estimate, per_op
from nas.data import FEATURES, IMAGES, Arrays, input_hw
from nas.errors import ConfigError
from nas.graph import LUT_KINDS, Graph, same_padding
from nas.graph import trace as trace_graph
from nas.hardware import HardwareProfile
from nas.train import TrainSettings
from nas.train import fit as fit_module

ArchSpec = dict[str, Any]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6}


#: The spatial size a space builds for: an int for square images (the resolution), or
#: (height, width) for other inputs, such as (T, 1) sensor windows (`input_hw`).
Size = int | tuple[int, int]


def conv_bn(
    cin: int, cout: int, k: int | tuple[int, int], stride: int, size: Size, groups: int, act: str
) -> tuple[list[nn.Module], Size]:
    """Conv (TF-SAME padded) + BN (+ ``act``: ``relu``, ``relu6`` or ``none``) as a list of
    layers, and the output size. Stride-2 convolutions pad the way TensorFlow Lite's
    ``SAME`` padding does (the extra row/column at the bottom/right), so the exported model
    computes the same thing.

    ``size`` an int: a ``k x k`` kernel on a square input. ``size`` (h, w): the kernel
    spans ``k`` along each axis longer than 1 and 1 along an axis of extent 1, so a (T, 1)
    window gets ``k x 1`` kernels. ``k`` may be (kh, kw) for a tuple ``size``: the
    keyword-spotting DS-CNN's 10 x 4 first convolution."""
    h, w = (size, size) if isinstance(size, int) else size
    kh, kw = (k, k) if isinstance(k, int) else k
    if not isinstance(size, int):
        kh, kw = (kh if h > 1 else 1, kw if w > 1 else 1)
    elif kh != kw:
        raise ValueError(f"a square input takes a square kernel, not {k}")
    top, bottom, oh = same_padding(h, kh, stride)
    left, right, ow = same_padding(w, kw, stride)
    kernel: int | tuple[int, int] = kh if kh == kw else (kh, kw)
    layers: list[nn.Module] = []
    if top == bottom and left == right:
        pad = top if top == left else (top, left)
        conv = nn.Conv2d(cin, cout, kernel, stride, padding=pad, groups=groups, bias=False)
    else:
        layers.append(nn.ZeroPad2d((left, right, top, bottom)))
        conv = nn.Conv2d(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)
    layers += [conv, nn.BatchNorm2d(cout)]
    if act != "none":
        layers.append(_ACTIVATIONS[act]())
    return layers, (oh if isinstance(size, int) else (oh, ow))


def area(size: Size) -> int:
    """Pixels (or samples) of one channel at ``size``."""
    return size * size if isinstance(size, int) else size[0] * size[1]


def pool2(size: Size) -> tuple[nn.Module, Size]:
    """2x2 average pooling (2x1 along a window), and the output size."""
    if isinstance(size, int):
        return nn.AvgPool2d(2), size // 2
    kernel = (2 if size[0] > 1 else 1, 2 if size[1] > 1 else 1)
    return nn.AvgPool2d(kernel), (size[0] // kernel[0], size[1] // kernel[1])


@dataclass
class SearchSpaceConfig:
    """Options every search space has (subclass it to add more)."""


class Supernet(nn.Module, ABC):
    """A space's architectures as one weight-sharing network (``search.strategy=supernet``,
    `nas.supernet`): every spec of the space is a subnet that runs with the shared weights.
    """

    @abstractmethod
    def largest(self) -> ArchSpec:
        """The subnet with the most compute (the teacher of in-place distillation)."""

    @abstractmethod
    def smallest(self) -> ArchSpec:
        """The subnet with the least compute."""

    @abstractmethod
    def random(self, rng: random.Random) -> ArchSpec:
        """A subnet drawn uniformly, choice by choice, with ``rng``."""

    @abstractmethod
    def resolution(self, spec: ArchSpec) -> int:
        """The input size of the subnet ``spec`` (the caller resizes the images)."""

    @abstractmethod
    def forward(self, x: torch.Tensor, spec: ArchSpec) -> torch.Tensor:  # type: ignore[override]
        """Logits of the subnet ``spec`` for NCHW ``x`` at its resolution."""

    @abstractmethod
    def extract(self, spec: ArchSpec, module: nn.Module) -> nn.Module:
        """Copy the subnet's weights into ``module``, the space's own network for ``spec``
        (`BaseSearchSpace.build`), and return it in eval mode: it then computes what the
        supernet computes for ``spec``."""


class BaseSearchSpace(ABC):
    """One family of architectures (MobileNet-like, Bonsai-like, ...)."""

    name: ClassVar[str]
    Config: ClassVar[type] = SearchSpaceConfig
    #: Latency lookup-table entries a hardware profile needs for this space's networks.
    op_kinds: ClassVar[tuple[str, ...]] = LUT_KINDS
    #: Backends that can score this space's int8 models (``None``: every backend).
    backends: ClassVar[tuple[str, ...] | None] = None
    #: Compression methods that apply to its models (``None``: every method).
    compression: ClassVar[tuple[str, ...] | None] = None
    #: True for a space of several model kinds (``families``: layer graphs and Bonsai
    #: trees); tools that measure one kind of model (``calibrate``) pass it over.
    mixed: ClassVar[bool] = False

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def sample(self, trial: optuna.Trial) -> ArchSpec:
        """Suggest every choice of one architecture through ``trial``."""

    @abstractmethod
    def build(
        self,
        spec: ArchSpec,
        in_channels: int,
        num_classes: int,
        input_hw: tuple[int, int] | None = None,
    ) -> nn.Module:
        """The (untrained) network for ``spec``; its input is NCHW float, square images of
        ``resolution(spec)``, or of (height, width) ``input_hw`` when given: (T, 1) sensor
        windows or a feature map such as 49 x 10 MFCC. Kernels then span 1 along an axis
        of extent 1 (`conv_bn` does this when given the size as a tuple), so windows get
        ``k x 1`` kernels. A space that leaves the parameter out takes images only."""

    @abstractmethod
    def resolution(self, spec: ArchSpec) -> int:
        """Input height and width the network expects for ``spec``."""

    def random_model(self, spec: ArchSpec, in_channels: int, num_classes: int) -> nn.Module:
        """An untrained network of ``spec`` in eval mode, its random weights in the state
        training leaves them (here: non-trivial batch-norm statistics, drawn from torch's
        global generator), for measuring generated code without training. A space whose
        training changes more (e.g. sparsity) overrides this."""
        module = self.build(spec, in_channels, num_classes).eval()
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        return module

    def complete(self, spec: ArchSpec) -> ArchSpec:
        """``spec`` with each choice it leaves out that the space builds one known way when
        absent named with that value: an architecture from a run made before the space
        gained the choice, made whole so it can be enqueued again (`nas.finalize`). A
        space whose choices have no such value returns ``spec`` as it is."""
        return dict(spec)

    def family(self, spec: ArchSpec) -> str:
        """The model family of ``spec`` (the ``family`` column): its ``family`` choice
        when it has one, else the space's name."""
        return str(spec.get("family", self.name))

    def restrict(self, hw: HardwareProfile, backend: str, methods: Sequence[Any]) -> list[str]:
        """Leave out the parts of the space that cannot run with this chip, backend and
        compression (`BaseCompressionMethod` instances); one note per part left out. A
        space of one kind of model has no parts: it is checked whole
        (`check_supported`)."""
        return []

    def backend_for(self, spec: ArchSpec, selected: str) -> str:
        """The backend that scores ``spec``: the selected one, unless the space mixes
        model kinds and this one needs another (the ``families`` space scores Bonsai
        trees with ``estimate`` when the search selected ``tflm``)."""
        return selected

    def supernet(self, in_channels: int, num_classes: int) -> Supernet | None:
        """The space as one weight-sharing network, or None when it has none (the
        ``supernet`` search strategy then refuses it)."""
        return None

    def trace(self, module: nn.Module, input_shape: tuple[int, ...], name: str) -> Graph | None:
        """The layer graph of ``module`` (``None`` for models that are not layer graphs)."""
        return trace_graph(module, input_shape, name)

    def cost(self, module: nn.Module, graph: Graph | None, hw: HardwareProfile) -> Cost:
        """Static cost of the int8 model on ``hw``, before any training."""
        assert graph is not None
        return estimate(graph, hw)

    def layers(
        self, module: nn.Module, graph: Graph | None, hw: HardwareProfile
    ) -> list[dict[str, Any]]:
        """One row per operation for reports: ``op``, ``kind``, ``macs``, ``latency_ms``,
        ``live_bytes`` (SRAM in use while it runs) and ``scratch_bytes``."""
        assert graph is not None
        return per_op(graph, hw)

    def fit(
        self,
        module: nn.Module,
        data: Arrays,
        settings: TrainSettings,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> list[float]:
        """Train ``module``; ``on_epoch(epoch, val_acc)`` may raise to stop early."""
        return fit_module(module, data, settings, on_epoch)


def build_model(
    space: BaseSearchSpace,
    spec: ArchSpec,
    in_channels: int,
    num_classes: int,
    kind: str,
    fixed_hw: tuple[int, int] | None = None,
) -> tuple[nn.Module, tuple[int, int, int, int]]:
    """The (untrained) network of ``spec`` for ``kind`` inputs (`nas.data.KINDS`; feature
    maps of size ``fixed_hw``), and its NCHW input shape (batch 1). A square input builds
    as an image of its side; only other shapes reach ``build`` as ``input_hw``."""
    hw = input_hw(kind, space.resolution(spec), fixed_hw)
    shape = (1, in_channels, *hw)
    if hw[0] == hw[1]:
        return space.build(spec, in_channels, num_classes), shape
    return space.build(spec, in_channels, num_classes, input_hw=hw), shape


def check_kind(space: type[BaseSearchSpace], kind: str) -> None:
    """A `ConfigError` when the space cannot build networks for ``kind`` inputs."""
    if kind != IMAGES and "input_hw" not in inspect.signature(space.build).parameters:
        raise ConfigError(
            f"search space '{space.name}' takes square images only, not {kind}; use "
            "search_space=mobilenet, reference or bonsai"
        )


def pin_resolution(space: BaseSearchSpace, data: Arrays) -> None:
    """Feature maps have a fixed size: a space's ``resolutions`` choice becomes their
    height alone, so no two candidates differ only in a resolution nothing uses."""
    if data.kind == FEATURES and hasattr(space.config, "resolutions"):
        space.config.resolutions = [data.resolution]


def check_latency_table(space: type[BaseSearchSpace], hw: HardwareProfile) -> None:
    """A `ConfigError` when ``hw``'s latency table lacks an op kind the space's models use."""
    missing = [k for k in space.op_kinds if k not in hw.latency_lut]
    if missing:
        raise ConfigError(
            f"{hw.source_file}: latency_lut has no entry for {', '.join(missing)}, which "
            f"search space '{space.name}' needs"
        )


def support_problem(
    space: BaseSearchSpace, hw: HardwareProfile, backend: str, methods: Sequence[Any]
) -> str | None:
    """Why ``space`` cannot run with this chip, backend and compression methods (their
    ``check``), or None: the message of the `ConfigError` a search would stop with."""
    try:
        check_latency_table(type(space), hw)
        check_supported(type(space), backend, [m.name for m in methods])
        for method in methods:
            method.check(hw, backend, methods)
    except ConfigError as exc:
        return str(exc)
    return None


def check_supported(
    space: type[BaseSearchSpace], backend: str, compression: Sequence[str]
) -> None:
    """A `ConfigError` when the backend or a compression method cannot handle the space."""
    if space.backends is not None and backend not in space.backends:
        raise ConfigError(
            f"search space '{space.name}' runs on backend {' or '.join(space.backends)}, "
            f"not '{backend}': use backend={space.backends[0]}"
        )
    if space.compression is not None:
        bad = [m for m in compression if m not in space.compression]
        if bad:
            raise ConfigError(
                f"search space '{space.name}' supports compression methods "
                f"{', '.join(space.compression)}; '{bad[0]}' cannot compress its models"
            )
