"""The bundle's own FFV1 videos are decoded back with FFmpeg's threads (issue 17: `fvsr verify`
of 100 frames at 1536x1152 went from 14.2 s to 8.2 s on 2 cores); the samples are those of a
single-threaded decode, and a damaged master still fails verification whatever the threads."""

from __future__ import annotations

import shutil
from pathlib import Path

from forensic_vsr.media import BITEXACT_DECODE, OUTPUT_DECODE, VideoReader, frame_planes, planes_sha256
from tests.conftest import run_fvsr


def _hashes(path: Path, decoder) -> list[str]:  # type: ignore[no-untyped-def]
    with VideoReader(path, decoder) as reader:
        assert reader._stream.codec_context.thread_count == decoder.threads  # what the decoder was given
        return [planes_sha256(frame_planes(d.frame)) for d in reader.frames()]


def test_threaded_decode_of_the_master_gives_the_single_threaded_samples(carphone_bundle: Path) -> None:
    master = carphone_bundle / "output" / "master.mkv"
    assert OUTPUT_DECODE.threads == 0 and BITEXACT_DECODE.threads == 1
    threaded = _hashes(master, OUTPUT_DECODE)
    assert len(threaded) == 40 and threaded == _hashes(master, BITEXACT_DECODE)


def test_a_damaged_master_still_fails_verification(carphone_bundle: Path, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    shutil.copytree(carphone_bundle, bundle)
    master = bundle / "output" / "master.mkv"
    data = bytearray(master.read_bytes())
    data[len(data) // 2] ^= 0x40  # one bit inside a frame's slice
    master.write_bytes(bytes(data))
    done = run_fvsr("verify", bundle, "--pubkey", keypair[1])
    assert done.returncode != 0
    assert "FAIL" in done.stdout and "output/master.mkv" in done.stdout
