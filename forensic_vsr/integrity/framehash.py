"""Frame hashes in ffmpeg's `framehash` text format (version 2, SHA-256).

A frame's hash is SHA-256 over its decoded planes without line padding (see
`forensic_vsr.media.planes_sha256`; evidence decoded bit-exact, see `forensic_vsr.media.decoder`).
This module turns a stream of (pts, hash, size) into the lines `ffmpeg -v error -flags +bitexact
-noautorotate -i IN -map 0:v:0 -fps_mode passthrough -f framehash -hash sha256 -` prints, byte
for byte outside the `#` header lines, so that an auditor can `diff` our files against ffmpeg's
own output. Pure: no I/O (`forensic_vsr.media.video_framehashes` decodes a file into these lines).

The timestamp columns follow FFmpeg's command-line tool: the output time base is the inverse of
the stream's guessed frame rate (its stream time base when no rate is known), and each frame's
timestamp is rescaled into it with the rounding of `adjust_frame_pts_to_encoder_tb` (FFmpeg 5.1
to 8.x): exact rescale with 2**k extra bits of precision, a 2**-17 nudge away from zero so exact
halves round away from zero, then round to nearest. Timestamps that would go backwards are
lifted as libavformat's muxer does for formats with non-strict timestamps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

from forensic_vsr.timebase import rescale

HEADER_COLUMNS = "#stream#, dts,        pts, duration,     size, hash"
_LINE = re.compile(r"^(\d+),\s*(-?\d+),\s*(-?\d+),\s*(-?\d+),\s*(\d+),\s*([0-9a-f]{64})$")


def output_time_base(stream_time_base: Fraction, guessed_rate: Fraction | None) -> Fraction:
    """The time base ffmpeg's CLI gives the rawvideo encoder behind `-f framehash`."""
    if guessed_rate is not None and guessed_rate > 0:
        return 1 / guessed_rate
    return stream_time_base


def _log2(n: int) -> int:
    return n.bit_length() - 1 if n > 0 else 0


def encoder_pts(pts: int, src: Fraction, dst: Fraction) -> int:
    """FFmpeg CLI's conversion of a frame timestamp into the encoder time base (passthrough)."""
    extra_bits = min(max(29 - _log2(dst.denominator), 0), 16)
    fine = Fraction(dst.numerator, dst.denominator << extra_bits)
    float_pts = float(rescale(pts, src, fine)) / (1 << extra_bits)
    if float_pts > 0:
        float_pts += 1.0 / (1 << 17)
    elif float_pts < 0:
        float_pts -= 1.0 / (1 << 17)
    return round(float_pts)  # llrint: nearest, ties to even (ties are nudged away above)


def frame_duration(out_tb: Fraction, guessed_rate: Fraction | None) -> int:
    """Packet duration libavformat fills in for a frame (`ff_compute_frame_duration`)."""
    if out_tb.numerator * 1000 > out_tb.denominator:
        frame = out_tb
    elif guessed_rate is not None and guessed_rate.numerator and guessed_rate.denominator * 1000 > guessed_rate.numerator:
        frame = 1 / guessed_rate
    else:
        return 0
    return rescale(1, frame, out_tb)


@dataclass(frozen=True)
class FrameHash:
    """One framehash line: what a Merkle leaf commits to."""

    stream: int
    dts: int
    pts: int
    duration: int
    size: int
    sha256: str

    def line(self) -> str:
        return f"{self.stream},{self.dts:>11},{self.pts:>11},{self.duration:>9},{self.size:>9}, {self.sha256}"

    @classmethod
    def parse(cls, line: str) -> FrameHash:
        m = _LINE.match(line.strip())
        if not m:
            raise ValueError(f"not a framehash line: {line.strip()[:80]!r}")
        s, dts, pts, dur, size, digest = m.groups()
        return cls(int(s), int(dts), int(pts), int(dur), int(size), digest)


class TimestampMapper:
    """Stateful mapping from source timestamps to framehash (dts, pts, duration) columns."""

    def __init__(self, stream_time_base: Fraction, guessed_rate: Fraction | None) -> None:
        self.src = stream_time_base
        self.out_tb = output_time_base(stream_time_base, guessed_rate)
        self.duration = frame_duration(self.out_tb, guessed_rate)
        self._last_dts: int | None = None

    def map(self, pts: int) -> tuple[int, int, int]:
        out = encoder_pts(pts, self.src, self.out_tb)
        dts = out
        if self._last_dts is not None and dts < self._last_dts:
            out = max(out, self._last_dts)
            dts = self._last_dts
        self._last_dts = dts
        return dts, out, self.duration


def header(*, time_base: Fraction, width: int, height: int, sar: Fraction | None, software: str) -> list[str]:
    sar_text = f"{sar.numerator}/{sar.denominator}" if sar else "0/1"
    return [
        "#format: frame checksums",
        "#version: 2",
        "#hash: SHA256",
        f"#software: {software}",
        f"#tb 0: {time_base.numerator}/{time_base.denominator}",
        "#media_type 0: video",
        "#codec_id 0: rawvideo",
        f"#dimensions 0: {width}x{height}",
        f"#sar 0: {sar_text}",
        HEADER_COLUMNS,
    ]


def parse(lines: Iterable[str]) -> Iterator[FrameHash]:
    """Frame lines of a framehash file, skipping `#` lines and blank lines."""
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        yield FrameHash.parse(line)
