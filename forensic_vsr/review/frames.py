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
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

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


def picture_png(decoded: DecodedFrame) -> bytes:
    return _png(decoded.frame.to_ndarray(format="rgb24"))


def map_png(decoded: DecodedFrame, scale: float) -> bytes:
    """The map in 8-bit levels (0..255, rounded, capped) as an 8-bit grey PNG."""
    samples = frame_planes(decoded.frame)[0].astype(np.float64)
    return _png(np.minimum(np.rint(samples / scale), 255).astype(np.uint8))


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
