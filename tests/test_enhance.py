"""`fvsr enhance` end to end on real and synthesized clips, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from forensic_vsr.integrity import dsse
from forensic_vsr.media import file_sha256
from forensic_vsr.timebase import rescale
from tests.helpers import chain_payloads, ffmpeg_framehash, make_testsrc, record, run_fvsr
from tests.helpers import step as step_of


def test_bundle_layout_and_records(carphone_bundle: Path) -> None:
    names = sorted(str(p.relative_to(carphone_bundle)) for p in carphone_bundle.rglob("*") if p.is_file())
    # format 3: lanczos's S, R and interval are exact functions of master and evidence, recomputed, not stored
    fixed = ["attestations/step.run.intoto.jsonl", "chain.jsonl", "input.framehash", "manifest.json", "maps/flagged.json"]
    fixed.append("output.framehash")
    assert set(names) - {n for n in names if n.startswith("stills/")} == {*fixed, "output/master.mkv", "output/preview.mp4", "report.pdf"}
    assert len([n for n in names if n.startswith("stills/")]) % 3 == 0
    types = [p["type"] for p in chain_payloads(carphone_bundle)]
    assert types == ["policy.decision", "evidence.ingest", "step.run", "output.write", "report.generate", "run.complete"]
    ingest = record(carphone_bundle, "evidence.ingest")
    assert ingest["frames_decoded"] == 120 and len(ingest["pts"]) == 120
    assert ingest["probe"]["codec"] == "h264" and ingest["probe"]["pix_fmt"] == "yuv420p"
    assert ingest["probe"]["time_base"] == "1/30000" and ingest["timing"]["vfr"] is False
    assert ingest["exiftool"].get("File:MIMEType") == "video/mp4", ingest["exiftool"]
    step = record(carphone_bundle, "step.run")
    assert step["predicate"]["buildDefinition"]["externalParameters"]["frames"] == "0:40"
    assert set(step_of(carphone_bundle)["maps"]["recomputed"]) == {"synthesized", "contradiction", "interval"}
    libs = step["predicate"]["buildDefinition"]["internalParameters"]["libraries"]
    assert libs["av"] and libs["numpy"] and "libavcodec" in libs["ffmpeg_libraries"]


def test_output_framehash_equals_ffmpeg_on_master(carphone_bundle: Path, ffmpeg: str) -> None:
    ours = [ln for ln in (carphone_bundle / "output.framehash").read_text().splitlines() if not ln.startswith("#")]
    assert len(ours) == 40
    assert ours == ffmpeg_framehash(ffmpeg, carphone_bundle / "output/master.mkv")


def test_input_framehash_covers_the_whole_evidence(carphone_bundle: Path, carphone: Path, ffmpeg: str) -> None:
    ours = [ln for ln in (carphone_bundle / "input.framehash").read_text().splitlines() if not ln.startswith("#")]
    assert ours == ffmpeg_framehash(ffmpeg, carphone)


def test_master_is_lossless_ffv1_and_keeps_timestamps(carphone_bundle: Path, carphone: Path) -> None:
    with av.open(str(carphone_bundle / "output/master.mkv")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.format.name, s.width, s.height) == ("ffv1", "yuv420p", 352, 288)
        assert c.metadata.get("FVSR_MODE") == "evidential"
        out_ms = [f.pts * f.time_base * 1000 for f in c.decode(s)]
    with av.open(str(carphone)) as c:
        s = c.streams.video[0]
        in_ms = [rescale(f.pts, f.time_base, Fraction(1, 1000)) for i, f in enumerate(c.decode(s)) if i < 40]
    assert out_ms == in_ms  # Matroska stores milliseconds; the exact source pts are in the ingest record
    with av.open(str(carphone_bundle / "output/preview.mp4")) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.name, cc.format.name) == ("h264", "yuv420p")
        assert sum(1 for _ in c.decode(video=0)) == 40


def test_evidence_is_unchanged(carphone_bundle: Path, carphone: Path) -> None:
    ingest = record(carphone_bundle, "evidence.ingest")
    assert file_sha256(carphone) == ingest["evidence"]["sha256"] == "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"
    write = record(carphone_bundle, "output.write")
    assert write["evidence_unchanged"] is True and write["evidence_sha256_after"] == ingest["evidence"]["sha256"]


@pytest.mark.parametrize(
    ("clip", "scale", "model", "out_fmt"),
    [
        ("odd_yuv420p", 3, "bicubic", "yuv420p"),
        ("yuv444p", 2, "lanczos", "yuv444p"),
        ("yuv420p10le", 2, "lanczos", "yuv420p10le"),
        ("gray", 4, "bicubic", "gray"),
        ("cinepak_rgb24", 2, "lanczos", "bgr0"),
        ("vfr", 2, "bicubic", "yuv420p"),
    ],
)
def test_formats_end_to_end(clip: str, scale: int, model: str, out_fmt: str, synth, keypair, tmp_path: Path, ffmpeg: str) -> None:  # type: ignore[no-untyped-def]
    src = synth(clip)
    out = tmp_path / "b"
    run_fvsr("enhance", src, "-o", out, "--key", keypair[0], "--scale", scale, "--model", model, "-q", check=True)
    with av.open(str(src)) as c:
        w, h = c.streams.video[0].width, c.streams.video[0].height
    with av.open(str(out / "output/master.mkv")) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.format.name, cc.width, cc.height) == (out_fmt, w * scale, h * scale)
    ours = [ln for ln in (out / "output.framehash").read_text().splitlines() if not ln.startswith("#")]
    assert ours == ffmpeg_framehash(ffmpeg, out / "output/master.mkv")
    if clip == "vfr":
        assert record(out, "evidence.ingest")["timing"]["vfr"] is True
    # the maps compare like with like: same component of input and output (an interpolated output
    # contradicts its input by tens of levels at sharp synthetic edges, not by hundreds)
    sidecar = json.loads((out / "maps/flagged.json").read_text())
    assert max(f["r_max"] for f in sidecar["frames"]) < 200 * (4 if "10" in out_fmt else 1)


def test_round_trip_mismatch_is_an_error(monkeypatch: pytest.MonkeyPatch, synth, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """If the master did not decode to what was hashed before encoding, the run must fail."""
    from forensic_vsr.audit.keys import load_signer
    from forensic_vsr.bundle import frames
    from forensic_vsr.errors import IntegrityError
    from forensic_vsr.pipeline import enhance
    from forensic_vsr.recipe import Examiner, Recipe

    real = frames.planes_sha256
    calls = {"n": 0}

    def off_by_one(planes):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(planes) if calls["n"] != 3 else "0" * 64

    monkeypatch.setattr(frames, "planes_sha256", off_by_one)
    signer = load_signer(keypair[0], b"test-passphrase-123", "t")
    with pytest.raises(IntegrityError, match="round trip failed at output frame 2"):
        enhance(synth("yuv444p"), tmp_path / "b", Recipe("evidential", "lanczos", 2), Examiner("t", None, signer), False)
    assert list(tmp_path.iterdir()) == []


def test_same_input_gives_bit_identical_output(synth, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = synth("odd_yuv420p")
    for name in ("a", "b"):
        run_fvsr("enhance", src, "-o", tmp_path / name, "--key", keypair[0], "-q", check=True)
    a = (tmp_path / "a/output.framehash").read_text().splitlines()[10:]
    assert a == (tmp_path / "b/output.framehash").read_text().splitlines()[10:]
    # the files too, not only the frames: muxed bit-exactly (no random segment UID, no date)
    written = sorted(p.relative_to(tmp_path / "a") for d in ("output", "maps") for p in (tmp_path / "a" / d).rglob("*") if p.is_file())
    assert Path("output/master.mkv") in written and Path("output/preview.mp4") in written
    for rel in written:
        assert file_sha256(tmp_path / "a" / rel) == file_sha256(tmp_path / "b" / rel), rel


def test_existing_bundle_is_never_overwritten(carphone_bundle: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    before = file_sha256(carphone_bundle / "chain.jsonl")
    proc = run_fvsr("enhance", carphone, "-o", carphone_bundle, "--key", keypair[0], "-q")
    assert proc.returncode != 0 and "already exists" in proc.stderr
    assert file_sha256(carphone_bundle / "chain.jsonl") == before


def test_memory_does_not_grow_with_video_length(ffmpeg: str, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Peak RSS for 300 frames within 1.2x of 30 frames (the streaming promise)."""
    peaks = {}
    for n in (30, 300):
        clip = make_testsrc(ffmpeg, tmp_path / f"c{n}.mp4", n)
        argv = ["enhance", str(clip), "-o", str(tmp_path / f"b{n}"), "--key", str(keypair[0]), "-q"]
        code = (
            f"import resource, sys; import forensic_vsr.cli as c; rc = c.main({argv!r});"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "FVSR_KEY_PASSPHRASE": "test-passphrase-123"},
            check=True,
        )
        peaks[n] = int(proc.stdout.strip().splitlines()[-1])
    assert peaks[300] <= 1.2 * peaks[30], peaks


