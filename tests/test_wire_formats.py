"""Bundle format 2's standard wire formats, checked by independent implementations.

step.run is an in-toto attestation on the wire (DSSE, payloadType application/vnd.in-toto+json)
that securesystemslib verifies and in_toto_attestation parses and validates; the chain binds it
by sha256. The checkpoint is a C2SP tlog-checkpoint signed note, parsed and verified here by a
re-implementation of c2sp.org/signed-note and c2sp.org/tlog-checkpoint (stdlib + cryptography).
Every bundle is made by the real CLI; forgeries are signed with the real examiner key."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from forensic_vsr.audit.keys import Signer, load_public_key, load_signer
from forensic_vsr.integrity import dsse, signed_note
from tests.conftest import PASSPHRASE, run_fvsr

INTOTO = "application/vnd.in-toto+json"
ATTESTATION = "attestations/step.run.intoto.jsonl"
EM_DASH = "\u2014"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, carphone_distorted: Path, keypair: tuple[Path, Path], ffmpeg: str) -> Path:
    """Three evidence frames, one evidential lanczos x2 bundle and one signed refusal."""
    d = tmp_path_factory.mktemp("wire")
    evidence = d / "evidence.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-i", carphone_distorted, "-frames:v", "3", "-c", "copy", evidence], check=True)
    run_fvsr("enhance", evidence, "-o", d / "ran", "--key", keypair[0], "--mode", "evidential", "-q", check=True)
    refused = run_fvsr("enhance", evidence, "-o", d / "refused", "--key", keypair[0], "--model", "perceptual-sr-x4", "--scale", "4")
    assert refused.returncode != 0 and (d / "refused" / "manifest.json").is_file(), refused.stderr
    return d


def _copy(made: Path, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(made / name, tmp_path / name))


def _verify(bundle: Path, pub: Path) -> dict[str, str]:
    """{check name: status} of `fvsr verify` (the last status of a name wins)."""
    proc = run_fvsr("verify", bundle, "--pubkey", pub)
    statuses = {name: status for status, name in re.findall(r"^(PASS|FAIL|INCOMPLETE)\s+(\S+):", proc.stdout, re.M)}
    assert statuses and (proc.returncode == 0) == all(s == "PASS" for s in statuses.values()), proc.stdout + proc.stderr
    return statuses


def _lines(bundle: Path) -> list[bytes]:
    return (bundle / "chain.jsonl").read_bytes().splitlines()


def _payload(line: bytes) -> dict[str, Any]:
    return json.loads(base64.b64decode(json.loads(line)["payload"]))


def _signer(keypair: tuple[Path, Path]) -> Signer:
    return load_signer(keypair[0], PASSPHRASE.encode(), "Test Examiner")


# --- an independent C2SP signed-note / tlog-checkpoint reader, written from the specs ---------


def _spec_key_id(name: str, public: Ed25519PublicKey) -> bytes:
    """signed-note: key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 key)[:4]."""
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + public.public_bytes(Encoding.Raw, PublicFormat.Raw)).digest()[:4]


def _spec_open(note: str, public: Ed25519PublicKey) -> tuple[str, list[str], str]:
    """(note text, its lines, key name) of a checkpoint note with one Ed25519 signature line."""
    text, sep, sigs = note.rpartition("\n\n")
    assert sep and note.endswith("\n")
    text += "\n"
    (sig_line,) = sigs[:-1].split("\n")
    m = re.fullmatch(EM_DASH + r" ([^\s+]+) ([A-Za-z0-9+/]+=*)", sig_line)
    assert m, sig_line
    name, blob = m.group(1), base64.b64decode(m.group(2), validate=True)
    assert len(blob) == 4 + 64 and blob[:4] == _spec_key_id(name, public)
    public.verify(blob[4:], text.encode())  # raises InvalidSignature
    return text, text.split("\n")[:-1], name


def _rfc9162_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _rfc9162_root(leaves[:k]) + _rfc9162_root(leaves[k:])).digest()


def test_signed_note_matches_the_published_example() -> None:
    """The verifier key and note of c2sp.org/signed-note's example verify with our code."""
    vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    name, kid, material = vkey.split("+")
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(material)[1:])
    assert signed_note.key_id(name, public).hex() == kid == _spec_key_id(name, public).hex()
    assert signed_note.verifier_key(name, public) == vkey
    note = (
        "This is an example message.\n\n"
        f"{EM_DASH} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
    )
    assert signed_note.open_note(note, name, public) == "This is an example message.\n"
    with pytest.raises(signed_note.NoteError, match="does not verify"):
        signed_note.open_note(note.replace("example message", "example massage"), name, public)
    with pytest.raises(signed_note.NoteError, match="no signature by key name"):
        signed_note.open_note(note, "example.com/bar", public)


