"""Evidence as DVRs export it (issue 16 item 8): raw H.264/HEVC elementary streams (no
timestamps: derived from the declared rate or --rate, recorded as derived), MPEG-TS spliced with
a backward timestamp jump, a Dahua DHAV (.dav) file read by FFmpeg's dhav demuxer with a forward
jump, and DVR frame duplication found from the ingest hashes. Every file is made by the real
ffmpeg (the DHAV container by hand from libavformat/dhav.c's layout, wrapping ffmpeg's H.264:
ffmpeg has no dhav muxer); every bundle by the real CLI."""

from __future__ import annotations

import struct
import subprocess
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import pytest

from forensic_vsr.bundle.ingest import duplicates
from forensic_vsr.media import video_framehashes
from forensic_vsr.report.facts import page_texts
from tests.helpers import ffmpeg_framehash, record, run_fvsr


def _ffmpeg(ffmpeg: str, *args: str) -> None:
    subprocess.run([ffmpeg, "-v", "error", "-y", *args], check=True)


_TO_FRAMEHASH = ("-map", "0:v:0", "-fps_mode", "passthrough", "-f", "framehash", "-hash", "sha256", "-")


def _ffmpeg_lines(ffmpeg: str, path: Path, *before_input: str, keep_tb: bool = False) -> list[str]:
    """ffmpeg's framehash with input options (e.g. -r 10, -copyts -start_at_zero)."""
    out = subprocess.run(
        [ffmpeg, "-v", "error", "-flags", "+bitexact", "-noautorotate", *before_input, "-i", str(path), *_TO_FRAMEHASH],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return [line for line in out if not line.startswith("#") or (keep_tb and line.startswith("#tb"))]


def _ours(path: Path, rate: Fraction | None = None) -> list[str]:
    head, lines, reader = video_framehashes(path, rate=rate)
    with reader:
        return [h for h in head if h.startswith("#tb")] + [fh.line() for fh, _ in lines]


def _testsrc(ffmpeg: str, out: Path, rate: str, *codec: str, fmt: str | None = None, vf: str | None = None, frames: int = 12) -> Path:
    _ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", f"testsrc2=size=96x64:rate={rate}", "-frames:v", str(frames)),
        *(["-vf", vf] if vf else []),
        *codec,
        *(["-f", fmt] if fmt else []),
        str(out),
    )
    return out


def _has_encoder(ffmpeg: str, name: str) -> bool:
    out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True).stdout
    return any(line.split()[1:2] == [name] for line in out.splitlines() if line.startswith(" "))


def _enhance(evidence: Path, out: Path, keypair: tuple[Path, Path], *extra: str) -> Path:
    run_fvsr("enhance", evidence, "-o", out, "--key", keypair[0], "-q", *extra, check=True)
    verdict = run_fvsr("verify", out, "--pubkey", keypair[1], "--evidence", evidence)
    assert verdict.returncode == 0, verdict.stdout
    return out


def _report_text(bundle: Path) -> str:
    return " ".join(page_texts((bundle / "report.pdf").read_bytes()))


