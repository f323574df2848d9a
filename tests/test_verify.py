"""`fvsr verify` and frame proofs: the untouched bundle passes, and every tampering in the
suite below is detected by a named failed check."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from forensic_vsr.audit.keys import load_public_key
from forensic_vsr.audit.verify import verify_bundle
from forensic_vsr.integrity import dsse
from forensic_vsr.media import VideoReader, VideoWriter, frame_from_planes, frame_planes
from tests.helpers import PASSPHRASE, make_testsrc, run_fvsr


@pytest.fixture(scope="module")
def small_bundles(tmp_path_factory: pytest.TempPathFactory, synth, keypair) -> tuple[Path, Path, Path]:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("verify")
    src = synth("yuv444p")
    run_fvsr("enhance", src, "-o", d / "a", "--key", keypair[0], "-q", check=True)
    run_fvsr("enhance", synth("odd_yuv420p"), "-o", d / "b", "--key", keypair[0], "-q", check=True)
    return d / "a", d / "b", src


def failed(bundle: Path, pub: Path, evidence: Path | None = None) -> dict[str, str]:
    return {c.name: c.status for c in verify_bundle(bundle, load_public_key(pub), evidence) if not c.ok}


def test_untouched_bundle_passes(small_bundles, keypair) -> None:  # type: ignore[no-untyped-def]
    a, _b, src = small_bundles
    proc = run_fvsr("verify", a, "--pubkey", keypair[1], "--evidence", src)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("PASS")
    assert "FAIL" not in proc.stdout


def _lines(bundle: Path) -> list[bytes]:
    return (bundle / "chain.jsonl").read_bytes().splitlines()


def _write_lines(bundle: Path, lines: list[bytes]) -> None:
    (bundle / "chain.jsonl").write_bytes(b"".join(ln + b"\n" for ln in lines))


def _flip_record_byte(i: int) -> Callable[[Path], None]:
    def tamper(b: Path) -> None:
        lines = _lines(b)
        env = json.loads(lines[i])
        payload = bytearray(base64.b64decode(env["payload"]))
        payload[len(payload) // 2] ^= 0x01
        env["payload"] = base64.b64encode(bytes(payload)).decode()
        lines[i] = dsse.canonical_json(env)
        _write_lines(b, lines)

    return tamper


def _resign_with_another_key(b: Path) -> None:
    other = Ed25519PrivateKey.generate()
    lines = _lines(b)
    env = json.loads(lines[2])
    payload = base64.b64decode(env["payload"])
    lines[2] = dsse.canonical_json(dsse.sign(payload, dsse.RECORD_TYPE, other.sign, dsse.keyid(other.public_key())))
    _write_lines(b, lines)


def _alter_checkpoint(b: Path) -> None:
    """The signed note's tree size changed, signature left as it was."""
    m = json.loads((b / "manifest.json").read_text())
    lines = m["checkpoint"].split("\n")
    lines[1] = str(int(lines[1]) + 1)
    m["checkpoint"] = "\n".join(lines)
    (b / "manifest.json").write_text(json.dumps(m))


def _alter_one_master_frame(b: Path, name: str = "output/master.mkv") -> None:
    src = b / name
    tmp = b / "tmp.mkv"
    with VideoReader(src) as r:
        info = r.info
        w = VideoWriter(
            tmp,
            codec="ffv1",
            pix_fmt=info.pix_fmt,
            width=info.width,
            height=info.height,
            time_base=Fraction(1, 1000),
            rate=info.guessed_rate,
            options={"level": "3", "g": "1"},
        )
        for d in r.frames():
            planes = frame_planes(d.frame)
            if d.index == 5:
                planes[0][3, 3] ^= 0x40
            w.write(frame_from_planes(planes, info.pix_fmt, info.width, info.height), d.pts)
        w.close()
    os.replace(tmp, src)


def _alter_framehash_line(b: Path) -> None:
    p = b / "output.framehash"
    lines = p.read_text().splitlines()
    last = lines[-1]
    lines[-1] = last[:-1] + ("0" if last[-1] != "0" else "1")
    p.write_text("\n".join(lines) + "\n")


