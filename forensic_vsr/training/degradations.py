"""Synthetic degradations applied on the fly to clean luma patches (float, 0..255 units).

`sr`: the card's operator A (MATLAB-style antialiased bicubic shrink), then 8-bit rounding, as
evidence is stored. `restore`: a random chain of Gaussian blur, sensor noise (signal-dependent
shot noise plus read noise) and lossy re-encoding (JPEG, or H.264 intra through libx264) at a
random quality, then 8-bit rounding. Every random choice comes from the `rng` passed in, so a
batch is a pure function of (seed, step)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np

from forensic_vsr.ops.degrade import downscale


def quantize(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255)


def sr_degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    return quantize(downscale(hr, scale))


def _h264(gray: np.ndarray, crf: int) -> np.ndarray:
    rows, cols = gray.shape
    gray = np.pad(gray, ((0, rows % 2), (0, cols % 2)), mode="edge")  # 4:2:0 needs even sizes
    h, w = gray.shape
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = w, h, "yuv420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency", "threads": "1"}
    frame = av.VideoFrame(w, h, "yuv420p")
    planes = [gray.astype(np.uint8), np.full((h // 2, w // 2), 128, np.uint8), np.full((h // 2, w // 2), 128, np.uint8)]
    for plane, data in zip(frame.planes, planes, strict=True):
        np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: data.shape[0], : data.shape[1]] = data
    frame.pts = 0
    packets = list(codec.encode(frame)) + list(codec.encode(None))
    decoder = av.CodecContext.create("h264", "r")
    out = None
    for packet in packets:
        for decoded in decoder.decode(packet):
            out = decoded
    for decoded in decoder.decode(None):
        out = decoded
    assert out is not None
    y = out.planes[0]
    return np.frombuffer(y, np.uint8).reshape(-1, y.line_size)[:rows, :cols].astype(np.float64)


def restore_degrade(clean: np.ndarray, rng: np.random.Generator, spec: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Returns the degraded patch and the parameters drawn (for the training log)."""
    x = clean.astype(np.float64)
    params: dict[str, Any] = {}
    if rng.random() < spec.get("blur_prob", 0.5):
        sigma = float(rng.uniform(*spec.get("blur_sigma", [0.3, 1.5])))
        x = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        params["blur_sigma"] = sigma
    if rng.random() < spec.get("noise_prob", 0.7):
        read = float(rng.uniform(*spec.get("read_noise", [0.0, 8.0])))
        shot = float(rng.uniform(*spec.get("shot_noise", [0.0, 0.5])))
        std = np.sqrt(read**2 + shot * np.clip(x, 0, None))
        x = x + rng.standard_normal(x.shape) * std
        params["noise"] = [read, shot]
    x = quantize(x)
    if rng.random() < spec.get("h264_prob", 0.4):
        crf = int(rng.integers(*spec.get("h264_crf", [20, 41])))
        x = _h264(x, crf)
        params["h264_crf"] = crf
    else:
        quality = int(rng.integers(*spec.get("jpeg_quality", [15, 91])))
        ok, buf = cv2.imencode(".jpg", x.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        x = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float64)
        params["jpeg_quality"] = quality
    return x, params
