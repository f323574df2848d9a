"""Issue 15: legacy codecs hash as ffmpeg's `-flags +bitexact` framehash, line for line.

Without bit-exact decoding, MPEG-4 ASP, msmpeg4, WMV and MJPEG decoders choose an IDCT per build
and CPU: the clips below are made so that ffmpeg 5.1's plain and bit-exact decodes differ for
several of them (checked), so a reader that forgot the flag fails here."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import av
import pytest

from forensic_vsr.errors import IntegrityError
from forensic_vsr.media import BITEXACT_DECODE, LEGACY_DECODE, DecoderSettings, VideoReader, frame_planes, planes_sha256
from tests.helpers import ffmpeg_framehash, run_fvsr

LEGACY = {
    # name: (encoder args, file name, size)
    "mpeg4": (["-c:v", "mpeg4"], "mpeg4.avi", "176x144"),
    "mpeg4_xvid_tag": (["-c:v", "mpeg4", "-vtag", "xvid"], "xvid.avi", "176x144"),
    "libxvid": (["-c:v", "libxvid"], "libxvid.avi", "176x144"),
    "msmpeg4v2": (["-c:v", "msmpeg4v2"], "msmpeg4v2.avi", "176x144"),
    "msmpeg4v3": (["-c:v", "msmpeg4"], "msmpeg4v3.avi", "176x144"),
    "mpeg2video": (["-c:v", "mpeg2video"], "mpeg2.mpg", "176x144"),
    "mpeg1video": (["-c:v", "mpeg1video"], "mpeg1.mpg", "176x144"),
    "h263p": (["-c:v", "h263p"], "h263p.avi", "176x144"),
    "h263": (["-c:v", "h263"], "h263.avi", "352x288"),
    "mjpeg": (["-c:v", "mjpeg"], "mjpeg.avi", "176x144"),
    "wmv1": (["-c:v", "wmv1"], "wmv1.avi", "176x144"),
    "wmv2": (["-c:v", "wmv2"], "wmv2.avi", "176x144"),
}


@pytest.fixture(scope="module")
def legacy(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("legacy")

    def make(name: str) -> Path:
        args, filename, size = LEGACY[name]
        out = root / filename
        if not out.exists():
            subprocess.run(
                [
                    ffmpeg,
                    "-v",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    f"testsrc2=size={size}:rate=25",
                    "-frames:v",
                    "12",
                    *args,
                    "-q:v",
                    "8",
                    str(out),
                ],
                check=True,
            )
        return out

    return make


def _plain_ffmpeg_hashes(ffmpeg: str, path: Path) -> list[str]:
    return ffmpeg_framehash(ffmpeg, path, bitexact=False)


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_fvsr_hash_equals_ffmpeg_bitexact_framehash(name: str, ffmpeg: str, legacy) -> None:  # type: ignore[no-untyped-def]
    clip = legacy(name)
    proc = run_fvsr("hash", clip, check=True)
    ours = [ln for ln in proc.stdout.splitlines() if not ln.startswith("#")]
    assert len(ours) == 12
    assert ours == ffmpeg_framehash(ffmpeg, clip)


def test_the_clips_need_bitexact(ffmpeg: str, legacy) -> None:  # type: ignore[no-untyped-def]
    """Guards the test above: for these codecs ffmpeg's plain decode differs from its bit-exact one."""
    for name in ("mpeg4", "msmpeg4v3", "wmv2"):
        clip = legacy(name)
        assert _plain_ffmpeg_hashes(ffmpeg, clip) != ffmpeg_framehash(ffmpeg, clip), name


def test_decoder_record_says_what_was_used(legacy) -> None:  # type: ignore[no-untyped-def]
    with VideoReader(legacy("msmpeg4v3")) as reader:
        for _ in reader.frames():
            pass
        record = reader.decoder_record()
    assert record["codec"] == "msmpeg4"
    assert record["options"] == {"flags": "+bitexact", "idct": "auto"}
    assert record["threads"] == 1
    assert record["ffmpeg"] == str(av.ffmpeg_version_info)
    libraries = record["libraries"]
    assert isinstance(libraries, dict)
    assert libraries["libavcodec"] == ".".join(map(str, av.library_versions["libavcodec"]))
    assert DecoderSettings.from_record(record) == BITEXACT_DECODE


def _hashes(path: Path, decoder: DecoderSettings) -> list[str]:
    with VideoReader(path, decoder) as reader:
        return [planes_sha256(frame_planes(d.frame)) for d in reader.frames()]


def test_legacy_settings_decode_as_format_1_did(ffmpeg: str, legacy) -> None:  # type: ignore[no-untyped-def]
    """No decoder record (format 1): plain decode, which is not the bit-exact one for msmpeg4."""
    clip = legacy("msmpeg4v3")
    assert DecoderSettings.from_record(None) == LEGACY_DECODE
    plain = _hashes(clip, LEGACY_DECODE)
    assert plain != _hashes(clip, BITEXACT_DECODE)
    assert [ln.rsplit(",", 1)[1].strip() for ln in _plain_ffmpeg_hashes(ffmpeg, clip)] == plain


def test_damaged_stream_decodes_the_same_every_time(legacy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One decoder thread: concealment of a damaged stream does not depend on the machine or the run."""
    data = bytearray(legacy("mpeg4").read_bytes())
    rnd = random.Random(1)
    for _ in range(30):
        data[rnd.randrange(2000, len(data))] ^= 0xFF
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    first = _hashes(damaged, BITEXACT_DECODE)
    assert first and all(_hashes(damaged, BITEXACT_DECODE) == first for _ in range(3))


@pytest.mark.parametrize(
    "record",
    [
        {"options": {"flags": "+bitexact", "skip_loop_filter": "all"}, "threads": 1},
        {"options": {"flags": "+gray"}, "threads": 1},
        {"options": {"idct": "simplemmx"}, "threads": 1},
        {"options": {}, "threads": 1000},
        {"options": {}, "threads": True},
        {"options": "flags=+bitexact", "threads": 1},
    ],
)
def test_decoder_records_with_unknown_settings_are_refused(record: dict[str, object]) -> None:
    with pytest.raises(IntegrityError):
        DecoderSettings.from_record(record)


def test_ingest_schema_takes_the_decoder_record_and_stays_valid_without(legacy) -> None:  # type: ignore[no-untyped-def]
    from forensic_vsr.audit.schemas import schema_errors

    digest = "0" * 64
    format_1 = {
        "evidence": {"name": "e.avi", "size": 1, "sha256": digest},
        "probe": {"container": "avi", "codec": "msmpeg4v3", "pix_fmt": "yuv420p", "width": 176, "height": 144, "time_base": "1/25"},
        "frames_decoded": 12,
        "pts": list(range(12)),
        "timing": {"vfr": False},
        "rotation": 0,
        "decode": {"packets": 12, "corrupt_packets": 0, "decode_errors": 0, "corrupt_frames": 0, "errors": []},
        "input_framehash": {"file": "input.framehash", "sha256": digest, "merkle_root": digest, "tree_size": 12},
        "exiftool": {},
    }
    with VideoReader(legacy("msmpeg4v3")) as reader:
        decoder = reader.decoder_record()
    assert schema_errors("evidence.ingest", format_1) == []
    assert schema_errors("evidence.ingest", {**format_1, "decoder": decoder}) == []
    assert schema_errors("evidence.ingest", {**format_1, "decoder": {**decoder, "options": {"flags": "+gray"}}})
    assert schema_errors("evidence.ingest", {**format_1, "decoder": {k: v for k, v in decoder.items() if k != "libraries"}})
