"""The review page's PSF preview: try a motion or defocus PSF on the evidence frame behind the
current output frame (or a region of it) and see the restoration and its ringing before a signed
run is committed with that PSF. Nothing is written: the page is shown the `fvsr enhance` command
that would make the run.

The restoration is the deblur operation's own (ops/restoration_stages.DeblurStage): luma in
8-bit levels, `wiener` with `default_lambda` of the region, `ringing` and the forward residual
measured as the run records them, the result rounded back into the luma plane, chroma unchanged.
A run takes λ from its first frame; the preview from the frame it is shown."""

from __future__ import annotations

import base64
import io
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from forensic_vsr.errors import UsageError
from forensic_vsr.media import DecodedFrame, frame_from_planes, frame_planes, plane_geometry
from forensic_vsr.ops.colour import component_order
from forensic_vsr.ops.deblur import Psf, blur, default_lambda, defocus_psf, describe, estimate_psf, motion_psf, noise_sigma, ringing, wiener

METHOD = "Wiener deconvolution, gradient regulariser"
MAX_PIXELS = 1920 * 1088  # a region (or whole frame) larger than a 1080p frame is refused: choose a region
MAX_LENGTH, MIN_RADIUS, MAX_RADIUS = 100.0, 0.5, 30.0  # pixels (a disk under 0.09 px holds no sample of defocus_psf's grid)
MIN_REGION, MIN_ESTIMATE = 16, 64  # the deblur --roi minimum; the blind estimate's minimum
PSF_PANEL_PX = 128


