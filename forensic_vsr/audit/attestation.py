"""Format 2's step provenance on the wire: a standard in-toto attestation bound into the chain.

The examiner key signs the in-toto Statement v1 as a DSSE envelope of payloadType
`application/vnd.in-toto+json`; the envelope is one line of `attestations/<type>.intoto.jsonl`
(the in-toto bundle convention, readable as is by in-toto and SLSA tooling). The chain record of
that step carries the Statement as its body and, next to it, a reference to the sidecar: its
name, size and sha256, and the sha256 of the envelope's payload. The record's signature and hash
link thus fix the attestation's place in the chain; a verifier that knows nothing of our records
checks the sidecar with the recorded digests alone, without re-serialising any JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr import layout
from forensic_vsr.audit.checks import ChainView, Check
from forensic_vsr.audit.safe_read import RECORD_MAX_BYTES, UnsafeFile, loads, read_recorded
from forensic_vsr.integrity import dsse

ATTESTED_TYPES = frozenset({"step.run"})


def attestation_line(statement: dict[str, Any], sign: Callable[[bytes], bytes], key_id: str) -> tuple[bytes, bytes]:
    """(payload, jsonl line): the Statement's canonical JSON and its signed in-toto envelope."""
    payload = dsse.canonical_json(statement)
    return payload, dsse.canonical_json(dsse.sign(payload, dsse.INTOTO_TYPE, sign, key_id)) + b"\n"


def reference(name: str, payload: bytes, line: bytes) -> dict[str, Any]:
    """What the chain record says of its attestation."""
    return {
        "name": name,
        "sha256": hashlib.sha256(line).hexdigest(),
        "size": len(line),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }


def recorded_attestations(view: ChainView) -> list[dict[str, Any]]:
    """The attestation references of the signed records (file entries: name, sha256, size)."""
    return [p["attestation"] for p in view.payloads if p is not None and "attestation" in p]


def open_attestation(bundle: Path, ref: dict[str, Any], key: Ed25519PublicKey) -> bytes:
    """The in-toto Statement bytes of the sidecar `ref` names, if its size and sha256 are the
    recorded ones, it is one DSSE envelope line of payloadType in-toto signed by `key`, and the
    payload's sha256 is the recorded one. Raises UnsafeFile or dsse.EnvelopeError."""
    data = read_recorded(bundle, ref["name"], ref["size"], ref["sha256"], RECORD_MAX_BYTES)
    if not data.endswith(b"\n") or data.count(b"\n") != 1:
        raise UnsafeFile(f"{ref['name']} is not one JSON line ending in a newline")
    payload = dsse.open_envelope(loads(data[:-1], ref["name"]), key, dsse.INTOTO_TYPE)
    got = hashlib.sha256(payload).hexdigest()
    if got != ref["payload_sha256"]:
        raise UnsafeFile(f"{ref['name']}: the payload's sha256 is {got[:16]}…, the chain record binds {ref['payload_sha256'][:16]}…")
    return payload


def attestation_checks(bundle: Path, view: ChainView, key: Ed25519PublicKey, required: bool) -> Iterator[Check]:
    """One check over every record's attestation: each attested record type has one (when the
    format `required` them; none otherwise), each opens, and its Statement is the record's body."""
    problems: list[str] = []
    count = 0
    for i, p in enumerate(view.payloads):
        if p is None:
            continue
        ref = p.get("attestation")
        if not required:
            if ref is not None:
                problems.append(f"record {i} ({p['type']}) references an attestation, which this format does not define")
            continue
        if p["type"] not in ATTESTED_TYPES:
            if ref is not None:
                problems.append(f"record {i} ({p['type']}) references an attestation; only {', '.join(sorted(ATTESTED_TYPES))} do")
            continue
        if ref is None:
            problems.append(f"record {i} ({p['type']}) references no in-toto attestation")
            continue
        if ref["name"] != layout.attestation(p["type"]):
            problems.append(f"record {i}: attestation {ref['name'][:60]!r}, expected {layout.attestation(p['type'])}")
            continue
        try:
            payload = open_attestation(bundle, ref, key)
        except (UnsafeFile, dsse.EnvelopeError) as exc:
            problems.append(f"record {i}: {str(exc)[:200]}")
            continue
        if payload != dsse.canonical_json(p["body"]):
            problems.append(f"record {i}: {ref['name']} attests another Statement than the chain record's body")
            continue
        count += 1
    if problems:
        yield Check.failed("step.attestation", "; ".join(problems[:5]))
    elif required:
        yield Check.passed(
            "step.attestation", f"{count} in-toto attestation(s) signed by the supplied key, each bound to its chain record by sha256"
        )
