"""Every bad input: one clear line on stderr, non-zero exit, no traceback, nothing half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_fvsr


def _assert_clean_failure(proc: subprocess.CompletedProcess[str], out_dir: Path, expect: str) -> None:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("fvsr: error:"), lines[0]
    assert expect in lines[0], lines[0]
    leftovers = [p.name for p in out_dir.iterdir()] if out_dir.exists() else []
    assert leftovers == [], f"partial output left behind: {leftovers}"


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def _enhance(src: Path, out: Path, key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_fvsr("enhance", src, "-o", out / "bundle", "--key", key, "-q", *extra)


def test_missing_file(tmp_path: Path, outdir: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    _assert_clean_failure(_enhance(tmp_path / "nope.mp4", outdir, keypair[0]), outdir, "no such file")


def test_zero_byte_file(tmp_path: Path, outdir: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty.mp4").write_bytes(b"")
    _assert_clean_failure(_enhance(tmp_path / "empty.mp4", outdir, keypair[0]), outdir, "empty")


def test_text_file_renamed_mp4(tmp_path: Path, outdir: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    _assert_clean_failure(_enhance(tmp_path / "notes.mp4", outdir, keypair[0]), outdir, "not a readable video")


def test_truncated_mp4(tmp_path: Path, outdir: Path, keypair, carphone: Path) -> None:  # type: ignore[no-untyped-def]
    data = carphone.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    _assert_clean_failure(_enhance(tmp_path / "cut.mp4", outdir, keypair[0]), outdir, "cut.mp4")


def test_audio_only_file(tmp_path: Path, outdir: Path, keypair, ffmpeg: str) -> None:  # type: ignore[no-untyped-def]
    audio = tmp_path / "voice.m4a"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(audio)], check=True)
    _assert_clean_failure(_enhance(audio, outdir, keypair[0]), outdir, "no video stream")


def _corrupt_mjpeg(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\xff\xd8\xff"]
    s = starts[len(starts) // 2]
    data[s : s + 400] = bytes(400)  # destroy one frame's JPEG header: the decoder rejects that packet
    dst.write_bytes(bytes(data))


def test_corrupt_packets_mid_stream_are_refused_with_counts(tmp_path: Path, outdir: Path, keypair, synth) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "damaged.avi"
    _corrupt_mjpeg(synth("mjpeg"), bad)
    proc = _enhance(bad, outdir, keypair[0])
    _assert_clean_failure(proc, outdir, "1 packets the decoder rejected")
    assert "--accept-decode-errors" in proc.stderr


def test_corrupt_packets_accepted_are_counted_in_the_record(tmp_path: Path, outdir: Path, keypair, synth) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import record

    bad = tmp_path / "damaged.avi"
    _corrupt_mjpeg(synth("mjpeg"), bad)
    proc = _enhance(bad, outdir, keypair[0], "--accept-decode-errors")
    assert proc.returncode == 0, proc.stderr
    assert "damaged stream accepted" in proc.stderr
    ingest = record(outdir / "bundle", "evidence.ingest")
    assert ingest["decode"]["decode_errors"] == 1 and ingest["frames_decoded"] == 11


def test_unwritable_output_directory(outdir: Path, keypair, carphone: Path) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() == 0:
        # root ignores directory permissions: use a path below a regular file instead
        blocker = outdir / "file"
        blocker.write_text("x")
        proc = run_fvsr("enhance", carphone, "-o", blocker / "bundle", "--key", keypair[0], "-q")
        assert proc.returncode != 0 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
        return
    outdir.chmod(0o500)
    try:
        _assert_clean_failure(_enhance(carphone, outdir, keypair[0]), outdir, "not writable")
    finally:
        outdir.chmod(0o700)


def test_frames_out_of_range(outdir: Path, keypair, carphone: Path) -> None:  # type: ignore[no-untyped-def]
    _assert_clean_failure(
        _enhance(carphone, outdir, keypair[0], "--frames", "100:500"), outdir, "outside the evidence's 120 decoded frames"
    )
    _assert_clean_failure(_enhance(carphone, outdir, keypair[0], "--frames", "7:3"), outdir, "0 <= A < B")
    _assert_clean_failure(_enhance(carphone, outdir, keypair[0], "--frames", "x"), outdir, "expected A:B")


def test_bad_scale_and_model(outdir: Path, keypair, carphone: Path) -> None:  # type: ignore[no-untyped-def]
    _assert_clean_failure(_enhance(carphone, outdir, keypair[0], "--scale", "9"), outdir, "must be an integer from 1 to 8")
    _assert_clean_failure(_enhance(carphone, outdir, keypair[0], "--scale", "1"), outdir, "lanczos is not a restoration model")
    _assert_clean_failure(_enhance(carphone, outdir, keypair[0], "--model", "magic"), outdir, "no such model card")


def test_hash_of_bad_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.mp4").write_text("garbage")
    proc = run_fvsr("hash", tmp_path / "x.mp4")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_evidence_file_is_not_modified_by_a_failed_run(tmp_path: Path, outdir: Path, keypair, carphone: Path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "ev.mp4"
    shutil.copy2(carphone, copy)
    st = copy.stat()
    _enhance(copy, outdir, keypair[0], "--frames", "500:600")
    assert copy.read_bytes() == carphone.read_bytes() and copy.stat().st_mtime_ns == st.st_mtime_ns