@dataclass(frozen=True)
class Region:
    """x, y, w, h in evidence pixels."""

    x: int
    y: int
    w: int
    h: int

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)

    def roi(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"


def _number(params: Mapping[str, str], name: str) -> float:
    text = params.get(name)
    if text is None:
        raise ValueError(f"missing parameter {name}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text[:40]!r}: not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}={text[:40]!r}: not a finite number")
    return value


def parse_psf_params(params: Mapping[str, str]) -> Psf:
    """`kind=motion&length=L&angle=A` or `kind=defocus&radius=R` (pixels, degrees), bounded;
    ValueError with one line otherwise."""
    kind = params.get("kind")
    try:
        if kind == "motion":
            length, angle = _number(params, "length"), _number(params, "angle")
            if not 1 <= length <= MAX_LENGTH:
                raise ValueError(f"motion length {length:g} px: must be 1 to {MAX_LENGTH:g}")
            if not -360 <= angle <= 360:
                raise ValueError(f"motion angle {angle:g} deg: must be -360 to 360")
            return motion_psf(length, angle)
        if kind == "defocus":
            radius = _number(params, "radius")
            if not MIN_RADIUS <= radius <= MAX_RADIUS:
                raise ValueError(f"defocus radius {radius:g} px: must be {MIN_RADIUS:g} to {MAX_RADIUS:g}")
            return defocus_psf(radius)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    raise ValueError(f"kind={str(kind)[:40]!r}: expected motion or defocus")


def parse_region(params: Mapping[str, str], size: tuple[int, int], minimum: int = MIN_REGION) -> Region | None:
    """The region `x, y, w, h` (evidence pixels) if all four are given, None if none is; it must
    lie inside the `size` frame, be at least `minimum` square and at most MAX_PIXELS."""
    given = [k for k in ("x", "y", "w", "h") if params.get(k) not in (None, "")]
    if not given:
        area = size[0] * size[1]
        if area > MAX_PIXELS:
            raise ValueError(f"the {size[0]}x{size[1]} frame is over {MAX_PIXELS} pixels: choose a region")
        if min(size) < minimum:
            raise ValueError(f"the {size[0]}x{size[1]} frame is under {minimum}x{minimum} pixels")
        return None
    if len(given) < 4:
        raise ValueError("a region needs all of x, y, w, h")
    values = [_number(params, k) for k in ("x", "y", "w", "h")]
    if any(v != int(v) for v in values):
        raise ValueError("x, y, w, h must be whole pixels")
    x, y, w, h = (int(v) for v in values)
    if x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
        raise ValueError(f"region {x},{y},{w},{h} is not inside the {size[0]}x{size[1]} evidence frame")
    if w < minimum or h < minimum:
        raise ValueError(f"region {w}x{h}: must be at least {minimum}x{minimum} pixels")
    if w * h > MAX_PIXELS:
        raise ValueError(f"region {w}x{h}: over {MAX_PIXELS} pixels")
    return Region(x, y, w, h)


def _data_url(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def psf_drawing(psf: Psf) -> str:
    """The kernel drawn as the report draws it (255 = its largest weight), magnified to about
    PSF_PANEL_PX pixels by nearest neighbour."""
    k = psf.kernel
    img = np.rint(255 * k / k.max()).astype(np.uint8)
    f = max(1, PSF_PANEL_PX // max(img.shape))
    return _data_url(np.repeat(np.repeat(img, f, axis=0), f, axis=1))


def _luma(decoded: DecodedFrame, region: Region | None) -> tuple[list[np.ndarray], tuple[slice, slice], int, np.ndarray]:
    """The native planes, the region's slices, the luma's largest sample and the region's luma in
    8-bit levels; LookupError for RGB evidence, which the deblur operation refuses too."""
    pix_fmt = decoded.frame.format.name
    if component_order(pix_fmt) is not None:
        raise LookupError(f"PSF preview unavailable: {pix_fmt} evidence has no luma plane, and the preview restores luma only")
    planes = frame_planes(decoded.frame)
    vmax = plane_geometry(pix_fmt)[0][2]
    where = region.slices() if region else (slice(None), slice(None))
    return planes, where, vmax, planes[0][where].astype(np.float64) * (255.0 / vmax)


def _rgb(decoded: DecodedFrame, planes: list[np.ndarray], where: tuple[slice, slice]) -> np.ndarray:
    """Display copy (RGB via swscale) of the planes, cut to the region; evidence and restoration
    go through the same conversion."""
    frame = decoded.frame
    return frame_from_planes(planes, frame.format.name, frame.width, frame.height).to_ndarray(format="rgb24")[where]


def preview(decoded: DecodedFrame, psf: Psf, region: Region | None) -> dict[str, Any]:
    """The frame (or region) restored with `psf` as the deblur operation would, its ringing and
    forward residual (RMS, 8-bit levels), and the evidence and the restoration as PNG data URLs."""
    planes, where, vmax, y = _luma(decoded, region)
    lam = float(default_lambda(y))
    x = wiener(y, psf, lam)
    x8 = np.clip(np.rint(x), 0, 255)
    d = blur(x8, psf) - y
    luma = planes[0].copy()
    luma[where] = np.clip(np.rint(x * (vmax / 255.0)), 0, vmax).astype(luma.dtype)
    return {
        "psf": psf.to_json(),
        "psf_text": describe(psf),
        "method": METHOD,
        "lambda": lam,
        "noise_sigma_levels": round(noise_sigma(y), 4),
        "ringing_rms_levels": round(ringing(y, x), 4),
        "forward_residual_rms_levels": round(float(np.sqrt(np.mean(d * d))), 4),
        "units": "8-bit levels",
        "images": {
            "evidence": _data_url(_rgb(decoded, planes, where)),
            "restored": _data_url(_rgb(decoded, [luma, *planes[1:]], where)),
            "psf": psf_drawing(psf),
        },
    }


def blind_estimate(decoded: DecodedFrame, region: Region | None) -> dict[str, Any]:
    """`estimate_psf` on the frame (or region), with its confidence: the blind run's starting point."""
    _, _, _, y = _luma(decoded, region)
    est = estimate_psf(y)
    return {"psf_text": describe(est.psf), **est.to_json()}


def enhance_command(evidence: Path, bundle: Path, psf: Psf, region: Region | None, recipe: Mapping[str, Any], case_id: str | None) -> str:
    """The `fvsr enhance` command that commits a signed deblur run with `psf` (and the region as
    --roi) over the frames and in the mode of the bundle's recorded recipe."""
    spec = f"motion:{psf.params['length']:g},{psf.params['angle']:g}" if psf.kind == "motion" else f"defocus:{psf.params['radius']:g}"
    args = ["fvsr", "enhance", str(evidence), "-o", f"{bundle}-deblur", "--mode", str(recipe.get("mode") or "evidential")]
    args += ["--model", "deblur", "--psf", spec]
    if region is not None:
        args += ["--roi", region.roi()]
    if recipe.get("frames"):
        args += ["--frames", str(recipe["frames"])]
    if case_id:
        args += ["--case", case_id]
    args += ["--key", "EXAMINER.key"]
    return shlex.join(args)
