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

A† = Wᵀ(WWᵀ)⁻¹ per axis (A is separable), computed exactly once per frame size. Both maps are in
8-bit levels at output resolution, whatever the bit depth. Flagged regions: 8-connected regions
where S exceeds a threshold (policy `flag_threshold_levels`, default 8 levels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from forensic_vsr.ops.consistency import OPERATOR, _axis

DEFAULT_FLAG_THRESHOLD = 8.0
MAP_SCALE = 16  # stored sample = round(value_in_8bit_levels * 16), gray16: 1/16-level steps up to 4095.9 levels
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
        wy, py = _axis(self.height, self.scale, self.operator)
        wx, px = _axis(self.width, self.scale, self.operator)
        # float32 for speed: the maps are stored at 1/256 of a level, far above float32's error
        self._wy, self._py = wy.astype(np.float32), py.astype(np.float32)
        self._wxt, self._pxt = np.ascontiguousarray(wx.T, np.float32), np.ascontiguousarray(px.T, np.float32)

    def degrade(self, x: np.ndarray) -> np.ndarray:
        return self._wy @ x @ self._wxt

    def pinv(self, r: np.ndarray) -> np.ndarray:
        return self._py @ r @ self._pxt

    def compute(self, y: np.ndarray, x_hat: np.ndarray, max_value: int = 255) -> tuple[np.ndarray, np.ndarray]:
        """(S, R) in 8-bit levels for input plane `y` and output plane `x_hat` (native samples)."""
        unit = np.float32(255.0 / max_value)
        x = x_hat.astype(np.float32) * unit
        ax = self.degrade(x)
        s = np.abs(x - self.pinv(ax))
        r = np.abs(self.pinv(y.astype(np.float32) * unit - ax))
        return s, r


def to_gray16(levels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(levels * MAP_SCALE), 0, 65535).astype("<u2")


def flagged_regions(s: np.ndarray, threshold: float) -> dict[str, Any]:
    """Per-frame statistics of the 8-connected regions where `s` > threshold."""
    mask = (s > threshold).astype(np.uint8)
    n, _labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(-areas, kind="stable")[:MAX_BOXES] + 1
    regions = [stats[i] for i in order]
    return {
        "fraction_flagged": round(float(np.count_nonzero(mask)) / mask.size, 6),
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
