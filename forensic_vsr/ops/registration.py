"""Global sub-pixel registration of one frame onto another, on what does not move.

A whole-frame registration of a fixed camera with people walking through it locks onto the
people: the static scene, which is what an examiner wants sharp, is then shifted by a fraction of
a pixel in every frame and the integrated or super-resolved result is soft and checkered. So the
registration is measured on a region that holds still:

- `region` (`--register-roi X,Y,W,H`, evidence pixel coordinates): only the examiner's region
  is registered on, and every residual is measured there.
- otherwise, `strategy="static"` (the default): a robust two-pass registration. Pass 1
  registers the region (the whole frame); the per-pixel residual after warping marks as moving
  every pixel whose residual exceeds `median + k * 1.4826 * MAD` (with a floor, so noise alone
  masks nothing), dilated by a few pixels; pass 2 registers again on the remaining static
  mask, and the mask is re-estimated once from pass 2's alignment (iteratively reweighted).
  Where less than a quarter of the region stays static, pass 1 stands and the record says so.
- `strategy="whole"`: pass 1 only (the behaviour before; kept for comparison).

Every registration records its residual: the RMS difference, in 8-bit levels, between the
reference and the neighbour warped onto it (bilinear) over the pixels the final pass used, and
a frame whose residual exceeds `max_residual` is rejected (not used) with that reason, like one
whose ECC fails or correlates under the threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from forensic_vsr.errors import UsageError

STRATEGIES = ("static", "whole")
DEFAULT_MAX_RESIDUAL = 16.0  # 8-bit levels: a static region this far off after warping is not aligned
_MIN_STATIC = 0.25  # under this share of the region static, the moving mask is not trusted
_MAD_K = 3.0  # residuals beyond median + k robust sigmas are moving content
_FLOOR_LEVELS = 6.0  # a residual under this many 8-bit levels never marks a pixel as moving
_DILATE_PX = 3
MOVING_MASK_RULE = (
    f"pass 1 on the region; moving: smoothed residual > t x ({_FLOOR_LEVELS} levels + local gradient), "
    f"t = max(1, median + {_MAD_K} x 1.4826 x MAD), dilated {_DILATE_PX} px; pass 2 (and 3) on the rest"
)


@dataclass(frozen=True)
class Registration:
    offset: int  # neighbour index minus reference index
    ok: bool
    matrix: tuple[tuple[float, ...], ...] | None  # 2x3: neighbour(M p) = reference(p), low-res pixels
    ecc: float | None
    reason: str | None = None
    residual: float | None = None  # RMS in 8-bit levels over the registration mask, after warping
    static_fraction: float | None = None  # share of the registration region the final pass used
    registered_on: str | None = None  # "whole frame", "region", "static pixels of the region", ...

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "ok": self.ok,
            "ecc": None if self.ecc is None else round(self.ecc, 5),
            "matrix": None if self.matrix is None else [[round(v, 5) for v in row] for row in self.matrix],
            **({"reason": self.reason} if self.reason else {}),
            **({"residual_levels": round(self.residual, 4)} if self.residual is not None else {}),
            **({"static_fraction": round(self.static_fraction, 4)} if self.static_fraction is not None else {}),
            **({"registered_on": self.registered_on} if self.registered_on else {}),
        }


@dataclass(frozen=True)
class RegistrationRegion:
    """Which pixels a registration is estimated on, and when its residual rejects the frame.
    The default (whole frame, nothing enforced) is the registration as it was before."""

    strategy: str = "whole"  # "static": two-pass, moving content masked; "whole": one pass
    region: tuple[int, int, int, int] | None = None  # x, y, width, height in evidence pixels
    max_residual: float | None = None  # 8-bit levels; None: residuals are recorded, not enforced

    @classmethod
    def for_stage(
        cls, card_params: dict[str, Any], strategy: str, region: tuple[int, int, int, int] | None, width: int, height: int
    ) -> RegistrationRegion:
        """What a temporal stage registers on: the recipe's strategy (--registration; "whole" is what
        releases before it did, with no residual rejection, so their runs reproduce) and
        --register-roi, checked against the frame (a UsageError names the problem), and the card's
        `max_residual_levels` (default 16) for the static strategy."""
        if strategy not in STRATEGIES:
            raise UsageError(f"registration strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        try:
            region_mask((height, width), region)
        except ValueError as exc:
            raise UsageError(f"--register-roi: {exc}") from None
        limit = card_params.get("max_residual_levels", DEFAULT_MAX_RESIDUAL) if strategy == "static" else None
        return cls(strategy, region, None if limit is None else float(limit))

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "region": list(self.region) if self.region else "whole frame",
            "max_residual_levels": self.max_residual,
            **({"moving_mask": MOVING_MASK_RULE} if self.strategy == "static" else {}),
        }


def region_mask(shape: tuple[int, int], region: tuple[int, int, int, int] | None) -> np.ndarray:
    """The registration region as a boolean mask (the whole frame for None); a region outside
    the frame is a ValueError."""
    h, w = shape
    mask = np.zeros(shape, bool)
    if region is None:
        mask[:] = True
        return mask
    x, y, rw, rh = region
    if rw < 16 or rh < 16 or x < 0 or y < 0 or x + rw > w or y + rh > h:
        raise ValueError(f"register region {x},{y},{rw},{rh} is not a region of at least 16x16 inside the {w}x{h} frame")
    mask[y : y + rh, x : x + rw] = True
    return mask


def _phase_shift(ref: np.ndarray, nb: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Phase correlation on the bounding box of `mask`, masked-out pixels set to the masked mean
    (they carry no structure)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    m = mask[y0:y1, x0:x1]
    a, b = ref[y0:y1, x0:x1], nb[y0:y1, x0:x1]
    if not m.all():
        a = np.where(m, a, a[m].mean()).astype(np.float32)
        b = np.where(m, b, b[m].mean()).astype(np.float32)
    window = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
    return dx, dy


def _ecc(ref: np.ndarray, nb: np.ndarray, warp: np.ndarray, motion: str, mask: np.ndarray | None) -> tuple[float, np.ndarray]:
    """ECC translation from `warp`, then the affine refinement where asked (kept only where it
    correlates better and stays near the identity). cv2.error where ECC does not converge."""
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    m8 = None if mask is None else mask.astype(np.uint8)
    cc, warp = cv2.findTransformECC(ref, nb, warp.copy(), cv2.MOTION_TRANSLATION, criteria, m8, 5)
    if motion == "affine":
        try:
            cc_affine, affine = cv2.findTransformECC(ref, nb, warp.copy(), cv2.MOTION_AFFINE, criteria, m8, 5)
            if np.abs(affine[:, :2] - np.eye(2)).max() <= 0.05 and cc_affine >= cc:
                cc, warp = cc_affine, affine
        except cv2.error:
            pass  # keep the translation
    return float(cc), warp


def warped_difference(ref: np.ndarray, nb: np.ndarray, warp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference - neighbour(M p), where the warped neighbour is defined) in sample units."""
    h, w = ref.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(
        nb.astype(np.float32), warp.astype(np.float64), (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan
    )
    valid = np.isfinite(out)
    return np.where(valid, ref - out, 0.0), valid


def moving_mask(ref: np.ndarray, diff: np.ndarray, valid: np.ndarray, region: np.ndarray, levels: float) -> np.ndarray:
    """Pixels of `region` whose residual a misregistration of up to a pixel cannot explain: the
    smoothed residual over its robust threshold (median + k robust sigmas, never under the
    floor) plus the local gradient magnitude (what one pixel of misalignment costs there);
    dilated, since a moving object's edge is moving too."""
    smooth = lambda a: cv2.GaussianBlur(a.astype(np.float32), (0, 0), 1.0)  # noqa: E731
    r = np.abs(smooth(diff))
    s = smooth(ref)
    grad = np.hypot(cv2.Sobel(s, cv2.CV_32F, 1, 0, ksize=3) / 8, cv2.Sobel(s, cv2.CV_32F, 0, 1, ksize=3) / 8)
    inside = region & valid
    vals = (r / (levels * _FLOOR_LEVELS + grad))[inside]
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med)))
    threshold = max(med + _MAD_K * 1.4826 * mad, 1.0)
    moving = (r > threshold * (levels * _FLOOR_LEVELS + grad)) & inside
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _DILATE_PX + 1, 2 * _DILATE_PX + 1))
    return cv2.dilate(moving.astype(np.uint8), kernel).astype(bool)


