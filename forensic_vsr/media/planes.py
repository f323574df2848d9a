"""Native planes: one numpy array per plane of the decoder's own pixel format, without line
padding, exactly the bytes ffmpeg's framehash muxer hashes. Nothing here converts colour or bit
depth."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import av
import numpy as np

from forensic_vsr.errors import UnsupportedFormatError


@dataclass(frozen=True)
class PlaneSpec:
    """Geometry of one plane: `width` pixels of `samples` interleaved samples of `sample_bytes`
    bytes each, `height` rows. Rows carry no padding: `row_bytes` is what ffmpeg hashes."""

    width: int
    height: int
    samples: int
    sample_bytes: int

    @property
    def row_bytes(self) -> int:
        return self.width * self.samples * self.sample_bytes

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.samples == 1 else (self.height, self.width, self.samples)


def plane_specs(frame: av.VideoFrame) -> tuple[PlaneSpec, ...]:
    """Plane geometry of a decoded frame in its native pixel format.

    Packed formats (one plane holding every component, e.g. rgb24, bgr0) use the format's padded
    bits per pixel so that bgr0's unused byte is counted; planar formats store each component
    in 1 byte up to 8 bits and 2 bytes above."""
    fmt = frame.format
    if fmt.has_palette or fmt.is_bit_stream or fmt.is_bayer:
        raise UnsupportedFormatError(f"pixel format {fmt.name} (palette, bitstream or bayer) is not supported")
    if fmt.is_big_endian:
        raise UnsupportedFormatError(f"big-endian pixel format {fmt.name} is not supported")
    planes = frame.planes
    if len(planes) == 1:
        bits = fmt.padded_bits_per_pixel
        ncomp = len(fmt.components)
        if bits % 8:
            raise UnsupportedFormatError(f"pixel format {fmt.name} packs samples below byte level")
        sample_bytes = 2 if max(c.bits for c in fmt.components) > 8 else 1
        samples = bits // 8 // sample_bytes
        if samples < ncomp and fmt.name not in ("yuyv422", "uyvy422"):
            raise UnsupportedFormatError(f"pixel format {fmt.name} is not supported")
        return (PlaneSpec(planes[0].width, planes[0].height, samples, sample_bytes),)
    specs = []
    for index, plane in enumerate(planes):
        comps = [c for c in fmt.components if c.plane == index]
        if not comps:
            raise UnsupportedFormatError(f"pixel format {fmt.name} has a plane without components")
        sample_bytes = 2 if max(c.bits for c in comps) > 8 else 1
        specs.append(PlaneSpec(plane.width, plane.height, len(comps), sample_bytes))
    return tuple(specs)


def frame_planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Copy a frame's planes into unpadded numpy arrays (uint8 or little-endian uint16)."""
    out = []
    for plane, spec in zip(frame.planes, plane_specs(frame), strict=True):
        raw = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: spec.height, : spec.row_bytes]
        arr = np.ascontiguousarray(raw)
        if spec.sample_bytes == 2:
            arr = arr.view("<u2")
        out.append(arr.reshape(spec.shape))
    return out


def frame_from_planes(planes: list[np.ndarray], pix_fmt: str, width: int, height: int) -> av.VideoFrame:
    """Build a frame of `pix_fmt` from unpadded planes (the inverse of `frame_planes`)."""
    frame = av.VideoFrame(width, height, pix_fmt)
    specs = plane_specs(frame)
    if len(specs) != len(planes):
        raise UnsupportedFormatError(f"{pix_fmt} needs {len(specs)} planes, got {len(planes)}")
    for plane, spec, data in zip(frame.planes, specs, planes, strict=True):
        if data.shape != spec.shape:
            raise ValueError(f"plane shape {data.shape} does not match {spec.shape} for {pix_fmt}")
        dst = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: spec.height, : spec.row_bytes]
        dst[...] = np.ascontiguousarray(data).view(np.uint8).reshape(spec.height, spec.row_bytes)
    return frame


def planes_sha256(planes: list[np.ndarray]) -> str:
    """SHA-256 over unpadded planes in order: ffmpeg framehash's definition of a frame hash."""
    digest = hashlib.sha256()
    for plane in planes:
        digest.update(np.ascontiguousarray(plane).view(np.uint8))
    return digest.hexdigest()


def planes_size(planes: list[np.ndarray]) -> int:
    return sum(p.nbytes for p in planes)


def plane_geometry(pix_fmt: str) -> list[tuple[int, int, int]]:
    """Per plane: (horizontal subsampling, vertical subsampling, max sample value)."""
    probe = av.VideoFrame(1024, 1024, pix_fmt)
    out = []
    for index, plane in enumerate(probe.planes):
        bits = max(c.bits for c in probe.format.components if c.plane == index)
        out.append((1024 // plane.width, 1024 // plane.height, (1 << bits) - 1))
    return out
