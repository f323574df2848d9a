"""DSSE (Dead Simple Signing Envelope) v1 with Ed25519, and the canonical JSON we sign.

The signature covers PAE(payloadType, payload) = "DSSEv1" SP len(type) SP type SP len(payload)
SP payload, so a payload can never be re-read under another type."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

RECORD_TYPE = "application/vnd.forensic-vsr.record+json"
CHECKPOINT_TYPE = "application/vnd.forensic-vsr.checkpoint+json"  # format 1 only; format 2 signs a C2SP note
INTOTO_TYPE = "application/vnd.in-toto+json"  # an in-toto Statement v1 (in-toto attestation framework)


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8, no NaN. Verifiers never
    re-serialise: they check signatures over the exact payload bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def keyid(public_key: Ed25519PublicKey) -> str:
    """Our key id: SHA-256 of the raw 32-byte Ed25519 public key, hex (docs/bundle.md compares it
    with securesystemslib's and the C2SP note key ID). DSSE key ids are unsigned hints."""
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def sign(payload: bytes, payload_type: str, signer: Callable[[bytes], bytes], key_id: str) -> dict[str, Any]:
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id, "sig": base64.b64encode(signer(pae(payload_type, payload))).decode()}],
    }


class EnvelopeError(ValueError):
    """An envelope is malformed or its signature does not verify; the message says which."""


def open_envelope(envelope: Any, public_key: Ed25519PublicKey, payload_type: str) -> bytes:
    """Return the payload if `envelope` carries a valid signature by `public_key`.

    Only the auditor-supplied key counts: a signature under any other key id is ignored, and
    an envelope with none by this key fails."""
    if not isinstance(envelope, dict):
        raise EnvelopeError("envelope is not a JSON object")
    if envelope.get("payloadType") != payload_type:
        raise EnvelopeError(f"payloadType is {envelope.get('payloadType')!r}, expected {payload_type!r}")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = list(envelope["signatures"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError(f"envelope is malformed ({exc})") from None
    wanted = keyid(public_key)
    mine = [s for s in signatures if isinstance(s, dict) and s.get("keyid") == wanted]
    if not mine:
        found = sorted({str(s.get("keyid"))[:16] for s in signatures if isinstance(s, dict)})
        raise EnvelopeError(f"no signature by the supplied key {wanted[:16]}… (found key ids {found or 'none'})")
    for sig in mine:
        try:
            public_key.verify(base64.b64decode(sig["sig"], validate=True), pae(payload_type, payload))
            return payload
        except (InvalidSignature, KeyError, TypeError, ValueError):
            continue
    raise EnvelopeError(f"signature by key {wanted[:16]}… does not verify")
