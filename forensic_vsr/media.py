"""Evidence I/O through PyAV: read-only probing, streaming decode on native planes, and the
lossless (FFV1) and viewing (H.264) encoders.

Frames are handed out as *native planes*: one numpy array per plane of the decoder's own pixel
format, without line padding, exactly the bytes ffmpeg's framehash muxer hashes. Nothing here
converts colour or bit depth. This module imports neither torch nor cv2.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from forensic_vsr.errors import EvidenceError, UnsupportedFormatError
from forensic_vsr.timebase import fraction_text, rescale

log = logging.getLogger(__name__)
# Decoder complaints are captured per packet (VideoReader._decode) and counted, never printed.
av.logging.set_level(av.logging.ERROR)
logging.getLogger("libav").addHandler(logging.NullHandler())
logging.getLogger("libav").propagate = False

_READ_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read through a read-only descriptor."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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

    The file is opened read-only by FFmpeg. Packets the decoder rejects are counted in `stats`
    and the stream goes on, as FFmpeg's command-line tool does."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
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
        self._stream.thread_type = "AUTO"
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

    def _frames(self) -> Iterator[DecodedFrame]:
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


def plane_geometry(pix_fmt: str) -> list[tuple[int, int, int]]:
    """Per plane: (horizontal subsampling, vertical subsampling, max sample value)."""
    probe = av.VideoFrame(1024, 1024, pix_fmt)
    out = []
    for index, plane in enumerate(probe.planes):
        bits = max(c.bits for c in probe.format.components if c.plane == index)
        out.append((1024 // plane.width, 1024 // plane.height, (1 << bits) - 1))
    return out


def exiftool_metadata(path: Path) -> dict[str, object]:
    """All tags exiftool reads from the file (`-G -n`), or the reason it could not.

    exiftool only reads here: nothing is ever written into the evidence file."""
    try:
        import exiftool

        with exiftool.ExifToolHelper(common_args=["-G", "-n"]) as et:
            tags = et.get_metadata(str(path))[0]
    except Exception as exc:
        return {"error": f"exiftool unavailable or failed: {exc}".strip()}
    volatile = {"SourceFile", "File:Directory", "File:FileAccessDate", "File:FileInodeChangeDate"}
    return {k: v for k, v in tags.items() if k not in volatile}


class VideoWriter:
    """Encodes frames into a container: FFV1 (lossless, intra-only, slice CRCs) for the master,
    H.264 for the viewing copy."""

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
    ) -> None:
        self.path = Path(path)
        self._container = av.open(str(self.path), mode="w")
        for key, value in (metadata or {}).items():
            self._container.metadata[key] = value
        self._stream = self._container.add_stream(codec, rate=rate or Fraction(25))
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = pix_fmt
        self._stream.time_base = time_base
        self._stream.codec_context.time_base = time_base
        self._stream.options = options
        self._stream.codec_context.thread_count = 0  # let FFmpeg pick; samples do not depend on it
        if sample_aspect_ratio:
            self._stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
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
        return packets


class PipelineStage:
    """Runs `work(*item)` for each submitted item on a worker thread behind a bounded queue.

    PyAV releases the GIL while decoding, encoding and rescaling, so stages overlap on several
    cores; the queue bound keeps memory constant. A worker error is raised in the caller at the
    next `submit` or at `close`."""

    _STOP = object()

    def __init__(self, work: Callable[..., None], name: str, depth: int = 4) -> None:
        self._work = work
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"fvsr-{name}", daemon=True)
        self._closed = False
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is None:
                try:
                    self._work(*item)  # type: ignore[misc]
                except BaseException as exc:
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, *item: object) -> None:
        self._raise()
        self._queue.put(item)

    def close(self) -> None:
        """Finish queued work and join; raise the worker's error unless one is already propagating."""
        if not self._closed:
            self._closed = True
            self._queue.put(self._STOP)
            self._thread.join()
        if sys.exc_info()[0] is None:
            self._raise()


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