def test_payload_type_is_the_record_type(carphone_bundle: Path) -> None:
    line = (carphone_bundle / "chain.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["payloadType"] == dsse.RECORD_TYPE


def test_maps_are_the_exact_layer_of_the_stored_frames(carphone_bundle: Path, carphone: Path) -> None:
    """Format 3: S, R and the interval are not stored; recomputed from the master and the evidence
    (uncertainty.recompute, what review and the golden tests use) they are the exact layer in
    quarter-level samples, and the sidecar's statistics follow from S."""
    from forensic_vsr.media import VideoReader, frame_planes
    from forensic_vsr.uncertainty.calibration import interval_scale
    from forensic_vsr.uncertainty.exact import MAP_SCALE, ExactMaps, flagged_regions
    from forensic_vsr.uncertainty.recompute import recomputed_maps

    step = step_of(carphone_bundle)
    maps = step["maps"]
    assert maps["layer"] == "exact" and maps["plane"] == "luma" and maps["files"] == {}
    assert sorted(maps["recomputed"]) == ["contradiction", "interval", "synthesized"]
    assert not (carphone_bundle / "maps/synthesized.mkv").exists()
    sidecar = json.loads((carphone_bundle / "maps/flagged.json").read_text())
    assert len(sidecar["frames"]) == 40 and sidecar["threshold_levels"] == maps["flagged"]["threshold_levels"]
    exact = ExactMaps(288, 352, 2)
    recomputed = recomputed_maps(carphone_bundle, carphone, maps, 0)
    with VideoReader(carphone) as ev, VideoReader(carphone_bundle / "output/master.mkv") as out:
        for i, (e, o, planes) in enumerate(zip(ev.frames(), out.frames(), recomputed, strict=False)):
            if i % 13:
                continue
            s, r = exact.compute(frame_planes(e.frame)[0], frame_planes(o.frame)[0])
            assert np.abs(planes["synthesized"] / MAP_SCALE - s).max() <= 0.5 / MAP_SCALE + 1e-3
            assert np.abs(planes["contradiction"] / MAP_SCALE - r).max() <= 0.5 / MAP_SCALE + 1e-3
            want_i = maps["calibration"]["lambda"] * interval_scale(frame_planes(o.frame)[0], s)
            assert np.abs(planes["interval"] / MAP_SCALE - want_i).max() <= 0.5 / MAP_SCALE + 1e-2
            stats = flagged_regions(s, sidecar["threshold_levels"])
            assert sidecar["frames"][i]["fraction_flagged"] == stats["fraction_flagged"]
            assert s.max() > 0.5  # Lanczos puts content in the null space of the bicubic operator


def test_no_maps_is_refused_in_evidential_and_allowed_in_investigative(tmp_path: Path, carphone: Path, keypair) -> None:
    key, _pub = keypair
    refused = run_fvsr("enhance", str(carphone), "-o", str(tmp_path / "e"), "--key", str(key), "--frames", "0:3", "--no-maps", "-q")
    assert refused.returncode == 3 and "uncertainty_maps_required" in refused.stderr
    done = run_fvsr(
        "enhance",
        str(carphone),
        "-o",
        str(tmp_path / "i"),
        "--key",
        str(key),
        "--frames",
        "0:3",
        "--no-maps",
        "--mode",
        "investigative",
        "-q",
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "i" / "maps").exists()


def test_master_and_preview_keep_the_evidence_aspect_and_siting(carphone_bundle: Path, carphone: Path) -> None:
    """The evidence's SAR (128:117 on carphone, a 8.6% aspect change if dropped), its DAR and its
    chroma siting are on the master and on the preview, as the real ffprobe reads them."""

    def probe(path: Path) -> dict:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-of", "json",
             "-show_entries", "stream=sample_aspect_ratio,display_aspect_ratio,chroma_location", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return json.loads(out)["streams"][0]

    evidence = probe(carphone)
    assert evidence["sample_aspect_ratio"] == "128:117" and evidence["chroma_location"] == "left"
    for name in ("output/master.mkv", "output/preview.mp4"):
        got = probe(carphone_bundle / name)
        assert got["sample_aspect_ratio"] == "128:117", name
        assert got["display_aspect_ratio"] == "1408:1053", name  # 352x288 at 128:117
        assert got["chroma_location"] == "left", name
