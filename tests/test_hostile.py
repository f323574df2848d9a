"""Hostile input is a clean FAIL within seconds, and nothing unsigned is believed.

Every case starts from a real bundle made by the real CLI, breaks it the way an adversary (or a
broken disk) would, and runs the real `fvsr verify` in a subprocess with a wall-clock limit, so a
hang fails the test instead of hanging CI. Each must exit 1, print a FAIL line naming the check,
never crash (no internal error, no traceback, no guard-caught exception) and finish in time.
The parsers are fuzzed in-process with hypothesis: mutated files give FAIL checks, never raise."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forensic_vsr.audit.checks import CRASHED, Check
from forensic_vsr.audit.keys import load_public_key
from forensic_vsr.audit.proof import load_proof, make_proof, verify_proof
from forensic_vsr.audit.safe_read import UnsafeFile, loads
from forensic_vsr.audit.verify import bundle_checks, read_chain, read_framehash, verify_bundle
from forensic_vsr.errors import FvsrError
from forensic_vsr.integrity import dsse
from tests.helpers import PASSPHRASE, run_fvsr

LIMIT_S = 20.0
GOLDEN = Path(__file__).parent / "golden" / "format1.tar.gz"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str, keypair: tuple[Path, Path]) -> Path:
    """A complete 4-frame bundle (maps, report, stills): fast enough to verify hundreds of times."""
    d = tmp_path_factory.mktemp("tiny")
    src = d / "src.mkv"
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=96x64:rate=25",
            "-frames:v",
            "4",
            "-pix_fmt",
            "yuv444p",
            "-c:v",
            "ffv1",
            src,
        ],
        check=True,
    )
    run_fvsr("enhance", src, "-o", d / "b", "--key", keypair[0], "-q", check=True)
    return d / "b"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    return out


def _verify(bundle: Path, pub: Path, *extra: str | Path) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = run_fvsr("verify", bundle, "--pubkey", pub, *extra, timeout=LIMIT_S)
    return proc, time.monotonic() - t0


def assert_clean_fail(proc: subprocess.CompletedProcess[str], *names: str) -> None:
    out = proc.stdout
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out}\n{proc.stderr}"
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert CRASHED not in out, out
    for name in names:
        assert re.search(rf"^FAIL\s+{re.escape(name)}: ", out, re.M), f"no FAIL {name} line:\n{out}"
    assert out.strip().splitlines()[-1].startswith(("FAIL", "INCOMPLETE")), out


def _mkfifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _symlink(path: Path, target: Path | str) -> None:
    path.unlink()
    path.symlink_to(target)


def _outside_copy(b: Path, name: str) -> None:
    copy = b.parent / f"outside-{name.replace('/', '-')}"
    shutil.copy(b / name, copy)
    _symlink(b / name, copy)


def _outside_dir(b: Path) -> None:
    shutil.copytree(b / "output", b.parent / "outside-output")
    shutil.rmtree(b / "output")
    (b / "output").symlink_to(b.parent / "outside-output")


def _dir_in_place(b: Path, name: str, with_file: bool) -> None:
    (b / name).unlink()
    (b / name).mkdir()
    if with_file:
        (b / name / "x").write_bytes(b"x")


def _truncate(b: Path, name: str) -> None:
    data = (b / name).read_bytes()
    (b / name).write_bytes(data[: len(data) // 2])


def _manifest_edit(edit: Callable[[dict], None]) -> Callable[[Path], None]:  # type: ignore[type-arg]
    def tamper(b: Path) -> None:
        m = json.loads((b / "manifest.json").read_text())
        edit(m)
        (b / "manifest.json").write_text(json.dumps(m, indent=2))

    return tamper


def _other_pem() -> str:
    return Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _chain_line(b: Path, i: int, line: bytes) -> None:
    lines = (b / "chain.jsonl").read_bytes().splitlines()
    lines[i] = line
    (b / "chain.jsonl").write_bytes(b"".join(ln + b"\n" for ln in lines))


HOSTILE: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "FIFO in place of master.mkv": (lambda b: _mkfifo(b / "output/master.mkv"), ("files.inventory", "files.digests")),
    "FIFO in place of manifest.json": (lambda b: _mkfifo(b / "manifest.json"), ("manifest",)),
    "FIFO in place of chain.jsonl": (lambda b: _mkfifo(b / "chain.jsonl"), ("chain.format",)),
    "symlink to /dev/zero for input.framehash": (
        lambda b: _symlink(b / "input.framehash", "/dev/zero"),
        ("files.inventory", "files.digests", "frames.input_root"),
    ),
    "symlink to /dev/zero for manifest.json": (lambda b: _symlink(b / "manifest.json", "/dev/zero"), ("manifest",)),
    "symlink to an identical copy outside": (lambda b: _outside_copy(b, "output/preview.mp4"), ("files.inventory", "files.digests")),
    "symlink to an identical framehash outside": (lambda b: _outside_copy(b, "output.framehash"), ("files.digests", "frames.output_root")),
    "output/ a symlink to an identical copy outside": (_outside_dir, ("files.inventory", "files.digests")),
    "manifest nested 100,000 deep": (lambda b: (b / "manifest.json").write_bytes(_deep(100_000)), ("manifest",)),
    "manifest nested 65 deep": (lambda b: (b / "manifest.json").write_bytes(b'{"a":' * 65 + b"1" + b"}" * 65), ("manifest",)),
    "chain line nested 100,000 deep": (lambda b: _chain_line(b, 2, _deep(100_000)), ("chain.signatures",)),
    "manifest []": (lambda b: (b / "manifest.json").write_text("[]"), ("manifest",)),
    "manifest null": (lambda b: (b / "manifest.json").write_text("null"), ("manifest",)),
    'manifest "x"': (lambda b: (b / "manifest.json").write_text('"x"'), ("manifest",)),
    "manifest 1e999": (lambda b: (b / "manifest.json").write_text("1e999"), ("manifest",)),
    "manifest NaN": (lambda b: (b / "manifest.json").write_text('{"format": NaN}'), ("manifest",)),
    "manifest with a duplicate key": (
        lambda b: (b / "manifest.json").write_text((b / "manifest.json").read_text().replace("{", '{"keyid": "x",', 1)),
        ("manifest",),
    ),
    "manifest 2 MiB": (lambda b: (b / "manifest.json").write_bytes(b" " * (2 << 20) + b"{}"), ("manifest",)),
    "manifest format edited": (_manifest_edit(lambda m: m.update(format="forensic-vsr-bundle/9")), ("manifest.format",)),
    "manifest tool edited": (_manifest_edit(lambda m: m.update(tool="other-tool")), ("manifest.tool",)),
    "manifest tool_version edited": (_manifest_edit(lambda m: m.update(tool_version="9.9.9")), ("manifest.tool",)),
    "manifest public_key edited": (_manifest_edit(lambda m: m.update(public_key=_other_pem())), ("manifest.public_key",)),
    "manifest public_key not PEM": (_manifest_edit(lambda m: m.update(public_key=["x"])), ("manifest.public_key",)),
    "manifest keyid edited": (_manifest_edit(lambda m: m.update(keyid="0" * 64)), ("manifest.key",)),
    "manifest chain_root edited": (_manifest_edit(lambda m: m.update(chain_root="0" * 64)), ("manifest.chain_root",)),
    "manifest checkpoint edited": (_manifest_edit(lambda m: m.update(checkpoint=[])), ("checkpoint.signature",)),
    "manifest unknown field": (_manifest_edit(lambda m: m.update(trusted=True)), ("manifest.fields",)),
    "manifest field removed": (_manifest_edit(lambda m: m.pop("tool_version")), ("manifest.fields", "manifest.tool")),
    "extra file at the top": (lambda b: (b / "notes.txt").write_text("hi"), ("files.inventory",)),
    "extra file in output/": (lambda b: (b / "output/extra.bin").write_bytes(b"\0"), ("files.inventory",)),
    "master truncated": (lambda b: _truncate(b, "output/master.mkv"), ("files.digests", "frames.master_decode")),
    "chain truncated mid-record": (lambda b: _truncate(b, "chain.jsonl"), ("chain.format", "chain.signatures")),
    "chain with a blank line": (
        lambda b: (b / "chain.jsonl").write_bytes((b / "chain.jsonl").read_bytes().replace(b"\n", b"\n\n", 1)),
        ("chain.format",),
    ),
    "empty directory in place of preview.mp4": (lambda b: _dir_in_place(b, "output/preview.mp4", False), ("files.inventory",)),
    "directory with a file in place of master.mkv": (
        lambda b: _dir_in_place(b, "output/master.mkv", True),
        ("files.inventory", "files.digests", "frames.master_decode"),
    ),
    "50 copies of a record": (
        lambda b: (b / "chain.jsonl").write_bytes((b / "chain.jsonl").read_bytes().splitlines(keepends=True)[2] * 50),
        ("chain.links",),
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bundle_is_a_clean_fail(name: str, tiny: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = _copy(tiny, tmp_path)
    tamper, expected = HOSTILE[name]
    tamper(bundle)
    proc, wall = _verify(bundle, keypair[1])
    assert_clean_fail(proc, *expected)
    assert wall < LIMIT_S


def test_untouched_bundle_passes_every_check_before_the_report(tiny: Path, keypair: tuple[Path, Path]) -> None:
    """The hostile cases above fail for what was done to them, not because verify fails everything."""
    checks = bundle_checks(tiny, load_public_key(keypair[1]))
    assert checks and all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    names = {c.name for c in checks}
    assert {"manifest.public_key", "manifest.chain_root", "manifest.tool", "manifest.fields", "manifest.format"} <= names


def test_huge_framehash_fails_fast(carphone_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = _copy(carphone_bundle, tmp_path)
    path = bundle / "input.framehash"
    line = path.read_text().splitlines()[-1].encode() + b"\n"
    with open(path, "wb") as fh:
        for _ in range(20):
            fh.write(line * 100_000)  # 2 million real-looking lines
    proc, wall = _verify(bundle, keypair[1])
    assert_clean_fail(proc, "files.digests", "frames.input_root")
    assert "bytes, the signed record says" in proc.stdout
    assert wall < 5.0, wall


def test_signed_size_bounds_the_framehash(tiny: Path, keypair: tuple[Path, Path]) -> None:
    """Even a signed entry cannot make verify read a framehash larger than its signed frames allow."""
    entry = {"name": "input.framehash", "size": 10**9, "sha256": "0" * 64}
    with pytest.raises(UnsafeFile, match="bytes"):
        read_framehash(tiny, entry, 4)


def _peak_rss_kib(code: str) -> tuple[int, float, str]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code + "\nimport resource; print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
    )
    assert proc.returncode == 0, proc.stderr
    rss = int(re.search(r"^RSS (\d+)$", proc.stdout, re.M).group(1))  # type: ignore[union-attr]
    return rss, time.monotonic() - t0, proc.stdout


def test_chain_of_200k_copies_fails_in_seconds_with_bounded_memory(tiny: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = _copy(tiny, tmp_path)
    lines = (bundle / "chain.jsonl").read_bytes().splitlines(keepends=True)
    smallest = min(lines, key=len)
    (bundle / "chain.jsonl").write_bytes(smallest * 200_000)
    proc, wall = _verify(bundle, keypair[1])
    assert_clean_fail(proc, "chain.format")
    assert "more than 10000 lines" in proc.stdout
    assert wall < 10.0, wall
    baseline, _, _ = _peak_rss_kib("import forensic_vsr.audit.verify")
    rss, took, out = _peak_rss_kib(
        "from pathlib import Path\nfrom forensic_vsr.audit.keys import load_public_key\n"
        "from forensic_vsr.audit.verify import bundle_checks\n"
        f"c = bundle_checks(Path({str(bundle)!r}), load_public_key(Path({str(keypair[1])!r})))\n"
        "print('FAILED', sorted({x.name for x in c if not x.ok}))"
    )
    assert "chain.format" in out
    assert rss - baseline < 64 * 1024, f"peak RSS grew {(rss - baseline) // 1024} MiB over the import baseline"
    assert took < 10.0


def test_chain_line_over_the_record_cap(tiny: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = _copy(tiny, tmp_path)
    with open(bundle / "chain.jsonl", "ab") as fh:
        fh.write(b"[" + b"0," * (17 << 20) + b"0]\n")
    proc, wall = _verify(bundle, keypair[1])
    assert_clean_fail(proc, "chain.format")
    assert wall < LIMIT_S


def test_evidence_fifo_and_wrong_size(tiny: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "evidence.mkv"
    os.mkfifo(fifo)
    proc, _ = _verify(tiny, keypair[1], "--evidence", fifo)
    assert_clean_fail(proc, "evidence.sha256", "evidence.frames")
    assert "FIFO" in proc.stdout
    big = tmp_path / "big.mkv"
    big.write_bytes(b"\0" * 4096)
    proc, _ = _verify(tiny, keypair[1], "--evidence", big)
    assert_clean_fail(proc, "evidence.sha256")
    assert "the recorded evidence is" in proc.stdout


def test_checks_stream_as_they_complete(tiny: Path, keypair: tuple[Path, Path]) -> None:
    """The first check is yielded before the bundle's videos are decoded."""
    checks = verify_bundle(tiny, load_public_key(keypair[1]))
    first = next(checks)
    assert first.name == "chain.signatures" and first.ok
    rest = list(checks)
    assert rest[-1].name.startswith("maps.")


