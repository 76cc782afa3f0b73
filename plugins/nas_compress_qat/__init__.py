"""``qat``: quantization-aware fine-tuning, then the same int8 conversion as ``ptq``.

1. Batch norm is folded into the preceding convolutions, as the int8 model has it.
2. For ``epochs``, the network trains with fake quantization in the forward pass (straight-
   through gradients): weights symmetric in [-127, 127], per output channel (per tensor
   for linear layers, and for every layer with ``per_channel=false``, as in ``ptq``), and
   the activations the int8 model stores (the input, every activation output, every
   convolution not followed by one, every residual sum and the logits) on an asymmetric
   int8 grid over their running min/max.
3. The fine-tuned float network is traced and quantized with `nas.int8.quantize`, the same
   arithmetic and calibration as ``ptq``, so only the weights differ.

Recorded: ``qat_acc_int8_ptq`` (the int8 accuracy PTQ gives before fine-tuning) and
``qat_acc_int8`` (after), both on the validation split, computed by the int8 reference.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from nas import hookimpl
from nas.compression import BaseCompressionMethod, Candidate
from nas.data import calibration_batch
from nas.errors import check_option
from nas.int8 import accuracy_int8, quantize
from nas.train import DEFAULT_SETTINGS, TrainSettings, fit

_ACTS = (nn.ReLU, nn.ReLU6)


@dataclass
class QatConfig:
    epochs: int = 4
    lr_scale: float = 0.1
    calibration_samples: int = 256
    momentum: float = 0.1
    seed: int = 0
    per_channel: bool = True

    def __post_init__(self) -> None:
        check_option("compression.qat.epochs", self.epochs, self.epochs >= 0, "0 or more")
        check_option("compression.qat.lr_scale", self.lr_scale, self.lr_scale > 0, "above 0")
        check_option(
            "compression.qat.calibration_samples",
            self.calibration_samples,
            self.calibration_samples >= 1,
            "1 or more",
        )
        check_option(
            "compression.qat.momentum", self.momentum, 0 < self.momentum <= 1, "in (0, 1]"
        )


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy with every ``Conv2d -> BatchNorm2d`` pair of a Sequential folded."""
    module = copy.deepcopy(module).eval()
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            k = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(k)
            folded = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                groups=conv.groups,
                bias=True,
            )
            folded.weight.data.copy_(conv.weight.detach() * k.view(-1, 1, 1, 1))
            folded.bias.data.copy_((bias - bn.running_mean) * k + bn.bias.detach())
            seq[i], seq[i + 1] = folded, nn.Identity()
    return module


def fake_quant_weight(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    dims = tuple(range(1, w.dim()))
    amax = w.detach().abs().amax(dim=dims, keepdim=True) if per_channel else w.detach().abs().max()
    scale = torch.clamp(amax / 127.0, min=1e-12)
    q = torch.clamp(torch.round(w / scale), -127, 127) * scale
    return w + (q - w).detach()


class _Range:
    """Running min/max of a tensor (always including 0) and its int8 fake quantization."""

    def __init__(self, momentum: float) -> None:
        self.lo: float | None = None
        self.hi: float | None = None
        self.momentum = momentum

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        lo, hi = min(float(x.detach().min()), 0.0), max(float(x.detach().max()), 0.0)
        if self.lo is None or self.hi is None:
            self.lo, self.hi = lo, hi
        elif training:
            m = self.momentum
            self.lo, self.hi = (1 - m) * self.lo + m * lo, (1 - m) * self.hi + m * hi
        scale = max((self.hi - self.lo) / 255.0, 1e-12)
        zero = round(-128 - self.lo / scale)
        q = (torch.clamp(torch.round(x / scale) + zero, -128, 127) - zero) * scale
        return x + (q - x).detach()


def _activation_points(module: nn.Module) -> list[nn.Module]:
    """Modules whose outputs the int8 model stores as tensors."""
    points: list[nn.Module] = [m for m in module.modules() if isinstance(m, (*_ACTS, nn.Linear))]
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        mods = list(seq)
        for i, m in enumerate(mods):
            if isinstance(m, nn.Conv2d):
                nxt = next((n for n in mods[i + 1 :] if not isinstance(n, nn.Identity)), None)
                if not isinstance(nxt, _ACTS):
                    points.append(m)
    points += [m for m in module.modules() if getattr(m, "residual", False)]
    return points


def qat_finetune(module: nn.Module, data, settings: TrainSettings, cfg: QatConfig) -> None:
    """Fine-tune ``module`` (BN folded) in place with fake quantization."""
    handles = []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            per_channel = isinstance(m, nn.Conv2d) and cfg.per_channel
            handles.append(
                torch.nn.utils.parametrize.register_parametrization(
                    m, "weight", _WeightFq(per_channel)
                )
            )
    ranges: dict[int, _Range] = {}

    def hook(mod, _inputs, output):
        r = ranges.setdefault(id(mod), _Range(cfg.momentum))
        return r(output, mod.training)

    hooks = [m.register_forward_hook(hook) for m in _activation_points(module)]
    inp = _Range(cfg.momentum)
    hooks.append(module.register_forward_pre_hook(lambda mod, args: (inp(args[0], mod.training),)))
    try:
        fit(module, data, settings)
    finally:
        for h in hooks:
            h.remove()
        for m in module.modules():
            if torch.nn.utils.parametrize.is_parametrized(m, "weight"):
                torch.nn.utils.parametrize.remove_parametrizations(
                    m, "weight", leave_parametrized=False
                )
    module.eval()
    del handles


class _WeightFq(nn.Module):
    def __init__(self, per_channel: bool) -> None:
        super().__init__()
        self.per_channel = per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant_weight(w, self.per_channel)


class QuantizationAwareTraining(BaseCompressionMethod):
    """Fake-quantized fine-tuning, then int8 conversion with the PTQ arithmetic."""

    name = "qat"
    stage = "quantization"
    Config = QatConfig

    def apply(self, candidate: Candidate) -> Candidate:
        c, d = self.config, candidate.data
        calib = calibration_batch(d.x_train, c.calibration_samples, c.seed)
        ptq_acc = accuracy_int8(quantize(candidate.graph, calib, c.per_channel), d.x_val, d.y_val)
        module = fold_batchnorm(candidate.module)
        base = candidate.train or DEFAULT_SETTINGS
        qat_finetune(module, d, replace(base, epochs=c.epochs, lr=base.lr * c.lr_scale), c)
        candidate.module = module
        candidate.retrace()
        candidate.qgraph = quantize(candidate.graph, calib, c.per_channel)
        candidate.metrics.update(
            qat_acc_int8_ptq=ptq_acc,
            qat_acc_int8=accuracy_int8(candidate.qgraph, d.x_val, d.y_val),
        )
        return candidate


@hookimpl
def nas_register_compression_methods():
    return [QuantizationAwareTraining]
