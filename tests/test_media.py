"""VideoWriter carries the evidence's display facts (SAR/DAR, chroma location, colour) into FFV1
Matroska and H.264 MP4 files, as the real ffprobe reads them; no sample changes."""

from __future__ import annotations

import json
import subprocess
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from forensic_vsr.media import Colour, VideoReader, VideoWriter, frame_from_planes, frame_planes, plane_specs, planes_sha256
from tests.helpers import ffmpeg_framehash

FFV1 = {"level": "3", "slicecrc": "1", "g": "1"}
X264 = {"crf": "18", "preset": "ultrafast"}


def _ffprobe(path: Path) -> dict[str, object]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)], capture_output=True, text=True, check=True)
    streams = json.loads(out.stdout)["streams"]
    assert len(streams) == 1
    return streams[0]  # type: ignore[no-any-return]


def _write(path: Path, codec: str, pix_fmt: str, width: int, height: int, **facts: object) -> list[str]:
    """Encode 3 noise frames; returns their frame hashes."""
    rng = np.random.default_rng(7)
    writer = VideoWriter(
        path, codec=codec, pix_fmt=pix_fmt, width=width, height=height, time_base=Fraction(1, 25), rate=Fraction(25),
        options=FFV1 if codec == "ffv1" else X264, **facts,  # type: ignore[arg-type]
    )  # fmt: skip
    hashes = []
    for pts in range(3):
        template = av.VideoFrame(width, height, pix_fmt)
        planes = [
            rng.integers(0, 1024 if spec.sample_bytes == 2 else 256, spec.shape, dtype=f"<u{spec.sample_bytes}")
            for spec in plane_specs(template)
        ]
        hashes.append(planes_sha256(planes))
        writer.write(frame_from_planes(planes, pix_fmt, width, height), pts)
    writer.close()
    return hashes


def _tracks_crc_ok(path: Path) -> bool:
    """Independent of our Matroska code: the CRC-32 element opening Tracks matches its content."""
    data = path.read_bytes()
    tracks_id = bytes.fromhex("1654ae6b")
    at = data.index(tracks_id)
    while data[at - 3 : at] == bytes.fromhex("53ab84"):  # the SeekHead's reference to Tracks, not Tracks
        at = data.index(tracks_id, at + 1)
    at += 4
    length = 9 - data[at].bit_length()
    size = int.from_bytes(data[at : at + length], "big") & ((1 << (7 * length)) - 1)
    body = data[at + length : at + length + size]
    assert body[:2] == b"\xbf\x84", "Tracks does not open with a CRC-32 element"
    return zlib.crc32(body[6:]) == int.from_bytes(body[2:6], "little")


@pytest.mark.parametrize(("codec", "name"), [("ffv1", "master.mkv"), ("libx264", "preview.mp4")])
def test_evidence_sar_and_chroma_location_reach_the_output(codec: str, name: str, carphone: Path, tmp_path: Path) -> None:
    with VideoReader(carphone) as reader:
        sar = reader.info.sample_aspect_ratio
    assert sar == Fraction(128, 117)
    evidence = _ffprobe(carphone)
    out = tmp_path / name
    _write(out, codec, "yuv420p", 352, 288, sample_aspect_ratio=sar, chroma_location="left")
    probe = _ffprobe(out)
    assert probe["sample_aspect_ratio"] == evidence["sample_aspect_ratio"] == "128:117"
    assert probe["display_aspect_ratio"] == evidence["display_aspect_ratio"] == "1408:1053"
    assert probe["chroma_location"] == evidence["chroma_location"] == "left"


def test_colour_description_is_written(tmp_path: Path) -> None:
    for codec, name in (("ffv1", "c.mkv"), ("libx264", "c.mp4")):
        out = tmp_path / name
        _write(out, codec, "yuv420p", 64, 48, colour=Colour(color_range=1, color_primaries=5, color_trc=6, colorspace=6))
        probe = _ffprobe(out)
        assert (probe["color_range"], probe["color_primaries"], probe["color_transfer"], probe["color_space"]) == (
            "tv",
            "bt470bg",
            "smpte170m",
            "smpte170m",
        ), name
        with VideoReader(out) as reader:
            assert reader.colour == Colour(1, 5, 6, 6)


@pytest.mark.parametrize(
    ("pix_fmt", "size", "sar", "dar"),
    [
        ("yuv420p", (352, 288), Fraction(128, 117), "1408:1053"),
        ("yuv420p", (176, 144), Fraction(1), "11:9"),
        ("gray", (97, 63), Fraction(10, 11), "970:693"),
        ("yuv444p10le", (1280, 544), Fraction(4, 3), "160:51"),
    ],
)
def test_matroska_display_aspect_keeps_the_frames_and_the_crc(
    pix_fmt: str, size: tuple[int, int], sar: Fraction, dar: str, ffmpeg: str, tmp_path: Path
) -> None:
    out = tmp_path / "m.mkv"
    hashes = _write(out, "ffv1", pix_fmt, *size, sample_aspect_ratio=sar, chroma_location="center")
    probe = _ffprobe(out)
    assert probe["display_aspect_ratio"] == dar
    assert Fraction(str(probe["sample_aspect_ratio"]).replace(":", "/")) == sar
    assert _tracks_crc_ok(out)
    assert [ln.rsplit(",", 1)[1].strip() for ln in ffmpeg_framehash(ffmpeg, out)] == hashes
    with VideoReader(out) as reader:
        assert reader.info.sample_aspect_ratio == sar
        assert [planes_sha256(frame_planes(d.frame)) for d in reader.frames()] == hashes
    errors = subprocess.run([ffmpeg, "-v", "warning", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True).stderr
    assert errors == ""


def test_without_sar_matroska_says_nothing_of_the_aspect(tmp_path: Path) -> None:
    out = tmp_path / "a.mkv"
    _write(out, "ffv1", "yuv420p", 64, 48)
    assert _ffprobe(out).get("sample_aspect_ratio", "N/A") == "N/A"
    assert _tracks_crc_ok(out)


def test_unknown_chroma_location_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chroma location"):
        VideoWriter(
            tmp_path / "x.mkv", codec="ffv1", pix_fmt="yuv420p", width=16, height=16, time_base=Fraction(1, 25), rate=None,
            options=FFV1, chroma_location="middle",
        )  # fmt: skip
