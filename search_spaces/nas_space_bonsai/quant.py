"""Int8 Bonsai: the integer arithmetic a microcontroller runs, in NumPy.

Every matrix is int8, symmetric, one scale per matrix (``Z``, each ``W_k``, ``V_k``,
``theta_k``); accumulators are int32; rescaling uses the TFLite fixed-point multiplier
(`nas.int8.quantize_multiplier`, `nas.int8.multiply_by_quantized_multiplier`), so the C
code generated for a chip computes the same integers.

1. ``x_q`` = the input, int8 affine as for every other model (calibrated range).
2. ``z_q`` = requantize(``Z_q (x_q - x_zp) + b_q``) to int8, symmetric, calibrated scale.
3. At internal node k, go right when ``theta_q . z_q > 0`` (only the sign matters, so no
   rescale).
4. At every node on the path: ``u = requantize(W_q z_q)`` to int8 at one scale shared by
   all nodes; ``t = TANH[requantize(sigma * V_q z_q)]``, a 256-entry int8 table of
   ``127 * tanh(i / 32)``; ``score += u * t`` (int32).
5. The class is the argmax of the ``L`` scores (binary: ``score > 0``).

`QBonsai` implements `nas.backends.CExportable`: ``to_c`` generates its C (`.codegen`), so
the ``c_sim`` backend compiles it and runs it on the host and in simavr.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from nas.backends import CSource
from nas.int8 import QParams, multiply_by_quantized_multiplier, quantize_multiplier

from .model import GROUPS, BonsaiShape

TANH_INPUT_SCALE = 1.0 / 32.0  # int8 table index i stands for i / 32, i.e. [-4, 3.97]
TANH_TABLE = np.round(127 * np.tanh(np.arange(-128, 128) * TANH_INPUT_SCALE)).astype(np.int8)


def _symmetric(w: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-matrix symmetric int8 (zero point 0, range [-127, 127]) and its scale."""
    scale = float(np.float32(max(float(np.abs(w).max()), 1e-12) / 127.0))
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale


def _multiplier(real: float) -> tuple[int, int]:
    return quantize_multiplier(float(np.float32(real)))


def _requant(acc: np.ndarray, mult: tuple[int, int], lo: int = -128, hi: int = 127):
    return np.clip(multiply_by_quantized_multiplier(acc, *mult), lo, hi)


@dataclass
class QBonsai:
    """The integer model: int8 matrices (zeros outside the support), int32 projection
    bias, fixed-point multipliers and the tanh table."""

    depth: int
    num_scores: int
    input: QParams
    Z: np.ndarray  # (proj_dim, features) int8
    bias: np.ndarray  # (proj_dim,) int32, scale s_x * s_Z
    W: np.ndarray  # (nodes, L, proj_dim) int8
    V: np.ndarray  # (nodes, L, proj_dim) int8
    theta: np.ndarray  # (internal, proj_dim) int8
    support: dict[str, np.ndarray]  # bool masks: the stored entries of each group
    z_mult: tuple[int, int]
    w_mult: list[tuple[int, int]]  # per node: W_q z_q -> u (int8)
    v_mult: list[tuple[int, int]]  # per node: sigma * V_q z_q -> tanh table index
    scales: dict[str, float]  # float scales, for reports and the generated C comments

    @property
    def shape(self) -> BonsaiShape:
        """The sizes of this model, as the cost model reads them: densities such that
        `BonsaiShape.nnz` is the number of stored entries of each matrix."""
        proj, features = self.Z.shape
        density = {}
        for group in GROUPS:
            support = np.asarray(self.support[group], dtype=bool)
            if len(support) == 0:  # no theta in a single-node tree
                density[group] = 1.0
                continue
            per_matrix = support.reshape(len(support), -1)
            density[group] = int(per_matrix.sum(1).max()) / per_matrix.shape[1]
        return BonsaiShape(features, proj, self.depth, self.num_scores, density)

    def to_c(self) -> CSource:
        """The model as C (`nas.backends.CExportable`; see `.codegen`)."""
        from .codegen import generate

        return generate(self)

    def c_inputs(self, x_nchw: np.ndarray) -> np.ndarray:
        """Float images -> the int8 features the C reads, one row per image."""
        return self.input.quantize(x_nchw.reshape(len(x_nchw), -1))

    def c_outputs(self, x_q: np.ndarray) -> np.ndarray:
        """The int32 scores (little-endian) the C writes for int8 features ``x_q``."""
        return self.scores(x_q).astype("<i4")

    def project(self, x_q: np.ndarray) -> np.ndarray:
        """int8 ``z`` for int8 flattened inputs (batch, features)."""
        acc = (x_q.astype(np.int32) - self.input.zero_point) @ self.Z.T.astype(np.int32)
        return _requant(acc + self.bias, self.z_mult).astype(np.int32)

    def scores(self, x_q: np.ndarray) -> np.ndarray:
        """int32 class scores (batch, L) and the leaf reached, for int8 inputs."""
        z = self.project(x_q)
        n = len(z)
        node = np.zeros(n, dtype=np.int64)
        score = np.zeros((n, self.num_scores), dtype=np.int64)
        for level in range(self.depth + 1):
            w = self.W[node].astype(np.int32)  # (batch, L, proj)
            v = self.V[node].astype(np.int32)
            u_acc = np.einsum("blp,bp->bl", w, z)
            v_acc = np.einsum("blp,bp->bl", v, z)
            wm = np.array([self.w_mult[k] for k in node]).reshape(n, 1, 2)
            vm = np.array([self.v_mult[k] for k in node]).reshape(n, 1, 2)
            u = _requant(u_acc, (wm[..., 0], wm[..., 1]))
            t = TANH_TABLE[_requant(v_acc, (vm[..., 0], vm[..., 1])) + 128].astype(np.int64)
            score += u * t
            if level < self.depth:
                go_right = np.einsum("bp,bp->b", self.theta[node].astype(np.int32), z) > 0
                node = 2 * node + 1 + go_right
        assert np.abs(score).max(initial=0) < 2**31
        return score

    def predict(self, x_nchw: np.ndarray) -> np.ndarray:
        """Class predictions for float NCHW inputs, quantized the way the firmware does."""
        x_q = self.input.quantize(x_nchw.reshape(len(x_nchw), -1))
        s = self.scores(x_q)
        return (s[:, 0] > 0).astype(np.int64) if self.num_scores == 1 else s.argmax(1)

    def save(self, path) -> None:
        """Write the int8 model as ``.npz`` (arrays plus a JSON header)."""
        header = {
            "model": "bonsai",
            "depth": self.depth,
            "num_scores": self.num_scores,
            "input": [self.input.scale, self.input.zero_point],
            "z_mult": self.z_mult,
            "w_mult": self.w_mult,
            "v_mult": self.v_mult,
            "scales": self.scales,
        }
        arrays = {
            "Z": self.Z,
            "bias": self.bias,
            "W": self.W,
            "V": self.V,
            "theta": self.theta,
            "tanh_table": TANH_TABLE,
            **{f"support_{k}": v for k, v in self.support.items()},
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        }
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        with open(path, "wb") as fh:
            fh.write(buf.getvalue())


