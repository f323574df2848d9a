"""Visible labels burned into viewing copies of non-evidential outputs (never into the master)."""

from __future__ import annotations

import av
import cv2

from forensic_vsr.media import frame_from_planes, frame_planes


def burn_label(frame: av.VideoFrame, text: str) -> av.VideoFrame:
    """A black band across the top of a yuv420p frame with `text` in white, scaled to fit."""
    y, u, v = frame_planes(frame)
    width = y.shape[1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
    scale = max(0.3, min(1.0, 0.94 * width / tw))
    thickness = 2 if scale >= 0.6 else 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    band = min(y.shape[0], th + base + 8)
    y[:band] = 16
    u[: (band + 1) // 2] = 128
    v[: (band + 1) // 2] = 128
    cv2.putText(y, text, (max(2, (width - tw) // 2), th + 4), font, scale, 235, thickness, cv2.LINE_AA)
    out = frame_from_planes([y, u, v], "yuv420p", frame.width, frame.height)
    out.pts, out.time_base = frame.pts, frame.time_base
    return out
