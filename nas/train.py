"""Training a candidate, reporting validation accuracy after every epoch.

Per-epoch accuracies go to a callback; the search passes one that stores the curve on the
Optuna trial and asks `nas.pruner.ParetoMedianPruner` whether to stop. Non-finite losses
stop training with a `TrialError` that names the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nas.data import Arrays
from nas.errors import TrialError

#: ``search.augment``: what each training batch goes through (`augment`). ``flip``:
#: half of the images mirrored left to right (for classes a mirror keeps, such as
#: clothing or objects; not for digits or text); ``crop``: shifted by up to an eighth of
#: each side, zero-padded (a random crop of the padded image); ``crop_flip``: both.
#: Images only.
AUGMENTS = ("none", "flip", "crop", "crop_flip")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    augment: str = "none"


#: Fine-tuning recipe for compression methods run outside a search (the search hands them
#: its own as ``Candidate.train``).
DEFAULT_SETTINGS = TrainSettings(epochs=4, batch_size=32, lr=0.01, weight_decay=1e-4, seed=0)


def accuracy(module: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Float accuracy of ``module`` (eval mode) on NCHW ``x``."""
    module.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(x), batch):
            logits = module(torch.from_numpy(x[s : s + batch]))
            correct += int((logits.argmax(1).numpy() == y[s : s + batch]).sum())
    return correct / max(len(x), 1)


def batches(n: int, size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of one epoch's mini-batches, shuffled by ``gen``."""
    perm = torch.randperm(n, generator=gen)
    for s in range(0, n, size):
        yield perm[s : s + size]


def augment(x: torch.Tensor, how: str, gen: torch.Generator) -> torch.Tensor:
    """The NCHW batch ``x`` augmented as ``how`` (`AUGMENTS`) says, drawing from ``gen``."""
    if how == "none":
        return x
    n, c, h, w = x.shape
    if how == "flip":
        mirror = torch.rand(n, generator=gen) < 0.5
        out = x.clone()
        out[mirror] = out[mirror].flip(3)
        return out
    ph, pw = (max(1, side // 8) if side > 1 else 0 for side in (h, w))
    padded = nn.functional.pad(x, (pw, pw, ph, ph))
    dy = torch.randint(0, 2 * ph + 1, (n, 1), generator=gen) + torch.arange(h)
    dx = torch.randint(0, 2 * pw + 1, (n, 1), generator=gen) + torch.arange(w)
    rows = torch.arange(n).view(n, 1, 1, 1)
    chans = torch.arange(c).view(1, c, 1, 1)
    out = padded[rows, chans, dy.view(n, 1, h, 1), dx.view(n, 1, 1, w)]
    if how == "crop_flip":
        mirror = torch.rand(n, generator=gen) < 0.5
        out[mirror] = out[mirror].flip(3)
    return out


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, epoch: int) -> None:
    """Backpropagate ``loss`` and step ``opt``; a non-finite loss fails the trial."""
    if not torch.isfinite(loss):
        raise TrialError(f"training diverged: loss is {loss.item()} at epoch {epoch}")
    opt.zero_grad()
    loss.backward()
    opt.step()


def fit(
    module: nn.Module,
    data: Arrays,
    settings: TrainSettings,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train with Adam and a one-cycle learning-rate schedule (`OneCycleLR`, peak
    ``settings.lr``), each batch augmented as ``settings.augment`` says; returns
    validation accuracy per epoch.

    ``on_epoch(epoch, val_acc)`` may raise (``optuna.TrialPruned``) to stop early.
    """
    gen = torch.Generator().manual_seed(settings.seed)
    aug = torch.Generator().manual_seed(settings.seed + 1)
    torch.manual_seed(settings.seed)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    steps = max(1, math.ceil(len(x) / settings.batch_size))
    opt = torch.optim.Adam(module.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=settings.lr, total_steps=settings.epochs * steps
    )
    loss_fn = nn.CrossEntropyLoss()
    curve: list[float] = []
    for epoch in range(settings.epochs):
        module.train()
        for idx in batches(len(x), settings.batch_size, gen):
            inputs = augment(x[idx], settings.augment, aug)
            optimizer_step(opt, loss_fn(module(inputs), y[idx]), epoch)
            sched.step()
        acc = accuracy(module, data.x_val, data.y_val)
        curve.append(acc)
        if on_epoch is not None:
            on_epoch(epoch, acc)
    module.eval()
    return curve