def quantize_bonsai(
    params: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    depth: int,
    sigma: float,
    calib: np.ndarray,
) -> QBonsai:
    """Int8 model from trained float parameters; activation scales from ``calib``
    (float inputs, any shape with the batch first), run along the hard path."""
    x = calib.reshape(len(calib), -1).astype(np.float64)
    qin = QParams.from_range(x.min(), x.max())
    Zf, bf = params["Z"][0].astype(np.float64), params["bias"].astype(np.float64)
    Wf, Vf, Tf = (params[g].astype(np.float64) for g in ("W", "V", "theta"))
    Tf = Tf[:, 0, :] if Tf.ndim == 3 else Tf
    Zq, sZ = _symmetric(Zf)
    # Float activations along the hard path of the calibration inputs.
    z = x @ Zf.T + bf
    s_z = float(np.float32(max(float(np.abs(z).max()), 1e-12) / 127.0))
    u_max, node = 0.0, np.zeros(len(z), dtype=np.int64)
    for level in range(depth + 1):
        u = np.einsum("blp,bp->bl", Wf[node], z)
        u_max = max(u_max, float(np.abs(u).max()))
        if level < depth:
            node = 2 * node + 1 + (np.einsum("bp,bp->b", Tf[node], z) > 0)
    s_u = float(np.float32(max(u_max, 1e-12) / 127.0))
    Wq, Vq, w_mult, v_mult = [], [], [], []
    for k in range(len(Wf)):
        wq, sw = _symmetric(Wf[k])
        vq, sv = _symmetric(Vf[k])
        Wq.append(wq)
        Vq.append(vq)
        w_mult.append(_multiplier(sw * s_z / s_u))
        v_mult.append(_multiplier(sigma * sv * s_z / TANH_INPUT_SCALE))
    theta = (
        np.stack([_symmetric(t)[0] for t in Tf]) if len(Tf) else np.zeros((0, len(bf)), np.int8)
    )
    s_in = qin.scale
    bias = np.round(bf / (s_in * sZ)).astype(np.int64)
    return QBonsai(
        depth=depth,
        num_scores=Wf.shape[1],
        input=qin,
        Z=Zq,
        bias=np.clip(bias, -(2**31), 2**31 - 1).astype(np.int32),
        W=np.stack(Wq),
        V=np.stack(Vq),
        theta=theta,
        support={g: masks[g].astype(bool) for g in masks},
        z_mult=_multiplier(s_in * sZ / s_z),
        w_mult=w_mult,
        v_mult=v_mult,
        scales={"input": s_in, "Z": sZ, "z": s_z, "u": s_u},
    )