# --- format-1 golden bundles: strictness does not fail an old bundle for being old --------------


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("golden")
    with tarfile.open(GOLDEN) as tar:
        tar.extractall(d, filter="data")
    return d


def test_golden_refusal_tool_version_is_not_believed_but_not_failed(golden: Path) -> None:
    key = load_public_key(golden / "examiner.key.pub")
    checks = {c.name: c for c in bundle_checks(golden / "format1-refused", key)}
    assert all(c.ok for c in checks.values()), [c.line() for c in checks.values() if not c.ok]
    assert "not relied on" in checks["manifest.tool"].reason
    m = json.loads((golden / "format1-refused" / "manifest.json").read_text())
    m["public_key"] = _other_pem()
    (golden / "format1-refused" / "manifest.json").write_text(json.dumps(m))
    try:
        assert "manifest.public_key" in {c.name for c in bundle_checks(golden / "format1-refused", key) if not c.ok}
    finally:
        m["public_key"] = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def test_golden_refusal_cannot_be_proven(golden: Path) -> None:
    proc = run_fvsr("prove", golden / "format1-refused", "--frame", "0", "--pubkey", golden / "examiner.key.pub", timeout=LIMIT_S)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --- fvsr prove and frame proofs -------------------------------------------------------------------

PROVE_HOSTILE: dict[str, Callable[[Path], None]] = {
    "manifest []": lambda b: (b / "manifest.json").write_text("[]"),
    "FIFO output.framehash": lambda b: _mkfifo(b / "output.framehash"),
    "output.framehash symlink to /dev/zero": lambda b: _symlink(b / "output.framehash", "/dev/zero"),
    "chain nested 100,000 deep": lambda b: _chain_line(b, 0, _deep(100_000)),
    "manifest chain_root edited": _manifest_edit(lambda m: m.update(chain_root="0" * 64)),
}


