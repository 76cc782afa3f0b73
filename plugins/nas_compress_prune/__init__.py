"""``prune``: structured channel pruning that removes channels, then fine-tuning.

Within every ``Conv2d -> BatchNorm2d -> ReLU/ReLU6 -> [ZeroPad2d] -> depthwise Conv2d ->
BatchNorm2d -> ReLU/ReLU6 -> Conv2d`` chain of a ``nn.Sequential`` (the expanded, hidden
channels of an inverted-residual block), the ``amount`` fraction of hidden channels with the
smallest importance -- the L2 norm of the expansion filter times the BN scale -- is removed
from all four layers. Block inputs and outputs, and so residual additions, are untouched.
The network is then fine-tuned for ``finetune_epochs`` with the search's training recipe
and traced again, so the graph, flash, SRAM, MACs and latency all shrink.

The structure it leaves depends on the architecture and the options only (how many
channels each chain keeps, not which), so ``predict`` prunes an untrained copy the same
way: the predicted cost is the measured one, exactly, and a network that fits only once
pruned is trained.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from nas import hookimpl
from nas.compression import BaseCompressionMethod, Candidate, Plan
from nas.errors import check_option
from nas.train import DEFAULT_SETTINGS, fit

_ACTS = (nn.ReLU, nn.ReLU6)


@dataclass
class PruneConfig:
    amount: float = 0.5
    finetune_epochs: int = 3
    lr_scale: float = 0.3
    min_channels: int = 4

    def __post_init__(self) -> None:
        check_option(
            "compression.prune.amount", self.amount, 0 <= self.amount < 1, "a fraction in [0, 1)"
        )
        check_option(
            "compression.prune.finetune_epochs",
            self.finetune_epochs,
            self.finetune_epochs >= 0,
            "0 or more",
        )
        check_option("compression.prune.lr_scale", self.lr_scale, self.lr_scale > 0, "above 0")
        check_option(
            "compression.prune.min_channels",
            self.min_channels,
            self.min_channels >= 1,
            "1 or more",
        )


def _conv_like(conv: nn.Conv2d, keep: torch.Tensor, out: bool, inp: bool) -> nn.Conv2d:
    """A copy of ``conv`` keeping only channels ``keep`` on its outputs and/or inputs."""
    depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
    n = len(keep)
    new = nn.Conv2d(
        n if (inp or depthwise) else conv.in_channels,
        n if (out or depthwise) else conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        groups=n if depthwise else 1,
        bias=conv.bias is not None,
    )
    w = conv.weight.detach()
    if out or depthwise:
        w = w[keep]
    if inp and not depthwise:
        w = w[:, keep]
    new.weight.data.copy_(w)
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.detach()[keep] if (out or depthwise) else conv.bias)
    return new


def _bn_like(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum)
    for name in ("weight", "bias"):
        getattr(new, name).data.copy_(getattr(bn, name).detach()[keep])
    for name in ("running_mean", "running_var"):
        getattr(new, name).copy_(getattr(bn, name)[keep])
    return new


def _chains(seq: nn.Sequential) -> list[tuple[int, ...]]:
    """Indices (expand conv, bn, dw conv, bn, project conv) of each prunable chain."""
    mods = list(seq)
    found = []
    for i in range(len(mods)):
        j = i
        try:
            expand, bn1, act1 = mods[j], mods[j + 1], mods[j + 2]
            j += 3
            if isinstance(mods[j], nn.ZeroPad2d):
                j += 1
            dw, bn2, act2, project = mods[j], mods[j + 1], mods[j + 2], mods[j + 3]
        except IndexError:
            break
        if (
            isinstance(expand, nn.Conv2d)
            and expand.groups == 1
            and isinstance(bn1, nn.BatchNorm2d)
            and isinstance(act1, _ACTS)
            and isinstance(dw, nn.Conv2d)
            and dw.groups == dw.in_channels == expand.out_channels
            and dw.out_channels == dw.in_channels
            and isinstance(bn2, nn.BatchNorm2d)
            and isinstance(act2, _ACTS)
            and isinstance(project, nn.Conv2d)
            and project.groups == 1
        ):
            found.append((i, i + 1, j, j + 1, j + 3))
    return found


def prune_module(module: nn.Module, amount: float, min_channels: int) -> int:
    """Remove channels in place; returns how many hidden channels were removed."""
    removed = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for e, b1, d, b2, p in _chains(seq):
            expand, bn1 = seq[e], seq[b1]
            hidden = expand.out_channels
            n_keep = max(min_channels, round(hidden * (1.0 - amount)))
            if n_keep >= hidden:
                continue
            score = expand.weight.detach().flatten(1).norm(dim=1) * bn1.weight.detach().abs()
            keep = torch.sort(torch.topk(score, n_keep).indices).values
            seq[e] = _conv_like(expand, keep, out=True, inp=False)
            seq[b1] = _bn_like(bn1, keep)
            seq[d] = _conv_like(seq[d], keep, out=True, inp=True)
            seq[b2] = _bn_like(seq[b2], keep)
            seq[p] = _conv_like(seq[p], keep, out=False, inp=True)
            removed += hidden - n_keep
    return removed


class ChannelPruning(BaseCompressionMethod):
    """Remove the least important hidden channels of inverted-residual blocks, fine-tune."""

    name = "prune"
    stage = "structure"
    Config = PruneConfig

    def predict(self, plan: Plan) -> Plan:
        module = copy.deepcopy(plan.module)
        if not prune_module(module, self.config.amount, self.config.min_channels):
            return plan
        return plan.with_structure(module)

    def apply(self, candidate: Candidate) -> Candidate:
        c = self.config
        before_macs, before_params = candidate.graph.macs, candidate.graph.params
        module = copy.deepcopy(candidate.module)
        removed = prune_module(module, c.amount, c.min_channels)
        if removed and c.finetune_epochs > 0:
            base = candidate.train or DEFAULT_SETTINGS
            fit(
                module,
                candidate.data,
                replace(base, epochs=c.finetune_epochs, lr=base.lr * c.lr_scale),
            )
        module.eval()
        candidate.module = module
        candidate.retrace()
        candidate.metrics.update(
            prune_channels_removed=removed,
            prune_macs_before=before_macs,
            prune_macs_after=candidate.graph.macs,
            prune_params_before=before_params,
            prune_params_after=candidate.graph.params,
        )
        return candidate


@hookimpl
def nas_register_compression_methods():
    return [ChannelPruning]
