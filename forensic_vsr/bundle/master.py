"""The lossless master: which FFV1 pixel format holds the source's samples, the encoder options
of the master, preview and maps, and the framehash sidecar of a video we encoded."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from forensic_vsr import __version__
from forensic_vsr.errors import IntegrityError, UnsupportedFormatError
from forensic_vsr.integrity import merkle
from forensic_vsr.integrity.framehash import FrameHash, TimestampMapper, header
from forensic_vsr.media import VideoReader

FFV1_OPTIONS = {"level": "3", "slicecrc": "1", "g": "1"}
PREVIEW_OPTIONS = {"crf": "18", "preset": "ultrafast"}
# FFV1 stores these losslessly; other formats map to the lossless equivalent of the same family.
MASTER_PIX_FMT = {
    "rgb24": "bgr0",
    "bgr24": "bgr0",
    "rgba": "bgra",
    "argb": "bgra",
    "abgr": "bgra",
    "rgb0": "bgr0",
    "0rgb": "bgr0",
    "0bgr": "bgr0",
    "yuvj420p": "yuv420p",
    "yuvj422p": "yuv422p",
    "yuvj444p": "yuv444p",
    "yuvj440p": "yuv440p",
}
FFV1_PIX_FMTS = frozenset(
    [
        "yuv420p",
        "yuva420p",
        "yuva422p",
        "yuv444p",
        "yuva444p",
        "yuv440p",
        "yuv422p",
        "yuv411p",
        "yuv410p",
        "bgr0",
        "bgra",
        "yuv420p16le",
        "yuv422p16le",
        "yuv444p16le",
        "yuv444p9le",
        "yuv422p9le",
        "yuv420p9le",
        "yuv420p10le",
        "yuv422p10le",
        "yuv444p10le",
        "yuv420p12le",
        "yuv422p12le",
        "yuv444p12le",
        "gray16le",
        "gray",
        "gbrp9le",
        "gbrp10le",
        "gbrp12le",
        "gbrp14le",
    ]
)
# Byte order of the packed RGB formats we accept, as indices of R, G, B, A/pad.
PACKED_ORDER = {
    "rgb24": "RGB",
    "bgr24": "BGR",
    "rgba": "RGBA",
    "argb": "ARGB",
    "abgr": "ABGR",
    "bgra": "BGRA",
    "rgb0": "RGBX",
    "0rgb": "XRGB",
    "0bgr": "XBGR",
    "bgr0": "BGRX",
}


def master_pix_fmt(src: str) -> str:
    fmt = MASTER_PIX_FMT.get(src, src)
    if fmt not in FFV1_PIX_FMTS:
        raise UnsupportedFormatError(f"pixel format {src} cannot be enhanced losslessly yet (FFV1 has no {src})")
    return fmt


def convert_packed(plane: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Reorder the samples of a packed RGB plane (a lossless permutation, no colour maths)."""
    if src == dst:
        return plane
    src_order, dst_order = PACKED_ORDER[src], PACKED_ORDER[dst]
    out = np.zeros((*plane.shape[:2], len(dst_order)), plane.dtype)
    for i, ch in enumerate(dst_order):
        if ch in src_order and ch in "RGBA":
            out[..., i] = plane[..., src_order.index(ch)]
        elif ch == "A":
            out[..., i] = 255
    return out


def framehash_from_stored(video: Path, sidecar: Path, hashes: Iterable[tuple[str, int]]) -> list[bytes]:
    """Write `sidecar` (a framehash file) for an intra-only video we encoded: timestamps read by
    demuxing (no decode), frame hashes and sizes as computed from the planes before encoding,
    frame for frame; returns the Merkle leaf hashes. `fvsr verify` re-derives it by decoding."""
    leaves: list[bytes] = []
    with VideoReader(video) as reader, open(sidecar, "w", encoding="ascii") as out:
        info = reader.info
        mapper = TimestampMapper(info.time_base, info.guessed_rate)
        head = header(
            time_base=mapper.out_tb,
            width=info.width,
            height=info.height,
            sar=info.sample_aspect_ratio,
            software=f"forensic-vsr {__version__}",
        )
        out.write("\n".join(head) + "\n")
        expected = iter(hashes)
        for pts in reader.packet_timestamps():
            stored = next(expected, None)
            if stored is None:
                raise IntegrityError(f"{video.name} holds more frames than were encoded")
            dts, out_pts, duration = mapper.map(pts)
            line = FrameHash(0, dts, out_pts, duration, int(stored[1]), stored[0]).line()
            out.write(line + "\n")
            leaves.append(merkle.hash_leaf(line.encode()))
        if next(expected, None) is not None:
            raise IntegrityError(f"{video.name} holds only {len(leaves)} frames")
    return leaves
