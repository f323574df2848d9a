"""Classical multi-frame super-resolution: sub-pixel registration of neighbouring frames and
iterative back-projection (Irani & Peleg 1991), then the exact data-consistency projection onto
the reference frame.

Model: every low-resolution frame k is the degradation A (the antialiased bicubic shrink of our
cards) of the reference frame's high-resolution scene warped by a global affine motion M_k,
y_k = A(warp(x, M_k)) + noise. Registration estimates M_k on the low-resolution frames (phase
correlation for the translation, then OpenCV's ECC maximisation for the affine motion). A
neighbour whose registration fails (ECC does not converge or its correlation is under the
threshold) is left out, and where no neighbour registers the frame falls back to single-frame
back-projection: both are recorded per frame. Pixels where a registered neighbour disagrees
with the reference by more than `outlier_levels` (moving objects, occlusions) carry no weight.

IBP: x <- x + (1/K) sum_k warp_back_k(U(mask_k * (y_k - A warp_k(x)))), with U a bicubic
upsampling (the back-projection kernel). The reference frame always takes part, and the final
projection x + A_pinv(y_ref - A x) makes the output reproduce the reference frame exactly (the
residual is measured and bounded by the policy like a learned model's). What the neighbours
add lies in the null space of A: the synthesized-content map shows where."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from forensic_vsr.ops.degrade import weights


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


@dataclass(frozen=True)
class Registration:
    offset: int  # neighbour index minus reference index
    ok: bool
    matrix: tuple[tuple[float, ...], ...] | None  # 2x3: neighbour(M p) = reference(p), low-res pixels
    ecc: float | None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "ok": self.ok,
            "ecc": None if self.ecc is None else round(self.ecc, 5),
            "matrix": None if self.matrix is None else [[round(v, 5) for v in row] for row in self.matrix],
            **({"reason": self.reason} if self.reason else {}),
        }


def register(
    reference: np.ndarray, neighbour: np.ndarray, offset: int, ecc_threshold: float, motion: str = "translation", max_shift: float = 0.2
) -> Registration:
    """Global motion of `neighbour` against `reference` (same size): a translation, or an affine
    motion refined from it (kept only where it correlates better and stays near the identity).
    Small frames register more accurately with the translation model (fewer parameters)."""
    ref = reference.astype(np.float32)
    nb = neighbour.astype(np.float32)
    h, w = ref.shape
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(ref, nb, window)
    warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    try:  # translation first (well conditioned), then the affine refinement from there
        cc, warp = cv2.findTransformECC(ref, nb, warp, cv2.MOTION_TRANSLATION, criteria, None, 5)
    except cv2.error as exc:
        return Registration(offset, False, None, None, f"ECC did not converge ({str(exc).strip().splitlines()[-1][:80]})")
    if motion == "affine":
        try:
            cc_affine, affine = cv2.findTransformECC(ref, nb, warp.copy(), cv2.MOTION_AFFINE, criteria, None, 5)
            if np.abs(affine[:, :2] - np.eye(2)).max() <= 0.05 and cc_affine >= cc:
                cc, warp = cc_affine, affine
        except cv2.error:
            pass  # keep the translation
    m = tuple(tuple(float(v) for v in row) for row in warp)
    if abs(m[0][2]) > max_shift * w or abs(m[1][2]) > max_shift * h:
        return Registration(offset, False, m, float(cc), f"motion larger than {max_shift:.0%} of the frame")
    if abs(m[0][0] - 1) > 0.05 or abs(m[1][1] - 1) > 0.05 or abs(m[0][1]) > 0.05 or abs(m[1][0]) > 0.05:
        return Registration(offset, False, m, float(cc), "affine part outside 5% of the identity")
    if cc < ecc_threshold:
        return Registration(offset, False, m, float(cc), f"correlation {cc:.3f} under {ecc_threshold}")
    return Registration(offset, True, m, float(cc))


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

    @classmethod
    def from_card(cls, params: dict[str, Any], scale: int) -> MfsrParams:
        keys = ("radius", "iterations", "ecc_threshold", "outlier_levels", "motion")
        return cls(scale=scale, **{k: params[k] for k in keys if k in params})


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
        reg = register(ref, frame, i - ref_index, p.ecc_threshold, p.motion)
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
