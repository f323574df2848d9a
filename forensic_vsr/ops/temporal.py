"""Temporal operations on luma and chroma: stabilisation, frame integration, and the warping
error that measures temporal consistency.

Stabilise: every frame is registered to a reference frame (the first of the range) with the
same sub-pixel global registration as multi-frame SR (forensic_vsr.ops.registration.register,
on what does not move), and
warped onto it; the estimated motion of every frame is recorded, so an examiner can align a
plate or a face across frames. Area the warp uncovers is black, never filled in.

Integrate: each output frame is the per-pixel mean of the frames within `radius` of it, each
registered and warped onto it; pixels where a warped neighbour disagrees with the frame by more
than `outlier_levels` (moving content) are left out. The per-pixel count of contributing frames
and their spread (standard deviation) are the maps the report shows: averaging n frames of
independent noise divides its standard deviation by sqrt(n), which is how a plate is lifted out
of noise without inventing anything.

E_warp (Lai et al. 2018, "Learning Blind Video Temporal Consistency"): the mean over frame pairs
of the squared difference between output frame t and output frame t-1 warped to t by the optical
flow of the *input* frames (OpenCV DIS), over pixels the flow marks as non-occluded
(forward-backward consistency). Computed for input and output, so the report can say whether an
operation made the video more or less temporally consistent."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from forensic_vsr.ops.registration import Registration, RegistrationRegion, register


def warp_plane(plane: np.ndarray, matrix: tuple[tuple[float, ...], ...], sx: int = 1, sy: int = 1, vmax: int = 255) -> np.ndarray:
    """plane(M p), M given in luma pixels; for a plane subsampled by (sx, sy) the motion is
    rescaled (siting of subsampled chroma is ignored: a sub-sample offset for the translation
    only). Uncovered area is 0."""
    m = np.array(matrix, np.float64)
    if (sx, sy) != (1, 1):
        m = m.copy()
        m[0, 2] /= sx
        m[1, 2] /= sy
        m[0, 1] *= sx / sy
        m[1, 0] *= sy / sx
    h, w = plane.shape
    out = cv2.warpAffine(
        plane.astype(np.float32), m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return np.clip(np.rint(out), 0, vmax).astype(plane.dtype)


def coverage(shape: tuple[int, int], matrix: tuple[tuple[float, ...], ...]) -> float:
    """Fraction of the frame the warped source covers."""
    ones = np.ones(shape, np.float32)
    m = np.array(matrix, np.float64)
    out = cv2.warpAffine(ones, m, shape[::-1], flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
    return float(out.mean())


@dataclass(frozen=True)
class IntegrationStats:
    count: np.ndarray  # per pixel, frames that contributed (the frame itself always does)
    spread: np.ndarray  # per pixel std of the contributions, 8-bit levels
    registrations: list[Registration]


def integrate(
    frames: list[np.ndarray],
    ref_index: int,
    ecc_threshold: float,
    outlier_levels: float,
    motion: str = "translation",
    where: RegistrationRegion | None = None,
    max_value: int = 255,
) -> tuple[np.ndarray, IntegrationStats]:
    """Mean of `frames` registered onto frames[ref_index] (float64, luma-level units); a
    neighbour whose registration fails (`where` says on what, and when a residual fails it) is
    left out."""
    ref = frames[ref_index].astype(np.float64)
    h, w = ref.shape
    total = ref.copy()
    total_sq = ref * ref
    count = np.ones_like(ref)
    regs = []
    for i, frame in enumerate(frames):
        if i == ref_index:
            continue
        reg = register(ref, frame, i - ref_index, ecc_threshold, motion, where=where, max_value=max_value)
        regs.append(reg)
        if not reg.ok or reg.matrix is None:
            continue
        m = np.array(reg.matrix, np.float64)
        warped = cv2.warpAffine(
            frame.astype(np.float64),
            m,
            (w, h),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=np.nan,
        )
        smooth = lambda a: cv2.GaussianBlur(a, (0, 0), 1.0)  # noqa: E731
        valid = np.isfinite(warped)
        w0 = np.where(valid, warped, ref)
        ok = valid & (np.abs(smooth(w0) - smooth(ref)) <= outlier_levels)
        total += np.where(ok, w0, 0)
        total_sq += np.where(ok, w0 * w0, 0)
        count += ok
    mean = total / count
    spread = np.sqrt(np.maximum(total_sq / count - mean * mean, 0))
    return mean, IntegrationStats(count, spread, regs)


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(a.astype(np.uint8), b.astype(np.uint8), None)


class WarpError:
    """E_warp accumulated over a stream of (input luma, output luma) pairs, for the output and,
    as the baseline, for the input itself."""

    def __init__(self, flow_from: str = "input") -> None:
        """`flow_from`: "input" (Lai et al.; the output should keep the input's motion) or
        "output" (for operations that change the motion on purpose, such as stabilisation)."""
        self.flow_from = flow_from
        self.prev: tuple[np.ndarray, np.ndarray] | None = None
        self.out: list[float] = []
        self.inp: list[float] = []

    def add(self, inp: np.ndarray, out: np.ndarray, vmax: int = 255) -> None:
        a = np.clip(np.rint(inp.astype(np.float64) * 255.0 / vmax), 0, 255).astype(np.uint8)
        o = out.astype(np.float32) * (255.0 / vmax)
        if self.prev is not None:
            pa, po = self.prev
            if self.flow_from == "output":
                oa = np.clip(np.rint(o), 0, 255).astype(np.uint8)
                ob = np.clip(np.rint(po), 0, 255).astype(np.uint8)
                if oa.shape != a.shape:
                    oa, ob = (cv2.resize(v, a.shape[::-1], interpolation=cv2.INTER_AREA) for v in (oa, ob))
                e_out = _pair_error(oa, ob, o, po)
            else:
                e_out = _pair_error(a, pa, o, po)
            e_in = _pair_error(a, pa, a.astype(np.float32), pa.astype(np.float32))
            if e_out is not None and e_in is not None:
                self.out.append(e_out)
                self.inp.append(e_in)
        self.prev = (a, o)

    def result(self) -> dict[str, object] | None:
        if not self.out:
            return None
        return {
            "metric": "E_warp (Lai et al. 2018): mean squared difference in [0,1] units between output t and output t-1 "
            "warped by the input's DIS flow, over non-occluded pixels",
            "flow_from": self.flow_from,
            "pairs": len(self.out),
            "input": round(float(np.mean(self.inp)), 7),
            "output": round(float(np.mean(self.out)), 7),
        }


def _pair_error(a: np.ndarray, b: np.ndarray, o_t: np.ndarray, o_p: np.ndarray) -> float | None:
    """One pair's E_warp term: a, b the input frames t and t-1 (uint8), o_t, o_p the outputs."""
    h, w = a.shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    fwd = _flow(a, b)  # for pixels of frame t: where they are in frame t-1
    bwd = _flow(b, a)
    map_x, map_y = gx + fwd[..., 0], gy + fwd[..., 1]
    back = cv2.remap(bwd, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mismatch = np.sum((fwd + back) ** 2, axis=2)
    occluded = mismatch > 0.01 * (np.sum(fwd**2, axis=2) + np.sum(back**2, axis=2)) + 0.5
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    mask = inside & ~occluded
    if o_t.shape != (h, w):
        o_t = cv2.resize(o_t, (w, h), interpolation=cv2.INTER_AREA)
        o_p = cv2.resize(o_p, (w, h), interpolation=cv2.INTER_AREA)
    warped = cv2.remap(o_p, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if not mask.any():
        return None
    d = (o_t - warped)[mask] / 255.0
    return float(np.mean(d * d))


def warp_error(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> float | None:
    """E_warp of `outputs` with flow from `inputs` (8-bit luma lists of equal length)."""
    acc = WarpError()
    for i, o in zip(inputs, outputs, strict=True):
        acc.add(i, o)
    r = acc.result()
    return None if r is None else float(r["output"])  # type: ignore[arg-type]
