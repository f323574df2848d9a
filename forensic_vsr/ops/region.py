"""The region of interest every operation can run on (`--roi X,Y,W,H`, evidence pixels).

The region is checked against the frame (inside it, at least MIN_SIDE a side, on the chroma
grid), widened on each side by the margin the stages need (each stage's `margin_for`, summed
over a chain; clipped at the frame's border) into the crop that goes through the stages, and
cut back after them to the region, times the scale. So the cost follows the region, and an
operation whose output sample sees only `margin` input samples around it (the classical
kernels, deinterlacing) gives inside the region exactly what it gives on the whole frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forensic_vsr.errors import UsageError

MIN_SIDE = 16  # evidence pixels: a region must be at least this wide and tall

Box4 = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class RegionPlan:
    """Where the region lies (`region`), what is cut from each evidence frame for the stages
    (`crop`: the region and the margin actually taken, aligned to the chroma grid and, for field
    parity, to even chroma rows), and how to cut the stages' planes back to the region."""

    region: Box4
    crop: Box4
    margins: tuple[dict[str, Any], ...]  # what each stage asked for: {op, model, margin} (evidence pixels, each side)
    scale: int
    geometry: tuple[tuple[int, int], ...]  # per plane: (horizontal, vertical) subsampling

    @property
    def margin(self) -> int:
        """The margin needed on each side: the sum of the stages' (each sees the one before's output)."""
        return sum(int(m["margin"]) for m in self.margins)

    @property
    def in_crop(self) -> Box4:
        """The region in the crop's coordinates."""
        x, y, w, h = self.region
        return x - self.crop[0], y - self.crop[1], w, h

    def taken(self) -> dict[str, int]:
        """The margin taken from the evidence on each side (less than `margin` at the border)."""
        (x, y, w, h), (cx, cy, cw, ch) = self.region, self.crop
        return {"left": x - cx, "top": y - cy, "right": cx + cw - x - w, "bottom": cy + ch - y - h}

    def crop_evidence(self, planes: list[np.ndarray]) -> list[np.ndarray]:
        """The crop of a decoded evidence frame (all planes)."""
        return _cut(planes, self.crop, 1, self.geometry)

    def cut_input(self, planes: list[np.ndarray]) -> list[np.ndarray]:
        """The region of crop-sized planes (the main operation's input, after x1 pre-operations)."""
        return _cut(planes, self.in_crop, 1, self.geometry)

    def cut_output(self, planes: list[np.ndarray]) -> list[np.ndarray]:
        """The region, times the scale, of the stages' output planes."""
        return _cut(planes, self.in_crop, self.scale, self.geometry)

    def cut_map(self, plane: np.ndarray) -> np.ndarray:
        """The region, times the scale, of an output-sized map (one full-resolution plane)."""
        return _cut([plane], self.in_crop, self.scale, ((1, 1),))[0]

    def to_json(self) -> dict[str, Any]:
        """The step record's `region` (audit.step_record.Region)."""
        x, y, w, h = self.region
        cx, cy, cw, ch = self.crop
        return {
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "units": "evidence pixels",
            "margin_needed": self.margin,
            "margin_by_operation": [dict(m) for m in self.margins],
            "margin_taken": self.taken(),
            "crop": {"x": cx, "y": cy, "width": cw, "height": ch},
            "scale": self.scale,
            "output": {"width": w * self.scale, "height": h * self.scale},
        }


def _cut(planes: list[np.ndarray], box: Box4, factor: int, geometry: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    x, y, w, h = (v * factor for v in box)
    out = []
    for plane, (sx, sy) in zip(planes, geometry, strict=True):
        rows = slice(y // sy, -(-(y + h) // sy))
        cols = slice(x // sx, -(-(x + w) // sx))
        out.append(np.ascontiguousarray(plane[rows, cols]))
    return out


def check_region(region: Box4, width: int, height: int, geometry: tuple[tuple[int, int], ...], option: str = "--roi") -> None:
    """A UsageError naming the problem unless `region` lies inside the width x height frame, is at
    least MIN_SIDE a side and starts (and ends, unless at the frame's edge) on the chroma grid."""
    x, y, w, h = region
    text = f"{option} {x},{y},{w},{h}"
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise UsageError(f"{text}: the region must lie inside the {width}x{height} evidence frame")
    if w < MIN_SIDE or h < MIN_SIDE:
        raise UsageError(f"{text}: the region must be at least {MIN_SIDE}x{MIN_SIDE} evidence pixels")
    ax, ay = max(g[0] for g in geometry), max(g[1] for g in geometry)
    if x % ax or y % ay or (w % ax and x + w != width) or (h % ay and y + h != height):
        fix = (x - x % ax, y - y % ay, w + (-w % ax), h + (-h % ay))
        raise UsageError(
            f"{text}: with {ax}x{ay} chroma subsampling X, Y, W and H must be multiples of {ax} (X, W) and {ay} (Y, H), "
            f"e.g. {option} {','.join(map(str, fix))}"
        )


def plan_region(
    region: Box4, width: int, height: int, geometry: tuple[tuple[int, int], ...], margins: tuple[dict[str, Any], ...], scale: int
) -> RegionPlan:
    """The crop for `region` with the stages' `margins`, summed, on each side (checked: `check_region`)."""
    check_region(region, width, height, geometry)
    x, y, w, h = region
    margin = sum(int(m["margin"]) for m in margins)
    ax, ay = max(g[0] for g in geometry), 2 * max(g[1] for g in geometry)  # even chroma rows keep field parity
    x0, y0 = max(0, x - margin) // ax * ax, max(0, y - margin) // ay * ay
    x1, y1 = min(width, -(-(x + w + margin) // ax) * ax), min(height, -(-(y + h + margin) // ay) * ay)
    return RegionPlan(region, (x0, y0, x1 - x0, y1 - y0), margins, scale, geometry)


def in_crop(box: Box4 | None, plan: RegionPlan | None, option: str) -> Box4 | None:
    """`box` (evidence pixels) in the crop's coordinates; a box outside the crop is a UsageError."""
    if box is None or plan is None:
        return box
    x, y, w, h = box
    cx, cy, cw, ch = plan.crop
    if x < cx or y < cy or x + w > cx + cw or y + h > cy + ch:
        raise UsageError(
            f"{option} {x},{y},{w},{h}: must lie inside what --roi processes, "
            f"evidence pixels {cx},{cy},{cw},{ch} (the region and its margin)"
        )
    return x - cx, y - cy, w, h
