"""Bonsai in PyTorch, written from the paper (Kumar, Goyal, Varma, "Resource-efficient
Machine Learning in 2 KB RAM for the Internet of Things", ICML 2017).

A sparse projection ``z = Z x + b`` (``proj_dim`` << input features) feeds one balanced
tree of depth ``depth``. Every node k has ``W_k`` and ``V_k`` (``L x proj_dim``); internal
nodes also have ``theta_k`` and send ``x`` right when ``theta_k . z > 0``. The prediction
sums the contributions of every node on the path:

    y(x) = sum_k I_k(x) * (W_k z) o tanh(sigma * V_k z)

with ``L`` scores (one per class; one score for a binary task, whose sign decides).

Training follows the paper's recipe: the path indicator is soft at first (each branch
weighted by ``sigmoid(path_sigma * theta_k . z)``) and ``path_sigma`` is annealed until
the path is hard; iterative hard thresholding (IHT) keeps the ``density`` fraction of
largest entries of ``Z``, every ``W_k``, every ``V_k`` and every ``theta_k`` after each
step of its middle phase; the last phase trains on the frozen support, so the final
model has exactly that many non-zeros per matrix (`nnz`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import Arrays
from nas.train import TrainSettings, accuracy, batches, optimizer_step

GROUPS = ("Z", "W", "V", "theta")


@dataclass(frozen=True)
class BonsaiShape:
    """Sizes that fix a Bonsai model's cost: features, projection, tree and densities."""

    in_features: int
    proj_dim: int
    depth: int
    num_scores: int  # L: classes, or 1 for a binary task
    density: dict[str, float]

    @property
    def nodes(self) -> int:
        return 2 ** (self.depth + 1) - 1

    @property
    def internal_nodes(self) -> int:
        return 2**self.depth - 1

    def matrix_shape(self, group: str) -> tuple[int, int]:
        """Rows x columns of one matrix of ``group`` (one per node for W, V, theta)."""
        return {
            "Z": (self.proj_dim, self.in_features),
            "W": (self.num_scores, self.proj_dim),
            "V": (self.num_scores, self.proj_dim),
            "theta": (1, self.proj_dim),
        }[group]

    def matrices(self, group: str) -> int:
        return {"Z": 1, "W": self.nodes, "V": self.nodes, "theta": self.internal_nodes}[group]

    def nnz(self, group: str) -> int:
        """Non-zeros kept in each matrix of ``group``: ``round(density * size)``, at least 1."""
        rows, cols = self.matrix_shape(group)
        return max(1, min(rows * cols, round(self.density[group] * rows * cols)))


def num_scores(num_classes: int) -> int:
    return 1 if num_classes == 2 else num_classes


def top_k_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """1 at the ``k`` largest-magnitude entries of each matrix ``w[i]`` (ties: lowest
    index first), 0 elsewhere: exactly ``k`` ones per matrix."""
    flat = w.detach().abs().reshape(w.shape[0], -1)
    idx = torch.topk(flat, k, dim=1, sorted=False).indices
    mask = torch.zeros_like(flat)
    mask.scatter_(1, idx, 1.0)
    return mask.reshape(w.shape)


