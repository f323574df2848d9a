"""The bundle's own FFV1 videos are decoded back with FFmpeg's slice threads (issue 17: `fvsr
verify --evidence` of 100 frames at 1536x1152 went from 13.2 s to 8.45 s on 2 cores). The samples
are those of a single-threaded decode, of an intact master and of a damaged one (FFV1's slices
are independent), and a file that is not FFV1 is decoded on one thread, as evidence is."""

from __future__ import annotations

import os
import random
from pathlib import Path

from forensic_vsr.media import BITEXACT_DECODE, OUTPUT_DECODE, DecoderSettings, VideoReader, frame_planes, planes_sha256


def _decode(path: Path, decoder: DecoderSettings) -> tuple[int, list[str]]:
    """(the thread count the decoder ran with, every frame's sha256)."""
    with VideoReader(path, decoder) as reader:
        hashes = [planes_sha256(frame_planes(d.frame)) for d in reader.frames()]
        return reader._stream.codec_context.thread_count, hashes  # the threads FFmpeg opened the decoder with


def test_threaded_decode_of_the_master_gives_the_single_threaded_samples(carphone_bundle: Path) -> None:
    master = carphone_bundle / "output" / "master.mkv"
    threads, threaded = _decode(master, OUTPUT_DECODE)
    single_threads, single = _decode(master, BITEXACT_DECODE)
    assert single_threads == 1 and threads >= min(2, os.cpu_count() or 1)  # FFmpeg's choice: the cores + 1
    assert len(threaded) == 40 and threaded == single


def test_a_damaged_master_decodes_to_the_same_samples_with_threads(carphone_bundle: Path, tmp_path: Path) -> None:
    """Verify compares the decoded master with the signed frame hashes: damage must give the same
    (wrong) samples whatever the threads, so that the verdict cannot depend on the machine."""
    data = (carphone_bundle / "output" / "master.mkv").read_bytes()
    rng = random.Random(17)
    for k in range(4):
        damaged = bytearray(data)
        for _ in range(k + 1):
            i = rng.randrange(4096, len(damaged))
            damaged[i] ^= 1 << rng.randrange(8)
        path = tmp_path / f"damaged{k}.mkv"
        path.write_bytes(bytes(damaged))
        assert _decode(path, OUTPUT_DECODE)[1] == _decode(path, BITEXACT_DECODE)[1], k


def test_a_file_that_is_not_ffv1_decodes_on_one_thread(carphone: Path) -> None:
    threads, hashes = _decode(carphone, OUTPUT_DECODE)
    assert threads == 1 and hashes == _decode(carphone, BITEXACT_DECODE)[1]
