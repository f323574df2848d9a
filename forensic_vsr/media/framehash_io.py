"""Frame hashes of a video file: decode (media) + ffmpeg's framehash format (integrity, pure)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from forensic_vsr.integrity.framehash import FrameHash, TimestampMapper, header
from forensic_vsr.media.decoder import BITEXACT_DECODE, DecoderSettings
from forensic_vsr.media.planes import frame_planes, planes_sha256
from forensic_vsr.media.reader import DecodedFrame, VideoReader


def video_framehashes(
    path: Path, decoder: DecoderSettings = BITEXACT_DECODE, rate: Fraction | None = None
) -> tuple[list[str], Iterator[tuple[FrameHash, DecodedFrame]], VideoReader]:
    """Header and lazily computed frame lines (with the decoded frames) for the first video
    stream of `path`, decoded with `decoder`: by default the lines `ffmpeg -flags +bitexact ...
    -f framehash -hash sha256` prints.

    The lines carry the file's own timestamps (`DecodedFrame.file_pts`), where it has them: for
    an MPEG-TS whose timestamps jump, what `ffmpeg -copyts -start_at_zero ...` prints (ffmpeg's
    default splices jumps over 10 s). A stream without timestamps gets them derived from `rate`
    or its declared rate (`StreamInfo.derived`): what `ffmpeg ... -r RATE -i FILE ...` prints
    (`-r` before `-i`; without --rate, ffmpeg's plain command line already assumes the stream's
    rate).

    The returned reader must be closed by the caller (it is also where decode statistics and the
    decoder record are)."""
    from forensic_vsr import __version__

    reader = VideoReader(path, decoder, rate)
    info = reader.info
    mapper = TimestampMapper(info.time_base, info.guessed_rate)

    def lines() -> Iterator[tuple[FrameHash, DecodedFrame]]:
        for decoded in reader.frames():
            planes = frame_planes(decoded.frame)
            dts, pts, duration = mapper.map(decoded.file_pts)
            yield FrameHash(0, dts, pts, duration, sum(p.nbytes for p in planes), planes_sha256(planes)), decoded

    head = header(
        time_base=mapper.out_tb, width=info.width, height=info.height, sar=info.sample_aspect_ratio, software=f"forensic-vsr {__version__}"
    )
    return head, lines(), reader
