"""The degradation operator of our fidelity models: MATLAB-style `imresize` with the bicubic
kernel (Keys, a = -0.5), antialiased when shrinking, mirror boundary. This is the operator the
super-resolution literature evaluates with, so `A(x) = imresize(x, 1/s)` here reproduces the
published bicubic rows (see `fvsr bench sr`).

The operator is linear and separable: `weights(in_len, out_len, scale)` is its 1-D matrix."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

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


def axis_matrix(hr_len: int, scale: int, operator: str = OPERATOR) -> np.ndarray:
    """The 1-D degradation matrix (hr_len // scale, hr_len): antialiased bicubic shrink
    (MATLAB imresize) or box averaging of each run of `scale` samples (sensor binning)."""
    lr_len = hr_len // scale
    if operator == "bicubic-antialiased":
        return weights(hr_len, lr_len, 1 / scale)
    if operator == "box":
        w = np.zeros((lr_len, hr_len))
        for i in range(lr_len):
            w[i, i * scale : (i + 1) * scale] = 1.0 / scale
        return w
    raise ValueError(f"unknown degradation operator {operator!r}; known: {', '.join(OPERATORS)}")


# (WWᵀ)⁻¹ decays geometrically away from its diagonal (by about a third per sample for the bicubic
# operators); entries below this fraction of the diagonal are left out of its filter.
INVERSE_TOLERANCE = 1e-10


@dataclass(frozen=True)
class AxisFilters:
    """One axis of A, Aᵀ and (WWᵀ)⁻¹ as short filters under half-sample symmetric extension.

    MATLAB's imresize mirrors at the edges (x[-1] = x[0]) and, at an integer factor, every low
    resolution sample i is the same kernel centred at s·i + (s-1)/2. So W is "extend
    symmetrically, filter, keep every s-th sample", Wᵀ is the polyphase transpose of that on the
    symmetrically extended low-resolution signal, and WWᵀ, diagonal in the DCT-II basis, is a
    symmetric convolution on the extended signal whose inverse is one too: its kernel is the
    central row of the inverse of a long WWᵀ, cut where it falls below INVERSE_TOLERANCE of the
    diagonal. OpenCV's BORDER_REFLECT is exactly this extension. The filters are taken from the
    dense matrix itself, so they are the operator's own weights; tests/test_consistency.py checks
    every product against the dense matrices."""

    scale: int
    down: np.ndarray  # A's taps: A x[i] = sum_k down[k] x[s i + k - down_anchor]
    down_anchor: int
    up: tuple[tuple[np.ndarray, int], ...]  # per phase p: Wᵀ z[s q + p] = sum_k taps[k] z[q + k - anchor]
    inverse: np.ndarray  # symmetric taps of (WWᵀ)⁻¹, odd length


@functools.lru_cache(maxsize=16)
def axis_filters(scale: int, operator: str = OPERATOR) -> AxisFilters:
    n = 160  # long enough that the central row of the inverse is the infinite-line kernel to ~1e-70
    w = axis_matrix(n * scale, scale, operator)
    i0 = n // 2
    support = np.nonzero(w[i0])[0]
    first, last = int(support[0]), int(support[-1])
    taps = w[i0, first : last + 1]  # weight of x[s·i + d] for d = first - s·i0 ...
    d0, d1 = first - scale * i0, last - scale * i0
    if not d0 <= 0 <= d1:
        raise ValueError(f"{operator} x{scale}: the kernel does not cover its own sample")
    up = []
    for p in range(scale):
        # Wᵀz[s q + p] = sum_t w(p - s t) z[q + t], over the t with d0 <= p - s t <= d1
        t_min, t_max = -((d1 - p) // scale), (p - d0) // scale
        k = np.array([taps[p - scale * t - d0] for t in range(t_min, t_max + 1)], np.float32)
        up.append((k, -t_min))
    g = np.linalg.inv(w @ w.T)[i0]
    keep = np.nonzero(np.abs(g) > INVERSE_TOLERANCE * abs(g[i0]))[0]
    radius = int(max(i0 - keep[0], keep[-1] - i0))
    return AxisFilters(scale, taps.astype(np.float32), -d0, tuple(up), g[i0 - radius : i0 + radius + 1].astype(np.float32))
