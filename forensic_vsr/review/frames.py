"""Frames of a bundle's videos, decoded on demand and encoded as PNG for the page.

The PNG is a display copy: the enhanced and evidence frames are converted to RGB by swscale (the
hashes the page shows are those of the native planes, from output.framehash), and a map frame
(FFV1 gray16le, sample = round(levels x scale)) becomes 8-bit grey whose value is the map in
8-bit levels, rounded and capped at 255. Sequential requests reuse one open decoder; a request
for an earlier frame reopens the file (FFV1 and the evidence are then read from the start)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from forensic_vsr.media import BITEXACT_DECODE, DecodedFrame, DecoderSettings, VideoReader, frame_planes

CACHE_FRAMES = 48


class FrameSource:
    """One video, frame `n` at a time (n counts from the file's first frame)."""

    def __init__(self, path: Path, decoder: DecoderSettings = BITEXACT_DECODE, rate: Fraction | None = None) -> None:
        self.path, self.decoder, self.rate = path, decoder, rate
        self._lock = threading.Lock()
        self._reader: VideoReader | None = None
        self._frames: Iterator[DecodedFrame] | None = None
        self._next = 0

    def _reopen(self) -> None:
        self.close()
        self._reader = VideoReader(self.path, self.decoder, self.rate)
        self._frames = iter(self._reader.frames())
        self._next = 0

    def frame(self, n: int) -> DecodedFrame:
        """Frame `n`; IndexError when the video has fewer frames."""
        with self._lock:
            if self._frames is None or n < self._next:
                self._reopen()
            assert self._frames is not None
            for decoded in self._frames:
                self._next = decoded.index + 1
                if decoded.index == n:
                    return decoded
            self.close()
            raise IndexError(f"{self.path.name} has no frame {n}")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader, self._frames = None, None


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def picture_png(decoded: DecodedFrame, box: tuple[int, int, int, int] | None = None) -> bytes:
    """The frame as RGB PNG; `box` (x, y, width, height): only that part (--roi: the region the outputs show)."""
    rgb = decoded.frame.to_ndarray(format="rgb24")
    if box is not None:
        x, y, w, h = box
        rgb = np.ascontiguousarray(rgb[y : y + h, x : x + w])
    return _png(rgb)


def map_png(map_frame: DecodedFrame | np.ndarray, scale: float) -> bytes:
    """The map (a decoded gray16 frame, or its plane) in 8-bit levels (0..255, rounded, capped)
    as an 8-bit grey PNG."""
    plane: np.ndarray = map_frame if isinstance(map_frame, np.ndarray) else frame_planes(map_frame.frame)[0]
    return _png(np.minimum(np.rint(plane.astype(np.float64) / scale), 255).astype(np.uint8))


class RecomputedMap:
    """A map a format-3 bundle does not store (S, R, the fixed-formula interval): frame `n` is
    recomputed from master frame n, and for R the evidence frame behind it, exactly as the maps
    writer computed it (forensic_vsr.uncertainty.recompute): the gray16 plane a stored map holds."""

    def __init__(
        self,
        kind: str,
        master: FrameSource,
        evidence: FrameSource | None,
        evidence_frame: Callable[[int], int],
        maps: dict[str, Any],
        region: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.kind, self.master, self.evidence, self.evidence_frame = kind, master, evidence, evidence_frame
        self.region = region  # --roi: R is computed from this box of the evidence
        self.scale = int(maps["filters"]["scale"])
        self.lam = (maps.get("calibration") or {}).get("lambda")
        self._exact: Any = None

    def frame(self, n: int) -> np.ndarray:
        from forensic_vsr.media import plane_geometry
        from forensic_vsr.uncertainty.exact import ExactMaps
        from forensic_vsr.uncertainty.recompute import evidence_region, recomputed_planes

        decoded = self.master.frame(n)
        x_hat = frame_planes(decoded.frame)[0]
        y = None
        if self.kind == "contradiction" and self.evidence is not None:
            y = evidence_region(frame_planes(self.evidence.frame(self.evidence_frame(n)).frame)[0], self.region)
        if self._exact is None:
            self._exact = ExactMaps(x_hat.shape[0], x_hat.shape[1], self.scale)
        vmax = plane_geometry(decoded.frame.format.name)[0][2]
        return recomputed_planes(self._exact, x_hat, y, vmax, (self.kind,), self.lam)[self.kind]

    def close(self) -> None:
        """Nothing of its own to close: the master and evidence sources are the session's."""


class PngCache:
    """The last CACHE_FRAMES PNGs served, by (kind, frame)."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> bytes | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: tuple[str, int], png: bytes) -> None:
        with self._lock:
            self._items[key] = png
            while len(self._items) > CACHE_FRAMES:
                self._items.popitem(last=False)
