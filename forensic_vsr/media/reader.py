"""Streaming decode of an evidence file's first video stream through PyAV, read-only."""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error

from forensic_vsr.errors import EvidenceError
from forensic_vsr.media.decoder import BITEXACT_DECODE, DecoderSettings, decoder_record
from forensic_vsr.timebase import fraction_text, rescale

# Decoder complaints are captured per packet (VideoReader._decode) and counted, never printed.
av.logging.set_level(av.logging.ERROR)
logging.getLogger("libav").addHandler(logging.NullHandler())
logging.getLogger("libav").propagate = False

# FFmpeg's AVFieldOrder, as PyAV reports it (an int) and ffprobe names it. ffmpeg writes "tb"
# for top-field-first and "bt" for bottom-field-first content (tt/bb for MJPEG).
_FIELD_ORDERS = {0: None, 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}


def _field_order_name(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        return _FIELD_ORDERS.get(value, f"unknown({value})")
    text = str(value).lower()
    return _FIELD_ORDERS.get(int(text)) if text.isdigit() else text or None


@dataclass(frozen=True)
class StreamInfo:
    """What the container and codec headers say about the first video stream."""

    container: str
    codec: str
    pix_fmt: str
    width: int
    height: int
    time_base: Fraction
    guessed_rate: Fraction | None
    average_rate: Fraction | None
    start_offset: int
    """Timestamp shift ffmpeg's CLI applies (minus the container start time, in stream time base)."""
    sample_aspect_ratio: Fraction | None
    field_order: str | None
    header_frame_count: int
    duration_s: float | None
    stream_index: int
    audio_streams: int
    bit_rate: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "container": self.container,
            "codec": self.codec,
            "pix_fmt": self.pix_fmt,
            "width": self.width,
            "height": self.height,
            "time_base": fraction_text(self.time_base),
            "guessed_rate": fraction_text(self.guessed_rate),
            "average_rate": fraction_text(self.average_rate),
            "start_offset": self.start_offset,
            "sample_aspect_ratio": fraction_text(self.sample_aspect_ratio),
            "field_order": self.field_order,
            "header_frame_count": self.header_frame_count,
            "duration_s": self.duration_s,
            "stream_index": self.stream_index,
            "audio_streams": self.audio_streams,
            "bit_rate": self.bit_rate,
        }


@dataclass(frozen=True)
class Colour:
    """The stream's colour description, as FFmpeg's AVColor* numbers (unspecified: None). It
    changes no sample; it tells a player how to show them, so outputs carry it on."""

    color_range: int | None
    color_primaries: int | None
    color_trc: int | None
    colorspace: int | None