def register(
    reference: np.ndarray,
    neighbour: np.ndarray,
    offset: int,
    ecc_threshold: float,
    motion: str = "translation",
    max_shift: float = 0.2,
    where: RegistrationRegion | None = None,
    max_value: int = 255,
) -> Registration:
    """Global motion of `neighbour` against `reference` (same size): a translation, or an affine
    motion refined from it, estimated on `where` (default: the whole frame, one pass). Small
    frames register more accurately with the translation model (fewer parameters)."""
    where = where or RegistrationRegion()
    ref = reference.astype(np.float32)
    nb = neighbour.astype(np.float32)
    h, w = ref.shape
    levels = max_value / 255.0
    region_px = region_mask((h, w), where.region)
    mask = None if where.region is None else region_px
    dx, dy = _phase_shift(ref, nb, region_px)
    warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    try:
        cc, warp = _ecc(ref, nb, warp, motion, mask)
    except cv2.error as exc:
        return Registration(offset, False, None, None, f"ECC did not converge ({str(exc).strip().splitlines()[-1][:80]})")
    used, on_what = region_px, "whole frame" if where.region is None else "region"
    if where.strategy == "static":
        on_what += f" (moving mask not used: under {_MIN_STATIC:.0%} of it static)"
        for _ in range(2):
            diff, valid = warped_difference(ref, nb, warp)
            static = region_px & valid & ~moving_mask(ref, diff, valid, region_px, levels)
            if static.sum() < _MIN_STATIC * region_px.sum():
                break
            try:
                cc, warp = _ecc(ref, nb, warp, motion, static)
            except cv2.error:
                break  # keep the last alignment
            used, on_what = static, "static pixels of the " + ("whole frame" if where.region is None else "region")
    diff, valid = warped_difference(ref, nb, warp)
    on = used & valid
    residual = float(np.sqrt(np.mean(diff[on] ** 2)) / levels) if on.any() else None
    fraction = float(on.sum() / region_px.sum())
    m = tuple(tuple(float(v) for v in row) for row in warp)

    def result(ok: bool, reason: str | None = None) -> Registration:
        return Registration(offset, ok, m, cc, reason, residual, fraction, on_what)

    if abs(m[0][2]) > max_shift * w or abs(m[1][2]) > max_shift * h:
        return result(False, f"motion larger than {max_shift:.0%} of the frame")
    if abs(m[0][0] - 1) > 0.05 or abs(m[1][1] - 1) > 0.05 or abs(m[0][1]) > 0.05 or abs(m[1][0]) > 0.05:
        return result(False, "affine part outside 5% of the identity")
    if cc < ecc_threshold:
        return result(False, f"correlation {cc:.3f} under {ecc_threshold}")
    limit = where.max_residual
    if limit is not None and residual is not None and residual > limit:
        return result(False, f"residual {residual:.2f} levels over {limit} on the registration region")
    return result(True)