class Bonsai(nn.Module):
    """The Bonsai predictor; input is NCHW float, flattened to ``in_features``."""

    def __init__(
        self, shape: BonsaiShape, sigma: float, path_sigma_end: float = 16.0, seed: int = 0
    ) -> None:
        super().__init__()
        self.shape = shape
        self.sigma = sigma
        self.path_sigma_end = path_sigma_end
        g = torch.Generator().manual_seed(seed)
        s = shape

        def init(*size: int, fan_in: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*size, generator=g) / math.sqrt(fan_in))

        # Each group is a stack of matrices (one for Z), so masks apply per matrix.
        self.Z = init(
            1, s.proj_dim, s.in_features, fan_in=max(1, round(s.in_features * s.density["Z"]))
        )
        self.bias = nn.Parameter(torch.zeros(s.proj_dim))
        self.W = init(s.nodes, s.num_scores, s.proj_dim, fan_in=s.proj_dim)
        self.V = init(s.nodes, s.num_scores, s.proj_dim, fan_in=s.proj_dim)
        self.theta = init(max(s.internal_nodes, 1), 1, s.proj_dim, fan_in=s.proj_dim)
        for group in GROUPS:
            self.register_buffer(f"mask_{group}", torch.ones_like(getattr(self, group)))
        self.register_buffer("path_sigma", torch.tensor(1.0))
        self.hard_path = False

    def params(self, group: str) -> torch.Tensor:
        """A parameter group with its sparsity mask applied."""
        w = getattr(self, group) * getattr(self, f"mask_{group}")
        return w[: self.shape.internal_nodes] if group == "theta" else w

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.params("Z")[0].T + self.bias

    def path_weights(self, z: torch.Tensor) -> torch.Tensor:
        """I_k(x) for every node, (batch, nodes): soft in training, 0/1 in eval mode."""
        s = self.shape
        ind = torch.ones(z.shape[0], s.nodes, dtype=z.dtype, device=z.device)
        if s.depth == 0:
            return ind
        t = z @ self.params("theta")[:, 0, :].T  # (batch, internal)
        if self.training and not self.hard_path:
            right = torch.sigmoid(self.path_sigma * t)
        else:
            right = (t > 0).to(z.dtype)
        cols = [ind[:, 0]]
        for k in range(1, s.nodes):
            parent = (k - 1) // 2
            go = right[:, parent] if k % 2 == 0 else 1 - right[:, parent]
            cols.append(cols[parent] * go)
        return torch.stack(cols, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.project(x)
        wz = torch.einsum("nlp,bp->bnl", self.params("W"), z)
        vz = torch.einsum("nlp,bp->bnl", self.params("V"), z)
        score = (self.path_weights(z)[:, :, None] * wz * torch.tanh(self.sigma * vz)).sum(1)
        if self.shape.num_scores == 1:  # binary: logits (0, s), so argmax is sign(s)
            return torch.cat([torch.zeros_like(score), score], dim=1)
        return score

    def threshold(self, freeze: bool) -> None:
        """IHT projection: keep each matrix's top ``nnz`` entries and zero the rest. With
        ``freeze`` the support becomes the mask, so later steps cannot grow it back."""
        with torch.no_grad():
            for group in GROUPS:
                p, m = getattr(self, group), getattr(self, f"mask_{group}")
                keep = top_k_mask(p, self.shape.nnz(group))
                p.mul_(keep)
                if freeze:
                    m.copy_(keep)

    def quantize_int8(self, calib_nchw: np.ndarray) -> Any:
        """The int8 model (`QBonsai`), activation ranges from ``calib_nchw``."""
        from .quant import quantize_bonsai

        return quantize_bonsai(
            as_numpy(self), masks(self), self.shape.depth, self.sigma, calib_nchw
        )

    def nonzeros(self) -> dict[str, list[int]]:
        """Stored entries per matrix of each group (the mask's support)."""
        return {g: [int(v) for v in m.reshape(len(m), -1).sum(1)] for g, m in masks(self).items()}


def fit_bonsai(
    model: Bonsai,
    data: Arrays,
    settings: TrainSettings,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train with Adam: dense for the first third of the epochs, IHT after every step in
    the second, fixed support in the last; ``path_sigma`` grows geometrically from 1 to
    ``model.path_sigma_end`` over the first two thirds, then the path is hard."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    epochs = settings.epochs
    dense_end, iht_end = epochs // 3, max(epochs // 3 + 1, (2 * epochs) // 3)
    steps = max(1, math.ceil(len(x) / settings.batch_size))
    anneal_steps = max(1, iht_end * steps)
    step = 0
    curve: list[float] = []
    model.hard_path = False
    for epoch in range(epochs):
        model.train()
        if epoch == iht_end:
            model.threshold(freeze=True)
            model.hard_path = True
        for idx in batches(len(x), settings.batch_size, gen):
            model.path_sigma.fill_(model.path_sigma_end ** min(1.0, step / anneal_steps))
            optimizer_step(opt, loss_fn(model(x[idx]), y[idx]), epoch)
            step += 1
            if dense_end <= epoch < iht_end:
                model.threshold(freeze=False)
            elif epoch >= iht_end:
                with torch.no_grad():
                    for group in GROUPS:
                        getattr(model, group).mul_(getattr(model, f"mask_{group}"))
        if epoch == epochs - 1:
            model.threshold(freeze=True)
        acc = accuracy(model, data.x_val, data.y_val)
        curve.append(acc)
        if on_epoch is not None:
            on_epoch(epoch, acc)
    model.eval()
    return curve


def as_numpy(model: Bonsai) -> dict[str, np.ndarray]:
    """The trained float parameters with their masks applied."""
    with torch.no_grad():
        return {g: model.params(g).numpy().copy() for g in GROUPS} | {
            "bias": model.bias.detach().numpy().copy()
        }


def masks(model: Bonsai) -> dict[str, np.ndarray]:
    """The support of each group (trimmed like `Bonsai.params`)."""
    out = {}
    for group in GROUPS:
        m = getattr(model, f"mask_{group}").detach().numpy()
        out[group] = m[: model.shape.matrices(group)].copy()
    return out
