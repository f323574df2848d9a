"""Stills as evidence: PNG, JPEG, TIFF and BMP go through the same pipeline as video, as
one-frame streams whose framehash is ffmpeg's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import pytest

from forensic_vsr.media import VideoReader
from tests.helpers import ffmpeg_framehash, record, run_fvsr


@pytest.fixture(scope="module")
def photo(carphone: Path) -> object:
    with VideoReader(carphone) as reader:
        for decoded in reader.frames():
            if decoded.index == 50:
                return decoded.frame.to_ndarray(format="bgr24")
    raise AssertionError("short clip")


@pytest.mark.parametrize("ext", ["png", "jpg", "tif", "bmp"])
def test_still_is_a_one_frame_stream_with_ffmpegs_framehash(ext: str, photo, tmp_path: Path, keypair, ffmpeg: str) -> None:  # type: ignore[no-untyped-def]
    still = tmp_path / f"evidence.{ext}"
    assert cv2.imwrite(str(still), photo)
    before = still.read_bytes()
    bundle = tmp_path / "b"
    extra = [] if ext == "png" else ["--no-report", "--mode", "investigative"]
    run_fvsr("enhance", still, "-o", bundle, "--key", keypair[0], "-q", *extra, check=True)
    assert still.read_bytes() == before
    ingest = record(bundle, "evidence.ingest")
    assert ingest["frames_decoded"] == 1
    ours = [ln for ln in (bundle / "input.framehash").read_text().splitlines() if not ln.startswith("#")]
    assert ours == ffmpeg_framehash(ffmpeg, still)
    out = [ln for ln in (bundle / "output.framehash").read_text().splitlines() if not ln.startswith("#")]
    assert len(out) == 1 and out == ffmpeg_framehash(ffmpeg, bundle / "output" / "master.mkv")
    assert run_fvsr("verify", bundle, "--pubkey", keypair[1]).returncode == 0
    if ext == "png":
        text = subprocess.run(["pdftotext", str(bundle / "report.pdf"), "-"], capture_output=True, text=True, check=True).stdout
        assert "a still image: one frame" in " ".join(text.split())


@pytest.mark.parametrize(("model", "scale"), [("mfsr-x2", "2"), ("integrate", "1")])  # deblur runs per colour plane: test_colour
def test_luma_operations_refuse_rgb_evidence_in_one_line(model: str, scale: str, photo, tmp_path: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    still = tmp_path / "evidence.png"  # PNG decodes as packed rgb24: no luma plane
    assert cv2.imwrite(str(still), photo)
    args = ["--model", model, "--scale", scale, "--mode", "investigative"]
    proc = run_fvsr("enhance", still, "-o", tmp_path / "b", "--key", keypair[0], *args)
    assert proc.returncode != 0 and "has no luma plane" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
