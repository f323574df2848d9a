"""Stages that register frames over time: multi-frame SR (forensic_vsr.ops.mfsr), stabilisation
and frame integration (forensic_vsr.ops.temporal). Every registration is recorded per frame, with
its residual and what it was estimated on (forensic_vsr.ops.registration); what was left
unregistered is said in one line, in the record's `registration_summary` and on stderr."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from forensic_vsr.models.registry import ResolvedModel
from forensic_vsr.ops.registration import RegistrationRegion
from forensic_vsr.ops.stages import Done, Key, Planes, PlaneStage, StageParams, WindowStage

# evidence pixels around --roi a registration may bring into the region: content moving up to
# this far between registered frames is still inside what is registered and warped
REGISTRATION_MARGIN = 16


def _card_params(model: ResolvedModel) -> dict[str, Any]:
    return (model.architecture or {}).get("params", {})


def _where(model: ResolvedModel, params: StageParams) -> RegistrationRegion:
    return RegistrationRegion.for_stage(_card_params(model), params.registration, params.register_roi, params.in_width, params.in_height)


def _registration_record(where: RegistrationRegion, params: StageParams) -> dict[str, Any]:
    """What the registration was estimated on, its region in evidence pixels (with --roi the stage
    registers the crop, and `where` holds the region in the crop's pixels)."""
    record = where.to_json()
    if params.crop is not None and where.region is not None:
        x, y, w, h = where.region
        record["region"] = [x + params.crop.crop[0], y + params.crop.crop[1], w, h]
    return record


def registration_summary(operation: str, per_frame: list[dict[str, Any]]) -> str:
    """One line on what did not register, for the record and for stderr (logged as a warning
    when anything failed). `per_frame` entries carry `registrations` (neighbours) or `ok`."""
    if any("registrations" in f for f in per_frame):
        regs = [(f["frame"], r) for f in per_frame for r in f.get("registrations", [])]
        bad = [(frame, r) for frame, r in regs if not r["ok"]]
        what = f"{len(bad)} of {len(regs)} neighbour registrations rejected and left out"
        frames = sorted({frame + r["offset"] for frame, r in bad})
    else:
        bad_frames = [f for f in per_frame if not f["ok"]]
        what = f"{len(bad_frames)} of {len(per_frame)} frames not registered, passed through unaligned"
        frames = [f["frame"] for f in bad_frames]
        bad = [(f["frame"], f) for f in bad_frames]
    if not bad:
        return f"{operation}: every registration passed"
    reasons = sorted({str(r.get("reason", "")).split(" (")[0] for _, r in bad})
    shown = ", ".join(str(f) for f in frames[:12]) + (f" and {len(frames) - 12} more" if len(frames) > 12 else "")
    line = f"{operation}: {what} (frames {shown}; {'; '.join(reasons)})"
    logging.getLogger(__name__).warning("warning: %s", line)
    return line


class MultiFrameStage(WindowStage):
    """Multi-frame SR: every neighbour's registration, and every frame that fell back to
    single-frame back-projection, is recorded."""

    temporal = True
    context = REGISTRATION_MARGIN

    def __init__(self, model: ResolvedModel, params: StageParams) -> None:
        super().__init__(model, params)
        from forensic_vsr.ops.mfsr import MfsrParams

        self.mfsr = MfsrParams.from_card(_card_params(model), params.scale, _where(model, params))
        self.radius = self.mfsr.radius

    def record(self) -> dict[str, Any]:
        fallbacks = [f["frame"] for f in self.per_frame if f["fallback"]]
        return {
            **super().record(),
            "multiframe": {
                "method": (
                    "ECC registration (translation or affine) + iterative back-projection + exact projection onto the reference frame"
                ),
                "params": {k: v for k, v in dataclasses.asdict(self.mfsr).items() if k != "where"},
                "registration": _registration_record(self.mfsr.where, self.params),
                "registration_summary": registration_summary("mfsr", self.per_frame),
                "frames_single_frame_fallback": fallbacks,
                "per_frame": self.per_frame,
            },
        }

    def reconstruct(self, pos: int) -> tuple[Key, Planes, Planes]:
        from forensic_vsr.ops.mfsr import super_resolve

        key, planes = self.window[pos]
        ref, lumas = self.neighbourhood(pos)
        x_hat, regs = super_resolve(lumas, ref, self.mfsr, self.geometry[0][2])
        used = sum(reg.ok for reg in regs)
        registrations = [g.to_json() for g in regs]
        self.per_frame.append(
            {"frame": key[0], "neighbours": len(regs), "registered": used, "fallback": used == 0, "registrations": registrations}
        )
        out = [self.luma(planes[0], x_hat)] + [self.classical(p, self.geometry[i]) for i, p in enumerate(planes) if i > 0]
        return key, planes, out


class StabiliseStage(PlaneStage):
    """Every frame registered to the first frame of the range and warped onto it (all planes,
    uncovered area black); per-frame motion, correlation and coverage recorded. A frame whose
    registration fails is passed through unchanged and listed."""

    temporal = True
    context = REGISTRATION_MARGIN

    def __init__(self, model: ResolvedModel, params: StageParams) -> None:
        super().__init__(model, params)
        p = _card_params(model)
        self.ecc_threshold = float(p.get("ecc_threshold", 0.9))
        self.motion = str(p.get("motion", "translation"))
        self.where = _where(model, params)
        self.reference: np.ndarray | None = None

    @property
    def frame_context(self) -> tuple[int, int] | None:
        return None  # every frame is registered to the range's first

    def record(self) -> dict[str, Any]:
        return {
            **super().record(),
            "temporal": {
                "operation": "stabilise",
                "reference_frame": self.per_frame[0]["frame"] if self.per_frame else None,
                "motion_model": self.motion,
                "ecc_threshold": self.ecc_threshold,
                "registration": _registration_record(self.where, self.params),
                "registration_summary": registration_summary("stabilise", self.per_frame),
                "frames_not_registered": [f["frame"] for f in self.per_frame if not f["ok"]],
                "per_frame": self.per_frame,
            },
        }

    def flush(self) -> Done:
        from forensic_vsr.ops.registration import register
        from forensic_vsr.ops.temporal import coverage, warp_plane

        pending, self.pending = self.pending, []
        done = []
        for key, planes in pending:
            luma = planes[0].astype(np.float64)
            if self.reference is None:
                self.reference = luma
                self.per_frame.append({"frame": key[0], "ok": True, "matrix": [[1, 0, 0], [0, 1, 0]], "ecc": 1.0, "coverage": 1.0})
                done.append((key, planes, [p.copy() for p in planes]))
                continue
            reg = register(self.reference, luma, 0, self.ecc_threshold, self.motion, where=self.where, max_value=self.geometry[0][2])
            entry = reg.to_json()
            entry.pop("offset")
            if not reg.ok or reg.matrix is None:
                self.per_frame.append({"frame": key[0], **entry})
                done.append((key, planes, [p.copy() for p in planes]))
                continue
            out = [warp_plane(p, reg.matrix, self.geometry[i][0], self.geometry[i][1], self.geometry[i][2]) for i, p in enumerate(planes)]
            self.per_frame.append({"frame": key[0], **entry, "coverage": round(coverage(luma.shape, reg.matrix), 5)})
            done.append((key, planes, out))
        return done


class IntegrateStage(WindowStage):
    """Frame integration of luma over the frames within `radius`; chroma is the frame's own. The
    per-pixel count of contributing frames and their spread are written as extra maps."""

    temporal = True
    extra_map_names = ("count", "spread")
    context = REGISTRATION_MARGIN

    def __init__(self, model: ResolvedModel, params: StageParams) -> None:
        super().__init__(model, params)
        p = _card_params(model)
        self.radius = int(p.get("radius", 3))
        self.ecc_threshold = float(p.get("ecc_threshold", 0.9))
        self.outlier_levels = float(p.get("outlier_levels", 12.0))
        self.motion = str(p.get("motion", "translation"))
        self.where = _where(model, params)
        self.maps_of: dict[Any, dict[str, np.ndarray]] = {}

    def record(self) -> dict[str, Any]:
        return {
            **super().record(),
            "temporal": {
                "operation": "integrate",
                "radius": self.radius,
                "motion_model": self.motion,
                "ecc_threshold": self.ecc_threshold,
                "outlier_levels": self.outlier_levels,
                "registration": _registration_record(self.where, self.params),
                "registration_summary": registration_summary("integrate", self.per_frame),
                "per_frame": self.per_frame,
            },
        }

    def extras(self, key: Key) -> dict[str, np.ndarray] | None:
        return self.maps_of.pop(key, None)

    def reconstruct(self, pos: int) -> tuple[Key, Planes, Planes]:
        from forensic_vsr.ops.temporal import integrate

        key, planes = self.window[pos]
        ref, lumas = self.neighbourhood(pos)
        vmax = self.geometry[0][2]
        levels = vmax / 255.0
        mean, stats = integrate(lumas, ref, self.ecc_threshold, self.outlier_levels * levels, self.motion, self.where, vmax)
        out_luma = np.clip(np.rint(mean), 0, vmax).astype(planes[0].dtype)
        if self.params.keep_maps:
            self.maps_of[key] = {"count": stats.count.astype(np.float32), "spread": (stats.spread / levels).astype(np.float32)}
        self.per_frame.append(
            {
                "frame": key[0],
                "neighbours": len(stats.registrations),
                "registered": sum(r.ok for r in stats.registrations),
                "mean_count": round(float(stats.count.mean()), 4),
                "min_count": int(stats.count.min()),
                "mean_spread_levels": round(float(stats.spread.mean() / levels), 4),
                "registrations": [r.to_json() for r in stats.registrations],
            }
        )
        return key, planes, [out_luma] + [p.copy() for p in planes[1:]]
