"""Examiner keys and DSSE envelopes with real Ed25519."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import stat
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from forensic_vsr.audit.keys import load_public_key, load_signer
from forensic_vsr.errors import KeyUseError
from forensic_vsr.integrity import dsse
from tests.helpers import run_fvsr

GOLDEN = Path(__file__).parent / "golden"


def test_pae_matches_the_dsse_specification() -> None:
    """The DSSE v1 protocol's published example (secure-systems-lab/dsse, protocol.md)."""
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_our_envelope_verifies_with_securesystemslib(tmp_path: Path) -> None:
    """A chain record written by format 1 (golden bundle) verifies under securesystemslib's DSSE
    implementation with the examiner's public key, its default key id computed by securesystemslib.

    Key ids are an unauthenticated hint in DSSE (not part of the PAE): ours is SHA-256 of the raw
    Ed25519 key, securesystemslib's SHA-256 of its canonical key JSON (docs/keys.md), so the
    signature is presented under securesystemslib's id; under ours it is skipped, not accepted."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import Signature, SSlibKey

    with tarfile.open(GOLDEN / "format1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    public = load_public_key(tmp_path / "examiner.key.pub")
    ours = json.loads((tmp_path / "format1-lanczos-x2" / "chain.jsonl").read_text().splitlines()[0])
    key = SSlibKey.from_crypto(public)
    assert (key.keytype, key.scheme) == ("ed25519", "ed25519")
    assert key.keyid != dsse.keyid(public) == ours["signatures"][0]["keyid"]
    envelope = Envelope.from_dict(copy.deepcopy(ours))
    assert envelope.pae() == dsse.pae(ours["payloadType"], base64.b64decode(ours["payload"]))
    with pytest.raises(VerificationError):
        envelope.verify([key], 1)
    (sig,) = envelope.signatures.values()
    envelope.signatures = {key.keyid: Signature(key.keyid, sig.signature)}
    assert envelope.verify([key], 1) == {key.keyid: key}
    tampered = envelope.payload.replace(b'"seq":0', b'"seq":1')
    assert tampered != envelope.payload
    envelope.payload = tampered
    with pytest.raises(VerificationError):
        envelope.verify([key], 1)


def test_keys_generate_cli(tmp_path: Path) -> None:
    key = tmp_path / "alice.key"
    proc = run_fvsr("keys", "generate", "--out", key, "--name", "Alice", check=True)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert json.loads(key.read_bytes())["kdf"]["name"] == "scrypt"
    pub = load_public_key(Path(str(key) + ".pub"))
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert hashlib.sha256(raw).hexdigest() in proc.stdout
    again = run_fvsr("keys", "generate", "--out", key)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_wrong_passphrase_is_refused(keypair) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KeyUseError, match="wrong passphrase"):
        load_signer(keypair[0], b"not-the-passphrase", "x")


def test_readable_key_file_is_refused(tmp_path: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "k"
    copy.write_bytes(keypair[0].read_bytes())
    copy.chmod(0o644)
    with pytest.raises(KeyUseError, match="readable by others"):
        load_signer(copy, b"test-passphrase-123", "x")


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.key"
    path.write_bytes(
        k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"test-passphrase-123")
        )
    )
    path.chmod(0o600)
    with pytest.raises(KeyUseError, match="not Ed25519"):
        load_signer(path, b"test-passphrase-123", "x")
    proc = run_fvsr("enhance", "nothing.mp4", "-o", tmp_path / "b", "--key", path)
    assert proc.returncode != 0 and "not Ed25519" in proc.stderr and "Traceback" not in proc.stderr


def test_unencrypted_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.key"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    with pytest.raises(KeyUseError, match="not encrypted"):
        load_signer(path, b"test-passphrase-123", "x")


@given(st.binary(max_size=200), st.integers(0, 199), st.integers(1, 255))
def test_any_flipped_payload_byte_breaks_the_signature(payload: bytes, pos: int, flip: int) -> None:
    key = _KEY
    env = dsse.sign(payload, dsse.RECORD_TYPE, key.sign, dsse.keyid(key.public_key()))
    assert dsse.open_envelope(env, key.public_key(), dsse.RECORD_TYPE) == payload
    if payload:
        import base64

        bad = bytearray(payload)
        bad[pos % len(payload)] ^= flip
        forged = {**env, "payload": base64.b64encode(bytes(bad)).decode()}
        with pytest.raises(dsse.EnvelopeError):
            dsse.open_envelope(forged, key.public_key(), dsse.RECORD_TYPE)
    with pytest.raises(dsse.EnvelopeError, match="payloadType"):
        dsse.open_envelope(env, key.public_key(), dsse.CHECKPOINT_TYPE)


_KEY = Ed25519PrivateKey.generate()


def test_signature_by_another_key_is_not_accepted() -> None:
    other = Ed25519PrivateKey.generate()
    env = dsse.sign(b"{}", dsse.RECORD_TYPE, other.sign, dsse.keyid(other.public_key()))
    with pytest.raises(dsse.EnvelopeError, match="no signature by the supplied key"):
        dsse.open_envelope(env, _KEY.public_key(), dsse.RECORD_TYPE)
    # claiming the right key id does not help either
    env["signatures"][0]["keyid"] = dsse.keyid(_KEY.public_key())
    with pytest.raises(dsse.EnvelopeError, match="does not verify"):
        dsse.open_envelope(env, _KEY.public_key(), dsse.RECORD_TYPE)


def test_canonical_json_is_stable() -> None:
    assert dsse.canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()
    assert json.loads(dsse.canonical_json({"x": 0.1})) == {"x": 0.1}
