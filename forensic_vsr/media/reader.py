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
_AVFMT_NOTIMESTAMPS = 0x0080  # raw elementary-stream demuxers (h264, hevc, m4v, mjpeg, ...): no timestamps in the file


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
    derived: DerivedTiming | None = None
    """Set when the file carries no usable timestamps: then `time_base` is the derived one."""

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
class DerivedTiming:
    """Timestamps the file does not carry, derived as frame index x (1 / rate) in time base
    1 / rate: what `ffmpeg -r RATE -i FILE` (an input option) gives each frame."""

    rate: Fraction
    source: str
    """Where the rate came from: "--rate 25" or "stream rate 25/1"."""
    container_time_base: Fraction
    reason: str

    def to_json(self) -> dict[str, object]:
        return {
            "from": self.source,
            "rate": fraction_text(self.rate),
            "time_base": fraction_text(1 / self.rate),
            "container_time_base": fraction_text(self.container_time_base),
            "reason": self.reason,
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
    """Presentation timestamp in the stream's time base, after ffmpeg's start-time shift, on a
    timeline that never goes back: outputs are written with it. Equal to `file_pts` except
    after a backward jump, whose frames are shifted to follow the frame before it at the nominal
    interval (`VideoReader.shifts` lists each shift)."""
    frame: av.VideoFrame
    file_pts: int
    """The timestamp the file gives (derived when `StreamInfo.derived`): what framehash lines
    and the ingest record carry."""


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

    def __init__(self, path: Path, decoder: DecoderSettings = BITEXACT_DECODE, rate: Fraction | None = None) -> None:
        """`rate` (the examiner's --rate) is used only where the file carries no timestamps."""
        self.path = Path(path)
        self.decoder = decoder
        _check_readable_file(self.path)
        self._container = self._open()
        if not self._container.streams.video:
            kinds = sorted({s.type for s in self._container.streams}) or ["no streams"]
            self._container.close()
            raise EvidenceError(f"{self.path}: contains no video stream ({', '.join(kinds)})")
        self._stream = self._container.streams.video[0]
        decoder.configure(self._stream.codec_context)
        self.info = self._probe(rate)
        self.stats = DecodeStats()
        self.shifts: list[tuple[int, int]] = []
        """(frame index, ticks added from it on) for each backward timestamp jump met so far."""
        self._iterations: weakref.WeakSet[Generator[DecodedFrame, None, None]] = weakref.WeakSet()

    def _open(self) -> av.container.InputContainer:
        try:
            return av.open(str(self.path), mode="r", metadata_errors="replace")
        except av.error.FFmpegError as exc:
            raise EvidenceError(f"{self.path}: not a readable video file ({_ffmpeg_reason(exc)})") from None
        except (OSError, ValueError) as exc:
            raise EvidenceError(f"{self.path}: cannot be opened ({exc})") from None

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

    def _probe(self, rate: Fraction | None) -> StreamInfo:
        c, s = self._container, self._stream
        cc = s.codec_context
        if not cc.format or cc.width <= 0 or cc.height <= 0:
            raise EvidenceError(f"{self.path}: video stream has no decodable picture size or pixel format")
        tb = _fraction(s.time_base) or Fraction(1, 1000)
        start_time = c.start_time if c.start_time is not None else 0
        # ffmpeg's CLI shifts every input timestamp by -start_time (AV_TIME_BASE units).
        start_offset = -rescale(start_time, Fraction(1, av.time_base), tb)
        field_order = getattr(cc, "field_order", None)
        guessed = _fraction(s.guessed_rate)
        derived = None
        reason = self._missing_timestamps()
        if reason is not None:
            use = rate or guessed
            if use is None:
                raise EvidenceError(f"{self.path}: {reason} and declares no frame rate: pass --rate (e.g. --rate 25 or 30000/1001)")
            source = f"--rate {rate}" if rate else f"stream rate {fraction_text(guessed)}"
            derived = DerivedTiming(use, source, tb, reason)
            tb, guessed, start_offset = 1 / use, use, 0
        return StreamInfo(
            container=c.format.name,
            codec=cc.name,
            pix_fmt=cc.format.name,
            width=cc.width,
            height=cc.height,
            time_base=tb,
            guessed_rate=guessed,
            average_rate=_fraction(s.average_rate),
            start_offset=start_offset,
            sample_aspect_ratio=_fraction(s.sample_aspect_ratio),
            field_order=_field_order_name(field_order),
            header_frame_count=int(s.frames or 0),
            duration_s=float(c.duration / av.time_base) if c.duration else None,
            stream_index=s.index,
            audio_streams=len(c.streams.audio),
            bit_rate=c.bit_rate or None,
            derived=derived,
        )

    def _missing_timestamps(self) -> str | None:
        """Why the file's timestamps cannot be used (None: they can). A raw elementary stream has
        none; otherwise the packets are read (no decoding) until two distinct timestamps are
        seen, which for any ordinary file is its first two packets."""
        if self._container.format.flags & _AVFMT_NOTIMESTAMPS:
            return f"is a raw {self._container.format.name} stream with no timestamps"
        seen: set[int] = set()
        packets = 0
        with contextlib.closing(self._open()) as scan:
            try:
                for packet in scan.demux(scan.streams.video[0]):
                    ts = packet.pts if packet.pts is not None else packet.dts
                    packets += packet.size > 0
                    if ts is not None and packet.size:
                        seen.add(int(ts))
                        if len(seen) > 1:
                            return None
            except av.error.FFmpegError:
                pass  # damage: the decode pass counts it
        if not seen and packets:
            return "has no timestamps"
        if packets > 1:
            return f"gives all {packets} packets the same timestamp"
        return None

    def packet_timestamps(self) -> Iterator[int]:
        """Presentation timestamps of the stream's packets, without decoding (for intra-only
        streams, whose packets are frames in presentation order)."""
        for packet in self._container.demux(self._stream):
            if packet.size:
                pts = packet.pts if packet.pts is not None else packet.dts
                yield int(pts) + self.info.start_offset

    def intra_frames(self, wanted: set[int]) -> Iterator[DecodedFrame]:
        """The frames at the `wanted` indices of an intra-only stream (our FFV1 masters and maps:
        one keyframe packet per frame, in presentation order), decoding only their packets: the
        report's three stills of a long master without decoding the rest. EvidenceError if a
        wanted packet is not a keyframe or does not decode to one frame."""
        last = max(wanted, default=-1)
        packets = (p for p in self._container.demux(self._stream) if p.size)
        for index, packet in enumerate(packets):
            if index > last:
                break
            if index in wanted:
                frames = self._decode(packet) if packet.is_keyframe else []
                if len(frames) != 1:
                    raise EvidenceError(f"{self.path.name}: packet {index} is not one intra-coded frame")
                pts = _frame_pts(frames[0], None) + self.info.start_offset
                yield DecodedFrame(index, pts, frames[0], pts)

    def frames(self) -> Iterator[DecodedFrame]:
        """Decode every frame in presentation order with ffmpeg's best-effort timestamps."""
        gen = self._frames()
        self._iterations.add(gen)
        return gen

    def frames_from(self, file_pts: int) -> Iterator[DecodedFrame]:
        """Decode from the keyframe at or before the file timestamp `file_pts` (a seek), in
        presentation order. Only for streams that carry timestamps, with no backward jump:
        `pts` is the file's, and `index` is -1 (the caller knows which frame a timestamp is, from
        the ingest). The pixels are whatever the decoder gives after the seek: check them."""
        if self.info.derived is not None:
            raise ValueError("frames_from: the stream carries no timestamps to seek to")
        self._container.seek(file_pts - self.info.start_offset, backward=True, any_frame=False, stream=self._stream)
        self._stream.codec_context.flush_buffers()
        gen = self._seeked()
        self._iterations.add(gen)
        return gen

    def _seeked(self) -> Generator[DecodedFrame, None, None]:
        last_pts: int | None = None
        for packet in self._demux():
            for frame in self._decode(packet):
                last_pts = _frame_pts(frame, last_pts)
                file_pts = last_pts + self.info.start_offset
                yield DecodedFrame(-1, file_pts, frame, file_pts)

    def _frames(self) -> Generator[DecodedFrame, None, None]:
        info = self.info
        index = 0
        last_pts: int | None = None
        shift = 0
        last_out: int | None = None
        interval = max(1, round(1 / (info.guessed_rate * info.time_base))) if info.guessed_rate else 1
        for packet in self._demux():
            for frame in self._decode(packet):
                if info.derived is not None:
                    file_pts = index
                else:
                    pts = _frame_pts(frame, last_pts)
                    last_pts = pts
                    file_pts = pts + info.start_offset
                out = file_pts + shift
                if last_out is not None and out < last_out:
                    # a backward jump (a spliced DVR export): outputs need timestamps that never
                    # go back, so this frame and the ones after it follow the previous frame.
                    shift += last_out + interval - out
                    out = last_out + interval
                    self.shifts.append((index, shift))
                last_out = out
                yield DecodedFrame(index, out, frame, file_pts)
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
