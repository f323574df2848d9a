"""The degradation operator of our fidelity models: MATLAB-style `imresize` with the bicubic
kernel (Keys, a = -0.5), antialiased when shrinking, mirror boundary. This is the operator the
super-resolution literature evaluates with, so `A(x) = imresize(x, 1/s)` here reproduces the
published bicubic rows (see `fvsr bench sr`).

The operator is linear and separable: `weights(in_len, out_len, scale)` is its 1-D matrix."""

from __future__ import annotations

import functools
import math

import numpy as np

OPERATOR = "bicubic-antialiased"  # the operator A of our fidelity models' cards and of the projection
OPERATORS = ("bicubic-antialiased", "box")  # the operators the projection (ops.consistency) implements


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


@functools.lru_cache(maxsize=64)
def weights(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Dense (out_len, in_len) float64 matrix of MATLAB's `imresize` along one axis."""
    width = 4.0
    if scale < 1 and antialias:
        kernel = lambda x: scale * _cubic(scale * x)  # noqa: E731
        width = width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :] - 1  # 0-based input indices
    w = kernel(u[:, None] - idx - 1)
    w /= w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = mirror[np.mod(idx, 2 * in_len).astype(np.int64)]
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), idx.ravel()), w.ravel())
    return matrix


def imresize(image: np.ndarray, scale: float, out_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) float image by `scale` (MATLAB semantics, float64 out)."""
    h, w = image.shape[:2]
    oh, ow = out_shape or (math.ceil(h * scale), math.ceil(w * scale))
    wy, wx = weights(h, oh, scale), weights(w, ow, scale)
    x = image.astype(np.float64)
    out = np.tensordot(wy, x, axes=(1, 0))
    out = np.tensordot(wx, out, axes=(1, 1)).swapaxes(0, 1)
    return out


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """The degradation A: antialiased bicubic shrink by an integer factor (sizes must divide)."""
    h, w = image.shape[:2]
    return imresize(image, 1 / factor, (h // factor, w // factor))