def _splice(other: Path) -> Callable[[Path], None]:
    def tamper(b: Path) -> None:
        for name in ("chain.jsonl", "manifest.json"):
            shutil.copy(other / name, b / name)

    return tamper


TAMPERS: dict[str, tuple[Callable[..., None], set[str]]] = {
    "flip byte in record 0": (_flip_record_byte(0), {"chain.signatures"}),
    "flip byte in record 1": (_flip_record_byte(1), {"chain.signatures"}),
    "flip byte in record 2": (_flip_record_byte(2), {"chain.signatures"}),
    "flip byte in record 3": (_flip_record_byte(3), {"chain.signatures"}),
    "flip byte in record 4": (_flip_record_byte(4), {"chain.signatures"}),
    "record deleted": (lambda b: _write_lines(b, [ln for i, ln in enumerate(_lines(b)) if i != 1]), {"chain.links"}),
    "record duplicated": (lambda b: _write_lines(b, [*_lines(b)[:2], _lines(b)[1], *_lines(b)[2:]]), {"chain.links"}),
    "records reordered": (lambda b: _write_lines(b, [_lines(b)[0], _lines(b)[2], _lines(b)[1], *_lines(b)[3:]]), {"chain.links"}),
    "chain truncated": (lambda b: _write_lines(b, _lines(b)[:-1]), {"chain.complete", "checkpoint.chain"}),
    "record re-signed with another key": (_resign_with_another_key, {"chain.signatures"}),
    "manifest checkpoint altered": (_alter_checkpoint, {"checkpoint.signature"}),
    "one master frame altered": (_alter_one_master_frame, {"files.digests", "frames.master_decode"}),
    "framehash line altered": (_alter_framehash_line, {"files.digests", "frames.output_root"}),
    "preview altered": (
        lambda b: (b / "output/preview.mp4").write_bytes((b / "output/preview.mp4").read_bytes() + b"\0"),
        {"files.digests"},
    ),
    "input.framehash removed": (lambda b: (b / "input.framehash").unlink(), {"files.inventory"}),
    "extra file added": (lambda b: (b / "output" / "planted.png").write_bytes(b"\x89PNG"), {"files.inventory"}),
    # format 3: S and R are recomputed, not stored (tests/test_maps_recomputed.py tampers with what they are computed from)
    "map video planted": (lambda b: shutil.copy(b / "output/master.mkv", b / "maps/synthesized.mkv"), {"files.inventory"}),
    "flagged sidecar altered": (
        lambda b: (b / "maps/flagged.json").write_text((b / "maps/flagged.json").read_text().replace('"regions":', '"regions": ', 1)),
        {"files.digests", "maps.flagged"},
    ),
    "flagged sidecar removed": (lambda b: (b / "maps/flagged.json").unlink(), {"files.inventory", "maps.flagged", "maps.recomputed"}),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampering_is_detected(name: str, small_bundles, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, _b, _src = small_bundles
    bundle = tmp_path / "t"
    shutil.copytree(a, bundle)
    tamper, expected = TAMPERS[name]
    tamper(bundle)
    got = failed(bundle, keypair[1])
    assert expected <= set(got), f"{name}: failed checks {got}, expected {expected}"
    proc = run_fvsr("verify", bundle, "--pubkey", keypair[1])
    assert proc.returncode != 0


def test_inserted_record_from_another_bundle_is_detected(small_bundles, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = small_bundles
    bundle = tmp_path / "t"
    shutil.copytree(a, bundle)
    lines = _lines(bundle)
    _write_lines(bundle, [*lines[:2], _lines(b)[2], *lines[2:]])  # validly signed by the same key
    assert "chain.links" in failed(bundle, keypair[1])


def test_chain_spliced_onto_another_bundles_outputs(small_bundles, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = small_bundles
    bundle = tmp_path / "t"
    shutil.copytree(a, bundle)
    _splice(b)(bundle)
    got = failed(bundle, keypair[1])
    assert {"files.digests", "frames.output_root"} <= set(got), got


def test_wrong_evidence_file_is_detected(small_bundles, keypair, synth) -> None:  # type: ignore[no-untyped-def]
    a, _b, _src = small_bundles
    got = failed(a, keypair[1], synth("gray"))
    assert {"evidence.sha256", "evidence.frames"} <= set(got)


def test_wrong_public_key_fails_everything_signed(small_bundles, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, _b, _ = small_bundles
    run_fvsr("keys", "generate", "--out", tmp_path / "mallory.key", check=True)
    got = failed(a, tmp_path / "mallory.key.pub")
    assert {"chain.signatures", "manifest.key", "checkpoint.signature"} <= set(got)


def test_frame_proof_round_trip_and_tamper(small_bundles, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, _b, _ = small_bundles
    proof = tmp_path / "proof.json"
    run_fvsr("prove", a, "--frame", "5", "--pubkey", keypair[1], "-o", proof, check=True)
    ok = run_fvsr("verify-proof", proof, "--pubkey", keypair[1])
    assert ok.returncode == 0 and "frame 5" in ok.stdout, ok.stdout
    data = json.loads(proof.read_text())
    line = data["frame"]["framehash_line"]
    data["frame"]["framehash_line"] = line[:-1] + ("0" if line[-1] != "0" else "1")
    proof.write_text(json.dumps(data))
    bad = run_fvsr("verify-proof", proof, "--pubkey", keypair[1])
    assert bad.returncode != 0 and "FAIL       proof.frame_inclusion" in bad.stdout
    out_of_range = run_fvsr("prove", a, "--frame", "99", "--pubkey", keypair[1])
    assert out_of_range.returncode != 0 and "frames 0..11" in out_of_range.stderr


def test_verify_imports_neither_torch_nor_cv2(small_bundles, keypair) -> None:  # type: ignore[no-untyped-def]
    a, _b, src = small_bundles
    code = (
        "import sys; from forensic_vsr.cli import main; rc = main(['verify', %r, '--pubkey', %r, '--evidence', %r]);"
        "bad = [m for m in ('torch', 'cv2') if m in sys.modules]; print('HEAVY', bad); sys.exit(rc or bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code % (str(a), str(keypair[1]), str(src))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "HEAVY []" in proc.stdout


def test_reproduce_is_bit_exact(small_bundles, keypair) -> None:  # type: ignore[no-untyped-def]
    a, _b, src = small_bundles
    proc = run_fvsr("verify", a, "--pubkey", keypair[1], "--evidence", src, "--reproduce")
    assert proc.returncode == 0 and "reproduced bit-exactly" in proc.stdout, proc.stdout


def test_reproduce_counts_differing_samples(small_bundles, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from forensic_vsr.reproduce import sample_differences

    a, _b, _ = small_bundles
    bundle = tmp_path / "t"
    shutil.copytree(a, bundle)
    _alter_one_master_frame(bundle)
    frames, dframes, dsamples, dmax = sample_differences(a / "output/master.mkv", bundle / "output/master.mkv")
    assert (frames, dframes, dsamples, dmax) == (12, 1, 1, 0x40)


def test_killed_run_is_reported_incomplete(ffmpeg: str, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = make_testsrc(ffmpeg, tmp_path / "long.mp4", 400, "320x240")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "forensic_vsr", "enhance", str(clip), "-o", str(out / "bundle"), "--key", str(keypair[0]), "-q"],
        env={**os.environ, "FVSR_KEY_PASSPHRASE": PASSPHRASE},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    partial = None
    while time.monotonic() < deadline:
        found = list(out.glob(".bundle.partial-*"))
        if found and (found[0] / "chain.jsonl").exists() and (found[0] / "chain.jsonl").read_bytes().count(b"\n") >= 2:
            partial = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial is not None, "run finished or never started its chain"
    assert not (out / "bundle").exists()
    v = run_fvsr("verify", partial, "--pubkey", keypair[1])
    assert v.returncode != 0
    assert "INCOMPLETE" in v.stdout and "run stopped after record 1 (evidence.ingest)" in v.stdout, v.stdout
    assert v.stdout.strip().splitlines()[-1].startswith("INCOMPLETE")
