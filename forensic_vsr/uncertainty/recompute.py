"""The maps a format-3 bundle does not store, recomputed for whoever shows them (the review page,
the golden tests) exactly as `bundle.maps.MapsWriter` computed them: the same arithmetic
(forensic_vsr.uncertainty.exact, forensic_vsr.uncertainty.calibration) on the same planes, so
each recomputed frame is, sample for sample, the gray16 plane a format-2 bundle stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from forensic_vsr.uncertainty.calibration import interval_scale
from forensic_vsr.uncertainty.exact import ExactMaps, to_gray16

Box = tuple[int, int, int, int]  # x, y, width, height


def recomputed_planes(
    exact: ExactMaps, x_hat: np.ndarray, y: np.ndarray | None, vmax: int, names: tuple[str, ...], lam: float | None
) -> dict[str, np.ndarray]:
    """The gray16 planes of one frame's recomputed maps (`names`); R only where the evidence
    plane `y` is given."""
    if y is not None:
        s, r = exact.compute(y, x_hat, vmax)
    else:
        s, r = exact.synthesized(x_hat, vmax)[0], None
    out = {"synthesized": to_gray16(s)} if "synthesized" in names else {}
    if "contradiction" in names and r is not None:
        out["contradiction"] = to_gray16(r)
    if "interval" in names and lam is not None:
        out["interval"] = to_gray16(interval_scale(x_hat.astype(np.float32) * (255.0 / vmax), s), lam)
    return out


def evidence_region(plane: np.ndarray, region: Box | None) -> np.ndarray:
    """The evidence plane the maps were computed from: the whole first plane, or with --roi the
    step record's region (x, y, width, height, evidence pixels) of it, without the margin (the
    main operation's input is the region; ops.region.RegionPlan.cut_input)."""
    if region is None:
        return plane
    x, y, w, h = region
    return plane[y : y + h, x : x + w]


def recomputed_maps(
    bundle: Path, evidence: Path | None, maps: dict[str, Any], start: int, region: Box | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Every output frame's recomputed map planes, in order, from the bundle's master (and the
    evidence frames from `start` on, for R, cut to `region`: the step record's --roi box);
    `maps` is the step record's `maps` entry."""
    from forensic_vsr.media import VideoReader, frame_planes, plane_geometry

    names = tuple(maps.get("recomputed") or ())
    lam = (maps.get("calibration") or {}).get("lambda")
    with VideoReader(bundle / "output" / "master.mkv") as master:
        vmax = plane_geometry(master.info.pix_fmt)[0][2]
        exact = ExactMaps(master.info.height, master.info.width, int(maps["filters"]["scale"]))
        inputs = VideoReader(evidence) if evidence is not None else None
        try:
            frames = (d for d in inputs.frames() if d.index >= start) if inputs is not None else None
            for decoded in master.frames():
                y = evidence_region(frame_planes(next(frames).frame)[0], region) if frames is not None else None
                yield recomputed_planes(exact, frame_planes(decoded.frame)[0], y, vmax, names, lam)
        finally:
            if inputs is not None:
                inputs.close()
