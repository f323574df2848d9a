"""Classical multi-frame super-resolution: sub-pixel registration of neighbouring frames and
iterative back-projection (Irani & Peleg 1991), then the exact data-consistency projection onto
the reference frame.

Model: every low-resolution frame k is the degradation A (the antialiased bicubic shrink of our
cards) of the reference frame's high-resolution scene warped by a global affine motion M_k,
y_k = A(warp(x, M_k)) + noise. Registration estimates M_k on the low-resolution frames (phase
correlation for the translation, then OpenCV's ECC maximisation for the affine motion), on the
pixels that do not move (forensic_vsr.ops.registration: a region, moving content masked). A
neighbour whose registration fails (ECC does not converge, its correlation is under the
threshold or its residual over the limit) is left out, and where no neighbour registers the
frame falls back to single-frame back-projection: both are recorded per frame. Pixels where a registered neighbour disagrees
with the reference by more than `outlier_levels` (moving objects, occlusions) carry no weight.

IBP: x <- x + (1/K) sum_k warp_back_k(U(mask_k * (y_k - A warp_k(x)))), with U a bicubic
upsampling (the back-projection kernel). The reference frame always takes part, and the final
projection x + A_pinv(y_ref - A x) makes the output reproduce the reference frame exactly (the
residual is measured and bounded by the policy like a learned model's). What the neighbours
add lies in the null space of A: the synthesized-content map shows where."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from forensic_vsr.ops.degrade import weights
from forensic_vsr.ops.registration import Registration, RegistrationRegion, register


@functools.lru_cache(maxsize=8)
def _kernel(scale: int) -> tuple[np.ndarray, int]:
    """The interior taps of A along one axis and the offset of the first tap from s*j."""
    n = 64 * scale
    w = weights(n, n // scale, 1 / scale)
    j = (n // scale) // 2
    nz = np.nonzero(w[j])[0]
    return w[j, nz[0] : nz[-1] + 1].copy(), int(nz[0] - scale * j)


def _shrink_axis0(x: np.ndarray, scale: int) -> np.ndarray:
    taps, offset = _kernel(scale)
    n_out = x.shape[0] // scale
    pad = len(taps) + scale
    xp = np.pad(x, ((pad, pad), (0, 0)), mode="symmetric")
    out = np.zeros((n_out, x.shape[1]), np.float64)
    for t, wt in enumerate(taps):
        start = pad + offset + t
        out += wt * xp[start : start + scale * n_out : scale]
    return out


def shrink(x: np.ndarray, scale: int) -> np.ndarray:
    """A(x): equal to forensic_vsr.ops.degrade.downscale (MATLAB imresize 1/s), in banded form."""
    return _shrink_axis0(_shrink_axis0(x, scale).T, scale).T


def _hr_matrix(m: tuple[tuple[float, ...], ...], scale: int) -> np.ndarray:
    """The low-resolution affine motion in high-resolution pixel coordinates (pixel centres:
    p_hr = s * p_lr + (s - 1) / 2)."""
    a = np.array(m, np.float64)
    c = (scale - 1) / 2
    lin = a[:, :2]
    t = scale * a[:, 2] + c - lin @ np.array([c, c])
    return np.hstack([lin, t[:, None]])


@dataclass(frozen=True)
class MfsrParams:
    scale: int
    radius: int = 2
    iterations: int = 12
    ecc_threshold: float = 0.9
    outlier_levels: float = 12.0  # in 8-bit levels
    motion: str = "translation"  # or "affine"
    where: RegistrationRegion = field(default_factory=RegistrationRegion)  # what the neighbours are registered on

    @classmethod
    def from_card(cls, params: dict[str, Any], scale: int, where: RegistrationRegion | None = None) -> MfsrParams:
        keys = ("radius", "iterations", "ecc_threshold", "outlier_levels", "motion")
        return cls(scale=scale, **{k: params[k] for k in keys if k in params}, where=where or RegistrationRegion())


def super_resolve(frames: list[np.ndarray], ref_index: int, p: MfsrParams, max_value: int = 255) -> tuple[np.ndarray, list[Registration]]:
    """The high-resolution estimate (float64, before the final projection and rounding) of
    frames[ref_index] from all `frames`, and the registration of each neighbour."""
    s = p.scale
    ref = frames[ref_index].astype(np.float64)
    h, w = ref.shape
    levels = max_value / 255.0
    regs: list[Registration] = []
    views = [(ref, None, np.ones_like(ref))]  # (low-res frame, hr matrix, weight mask)
    for i, frame in enumerate(frames):
        if i == ref_index:
            continue
        reg = register(ref, frame, i - ref_index, p.ecc_threshold, p.motion, where=p.where, max_value=max_value)
        regs.append(reg)
        if not reg.ok or reg.matrix is None:
            continue
        m = np.array(reg.matrix, np.float64)
        nb = frame.astype(np.float64)
        # the reference seen from the neighbour: ref(M^-1 q); disagreement marks moving content
        ref_in_nb = cv2.warpAffine(ref, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
        blur = lambda a: cv2.GaussianBlur(a, (0, 0), 1.0)  # noqa: E731
        agree = np.abs(blur(np.nan_to_num(ref_in_nb)) - blur(nb)) <= p.outlier_levels * levels
        mask = (agree & np.isfinite(ref_in_nb)).astype(np.float64)
        views.append((nb, _hr_matrix(reg.matrix, s), mask))
    x = cv2.resize(ref, (w * s, h * s), interpolation=cv2.INTER_CUBIC)
    weight = np.zeros((h * s, w * s))
    ups = []
    for _, mh, mask in views:
        up = cv2.resize(mask, (w * s, h * s), interpolation=cv2.INTER_NEAREST)
        if mh is not None:
            up = cv2.warpAffine(up, mh, (w * s, h * s), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
        weight += up
        ups.append(up)
    weight = np.maximum(weight, 1e-6)
    for _ in range(p.iterations):
        update = np.zeros_like(x)
        for lr, mh, mask in views:
            xk = x if mh is None else cv2.warpAffine(x, mh, (w * s, h * s), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            err = mask * (lr - shrink(xk, s))
            back = cv2.resize(err, (w * s, h * s), interpolation=cv2.INTER_CUBIC)
            if mh is not None:
                back = cv2.warpAffine(back, mh, (w * s, h * s), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderValue=0)
            update += back
        x = x + update / weight
    return x, regs
