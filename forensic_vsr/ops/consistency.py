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

import numpy as np

from forensic_vsr.ops.degrade import weights

OPERATOR = "bicubic-antialiased"
OPERATORS = ("bicubic-antialiased", "box")


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


@functools.lru_cache(maxsize=16)
def _axis(hr_len: int, scale: int, operator: str = OPERATOR) -> tuple[np.ndarray, np.ndarray]:
    """W and its Moore-Penrose pseudo-inverse Wᵀ(WWᵀ)⁻¹ (W has full row rank: WWᵀ is SPD)."""
    w = axis_matrix(hr_len, scale, operator)
    return w, w.T @ np.linalg.inv(w @ w.T)


@dataclass(frozen=True)
class Projector:
    height: int
    width: int
    scale: int
    operator: str = OPERATOR

    def _mats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        wy, py = _axis(self.height, self.scale, self.operator)
        wx, px = _axis(self.width, self.scale, self.operator)
        return wy, py, wx, px

    def degrade(self, x: np.ndarray) -> np.ndarray:
        wy, _, wx, _ = self._mats()
        return wy @ x @ wx.T

    def pinv(self, r: np.ndarray) -> np.ndarray:
        _, py, _, px = self._mats()
        return py @ r @ px.T

    def project(self, x_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x_hat + self.pinv(y - self.degrade(x_hat))

    def project_in_range(self, x_hat: np.ndarray, y: np.ndarray, max_value: int, target: float, iterations: int = 10) -> np.ndarray:
        """Alternate projections onto the consistent set and onto the valid sample range
        [0, max_value] (POCS) until the rounded result's residual is at most `target` or the
        iterations run out. Without this, clipping the ringing of a projected sharp edge can
        break consistency at saturated pixels."""
        x = self.project(x_hat, y)
        for _ in range(iterations):
            rounded = np.clip(np.rint(x), 0, max_value)
            if self.rms_residual(rounded, y) <= target:
                break
            x = self.project(np.clip(x, 0, max_value), y)
        return x

    def rms_residual(self, x: np.ndarray, y: np.ndarray) -> float:
        d = self.degrade(x.astype(np.float64)) - y
        return float(np.sqrt(np.mean(d * d)))