_NOTE_KEY = Ed25519PrivateKey.generate()
_NOTE = signed_note.sign_note(
    signed_note.Checkpoint("example.invalid/log", 7, bytes(range(32)), ("format x",)).to_text(),
    "example.invalid/log",
    _NOTE_KEY.public_key(),
    _NOTE_KEY.sign,
)


@settings(max_examples=300)
@given(st.integers(0, len(_NOTE.encode()) - 1), st.integers(1, 255))
def test_any_flipped_note_byte_is_refused(pos: int, flip: int) -> None:
    data = bytearray(_NOTE.encode())
    data[pos] ^= flip
    try:
        forged = data.decode()
    except UnicodeDecodeError:
        return  # not UTF-8: not a note at all
    with pytest.raises(signed_note.NoteError):
        signed_note.Checkpoint.from_text(signed_note.open_note(forged, "example.invalid/log", _NOTE_KEY.public_key()))


def test_checkpoint_is_a_c2sp_signed_note(made: Path, keypair: tuple[Path, Path]) -> None:
    """Line by line, as the specs say: origin, decimal size, base64 RFC 9162 root over the records
    (leaf data = SHA-256 of each chain line), extension lines signing format/tool/tool_version,
    a blank line, one em-dash signature line whose 4-byte key ID is the spec's."""
    public = load_public_key(keypair[1])
    for name in ("ran", "refused"):
        manifest = json.loads((made / name / "manifest.json").read_text())
        note = manifest["checkpoint"]
        text, lines, key_name = _spec_open(note, public)
        chain = _lines(made / name)
        origin = "forensic-vsr.invalid/chain/" + hashlib.sha256(chain[0]).hexdigest()
        assert lines[0] == key_name == origin
        assert lines[1] == str(len(chain)) and not lines[1].startswith("0")
        root = _rfc9162_root([hashlib.sha256(line).digest() for line in chain])
        assert lines[2] == base64.b64encode(root).decode() and manifest["chain_root"] == root.hex()
        assert lines[3:] == ["format forensic-vsr-bundle/3", "tool forensic-vsr", f"tool_version {manifest['tool_version']}"]
        assert note == text + "\n" + f"{EM_DASH} {key_name} " + note.rsplit(" ", 1)[1]
        assert not any(ord(c) < 0x20 and c != "\n" for c in note)


def _edit_manifest(bundle: Path, edit: Any) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _resign_note(manifest: dict[str, Any], signer: Signer, name: str, text: str | None = None) -> None:
    """Sign the note's text (or `text`) again with the examiner key under key name `name`."""
    body = text if text is not None else manifest["checkpoint"].rpartition("\n\n")[0] + "\n"
    blob = _spec_key_id(name, signer.public_key) + signer.sign(body.encode())
    manifest["checkpoint"] = f"{body}\n{EM_DASH} {name} {base64.b64encode(blob).decode()}\n"


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("flipped root byte", "checkpoint.signature"),
        ("flipped signature byte", "checkpoint.signature"),
        ("right key, wrong key name", "checkpoint.signature"),
        ("right key, another chain's origin", "checkpoint.signature"),
        ("unsigned tool_version edited", "checkpoint.chain"),
        ("re-signed note states one record less", "checkpoint.chain"),
    ],
)
def test_checkpoint_tampering_fails(made: Path, keypair: tuple[Path, Path], tmp_path: Path, case: str, expect: str) -> None:
    signer = _signer(keypair)
    for name in ("ran", "refused"):
        bundle = _copy(made, name, tmp_path / name)
        origin = "forensic-vsr.invalid/chain/" + hashlib.sha256(_lines(bundle)[0]).hexdigest()

        def edit(m: dict[str, Any], origin: str = origin) -> None:
            note: str = m["checkpoint"]
            lines = note.split("\n")
            if case == "flipped root byte":
                lines[2] = ("B" if lines[2][0] != "B" else "C") + lines[2][1:]
            elif case == "flipped signature byte":
                sig = lines[-2]
                lines[-2] = sig[:-6] + ("A" if sig[-6] != "A" else "B") + sig[-5:]
            elif case == "right key, wrong key name":
                _resign_note(m, signer, "forensic-vsr.invalid/examiner")
                return
            elif case == "right key, another chain's origin":
                other = origin[:-1] + ("0" if origin[-1] != "0" else "1")
                _resign_note(m, signer, other, note.rpartition("\n\n")[0].replace(origin, other) + "\n")
                return
            elif case == "unsigned tool_version edited":
                m["tool_version"] = "9.9.9"
                return
            else:
                text = note.rpartition("\n\n")[0] + "\n"
                size = text.split("\n")[1]
                _resign_note(m, signer, origin, text.replace(f"\n{size}\n", f"\n{int(size) - 1}\n", 1))
                return
            m["checkpoint"] = "\n".join(lines)

        _edit_manifest(bundle, edit)
        got = _verify(bundle, keypair[1])
        assert got[expect] == "FAIL", (name, case, got)
        assert got["chain.signatures"] == got["chain.links"] == "PASS"


