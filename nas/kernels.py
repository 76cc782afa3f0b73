"""Array kernels shared by the float and the int8 reference interpreters.

All arithmetic is done in float64. For int8 inference the operands are integers
(``q - zero_point`` and int8 weights) and every partial sum stays far below 2**53, so the
float64 result is the exact integer accumulator a 32-bit MCU computes, at BLAS speed.
Activations are NHWC with a batch dimension; weights are in TensorFlow Lite layout.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pad_nhwc(x: np.ndarray, padding: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = padding
    if not any(padding):
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def _out_size(size: int, k: int, stride: int) -> int:
    return (size - k) // stride + 1


def conv2d(x: np.ndarray, w_ohwi: np.ndarray, stride: int, padding) -> np.ndarray:
    """Accumulators of a standard convolution (no bias): NHWC in, NHWC out."""
    x = pad_nhwc(x, padding)
    o, kh, kw, i = w_ohwi.shape
    n, h, w, _ = x.shape
    oh, ow = _out_size(h, kh, stride), _out_size(w, kw, stride)
    if kh == kw == 1:
        cols = x[:, : (oh - 1) * stride + 1 : stride, : (ow - 1) * stride + 1 : stride, :]
        return (cols.reshape(-1, i) @ w_ohwi.reshape(o, i).T).reshape(n, oh, ow, o)
    win = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]  # N,oh,ow,C,kh,kw
    cols = win[:, :oh, :ow].reshape(n * oh * ow, i * kh * kw)
    wmat = w_ohwi.transpose(0, 3, 1, 2).reshape(o, i * kh * kw)
    return (cols @ wmat.T).reshape(n, oh, ow, o)


#: Integers up to this magnitude are exact in float32 (a 24-bit significand).
FLOAT32_EXACT = 2**24


def depthwise_conv2d(
    x: np.ndarray, w_1hwc: np.ndarray, stride: int, padding, integers: bool = False
) -> np.ndarray:
    """Accumulators of a depthwise convolution with channel multiplier 1 (no bias).

    ``integers``: ``x`` and the weights hold integers (the int8 interpreter); when no
    partial sum can exceed `FLOAT32_EXACT` the sums run in float32, which is exact there
    and twice as fast as float64 on these memory-bound loops."""
    x = pad_nhwc(x, padding)
    _, kh, kw, c = w_1hwc.shape
    n, h, w, _ = x.shape
    oh, ow = _out_size(h, kh, stride), _out_size(w, kw, stride)
    dtype: type[np.floating] = np.float64
    if integers and np.abs(x).max() * np.abs(w_1hwc).max() * kh * kw < FLOAT32_EXACT:
        dtype = np.float32
        x, w_1hwc = x.astype(dtype), w_1hwc.astype(dtype)
    acc = np.zeros((n, oh, ow, c), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            patch = x[
                :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride
            ]
            acc += patch * w_1hwc[0, i, j]
    return acc.astype(np.float64, copy=False)


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


def fully_connected(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1) @ w.T