@dataclass
class DecodeStats:
    """Everything the decoder skipped or flagged. Never silently dropped: it goes into the
    ingest record and onto the examiner's screen."""

    packets: int = 0
    corrupt_packets: int = 0
    decode_errors: int = 0
    corrupt_frames: int = 0
    concealed_errors: int = 0
    """Errors the decoder reported while still returning a (concealed) picture."""
    errors: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return bool(self.corrupt_packets or self.decode_errors or self.corrupt_frames or self.concealed_errors)

    def summary(self) -> str:
        return (
            f"{self.corrupt_packets} corrupt packets, {self.decode_errors} packets the decoder rejected, "
            f"{self.concealed_errors} concealed decoder errors, {self.corrupt_frames} frames flagged corrupt"
        )

    def note(self, message: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(message)

    def to_json(self) -> dict[str, object]:
        return {
            "packets": self.packets,
            "corrupt_packets": self.corrupt_packets,
            "decode_errors": self.decode_errors,
            "corrupt_frames": self.corrupt_frames,
            "concealed_errors": self.concealed_errors,
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class DecodedFrame:
    index: int
    pts: int
    """Presentation timestamp in the stream's time base, after ffmpeg's start-time shift."""
    frame: av.VideoFrame


def _fraction(value: object) -> Fraction | None:
    if value is None:
        return None
    f = Fraction(value)  # type: ignore[arg-type]
    return f if f > 0 else None


class VideoReader:
    """Streams the first video stream of an evidence file, one frame at a time.

    The file is opened read-only by FFmpeg and decoded with `decoder` (bit-exact, one thread,
    unless a format-1 record asks for `LEGACY_DECODE`). Packets the decoder rejects are counted
    in `stats` and the stream goes on, as FFmpeg's command-line tool does."""

    def __init__(self, path: Path, decoder: DecoderSettings = BITEXACT_DECODE) -> None:
        self.path = Path(path)
        self.decoder = decoder
        _check_readable_file(self.path)
        try:
            self._container = av.open(str(self.path), mode="r", metadata_errors="replace")
        except av.error.FFmpegError as exc:
            raise EvidenceError(f"{self.path}: not a readable video file ({_ffmpeg_reason(exc)})") from None
        except (OSError, ValueError) as exc:
            raise EvidenceError(f"{self.path}: cannot be opened ({exc})") from None
        if not self._container.streams.video:
            kinds = sorted({s.type for s in self._container.streams}) or ["no streams"]
            self._container.close()
            raise EvidenceError(f"{self.path}: contains no video stream ({', '.join(kinds)})")
        self._stream = self._container.streams.video[0]
        decoder.configure(self._stream.codec_context)
        self.info = self._probe()
        self.stats = DecodeStats()
        self._iterations: weakref.WeakSet[Generator[DecodedFrame, None, None]] = weakref.WeakSet()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop any unfinished `frames()` iteration and let the decoder's threads go idle before
        the container is freed: freeing a frame-threaded FFmpeg decoder mid-stream can deadlock."""
        for gen in list(self._iterations):
            gen.close()
        self._iterations.clear()
        with contextlib.suppress(Exception):  # best effort; closing must not fail
            self._stream.codec_context.flush_buffers()
        self._container.close()

    def decoder_record(self) -> dict[str, object]:
        """What `evidence.ingest` records as `decoder`; `DecoderSettings.from_record` reads it back."""
        return decoder_record(self._stream.codec_context.codec.name, self.decoder)

    @property
    def colour(self) -> Colour:
        cc = self._stream.codec_context
        return Colour(
            color_range=cc.color_range or None,  # AVCOL_RANGE_UNSPECIFIED = 0
            color_primaries=None if cc.color_primaries == 2 else cc.color_primaries,  # 2 = unspecified
            color_trc=None if cc.color_trc == 2 else cc.color_trc,
            colorspace=None if cc.colorspace == 2 else cc.colorspace,
        )

    def _probe(self) -> StreamInfo:
        c, s = self._container, self._stream
        cc = s.codec_context
        if not cc.format or cc.width <= 0 or cc.height <= 0:
            raise EvidenceError(f"{self.path}: video stream has no decodable picture size or pixel format")
        tb = _fraction(s.time_base) or Fraction(1, 1000)
        start_time = c.start_time if c.start_time is not None else 0
        # ffmpeg's CLI shifts every input timestamp by -start_time (AV_TIME_BASE units).
        start_offset = -rescale(start_time, Fraction(1, av.time_base), tb)
        field_order = getattr(cc, "field_order", None)
        return StreamInfo(
            container=c.format.name,
            codec=cc.name,
            pix_fmt=cc.format.name,
            width=cc.width,
            height=cc.height,
            time_base=tb,
            guessed_rate=_fraction(s.guessed_rate),
            average_rate=_fraction(s.average_rate),
            start_offset=start_offset,
            sample_aspect_ratio=_fraction(s.sample_aspect_ratio),
            field_order=_field_order_name(field_order),
            header_frame_count=int(s.frames or 0),
            duration_s=float(c.duration / av.time_base) if c.duration else None,
            stream_index=s.index,
            audio_streams=len(c.streams.audio),
            bit_rate=c.bit_rate or None,
        )

    def packet_timestamps(self) -> Iterator[int]:
        """Presentation timestamps of the stream's packets, without decoding (for intra-only
        streams, whose packets are frames in presentation order)."""
        for packet in self._container.demux(self._stream):
            if packet.size:
                pts = packet.pts if packet.pts is not None else packet.dts
                yield int(pts) + self.info.start_offset

    def frames(self) -> Iterator[DecodedFrame]:
        """Decode every frame in presentation order with ffmpeg's best-effort timestamps."""
        gen = self._frames()
        self._iterations.add(gen)
        return gen

    def _frames(self) -> Generator[DecodedFrame, None, None]:
        index = 0
        last_pts: int | None = None
        for packet in self._demux():
            for frame in self._decode(packet):
                pts = _frame_pts(frame, last_pts)
                last_pts = pts
                yield DecodedFrame(index, pts + self.info.start_offset, frame)
                index += 1

    def _demux(self) -> Iterator[av.Packet]:
        demux = self._container.demux(self._stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                self.stats.corrupt_packets += 1
                self.stats.note(f"demux: {_ffmpeg_reason(exc)}")
                break
            self.stats.packets += packet.size > 0
            if packet.is_corrupt:
                self.stats.corrupt_packets += 1
                self.stats.note(f"packet at dts {packet.dts} flagged corrupt by the demuxer")
            yield packet  # PyAV's demuxer ends with an empty packet that flushes the decoder

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        where = "flush" if packet.size == 0 else f"packet at dts {packet.dts}"
        with av.logging.Capture() as messages:
            try:
                frames = list(self._stream.decode(packet))
            except av.error.FFmpegError as exc:
                self.stats.decode_errors += 1
                self.stats.note(f"decoder rejected {where}: {_ffmpeg_reason(exc)}")
                return []
        for level, _name, text in messages:
            if level <= av.logging.ERROR:
                self.stats.concealed_errors += 1
                self.stats.note(f"decoder error at {where}: {text.strip()}")
        for frame in frames:
            if frame.is_corrupt:
                self.stats.corrupt_frames += 1
                self.stats.note(f"frame from {where} flagged corrupt by the decoder")
        return frames


def _frame_pts(frame: av.VideoFrame, last_pts: int | None) -> int:
    pts = frame.pts
    if pts is None:
        pts = frame.dts
    if pts is None:
        step = frame.duration or 1
        pts = 0 if last_pts is None else last_pts + step
    return int(pts)


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise EvidenceError(f"{path}: no such file")
    if not path.is_file():
        raise EvidenceError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise EvidenceError(f"{path}: file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise EvidenceError(f"{path}: permission denied")


def _ffmpeg_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(";")[0].strip() or type(exc).__name__
