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