# --- step.run: an in-toto attestation on the wire, bound into the chain ------------------------


def _attestation(bundle: Path) -> dict[str, Any]:
    line = (bundle / ATTESTATION).read_bytes()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    envelope: dict[str, Any] = json.loads(line)
    return envelope


def test_step_attestation_verifies_with_securesystemslib(made: Path, keypair: tuple[Path, Path]) -> None:
    """securesystemslib's DSSE verifies the step attestation with the examiner's key under its own
    key id (DSSE key ids are unsigned hints: ours is presented there under securesystemslib's)."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import Signature, SSlibKey

    public = load_public_key(keypair[1])
    ours = _attestation(made / "ran")
    assert ours["payloadType"] == INTOTO and ours["signatures"][0]["keyid"] == dsse.keyid(public)
    key = SSlibKey.from_crypto(public)
    envelope = Envelope.from_dict(copy.deepcopy(ours))
    (sig,) = envelope.signatures.values()
    envelope.signatures = {key.keyid: Signature(key.keyid, sig.signature)}
    assert envelope.verify([key], 1) == {key.keyid: key}
    assert json.loads(envelope.payload)["_type"] == "https://in-toto.io/Statement/v1"
    forged = Envelope.from_dict(copy.deepcopy(ours))
    forged.signatures = {key.keyid: Signature(key.keyid, sig.signature)}
    forged.payload = forged.payload.replace(b'"tree_size":3', b'"tree_size":4')
    assert forged.payload != envelope.payload
    with pytest.raises(VerificationError):
        forged.verify([key], 1)
    forged = Envelope.from_dict(copy.deepcopy(ours))
    forged.signatures = {key.keyid: Signature(key.keyid, sig.signature)}
    forged.payload_type = "application/vnd.forensic-vsr.record+json"
    with pytest.raises(VerificationError):
        forged.verify([key], 1)


def test_statement_validates_with_in_toto_attestation(made: Path) -> None:
    """in_toto_attestation parses the payload as a Statement v1 (unknown fields refused), its
    validator accepts it, the SLSA Provenance v1 proto takes the predicate, and the subjects are
    the bundle's files; the same Statement with a subject lacking its digest is rejected."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    payload = base64.b64decode(_attestation(made / "ran")["payload"])
    statement = Statement.copy_from_pb(json_format.Parse(payload, statement_pb2.Statement()))
    statement.validate()
    assert statement.pb.predicate_type == "https://slsa.dev/provenance/v1"
    predicate = json_format.ParseDict(json_format.MessageToDict(statement.pb.predicate), provenance_pb2.Provenance())
    assert predicate.build_definition.external_parameters["mode"] == "evidential"
    assert predicate.run_details.builder.id.startswith("https://forensic-vsr.invalid/fvsr@")
    subjects = {s.name: dict(s.digest) for s in statement.pb.subject}
    master = made / "ran" / "output" / "master.mkv"
    assert subjects["output/master.mkv"] == {"sha256": hashlib.sha256(master.read_bytes()).hexdigest()}
    assert set(subjects["frames:output/master.mkv"]) == {"rfc9162-sha256"}
    broken = json.loads(payload)
    del broken["subject"][0]["digest"]
    bad = Statement.copy_from_pb(json_format.Parse(json.dumps(broken), statement_pb2.Statement()))
    with pytest.raises(ValueError, match="digest required"):
        bad.validate()


