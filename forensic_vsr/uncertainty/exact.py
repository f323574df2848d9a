"""Synthesized-content and contradiction maps: the exact layer (no training).

For an output x̂ of an operation whose degradation operator is A (from the model card; the
default for every upscale is the antialiased bicubic shrink the SR literature assumes), and the
input y, split x̂ along the range and null space of A:

    S = |(I - A†A) x̂|    what the output holds in the null space of A: detail the input does
                           not determine (interpolation puts smooth content there, a learned
                           model puts whatever it learned);
    R = |A†(y - A x̂)|    where the output contradicts the input (zero for an output that
                           reproduces the input exactly; after data-consistency projection only
                           8-bit rounding is left).

A† = Wᵀ(WWᵀ)⁻¹ per axis (A is separable), applied as short filters (ops.consistency.FilterOperator). Both maps are in
8-bit levels at output resolution, whatever the bit depth. Flagged regions: 8-connected regions
where S exceeds a threshold (policy `flag_threshold_levels`, default 8 levels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from forensic_vsr.audit.exact_maps import MapFilters
from forensic_vsr.ops.consistency import OPERATOR, FilterOperator, axis_pinv

DEFAULT_FLAG_THRESHOLD = 8.0
# stored sample = round(value_in_8bit_levels * 4), gray16: quarter-level steps up to 16383.75 levels.
# A quarter level resolves 32 steps below the default flag threshold and the rounding residual
# of a consistent output (R ~ 0.1-0.5 levels); finer steps only store float noise, which costs
# FFV1 twice the time and size (1/16: 10 ms and 255 KiB per 1280x544 S frame; 1/4: 5 ms, 125 KiB).
MAP_SCALE = 4
MAX_BOXES = 16


@dataclass
class ExactMaps:
    height: int  # output size
    width: int
    scale: int
    operator: str = OPERATOR

    def __post_init__(self) -> None:
        if self.height % self.scale or self.width % self.scale:
            raise ValueError(f"output {self.width}x{self.height} is not a multiple of the scale {self.scale}")
        # A, Aᵀ and (AAᵀ)⁻¹ as short filters (ops.consistency.FilterOperator: the same operator
        # to float32 precision, ~30x fewer operations); dense matrices for frames too small for them
        fits = FilterOperator.fits(self.height, self.width, self.scale, self.operator)
        self._filters = FilterOperator(self.height, self.width, self.scale, self.operator) if fits else None
        if self._filters is None:
            wy, py = axis_pinv(self.height, self.scale, self.operator)
            wx, px = axis_pinv(self.width, self.scale, self.operator)
            self._wy, self._py = wy.astype(np.float32), py.astype(np.float32)
            self._wxt, self._pxt = np.ascontiguousarray(wx.T, np.float32), np.ascontiguousarray(px.T, np.float32)

    def filters(self) -> MapFilters | None:
        """The short filters as the step record signs them (what `fvsr verify` recomputes S and R
        with, forensic_vsr.audit.exact_maps); None where the frame needs the dense matrices."""
        if self._filters is None:
            return None
        f = self._filters.f
        return MapFilters(f.scale, f.down, f.down_anchor, f.up, f.inverse)

    def degrade(self, x: np.ndarray) -> np.ndarray:
        return self._filters.degrade(x) if self._filters else self._wy @ x @ self._wxt

    def pinv(self, r: np.ndarray) -> np.ndarray:
        return self._filters.pinv(r) if self._filters else self._py @ r @ self._pxt

    def synthesized(self, x_hat: np.ndarray, max_value: int = 255) -> tuple[np.ndarray, np.ndarray]:
        """(S, A†A x̂) in 8-bit levels: S needs the output alone (the report's stills of a format-3
        bundle recompute it so)."""
        x = np.multiply(x_hat, np.float32(255.0 / max_value), dtype=np.float32)
        p_ax = self.pinv(self.degrade(x))
        # |a - b| in one pass (OpenCV's absdiff: the same correctly rounded float32 difference)
        return cv2.absdiff(x, p_ax, dst=x), p_ax

    def compute(self, y: np.ndarray, x_hat: np.ndarray, max_value: int = 255) -> tuple[np.ndarray, np.ndarray]:
        """(S, R) in 8-bit levels for input plane `y` and output plane `x_hat` (native samples)."""
        s, p_ax = self.synthesized(x_hat, max_value)
        r = self.pinv(np.multiply(y, np.float32(255.0 / max_value), dtype=np.float32))
        return s, cv2.absdiff(r, p_ax, dst=r)


def to_gray16(levels: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """round(levels * factor * MAP_SCALE), half to even, saturated to [0, 65535], in one pass."""
    return cv2.multiply(np.asarray(levels, np.float32), float(factor) * MAP_SCALE, dtype=cv2.CV_16U)


def flagged_regions(s: np.ndarray, threshold: float) -> dict[str, Any]:
    """Per-frame statistics of the 8-connected regions where `s` > threshold."""
    mask = (s > threshold).astype(np.uint8)
    flagged = int(np.count_nonzero(mask))
    # label only the bounding rectangle of the flagged pixels (most frames have few or none)
    x0, y0, w, h = cv2.boundingRect(mask) if flagged else (0, 0, 0, 0)
    if flagged:
        n, _labels, stats, _ = cv2.connectedComponentsWithStats(mask[y0 : y0 + h, x0 : x0 + w], connectivity=8)
        stats[:, cv2.CC_STAT_LEFT] += x0
        stats[:, cv2.CC_STAT_TOP] += y0
    else:
        n, stats = 1, np.zeros((1, 5), np.int32)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(-areas, kind="stable")[:MAX_BOXES] + 1
    regions = [stats[i] for i in order]
    return {
        "fraction_flagged": round(flagged / mask.size, 6),
        "regions": n - 1,
        "largest_region_px": int(areas.max()) if n > 1 else 0,
        "s_max": round(float(s.max()), 3),
        "s_mean": round(float(s.mean()), 4),
        "boxes": [
            {
                "x": int(st[cv2.CC_STAT_LEFT]),
                "y": int(st[cv2.CC_STAT_TOP]),
                "w": int(st[cv2.CC_STAT_WIDTH]),
                "h": int(st[cv2.CC_STAT_HEIGHT]),
                "area": int(st[cv2.CC_STAT_AREA]),
            }
            for st in regions
        ],
    }
