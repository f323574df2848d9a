"""`fvsr bench sr`: PSNR/SSIM on Y with the super-resolution papers' protocol.

Protocol (as in the SRCNN/VDSR/EDSR evaluation code): crop the ground truth to a multiple of the
scale, degrade with MATLAB-style antialiased bicubic `imresize` and round to 8 bits, super-resolve
the luma (BT.601 studio-range Y, as `rgb2ycbcr`), shave `scale` pixels at each border, and measure
PSNR (peak 255) and SSIM (Wang et al. 2004, 11x11 Gaussian, sigma 1.5) on Y. Any folder of
PNG/JPEG/BMP/TIFF images works."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from forensic_vsr.errors import UsageError
from forensic_vsr.ops.degrade import downscale
from forensic_vsr.ops.resample import upscale_plane

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma of an RGB float image in [0, 255] (MATLAB `rgb2ycbcr`)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = cv2.getGaussianKernel(11, 1.5)
    win = g @ g.T

    def filt(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, win, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mu_a, mu_b = filt(a), filt(b)
    s_aa, s_bb, s_ab = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return float(m.mean())


@dataclass(frozen=True)
class Row:
    model: str
    scale: int
    images: int
    psnr_y: float
    ssim_y: float

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "scale": self.scale,
            "images": self.images,
            "psnr_y": round(self.psnr_y, 3),
            "ssim_y": round(self.ssim_y, 4),
        }


def load_images(directory: Path) -> list[tuple[str, np.ndarray]]:
    paths = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if Path(directory).is_dir() else []
    if not paths:
        raise UsageError(f"--images {directory}: no PNG/JPEG/BMP/TIFF images found")
    out = []
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UsageError(f"{p}: not a readable image")
        out.append((p.name, bgr[..., ::-1].astype(np.float64)))
    return out


def classical_luma(kind: str, scale: int) -> Callable[[np.ndarray], np.ndarray]:
    def run(y: np.ndarray) -> np.ndarray:
        h, w = y.shape
        return upscale_plane(y, kind=kind, scale=scale, out_width=w * scale, out_height=h * scale)

    return run


def evaluate(images: list[tuple[str, np.ndarray]], scale: int, name: str, luma_sr: Callable[[np.ndarray], np.ndarray]) -> Row:
    psnrs, ssims = [], []
    for _name, hr in images:
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        hr = hr[:h, :w]
        lr = np.clip(np.rint(downscale(hr, scale)), 0, 255)
        y_lr = np.clip(np.rint(rgb_to_y(lr)), 0, 255).astype(np.uint8)
        y_hr = np.clip(np.rint(rgb_to_y(hr)), 0, 255)
        y_sr = luma_sr(y_lr).astype(np.float64)
        sl = (slice(scale, -scale), slice(scale, -scale))
        psnrs.append(psnr(y_sr[sl], y_hr[sl]))
        ssims.append(ssim(y_sr[sl], y_hr[sl]))
    return Row(name, scale, len(images), float(np.mean(psnrs)), float(np.mean(ssims)))


def shifted_sequence(
    hr: np.ndarray, scale: int, frames: int, noise: float, rng: np.random.Generator, max_shift: float = 2.0
) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """Low-resolution frames of `hr` (luma, float) after known global sub-pixel shifts (the first
    unshifted), each degraded by the card operator A, Gaussian noise of std `noise` levels and
    8-bit rounding."""
    h, w = hr.shape
    shifts = [(0.0, 0.0)] + [(float(a), float(b)) for a, b in rng.uniform(-max_shift, max_shift, (frames - 1, 2))]
    out = []
    for dx, dy in shifts:
        m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
        moved = cv2.warpAffine(hr, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        lr = downscale(moved, scale)
        if noise > 0:
            lr = lr + rng.normal(0.0, noise, lr.shape)
        out.append(np.clip(np.rint(lr), 0, 255))
    return out, shifts


def multiframe_benchmark(
    images: list[tuple[str, np.ndarray]], params: object, frames: int, noise: float, seed: int = 0, crop: tuple[int, int] = (288, 352)
) -> dict[str, object]:
    """Mean PSNR-Y (border of `scale` cropped) of bicubic, single-frame back-projection and
    multi-frame SR on sequences made from each image's central crop."""
    from forensic_vsr.ops.consistency import Projector
    from forensic_vsr.ops.mfsr import MfsrParams, super_resolve

    assert isinstance(params, MfsrParams)
    s = params.scale
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {"bicubic": [], "single_frame_ibp": [], "mfsr": [], "mfsr_unprojected": []}
    registered = total = 0
    for _name, rgb in images:
        y = rgb_to_y(rgb)
        ch, cw = (min(crop[0], y.shape[0]) // s) * s, (min(crop[1], y.shape[1]) // s) * s
        top, left = (y.shape[0] - ch) // 2, (y.shape[1] - cw) // 2
        hr = np.clip(np.rint(y[top : top + ch, left : left + cw]), 0, 255)
        seq, _ = shifted_sequence(hr, s, frames, noise, rng)
        proj = Projector(ch, cw, s)
        q = lambda a: np.clip(np.rint(a), 0, 255)  # noqa: E731
        sl = (slice(s, -s), slice(s, -s))
        bicubic = classical_luma("bicubic", s)(seq[0].astype(np.uint8)).astype(np.float64)
        single, _ = super_resolve(seq[:1], 0, params)
        multi, regs = super_resolve(seq, 0, params)
        registered += sum(r.ok for r in regs)
        total += len(regs)
        rows["bicubic"].append(psnr(bicubic[sl], hr[sl]))
        rows["single_frame_ibp"].append(psnr(q(proj.project(single, seq[0]))[sl], hr[sl]))
        rows["mfsr"].append(psnr(q(proj.project(multi, seq[0]))[sl], hr[sl]))
        rows["mfsr_unprojected"].append(psnr(q(multi)[sl], hr[sl]))
    means = {k: round(float(np.mean(v)), 3) for k, v in rows.items()}
    return {
        "scale": s,
        "images": len(images),
        "frames": frames,
        "noise_std_levels": noise,
        "crop": list(crop),
        "psnr_y": means,
        "gain_over_bicubic_db": round(means["mfsr"] - means["bicubic"], 3),
        "neighbours_registered": f"{registered}/{total}",
    }


def restore_benchmark(
    distorted: Path, pristine: Path, run: Callable[[np.ndarray], np.ndarray], limit: int | None = None
) -> dict[str, object]:
    """PSNR-Y of a x1 restoration over a real distorted/pristine video pair, frame by frame."""
    from forensic_vsr.media import VideoReader, frame_planes

    before, after = [], []
    with VideoReader(distorted) as rd, VideoReader(pristine) as rp:
        if (rd.info.width, rd.info.height) != (rp.info.width, rp.info.height):
            raise UsageError(f"{distorted.name} and {pristine.name} differ in size")
        for fd, fp in zip(rd.frames(), rp.frames(), strict=False):
            if limit is not None and fd.index >= limit:
                break
            yd = frame_planes(fd.frame)[0]
            yp = frame_planes(fp.frame)[0].astype(np.float64)
            before.append(psnr(yd.astype(np.float64), yp))
            after.append(psnr(run(yd).astype(np.float64), yp))
    if not before:
        raise UsageError(f"{distorted}: no frames decoded")
    b, a = float(np.mean(before)), float(np.mean(after))
    return {"frames": len(before), "psnr_y_distorted": round(b, 3), "psnr_y_restored": round(a, 3), "gain_db": round(a - b, 3)}


DEBLUR_CROP = 12  # border excluded from PSNR (more than half the largest PSF)


def deblur_psfs() -> list[object]:
    """The fixed benchmark set: linear motion of 9, 15 and 21 px at 0, 30 and 75 degrees, and
    defocus disks of radius 3 and 5 px."""
    from forensic_vsr.ops.deblur import defocus_psf, motion_psf

    return [motion_psf(n, a) for n in (9, 15, 21) for a in (0, 30, 75)] + [defocus_psf(3), defocus_psf(5)]


def deblur_benchmark(images: list[tuple[str, np.ndarray]], noise: float = 1.0, seed: int = 0) -> dict[str, object]:
    """PSNR-Y of each image blurred by each PSF (plus Gaussian noise of `noise` 8-bit levels,
    rounded to 8 bits), and of its Wiener restoration with the true and the estimated PSF."""
    from forensic_vsr.ops.deblur import Psf, blur, estimate_psf, wiener

    rng = np.random.default_rng(seed)
    rows = []
    c = DEBLUR_CROP
    q = lambda a: np.clip(np.rint(a), 0, 255)  # noqa: E731
    for psf in deblur_psfs():
        assert isinstance(psf, Psf)
        b, k, e, found = [], [], [], []
        for _name, rgb in images:
            y = q(rgb_to_y(rgb))
            blurred = q(blur(y, psf) + rng.normal(0.0, noise, y.shape))
            est = estimate_psf(blurred)
            sl = (slice(c, -c), slice(c, -c))
            b.append(psnr(blurred[sl], y[sl]))
            k.append(psnr(q(wiener(blurred, psf))[sl], y[sl]))
            e.append(psnr(q(wiener(blurred, est.psf))[sl], y[sl]))
            found.append(est.psf.to_json())
        rows.append(
            {
                "psf": psf.to_json(),
                "blurred_psnr_y": round(float(np.mean(b)), 3),
                "known_psf_psnr_y": round(float(np.mean(k)), 3),
                "estimated_psf_psnr_y": round(float(np.mean(e)), 3),
                "estimates": found,
            }
        )
    gain = lambda key: round(float(np.mean([r[key] - r["blurred_psnr_y"] for r in rows])), 3)  # type: ignore[operator]  # noqa: E731
    return {
        "images": len(images),
        "noise_std_levels": noise,
        "crop": c,
        "method": "Wiener (gradient-regularised, lambda from the estimated noise); blind PSF from the cepstrum",
        "results": rows,
        "mean_gain_known": gain("known_psf_psnr_y"),
        "mean_gain_estimated": gain("estimated_psf_psnr_y"),
    }
