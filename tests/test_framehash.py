"""`fvsr hash` against the real ffmpeg binary: non-# lines must be byte-identical."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from forensic_vsr.integrity.framehash import FrameHash, TimestampMapper, encoder_pts
from tests.helpers import SYNTH, ffmpeg_framehash, run_fvsr


def _ours(path: Path) -> list[str]:
    proc = run_fvsr("hash", path, check=True)
    return [ln for ln in proc.stdout.splitlines() if not ln.startswith("#")]


def test_real_clips_match_ffmpeg(ffmpeg: str, carphone: Path, carphone_distorted: Path) -> None:
    for clip in (carphone, carphone_distorted):
        ours = _ours(clip)
        assert len(ours) == 120
        assert ours == ffmpeg_framehash(ffmpeg, clip)


@pytest.mark.parametrize("name", sorted(SYNTH))
def test_synthesized_formats_match_ffmpeg(name: str, ffmpeg: str, synth) -> None:  # type: ignore[no-untyped-def]
    clip = synth(name)
    ours = _ours(clip)
    assert ours, "no frames hashed"
    assert ours == ffmpeg_framehash(ffmpeg, clip)


def test_vfr_timestamps_round_half_away_from_zero() -> None:
    # 340 ms in a 1/25 time base is 8.5 ticks: ffmpeg's CLI prints 9 (seen with ffmpeg 5.1).
    assert encoder_pts(340, Fraction(1, 1000), Fraction(1, 25)) == 9
    assert encoder_pts(94, Fraction(1, 1000), Fraction(1, 25)) == 2
    assert encoder_pts(-340, Fraction(1, 1000), Fraction(1, 25)) == -9


def test_non_increasing_timestamps_are_lifted_like_libavformat() -> None:
    m = TimestampMapper(Fraction(1, 1000), Fraction(25))
    assert [m.map(p)[:2] for p in (0, 40, 45, 10)] == [(0, 0), (1, 1), (1, 1), (1, 1)]


def test_line_round_trip() -> None:
    line = "0,          7,          7,        1,   152064, " + "ab" * 32
    assert FrameHash.parse(line).line() == line
    with pytest.raises(ValueError):
        FrameHash.parse("0, 1, 1, 1, 10, nothex")


def test_framehash_format_is_pure() -> None:
    """integrity does no I/O: the format code loads neither PyAV nor the media layer."""
    code = "import sys, forensic_vsr.integrity.framehash; print(sorted({'av', 'forensic_vsr.media', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_video_framehashes_reads_through_media(carphone: Path) -> None:
    from forensic_vsr.integrity import framehash
    from forensic_vsr.media import video_framehashes

    assert not hasattr(framehash, "video_framehashes")  # the pure layer does no I/O
    head, lines, reader = video_framehashes(carphone)
    with reader:
        first = next(lines)[0]
        assert reader.decoder_record()["options"] == {"flags": "+bitexact", "idct": "auto"}
    assert head[-1] == framehash.HEADER_COLUMNS
    assert first.pts == 0 and first.size == 176 * 144 * 3 // 2
