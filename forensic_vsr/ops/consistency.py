"""Data consistency for super-resolution under the degradation A = antialiased bicubic shrink.

A is separable, A(X) = Wy X Wxᵀ, so its Moore-Penrose pseudo-inverse is separable too:
A†(R) = Py R Pxᵀ with P = Wᵀ (W Wᵀ)⁻¹. Projecting an output x̂ onto the set of images that
reproduce the input y,

    x = x̂ + A†(y - A x̂),

changes x̂ only in the range of Aᵀ (what the input determines) and keeps its null-space part
(what the input cannot determine), and gives A x = y exactly before rounding. The RMS of
A x - y after rounding to the output's integer samples is the residual we record and bound."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from forensic_vsr.ops.degrade import OPERATOR, axis_filters, axis_matrix


@functools.lru_cache(maxsize=16)
def axis_pinv(hr_len: int, scale: int, operator: str = OPERATOR) -> tuple[np.ndarray, np.ndarray]:
    """W and its Moore-Penrose pseudo-inverse Wᵀ(WWᵀ)⁻¹ (W has full row rank: WWᵀ is SPD)."""
    w = axis_matrix(hr_len, scale, operator)
    return w, w.T @ np.linalg.inv(w @ w.T)


# W is banded (4s taps a row); P = Wᵀ(WWᵀ)⁻¹ is dense, but its entries fall geometrically away
# from the band (about 1e-20 of the largest 41 input samples out at x4). Entries below this
# fraction of a matrix's largest are left out of its products: their sum is under 1e-17 of the
# product's scale, far below float64's own rounding (1.1e-16), so the products differ from the
# dense ones only in summation order, in the last bits, and the rounded samples are the same
# (tests/test_cpu_speed.py on real frames; the golden hashes).
BAND_TOLERANCE = 1e-20
BAND_ROWS = 64  # rows per block: 48-96 measured alike; smaller blocks make small BLAS calls


@dataclass(frozen=True)
class BandedMatrix:
    """A (rows, cols) float64 matrix kept as blocks of BAND_ROWS rows, each with the one column
    range that holds all its entries above BAND_TOLERANCE of the largest: a product costs the
    band, not the whole matrix (6-7x fewer multiply-adds for the x4 projection of a 768x576
    frame), each block one BLAS call."""

    shape: tuple[int, int]
    blocks: tuple[tuple[int, int, int, np.ndarray], ...]  # (first row, first column, last column + 1, block)

    @classmethod
    def of(cls, m: np.ndarray) -> BandedMatrix:
        kept = np.abs(m) > BAND_TOLERANCE * np.abs(m).max()
        blocks = []
        for r0 in range(0, m.shape[0], BAND_ROWS):
            cols = np.nonzero(kept[r0 : r0 + BAND_ROWS].any(axis=0))[0]
            c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
            blocks.append((r0, c0, c1, np.ascontiguousarray(m[r0 : r0 + BAND_ROWS, c0:c1])))
        return cls((int(m.shape[0]), int(m.shape[1])), tuple(blocks))

    def left(self, x: np.ndarray) -> np.ndarray:
        """M @ x."""
        out = np.empty((self.shape[0], x.shape[1]))
        for r0, c0, c1, b in self.blocks:
            np.matmul(b, x[c0:c1], out=out[r0 : r0 + b.shape[0]])
        return out

    def right(self, x: np.ndarray) -> np.ndarray:
        """x @ Mᵀ."""
        out = np.empty((x.shape[0], self.shape[0]))
        for r0, c0, c1, b in self.blocks:
            np.matmul(x[:, c0:c1], b.T, out=out[:, r0 : r0 + b.shape[0]])
        return out


@functools.lru_cache(maxsize=16)
def axis_bands(hr_len: int, scale: int, operator: str = OPERATOR) -> tuple[BandedMatrix, BandedMatrix]:
    """W and its pseudo-inverse (`axis_pinv`) as banded matrices."""
    w, p = axis_pinv(hr_len, scale, operator)
    return BandedMatrix.of(w), BandedMatrix.of(p)


@dataclass(frozen=True)
class Projector:
    """A, A† and the projection in float64, the products over the matrices' bands."""

    height: int
    width: int
    scale: int
    operator: str = OPERATOR

    def _mats(self) -> tuple[BandedMatrix, BandedMatrix, BandedMatrix, BandedMatrix]:
        wy, py = axis_bands(self.height, self.scale, self.operator)
        wx, px = axis_bands(self.width, self.scale, self.operator)
        return wy, py, wx, px

    def degrade(self, x: np.ndarray) -> np.ndarray:
        wy, _, wx, _ = self._mats()
        return wx.right(wy.left(x))

    def pinv(self, r: np.ndarray) -> np.ndarray:
        _, py, _, px = self._mats()
        return px.right(py.left(r))

    def project(self, x_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x_hat + self.pinv(y - self.degrade(x_hat))

    def project_in_range(self, x_hat: np.ndarray, y: np.ndarray, max_value: int, target: float, iterations: int = 10) -> np.ndarray:
        """The projected output rounded to samples in [0, max_value] (float64): `project_to_samples`
        without its residual."""
        return self.project_to_samples(x_hat, y, max_value, target, iterations)[0]

    def project_to_samples(
        self, x_hat: np.ndarray, y: np.ndarray, max_value: int, target: float, iterations: int = 10
    ) -> tuple[np.ndarray, float]:
        """Alternate projections onto the consistent set and onto the valid sample range
        [0, max_value] (POCS) until the rounded result's residual is at most `target` or the
        iterations run out. Without this, clipping the ringing of a projected sharp edge can
        break consistency at saturated pixels. Returns the rounded samples (float64) and their
        RMS residual, the one the loop measured (a second A x of the same samples is not needed)."""
        x = self.project(x_hat, y)
        rounded, residual = self.rounded(x, y, max_value)
        for _ in range(iterations):
            if residual <= target:
                break
            x = self.project(self.clip(x, max_value), y)
            rounded, residual = self.rounded(x, y, max_value)
        return rounded, residual

    def clip(self, x: np.ndarray, max_value: int) -> np.ndarray:
        """x clipped to the valid sample range [0, max_value]."""
        return np.clip(x, 0, max_value)

    def rounded(self, x: np.ndarray, y: np.ndarray, max_value: int) -> tuple[np.ndarray, float]:
        """x rounded half to even and clipped to [0, max_value], and its RMS residual against y."""
        rounded = np.clip(np.rint(x), 0, max_value)
        return rounded, self.rms_residual(rounded, y)

    def rms_residual(self, x: np.ndarray, y: np.ndarray) -> float:
        d = self.degrade(x.astype(np.float64)) - y
        return float(np.sqrt(np.mean(d * d)))


@dataclass
class FilterOperator:
    """A, Aᵀ and (AAᵀ)⁻¹ of the separable operator on (H, W) or (H, W, C) float32 planes, in
    O(taps) per sample instead of a dense product per row (the dense matrices of `axis_pinv`
    cost ~1.5 G multiply-adds per 1280x544 frame; these filters ~0.05 G). Valid when every
    low-resolution side is at least the length of the inverse filter (`fits`)."""

    height: int  # high-resolution size
    width: int
    scale: int
    operator: str = OPERATOR

    def __post_init__(self) -> None:
        self.f = axis_filters(self.scale, self.operator)

    @staticmethod
    def fits(height: int, width: int, scale: int, operator: str = OPERATOR) -> bool:
        f = axis_filters(scale, operator)
        return min(height, width) // scale >= f.inverse.size and min(height, width) >= f.down.size

    def degrade(self, x: np.ndarray) -> np.ndarray:
        """A x: filter each axis with the kernel and keep every s-th sample."""
        f, s = self.f, self.scale
        k = f.down.reshape(-1, 1)
        x = cv2.filter2D(x, cv2.CV_32F, k, anchor=(0, f.down_anchor), borderType=cv2.BORDER_REFLECT)[::s]
        x = cv2.filter2D(np.ascontiguousarray(x), cv2.CV_32F, k.T, anchor=(f.down_anchor, 0), borderType=cv2.BORDER_REFLECT)
        return np.ascontiguousarray(x[:, ::s])

    def solve(self, z: np.ndarray) -> np.ndarray:
        """(AAᵀ)⁻¹ z = (WyWyᵀ)⁻¹ z (WxWxᵀ)⁻¹ on a low-resolution plane."""
        g = self.f.inverse
        return cv2.sepFilter2D(z, cv2.CV_32F, g, g, borderType=cv2.BORDER_REFLECT)

    def adjoint(self, z: np.ndarray) -> np.ndarray:
        """Aᵀ z: each output phase is a short filter of the low-resolution plane; phases interleave."""
        return self._up(self._up(z, axis=0), axis=1)

    def pinv(self, z: np.ndarray) -> np.ndarray:
        """A† z = Aᵀ (AAᵀ)⁻¹ z."""
        return self.adjoint(self.solve(z))

    def _up(self, z: np.ndarray, axis: int) -> np.ndarray:
        phases = []
        # down columns each phase fills its rows of the output in place (no stack copy; same values)
        rows = np.empty((z.shape[0], self.scale, *z.shape[1:]), np.float32) if axis == 0 else None
        for p, (taps, anchor) in enumerate(self.f.up):
            k = taps.reshape(1, -1) if axis == 1 else taps.reshape(-1, 1)
            at = (anchor, 0) if axis == 1 else (0, anchor)
            dst = None if rows is None else rows[:, p]
            phase = cv2.filter2D(z, cv2.CV_32F, k, dst=dst, anchor=at, borderType=cv2.BORDER_REFLECT)
            if dst is not None and not np.shares_memory(phase, rows):
                dst[...] = phase  # OpenCV allocated its own output after all
            phases.append(phase)
        if rows is not None:
            return rows.reshape(z.shape[0] * self.scale, *z.shape[1:])
        if axis == 1 and z.ndim == 2:
            return cv2.merge(phases).reshape(z.shape[0], z.shape[1] * self.scale)
        out = np.stack(phases, axis=axis + 1)
        shape = list(z.shape)
        shape[axis] *= self.scale
        return out.reshape(shape)