def _master_pts(ffmpeg: str, bundle: Path) -> list[int]:
    probe = ffmpeg.replace("ffmpeg", "ffprobe")
    out = subprocess.run(
        [
            probe,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts",
            "-of",
            "csv=p=0",
            str(bundle / "output/master.mkv"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [int(v) for v in out.split()]


def _runs_of(lines: list[str]) -> list[tuple[int, int]]:
    """(first, length) of each run of equal hashes in framehash lines: the reference."""
    digests = [line.rsplit(",", 1)[1].strip() for line in lines]
    runs, first = [], 0
    for i in range(1, len(digests) + 1):
        if i == len(digests) or digests[i] != digests[first]:
            if i - first > 1:
                runs.append((first, i - first))
            first = i
    return runs


# -- raw elementary streams ---------------------------------------------------------------


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_raw_stream_hashes_like_ffmpeg_with_its_rate_or_r(ffmpeg: str, tmp_path: Path, codec: str) -> None:
    """No timestamps in the file: ours are derived as ffmpeg's are, from the declared rate
    (plain command line), or from --rate as ffmpeg's `-r RATE` input option gives them."""
    encoder = {"h264": "libx264", "hevc": "libx265"}[codec]
    if not _has_encoder(ffmpeg, encoder):
        pytest.skip(f"{ffmpeg} has no {encoder} encoder: cannot make a raw {codec} stream")
    extra = ["-x265-params", "log-level=error"] if codec == "hevc" else ["-bsf:v", "h264_mp4toannexb"]
    raw = _testsrc(ffmpeg, tmp_path / f"x.{codec}", "30000/1001", "-c:v", encoder, *extra, fmt=codec)
    proc = run_fvsr("hash", raw, check=True)
    assert [line for line in proc.stdout.splitlines() if not line.startswith("#")] == ffmpeg_framehash(ffmpeg, raw)
    assert _ours(raw) == _ffmpeg_lines(ffmpeg, raw, keep_tb=True)
    assert _ours(raw)[0] == "#tb 0: 1001/30000"
    for rate in ("10", "60000/1001"):
        assert _ours(raw, Fraction(rate)) == _ffmpeg_lines(ffmpeg, raw, "-r", rate, keep_tb=True), rate


def test_raw_h264_bundle_records_derived_timestamps(ffmpeg: str, tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    raw = _testsrc(ffmpeg, tmp_path / "cam.h264", "25", "-c:v", "libx264", "-bsf:v", "h264_mp4toannexb", fmt="h264")
    bundle = _enhance(raw, tmp_path / "b", keypair)
    body = record(bundle, "evidence.ingest")
    derived = body["timing"]["derived"]
    assert derived["from"] == "stream rate 25/1" and derived["time_base"] == "1/25" and derived["container_time_base"] == "1/1200000"
    assert "raw h264 stream with no timestamps" in derived["reason"]
    assert body["pts"] == list(range(12)) and body["probe"]["time_base"] == "1/25"
    assert body["timing"]["discontinuities"] == [] and not body["timing"]["vfr"]
    assert _master_pts(ffmpeg, bundle) == [40 * i for i in range(12)]
    assert "DERIVED: the file is a raw h264 stream with no timestamps" in _report_text(bundle)


def test_rate_option_is_checked_and_refused_for_timed_files(ffmpeg: str, tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    raw = _testsrc(ffmpeg, tmp_path / "cam.h264", "25", "-c:v", "libx264", "-bsf:v", "h264_mp4toannexb", fmt="h264", frames=3)
    bad = run_fvsr("enhance", raw, "-o", tmp_path / "b0", "--key", keypair[0], "-q", "--rate", "fast")
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
        "fvsr: error: --rate fast: expected frames per second, e.g. 25, 30000/1001 or 29.97"
    ]
    assert not (tmp_path / "b0").exists()


def test_rate_option_derives_timestamps_end_to_end(ffmpeg: str, tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    raw = _testsrc(ffmpeg, tmp_path / "cam.h264", "25", "-c:v", "libx264", "-bsf:v", "h264_mp4toannexb", fmt="h264", frames=4)
    bundle = _enhance(raw, tmp_path / "b", keypair, "--rate", "30000/1001")
    body = record(bundle, "evidence.ingest")
    assert body["timing"]["derived"]["from"] == "--rate 30000/1001"
    assert _master_pts(ffmpeg, bundle) == [0, 33, 67, 100]
    timed = _testsrc(ffmpeg, tmp_path / "timed.mp4", "25", "-c:v", "libx264", frames=3)
    refused = run_fvsr("enhance", timed, "-o", tmp_path / "b2", "--key", keypair[0], "-q", "--rate", "25")
    assert refused.returncode != 0 and "carries its own timestamps" in refused.stderr


# -- MPEG-TS spliced backwards ---------------------------------------------------------------


def _splice_ts(parts: list[Path], out: Path) -> Path:
    """Concatenate TS files as a DVR splices recordings, continuity counters carried on (so the
    only defect is the timestamp jump)."""
    data = bytearray(b"".join(p.read_bytes() for p in parts))
    cc: dict[int, int] = {}
    for off in range(0, len(data), 188):
        assert data[off] == 0x47
        pid = (data[off + 1] & 0x1F) << 8 | data[off + 2]
        if data[off + 3] & 0x10 and pid != 0x1FFF:  # has a payload: the counter advances
            cc[pid] = (cc.get(pid, -1) + 1) & 0xF
            data[off + 3] = (data[off + 3] & 0xF0) | cc[pid]
    out.write_bytes(bytes(data))
    return out


def test_ts_backward_jump_listed_and_master_monotonic(ffmpeg: str, tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    codec = ("-c:v", "libx264", "-bf", "0", "-g", "4")
    first = _testsrc(ffmpeg, tmp_path / "a.ts", "25", *codec, "-output_ts_offset", "30", frames=8)
    second = _testsrc(ffmpeg, tmp_path / "b.ts", "25", *codec, frames=8)
    ts = _splice_ts([first, second], tmp_path / "spliced.ts")
    # our lines: the file's own timestamps (ffmpeg's default splices jumps), pixels as ffmpeg's
    assert _ours(ts)[1:] == _ffmpeg_lines(ffmpeg, ts, "-copyts", "-start_at_zero")
    assert [line[-64:] for line in _ours(ts)[1:]] == [line[-64:] for line in ffmpeg_framehash(ffmpeg, ts)]
    bundle = _enhance(ts, tmp_path / "b", keypair)
    body = record(bundle, "evidence.ingest")
    assert body["decode"]["corrupt_packets"] == 0
    (jump,) = body["timing"]["discontinuities"]
    assert jump["frame"] == 8 and jump["pts_after"] < jump["pts_before"] and -30.5 < jump["gap_s"] < -29.5
    assert jump["output_shift"] == jump["pts_before"] + 3600 - jump["pts_after"]  # one 1/25 s interval after frame 7
    assert _master_pts(ffmpeg, bundle) == [40 * i for i in range(16)]  # before: frames 8-15 all at 280 ms
    assert "Timestamp discontinuities 1: before frame 8, -30.280 s" in _report_text(bundle)


# -- DHAV (Dahua .dav) with duplicated frames and a recording gap ---------------------------------


def _dhav_date(t: datetime) -> int:
    return t.second | t.minute << 6 | t.hour << 12 | t.day << 17 | t.month << 22 | (t.year - 2000) << 26


def write_dhav(h264: Path, out: Path, start: datetime, gap_at: int, gap_s: int, fps: int = 25) -> Path:
    """A DHAV file as libavformat/dhav.c reads it: per frame a 24-byte "DHAV" header (type 0xfd
    key / 0xfc other, frame number, chunk length, packed date, millisecond counter, extension
    length), extensions on key frames (0x81: codec 2 = H.264 and frame rate; 0x82: width,
    height), the H.264 access unit, and a "dhav" + length trailer. Frames from `gap_at` on are
    recorded `gap_s` seconds later."""
    with av.open(str(h264)) as c:
        units = [(bytes(p), p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]
    with open(out, "wb") as f:
        for k, (data, key) in enumerate(units):
            ms = k * 1000 // fps + (gap_s * 1000 if k >= gap_at else 0)
            when = datetime.fromtimestamp(start.timestamp() + ms // 1000, UTC)
            ext = (bytes([0x81, 0, 0x02, fps, 0x82, 0, 0, 0]) + struct.pack("<HH", 96, 64)) if key else b""
            length = 24 + len(ext) + len(data) + 8
            head = b"DHAV" + bytes([0xFD if key else 0xFC, 0, 0, 0]) + struct.pack("<III", k, length, _dhav_date(when))
            f.write(head + struct.pack("<H", ms & 0xFFFF) + bytes([len(ext), 0]) + ext + data + b"dhav" + struct.pack("<I", length))
    return out


def test_dhav_gap_and_duplicated_frames(ffmpeg: str, tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    """A 10 fps camera filled up to 25 fps by repeating frames (lossless, so repeats decode to
    identical pixels), in a DHAV container with a 60 s recording gap at frame 6."""
    raw = _testsrc(
        ffmpeg, tmp_path / "dup.h264", "10", "-c:v", "libx264", "-qp", "0", "-bf", "0", "-g", "6", "-bsf:v", "h264_mp4toannexb",
        fmt="h264", vf="fps=25",
    )  # fmt: skip
    dav = write_dhav(raw, tmp_path / "ch01.dav", datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC), gap_at=6, gap_s=60)
    reference = ffmpeg_framehash(ffmpeg, dav)
    expected_runs = _runs_of(reference)
    assert len(expected_runs) >= 3  # the clip really repeats frames
    assert _ours(dav)[1:] == _ffmpeg_lines(ffmpeg, dav, "-copyts", "-start_at_zero")
    bundle = _enhance(dav, tmp_path / "b", keypair)
    body = record(bundle, "evidence.ingest")
    assert body["probe"]["container"] == "dhav" and "derived" not in body["timing"]
    (gap,) = body["timing"]["discontinuities"]
    # dhav.c restarts its clock at each new second of the packed date: frame 6 is at 60.000 s
    assert gap["frame"] == 6 and gap["gap_s"] == 59.8 and "output_shift" not in gap
    dup = body["duplicates"]
    assert [(r["first"], r["length"]) for r in dup["runs"]] == expected_runs
    assert dup["frames"] == sum(n - 1 for _, n in expected_runs) and dup["runs_total"] == len(expected_runs)
    assert [r["time_s"] for r in dup["runs"]] == [round(body["pts"][i] / 1000, 6) for i, _ in expected_runs]
    text = _report_text(bundle)
    assert f"{dup['frames']} frames repeat the frame before them, in {len(expected_runs)} runs" in text
    assert "before frame 6, +59.800 s" in text


def test_duplicates_counts_runs_and_bounds_the_list() -> None:
    hashes = ["a", "a", "a", "b", "c", "c", "d"] + [h for i in range(150) for h in (f"x{i}", f"x{i}")]
    dup = duplicates(hashes, list(range(len(hashes))), Fraction(1, 25))
    assert dup["frames"] == 2 + 1 + 150 and dup["runs_total"] == 152 and len(dup["runs"]) == 100
    assert dup["runs"][:2] == [{"first": 0, "length": 3, "time_s": 0.0}, {"first": 4, "length": 2, "time_s": 0.16}]
    assert duplicates([], [], Fraction(1, 25)) == {"frames": 0, "runs_total": 0, "runs": []}