@pytest.mark.parametrize("name", sorted(PROVE_HOSTILE))
def test_prove_on_hostile_bundle_is_one_error_line(name: str, tiny: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = _copy(tiny, tmp_path)
    PROVE_HOSTILE[name](bundle)
    proc = run_fvsr("prove", bundle, "--frame", "1", "--pubkey", keypair[1], timeout=LIMIT_S)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("fvsr: error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture(scope="module")
def proof_json(tiny: Path, keypair: tuple[Path, Path]) -> dict:  # type: ignore[type-arg]
    return make_proof(tiny, 2, load_public_key(keypair[1]))


def _proof_in_child(path: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    """verify_proof_file in a fresh interpreter, so that a hang is a timeout, not a stuck suite."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom forensic_vsr.audit.keys import load_public_key\n"
        "from forensic_vsr.audit.proof import verify_proof_file\n"
        f"checks = verify_proof_file(Path({str(path)!r}), load_public_key(Path({str(pub)!r})))\n"
        "print('\\n'.join(c.line() for c in checks)); sys.exit(0 if all(c.ok for c in checks) else 1)"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=LIMIT_S)


ProofMaker = Callable[[Path, dict, list[str]], None]  # type: ignore[type-arg]
PROOF_HOSTILE: dict[str, tuple[ProofMaker, str]] = {
    "FIFO": (lambda p, _j, _c: os.mkfifo(p), "proof.file"),
    "symlink to /dev/zero": (lambda p, _j, _c: p.symlink_to("/dev/zero"), "proof.file"),
    "directory": (lambda p, _j, _c: p.mkdir(), "proof.file"),
    "[]": (lambda p, _j, _c: p.write_text("[]"), "proof.format"),
    "null": (lambda p, _j, _c: p.write_text("null"), "proof.format"),
    '"x"': (lambda p, _j, _c: p.write_text('"x"'), "proof.format"),
    "1e999": (lambda p, _j, _c: p.write_text("1e999"), "proof.file"),
    "nested 100,000 deep": (lambda p, _j, _c: p.write_bytes(_deep(100_000)), "proof.file"),
    "truncated": (lambda p, j, _c: p.write_text(json.dumps(j)[:200]), "proof.file"),
    "unknown field": (lambda p, j, _c: p.write_text(json.dumps({**j, "trust_me": True})), "proof.format"),
    "index a string": (lambda p, j, _c: p.write_text(json.dumps({**j, "frame": {**j["frame"], "index": "2"}})), "proof.format"),
    "inclusion not hex": (
        lambda p, j, _c: p.write_text(json.dumps({**j, "frames_tree": {**j["frames_tree"], "inclusion": ["zz" * 32]}})),
        "proof.format",
    ),
    "step record of another type": (
        lambda p, j, c: p.write_text(json.dumps({**j, "step_record": {"index": 0, "line": c[0]}})),
        "proof.step_in_chain",
    ),
}


@pytest.mark.parametrize("name", sorted(PROOF_HOSTILE))
def test_hostile_proof_is_a_clean_fail(
    name: str,
    tiny: Path,
    proof_json: dict,  # type: ignore[type-arg]
    keypair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    path = tmp_path / "proof.json"
    make, expected = PROOF_HOSTILE[name]
    make(path, proof_json, [ln.decode() for ln in (tiny / "chain.jsonl").read_bytes().splitlines()])
    proc = _proof_in_child(path, keypair[1])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and CRASHED not in proc.stdout, proc.stdout + proc.stderr
    assert re.search(rf"^FAIL\s+{re.escape(expected)}: ", proc.stdout, re.M), proc.stdout


def test_genuine_proof_passes_from_file(proof_json: dict, keypair: tuple[Path, Path], tmp_path: Path) -> None:  # type: ignore[type-arg]
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof_json))
    proc = _proof_in_child(path, keypair[1])
    assert proc.returncode == 0 and "PASS       proof.frame_inclusion: frame 2" in proc.stdout, proc.stdout


# --- hypothesis: mutated files give FAIL checks, never an exception ------------------------------------


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for pos, kind, blob in edits:
        at = pos % (len(out) + 1)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << (pos % 8)
        elif kind == 1:
            out[at:at] = blob
        else:
            del out[at : at + len(blob) + 1]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 2), st.binary(max_size=8)), min_size=1, max_size=4)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_no_crash(checks: list[Check], changed: bool) -> None:
    assert all(CRASHED not in c.reason for c in checks), [c.line() for c in checks if CRASHED in c.reason]
    if changed:
        assert any(not c.ok for c in checks)


@pytest.fixture(scope="module")
def fuzz_bundle(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy(tiny, tmp_path_factory.mktemp("fuzz"))


def _fuzz_file(bundle: Path, name: str, edits: list[tuple[int, int, bytes]], key: object) -> None:
    path = bundle / name
    original = path.read_bytes()
    mutated = _mutate(original, edits)
    path.write_bytes(mutated)
    try:
        checks = bundle_checks(bundle, key)  # type: ignore[arg-type]
    finally:
        path.write_bytes(original)
    # a manifest's insignificant whitespace may change without consequence; nothing else may
    significant = mutated != original and not (name == "manifest.json" and _same_json(original, mutated))
    _assert_no_crash(checks, significant)


def _same_json(a: bytes, b: bytes) -> bool:
    try:
        return bool(loads(a, "a") == loads(b, "b"))
    except UnsafeFile:
        return False


@FUZZ
@given(edits=EDITS)
def test_fuzz_manifest(fuzz_bundle: Path, keypair: tuple[Path, Path], edits: list[tuple[int, int, bytes]]) -> None:
    _fuzz_file(fuzz_bundle, "manifest.json", edits, load_public_key(keypair[1]))


@FUZZ
@given(edits=EDITS)
def test_fuzz_chain(fuzz_bundle: Path, keypair: tuple[Path, Path], edits: list[tuple[int, int, bytes]]) -> None:
    _fuzz_file(fuzz_bundle, "chain.jsonl", edits, load_public_key(keypair[1]))


@FUZZ
@given(edits=EDITS)
def test_fuzz_framehash(fuzz_bundle: Path, keypair: tuple[Path, Path], edits: list[tuple[int, int, bytes]]) -> None:
    _fuzz_file(fuzz_bundle, "output.framehash", edits, load_public_key(keypair[1]))


@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_framehash_parser_behind_a_matching_digest(fuzz_bundle: Path, data: bytes) -> None:
    """Even bytes whose digest matches (a signer's bug) parse to frame lines or an UnsafeFile."""
    import hashlib

    path = fuzz_bundle / "fuzz.framehash"
    path.write_bytes(data)
    try:
        read_framehash(fuzz_bundle, {"name": "fuzz.framehash", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}, 2)
    except UnsafeFile:
        pass
    finally:
        path.unlink()


@FUZZ
@given(edits=EDITS)
def test_fuzz_proof(proof_json: dict, keypair: tuple[Path, Path], tmp_path: Path, edits: list[tuple[int, int, bytes]]) -> None:  # type: ignore[type-arg]
    original = json.dumps(proof_json).encode()
    mutated = _mutate(original, edits)
    path = tmp_path / "p.json"
    path.write_bytes(mutated)
    try:
        proof = load_proof(path)
    except FvsrError:
        return
    checks = verify_proof(proof, load_public_key(keypair[1]))
    _assert_no_crash(checks, proof != proof_json)


@FUZZ
@given(
    obj=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8), lambda c: st.lists(c) | st.dictionaries(st.text(max_size=8), c)
    )
)
def test_fuzz_proof_shapes(obj: object, keypair: tuple[Path, Path]) -> None:
    checks = verify_proof(obj, load_public_key(keypair[1]))
    _assert_no_crash(checks, True)


def test_fuzz_chain_record_payloads_signed_by_the_key(fuzz_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    """Records whose payload is validly signed but of every wrong shape: FAIL lines, no crash."""
    from forensic_vsr.audit.keys import load_signer

    signer = load_signer(keypair[0], PASSPHRASE.encode(), "Test Examiner")
    key = load_public_key(keypair[1])
    bundle = _copy(fuzz_bundle, tmp_path)
    lines = (bundle / "chain.jsonl").read_bytes().splitlines()
    for payload in (b"[]", b"null", b'{"type": "step.run", "body": []}', b'{"seq": 2, "prev": null, "type": "output.write", "body": {}}'):
        env = dsse.sign(payload, dsse.RECORD_TYPE, signer.sign, signer.keyid)
        changed = [*lines[:2], dsse.canonical_json(env), *lines[3:]]
        (bundle / "chain.jsonl").write_bytes(b"".join(ln + b"\n" for ln in changed))
        checks = bundle_checks(bundle, key)
        _assert_no_crash(checks, True)
        view, _ = read_chain(bundle, key)
        assert len(view.lines) == len(lines)
