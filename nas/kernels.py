"""Array kernels shared by the float and the int8 reference interpreters.

The float interpreter computes in float64. For int8 inference the operands are integers
(``q - zero_point`` and int8 weights), so every partial sum is an exact integer: in
float32 where none can reach `FLOAT32_EXACT`, in float64 otherwise (far below 2**53).
Either way the result is the integer accumulator a 32-bit MCU computes, at BLAS speed.
Activations are NHWC with a batch dimension; weights are in TensorFlow Lite layout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view


def pad_nhwc(x: np.ndarray, padding: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = padding
    if not any(padding):
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def _out_size(size: int, k: int, stride: int) -> int:
    return (size - k) // stride + 1


def conv2d(
    x: np.ndarray, w_ohwi: np.ndarray, stride: int, padding, integers: bool = False
) -> np.ndarray:
    """Accumulators of a standard convolution (no bias): NHWC in, NHWC out.

    ``integers``: ``x`` and the weights hold integers (the int8 interpreter); where no
    partial sum can reach `FLOAT32_EXACT` (`_exact_in_float32`) the matrix product runs in
    float32, exact there (a BLAS product adds the same integer products in some order)
    and about twice as fast."""
    o, kh, kw, i = w_ohwi.shape
    x, w_ohwi = _operands(x, w_ohwi, i * kh * kw, integers)
    x = pad_nhwc(x, padding)
    n, h, w, _ = x.shape
    oh, ow = _out_size(h, kh, stride), _out_size(w, kw, stride)
    if kh == kw == 1:
        cols = x[:, : (oh - 1) * stride + 1 : stride, : (ow - 1) * stride + 1 : stride, :]
        acc = cols.reshape(-1, i) @ w_ohwi.reshape(o, i).T
    else:
        win = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
        cols = win[:, :oh, :ow].reshape(n * oh * ow, i * kh * kw)  # N,oh,ow,C,kh,kw
        acc = cols @ w_ohwi.transpose(0, 3, 1, 2).reshape(o, i * kh * kw).T
    return acc.reshape(n, oh, ow, o).astype(np.float64, copy=False)


#: Integers up to this magnitude are exact in float32 (a 24-bit significand).
FLOAT32_EXACT = 2**24


def _exact_in_float32(x: np.ndarray, w: np.ndarray, terms: int) -> bool:
    """Whether sums of ``terms`` products of an element of ``x`` and one of ``w``
    (integers) stay below `FLOAT32_EXACT`, so float32 computes every partial sum exactly."""
    bound = float(max(x.max(), -x.min())) * float(max(w.max(), -w.min()))
    return bound * terms < FLOAT32_EXACT


def _operands(
    x: np.ndarray, w: np.ndarray, terms: int, integers: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``w`` in float32 when they hold integers whose sums of ``terms`` products
    float32 computes exactly, in float64 otherwise."""
    dtype = np.float32 if integers and _exact_in_float32(x, w, terms) else np.float64
    return x.astype(dtype, copy=False), w.astype(dtype, copy=False)


def depthwise_conv2d(
    x: np.ndarray, w_1hwc: np.ndarray, stride: int, padding, integers: bool = False
) -> np.ndarray:
    """Accumulators of a depthwise convolution with channel multiplier 1 (no bias).

    ``integers``: ``x`` and the weights hold integers (the int8 interpreter); where no
    partial sum can reach `FLOAT32_EXACT`, torch's float32 depthwise convolution computes
    them exactly, several times faster than the loop below (`_depthwise_float32`)."""
    _, kh, kw, c = w_1hwc.shape
    x, w_1hwc = _operands(x, w_1hwc, kh * kw, integers)
    if x.dtype == np.float32:
        exact = _depthwise_float32(pad_nhwc(x, padding), w_1hwc, stride)
        if exact is not None:
            return exact
        x, w_1hwc = x.astype(np.float64), w_1hwc.astype(np.float64)
    x = pad_nhwc(x, padding)
    n, h, w, _ = x.shape
    oh, ow = _out_size(h, kh, stride), _out_size(w, kw, stride)
    acc = np.zeros((n, oh, ow, c))
    for i in range(kh):
        for j in range(kw):
            patch = x[
                :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride
            ]
            acc += patch * w_1hwc[0, i, j]
    return acc


def _depthwise_float32(x: np.ndarray, w_1hwc: np.ndarray, stride: int) -> np.ndarray | None:
    """Integer accumulators of a depthwise convolution of padded float32 ``x`` in torch,
    exact while every partial sum stays under `FLOAT32_EXACT` (the caller checks); None,
    for the caller's float64 loop, should a result not be all integers (a kernel that
    transforms its operands, as Winograd's does, would round)."""
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC memory: torch's channels-last
    wt = torch.from_numpy(w_1hwc).permute(3, 0, 1, 2).contiguous()
    with torch.no_grad():
        out = F.conv2d(xt, wt, stride=stride, groups=wt.shape[0])
    acc = out.permute(0, 2, 3, 1).numpy().astype(np.float64)
    return acc if np.array_equal(acc, np.rint(acc)) else None


def pool_sum(x: np.ndarray, kernel: tuple[int, int], stride: int) -> np.ndarray:
    """Window sums of an average pool without padding (every window is full)."""
    kh, kw = kernel
    n, h, w, c = x.shape
    oh, ow = _out_size(h, kh, stride), _out_size(w, kw, stride)
    acc = np.zeros((n, oh, ow, c))
    for i in range(kh):
        for j in range(kw):
            acc += x[
                :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride
            ]
    return acc


def fully_connected(x: np.ndarray, w: np.ndarray, integers: bool = False) -> np.ndarray:
    """Accumulators of a fully connected layer (no bias); ``integers`` as for `conv2d`."""
    x, w = _operands(x.reshape(x.shape[0], -1), w, w.shape[1], integers)
    return (x @ w.T).astype(np.float64, copy=False)