def test_chain_record_binds_the_attestation(made: Path) -> None:
    """The step.run record (ours, hash-linked) references the attestation by file sha256 and
    payload sha256, and its body is the attested Statement."""
    bundle = made / "ran"
    lines = _lines(bundle)
    (i,) = [n for n, line in enumerate(lines) if _payload(line)["type"] == "step.run"]
    record = _payload(lines[i])
    assert record["seq"] == i and record["prev"] == hashlib.sha256(lines[i - 1]).hexdigest()
    line = (bundle / ATTESTATION).read_bytes()
    payload = base64.b64decode(json.loads(line)["payload"])
    assert record["attestation"] == {
        "name": ATTESTATION,
        "sha256": hashlib.sha256(line).hexdigest(),
        "size": len(line),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    assert json.loads(payload) == record["body"]
    assert [("attestation" in _payload(x)) for x in lines] == [n == i for n in range(len(lines))]


def _forge_chain(bundle: Path, signer: Signer, edit: Any) -> None:
    """Edit the step.run record and re-sign it and every later record (links recomputed) and the
    checkpoint with the examiner key: only what `edit` broke can fail."""
    lines = _lines(bundle)
    payloads = [_payload(line) for line in lines]
    start = next(n for n, p in enumerate(payloads) if p["type"] == "step.run")
    edit(payloads[start])
    for n in range(start, len(lines)):
        payloads[n]["prev"] = hashlib.sha256(lines[n - 1]).hexdigest()
        lines[n] = dsse.canonical_json(dsse.sign(dsse.canonical_json(payloads[n]), dsse.RECORD_TYPE, signer.sign, signer.keyid))
    (bundle / "chain.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    root = _rfc9162_root([hashlib.sha256(line).digest() for line in lines])

    def note(m: dict[str, Any]) -> None:
        text = m["checkpoint"].rpartition("\n\n")[0] + "\n"
        parts = text.split("\n")
        parts[2] = base64.b64encode(root).decode()
        m["chain_root"] = root.hex()
        _resign_note(m, signer, parts[0], "\n".join(parts))

    _edit_manifest(bundle, note)


def _write_attestation(bundle: Path, statement: bytes, key: Ed25519PrivateKey, keyid: str) -> dict[str, Any]:
    line = dsse.canonical_json(dsse.sign(statement, INTOTO, key.sign, keyid)) + b"\n"
    (bundle / ATTESTATION).write_bytes(line)
    return {"sha256": hashlib.sha256(line).hexdigest(), "size": len(line), "payload_sha256": hashlib.sha256(statement).hexdigest()}


@pytest.mark.parametrize(
    "case", ["attestation signed by another key", "attestation of another Statement", "payload digest not bound", "reference removed"]
)
def test_attestation_tampering_fails(made: Path, keypair: tuple[Path, Path], tmp_path: Path, case: str) -> None:
    """Each forgery keeps chain and checkpoint valid (re-signed with the examiner key) and the
    sidecar's file digest the recorded one: the attestation check alone must catch it."""
    signer = _signer(keypair)
    bundle = _copy(made, "ran", tmp_path)
    statement = base64.b64decode(_attestation(bundle)["payload"])
    if case == "attestation signed by another key":
        other = Ed25519PrivateKey.generate()
        ref = _write_attestation(bundle, statement, other, signer.keyid)
    elif case == "attestation of another Statement":
        changed = statement.replace(b'"mode":"evidential"', b'"mode":"investigative"')
        assert changed != statement
        ref = _write_attestation(bundle, changed, signer.private_key, signer.keyid)
    else:
        ref = {}
    if case == "payload digest not bound":
        _forge_chain(bundle, signer, lambda p: p["attestation"].update(payload_sha256="0" * 64))
    elif case == "reference removed":
        _forge_chain(bundle, signer, lambda p: p.pop("attestation"))
        (bundle / ATTESTATION).unlink()
        (bundle / "attestations").rmdir()
    else:
        _forge_chain(bundle, signer, lambda p: p["attestation"].update(ref))
    got = _verify(bundle, keypair[1])
    assert got["step.attestation"] == "FAIL", got
    for name in ("chain.signatures", "chain.links", "checkpoint.signature", "checkpoint.chain", "files.inventory", "files.digests"):
        assert got[name] == "PASS", (name, got)


def test_tampered_sidecar_or_moved_record_fails(made: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    """Without the key: a flipped byte in the attestation fails; so does the step.run record
    moved one place (its sequence number and previous digest no longer fit)."""
    bundle = _copy(made, "ran", tmp_path / "a")
    data = bytearray((bundle / ATTESTATION).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / ATTESTATION).write_bytes(bytes(data))
    got = _verify(bundle, keypair[1])
    assert got["files.digests"] == "FAIL" and got["step.attestation"] == "FAIL"
    bundle = _copy(made, "ran", tmp_path / "b")
    lines = _lines(bundle)
    lines[1], lines[2] = lines[2], lines[1]
    (bundle / "chain.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    got = _verify(bundle, keypair[1])
    assert got["chain.links"] == "FAIL" and got["checkpoint.chain"] == "FAIL"


def test_refusal_signs_the_tool_version(made: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = _copy(made, "refused", tmp_path)
    got = _verify(bundle, keypair[1])
    assert all(s == "PASS" for s in got.values()) and "step.attestation" not in got
    _edit_manifest(bundle, lambda m: m.update(tool_version="0.0.1"))
    got = _verify(bundle, keypair[1])
    assert got["manifest.tool"] == "FAIL" and got["checkpoint.chain"] == "FAIL"


def test_format2_manifest_cannot_pass_as_format1(made: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = _copy(made, "ran", tmp_path)
    _edit_manifest(bundle, lambda m: m.update(format="forensic-vsr-bundle/1"))
    got = _verify(bundle, keypair[1])
    assert got["checkpoint.signature"] == "FAIL" and got["step.attestation"] == "FAIL"


def test_prove_and_verify_proof_check_the_note(made: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    proc = run_fvsr("prove", made / "ran", "--frame", "2", "--pubkey", keypair[1], check=True)
    proof = json.loads(proc.stdout)
    assert proof["format"] == "forensic-vsr-frame-proof/2"
    assert proof["chain"]["checkpoint"] == json.loads((made / "ran" / "manifest.json").read_text())["checkpoint"]
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    ok = run_fvsr("verify-proof", path, "--pubkey", keypair[1])
    assert ok.returncode == 0 and "FAIL" not in ok.stdout, ok.stdout
    note: str = proof["chain"]["checkpoint"]
    signer = _signer(keypair)
    forged_text = note.rpartition("\n\n")[0].replace("\ntool forensic-vsr\n", "\ntool other\n") + "\n"
    wrong_origin: dict[str, Any] = {}
    _resign_note(wrong_origin, signer, "example.invalid/log", "example.invalid/log" + forged_text[forged_text.index("\n") :])
    for checkpoint in (
        note.replace(note.split("\n")[2], base64.b64encode(b"\x00" * 32).decode()),
        wrong_origin["checkpoint"],
        {"payloadType": dsse.CHECKPOINT_TYPE, "payload": "", "signatures": []},
    ):
        path.write_text(json.dumps({**proof, "chain": {**proof["chain"], "checkpoint": checkpoint}}))
        bad = run_fvsr("verify-proof", path, "--pubkey", keypair[1])
        assert bad.returncode != 0 and "FAIL" in bad.stdout, bad.stdout
    with pytest.raises(InvalidSignature):
        _spec_open(wrong_origin["checkpoint"].replace("tool other", "tool forensic-vsr"), signer.public_key)


def test_golden_format2_reads_with_the_independent_checkers(tmp_path: Path) -> None:
    """The shipped format-2 golden bundle, not only today's output: its note passes the
    from-the-spec reader and its attestation securesystemslib, under the archived public key."""
    import tarfile

    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import Signature, SSlibKey

    with tarfile.open(Path(__file__).parent / "golden" / "format2.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    public = load_public_key(tmp_path / "examiner.key.pub")
    for name in ("format2-lanczos-x2", "format2-refused"):
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        _text, lines, key_name = _spec_open(manifest["checkpoint"], public)
        chain = _lines(tmp_path / name)
        assert key_name == lines[0] == "forensic-vsr.invalid/chain/" + hashlib.sha256(chain[0]).hexdigest()
        assert base64.b64decode(lines[2]) == _rfc9162_root([hashlib.sha256(line).digest() for line in chain])
        assert lines[3] == f"format {manifest['format']}" == "format forensic-vsr-bundle/2"
    envelope = Envelope.from_dict(_attestation(tmp_path / "format2-lanczos-x2"))
    key = SSlibKey.from_crypto(public)
    (sig,) = envelope.signatures.values()
    envelope.signatures = {key.keyid: Signature(key.keyid, sig.signature)}
    assert envelope.payload_type == INTOTO and envelope.verify([key], 1) == {key.keyid: key}
