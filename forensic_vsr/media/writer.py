"""The encoders: FFV1 (lossless, intra-only, slice CRCs) for the master and maps, H.264 for the
viewing copy, and the round-trip check that proves the master's bitstream is lossless."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from forensic_vsr.media.matroska import write_display_aspect
from forensic_vsr.media.planes import frame_planes, planes_sha256
from forensic_vsr.media.reader import Colour

# FFmpeg's `chroma_sample_location` names (AVChromaLocation), as ffprobe prints them.
CHROMA_LOCATIONS = frozenset({"left", "center", "topleft", "top", "bottomleft", "bottom"})


class VideoWriter:
    """Encodes frames into a container.

    Display facts the samples do not carry are written as the evidence has them:
    `sample_aspect_ratio` (into the codec and, for Matroska, the track's display aspect),
    `chroma_location` (one of `CHROMA_LOCATIONS`) and `colour`. None of them changes a sample."""

    def __init__(
        self,
        path: Path,
        *,
        codec: str,
        pix_fmt: str,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction | None,
        options: dict[str, str],
        metadata: dict[str, str] | None = None,
        sample_aspect_ratio: Fraction | None = None,
        chroma_location: str | None = None,
        colour: Colour | None = None,
    ) -> None:
        if chroma_location is not None and chroma_location not in CHROMA_LOCATIONS:
            raise ValueError(f"chroma location {chroma_location!r} is not one of {', '.join(sorted(CHROMA_LOCATIONS))}")
        self.path = Path(path)
        # bit-exact muxing: no random segment UID, no date, no muxer version string, so the same
        # frames give the same file bytes (the packets were the same before; now the file is too)
        self._container = av.open(str(self.path), mode="w", container_options={"fflags": "+bitexact"})
        for key, value in (metadata or {}).items():
            self._container.metadata[key] = value
        self._stream = self._container.add_stream(codec, rate=rate or Fraction(25))
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = pix_fmt
        self._stream.time_base = time_base
        cc = self._stream.codec_context
        cc.time_base = time_base
        self._stream.options = {**options, **({"chroma_sample_location": chroma_location} if chroma_location else {})}
        cc.thread_count = 0  # let FFmpeg pick; samples do not depend on it
        if sample_aspect_ratio:
            cc.sample_aspect_ratio = sample_aspect_ratio
        if colour is not None:
            for name in ("color_range", "color_primaries", "color_trc", "colorspace"):
                value = getattr(colour, name)
                if value is not None:
                    setattr(cc, name, value)
        self._display_aspect = (
            sample_aspect_ratio * Fraction(width, height)
            if sample_aspect_ratio and self._container.format.name.split(",")[0] == "matroska"
            else None
        )
        self._time_base = time_base
        self._last_pts: int | None = None
        self._closed = False

    @property
    def extradata(self) -> bytes | None:
        return self._stream.codec_context.extradata

    def write(self, frame: av.VideoFrame, pts: int) -> list[av.Packet]:
        """Encode and mux one frame; returns the packets written (still readable after muxing)."""
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders need strictly increasing pts; source order is kept
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = self._time_base
        packets = self._stream.encode(frame)
        self._container.mux(packets)
        return packets

    def close(self) -> list[av.Packet]:
        """Flush the encoder and finish the file (once); returns the flushed packets."""
        if self._closed:
            return []
        self._closed = True
        try:
            packets = self._stream.encode(None)
            self._container.mux(packets)
        finally:
            self._container.close()
        if self._display_aspect is not None and Path(self.path).exists():  # no frame written: no file (a failed run)
            write_display_aspect(self.path, self._display_aspect)
        return packets


class RoundTripCheck:
    """Decodes the master's packets as they are muxed and compares every decoded frame's hash
    with the hash taken before encoding: proof that the stored bitstream is lossless."""

    def __init__(self, codec: str, extradata: bytes | None, width: int, height: int) -> None:
        self._decoder = av.CodecContext.create(codec, "r")
        if extradata:
            self._decoder.extradata = extradata
        self._decoder.width, self._decoder.height = width, height
        self._decoder.thread_type = "SLICE"
        self._expected: list[str] = []
        self.checked = 0
        self.mismatch: tuple[int, str, str] | None = None

    def expect(self, sha256: str) -> None:
        self._expected.append(sha256)

    def feed(self, packets: list[av.Packet] | None) -> None:
        for packet in packets if packets is not None else [None]:
            for frame in self._decoder.decode(packet):
                got = planes_sha256(frame_planes(frame))
                want = self._expected[self.checked] if self.checked < len(self._expected) else "(no frame encoded)"
                if got != want and self.mismatch is None:
                    self.mismatch = (self.checked, want, got)
                self.checked += 1
