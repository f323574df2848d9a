"""Classical upscaling of native planes by an integer factor: bicubic (Keys, a = -0.5) and
Lanczos (a = 3), separable, polyphase, exact sample positions.

Geometry: pixel centres are aligned (output sample K of a plane scaled by s sits at input
position (K + 0.5)/s - 0.5), and chroma planes keep their siting: a chroma sample that sat on
the left luma column of its pair (MPEG-2/H.264 "left" siting) still does after scaling, so luma
and chroma stay registered for odd sizes and every factor. Arithmetic is float32 in a fixed
order (OpenCV's filter2D for the taps), then rounded half to even and clipped to the format's
range: the same input gives the same bytes on the same platform.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Kernel = Literal["bicubic", "lanczos"]
Siting = Literal["left", "center"]

KERNEL_SUPPORT: dict[str, int] = {"bicubic": 2, "lanczos": 3}
KERNEL_DESCRIPTION: dict[str, str] = {
    "bicubic": "Keys cubic convolution, a = -0.5 (Keys 1981; the kernel of MATLAB imresize)",
    "lanczos": "Lanczos windowed sinc, a = 3 (Duchon 1979; Turkowski 1990)",
}


def kernel_weights(kind: str, x: np.ndarray) -> np.ndarray:
    """Kernel value at distances `x` (in input samples)."""
    ax = np.abs(x)
    if kind == "bicubic":
        a = -0.5
        return np.where(
            ax <= 1,
            (a + 2) * ax**3 - (a + 3) * ax**2 + 1,
            np.where(ax < 2, a * ax**3 - 5 * a * ax**2 + 8 * a * ax - 4 * a, 0.0),
        )
    if kind == "lanczos":
        return np.where(ax < 3, np.sinc(x) * np.sinc(x / 3), 0.0)
    raise ValueError(f"unknown kernel {kind!r}")


@dataclass(frozen=True)
class AxisPlan:
    """Polyphase filter for one axis: for output sample s*k + p, input taps at
    k + offsets[p, t] weighted by weights[p, t]."""

    scale: int
    offsets: np.ndarray  # (scale, taps) int
    weights: np.ndarray  # (scale, taps) float32, rows sum to 1


@functools.lru_cache(maxsize=64)
def axis_plan(kind: str, scale: int, subsampling: int, siting: Siting) -> AxisPlan:
    """Phases for a plane subsampled by `subsampling` (1 or 2) relative to luma.

    With d the luma-unit offset of the sample inside its group (0 for left siting or full
    resolution, (f-1)/2 for centre siting), output sample j maps to input plane coordinate
    j/s + ((d + 1/2)/s - 1/2 - d)/f, which is periodic in j with period s."""
    f = subsampling
    d = 0.0 if (siting == "left" or f == 1) else (f - 1) / 2
    shift = ((d + 0.5) / scale - 0.5 - d) / f
    support = KERNEL_SUPPORT[kind]
    taps = np.arange(-support + 1, support + 1)
    offsets = np.empty((scale, taps.size), np.int64)
    weights = np.empty((scale, taps.size), np.float64)
    for p in range(scale):
        pos = p / scale + shift
        base = math.floor(pos)
        frac = pos - base
        w = kernel_weights(kind, frac - taps)
        offsets[p] = base + taps
        weights[p] = w / w.sum()
    return AxisPlan(scale, offsets, weights.astype(np.float32))


def _resample_axis(x: np.ndarray, plan: AxisPlan, out_len: int, axis: int) -> np.ndarray:
    """One separable pass: each phase is a short correlation (cv2.filter2D, replicated borders)
    evaluated at every input sample, and the phases interleave into the output (cv2.merge along
    rows, contiguous row copies down columns)."""
    phases = []
    # down columns, each phase's rows are written straight into their rows of the output (a
    # strided view OpenCV fills in place) instead of stacked afterwards: the same values, one copy fewer
    rows = np.empty((x.shape[0], plan.scale, *x.shape[1:]), np.float32) if axis == 0 and plan.scale > 1 else None
    for p in range(plan.scale):
        offsets, weights = plan.offsets[p], plan.weights[p]
        # filter2D computes dst(i) = sum_j k[j] * src(i + j - anchor); our taps sit at i + offsets[j]
        anchor = -int(offsets[0])
        if not 0 <= anchor < offsets.size:
            raise ValueError("kernel phase does not cover its own sample")
        kernel = weights.reshape(1, -1) if axis == 1 else weights.reshape(-1, 1)
        anchor_xy = (anchor, 0) if axis == 1 else (0, anchor)
        dst = None if rows is None else rows[:, p]
        phase = cv2.filter2D(x, cv2.CV_32F, kernel, dst=dst, anchor=anchor_xy, borderType=cv2.BORDER_REPLICATE)
        if dst is not None and not np.shares_memory(phase, rows):
            dst[...] = phase  # OpenCV allocated its own output after all
        phases.append(phase)
    if plan.scale == 1:
        out = phases[0]
    elif rows is not None:
        out = rows.reshape(x.shape[0] * plan.scale, *x.shape[1:])
    elif axis == 1 and x.ndim == 2:
        out = cv2.merge(phases).reshape(x.shape[0], x.shape[1] * plan.scale)
    else:
        out = np.stack(phases, axis=axis + 1)
        shape = list(x.shape)
        shape[axis] *= plan.scale
        out = out.reshape(shape)
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, out_len)
    return out[tuple(index)]


def upscale_plane(
    plane: np.ndarray,
    *,
    kind: str,
    scale: int,
    out_width: int,
    out_height: int,
    subsampling: tuple[int, int] = (1, 1),
    siting: Siting = "left",
    max_value: int = 255,
) -> np.ndarray:
    """Upscale one native plane (H, W) or packed (H, W, C) by an integer `scale`.

    `subsampling` is (horizontal, vertical) relative to luma; vertical chroma siting is always
    centred (true of every 4:2:0 convention in use)."""
    if scale < 1:
        raise ValueError("scale must be a positive integer")
    sub_x, sub_y = subsampling
    x = np.ascontiguousarray(plane, dtype=np.float32)
    x = _resample_axis(x, axis_plan(kind, scale, sub_x, siting), out_width, axis=1)
    x = _resample_axis(x, axis_plan(kind, scale, sub_y, "center"), out_height, axis=0)
    np.rint(x, out=x)
    np.clip(x, 0, max_value, out=x)
    return x.astype(plane.dtype)
