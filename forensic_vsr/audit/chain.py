"""The audit chain: `chain.jsonl`, one DSSE envelope per line, each payload hash-linked to the
previous record and signed by the examiner key.

A record's digest is SHA-256 of its line (the canonical JSON of its envelope, without the
newline). The chain's RFC 9162 Merkle tree has one leaf per record whose data is that 32-byte
digest (leaf hash SHA-256(0x00 || digest)). The checkpoint is a C2SP tlog-checkpoint signed note
over that tree, its origin (and key name) naming this chain by its first record's digest.
A step's in-toto Statement is also written as a standard attestation (`attestation`).
Lines are appended with fsync, so a run killed at any point leaves a prefix of valid records.
`read_chain` reads a chain back as hostile input: bounded in bytes, line length and record
count, and it stops looking at records after a few problems.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr import layout
from forensic_vsr.audit.attestation import attestation_line, reference
from forensic_vsr.audit.checks import ChainView, Check
from forensic_vsr.audit.keys import Signer
from forensic_vsr.audit.safe_read import CHAIN_MAX_BYTES, CHAIN_MAX_RECORDS, RECORD_MAX_BYTES, UnsafeFile, loads, loads_object, read_lines
from forensic_vsr.audit.schemas import record_errors
from forensic_vsr.integrity import dsse, merkle, signed_note

CHAIN_FILE = "chain.jsonl"
PROBLEM_BUDGET = 5  # records with a bad signature or link before the rest are no longer looked at
RECORD_SCHEMA_ID = "https://forensic-vsr.invalid/record/v1"
ORIGIN_PREFIX = "forensic-vsr.invalid/chain/"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class ChainWriter:
    """Appends signed records to `path` (created empty, never truncated)."""

    def __init__(self, path: Path, signer: Signer, actor: str) -> None:
        self.path = Path(path)
        self.signer = signer
        self.actor = actor
        self.digests: list[str] = []
        self.bodies: dict[str, dict[str, Any]] = {}  # the first body of each record type, for the report
        self._fh = open(self.path, "xb")  # noqa: SIM115 - kept open for the run

    def append(self, record_type: str, body: dict[str, Any]) -> str:
        return self._append(record_type, body, {})

    def append_statement(self, record_type: str, statement: dict[str, Any]) -> str:
        """Append a record whose body is an in-toto Statement, first writing that Statement as a
        signed in-toto attestation beside the chain; the record references it by sha256."""
        payload, line = attestation_line(statement, self.signer.sign, self.signer.keyid)
        name = layout.attestation(record_type)
        path = self.path.parent / name
        path.parent.mkdir(exist_ok=True)
        with open(path, "xb") as fh:  # one attestation per record type: a second one is refused
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return self._append(record_type, statement, {"attestation": reference(name, payload, line)})

    def _append(self, record_type: str, body: dict[str, Any], extra: dict[str, Any]) -> str:
        payload = {
            "_type": RECORD_SCHEMA_ID,
            "seq": len(self.digests),
            "prev": self.digests[-1] if self.digests else None,
            "time": utc_now(),
            "actor": {"name": self.actor, "keyid": self.signer.keyid},
            "type": record_type,
            "body": body,
            **extra,
        }
        problems = record_errors(payload)
        if problems:
            raise ValueError(f"{record_type} record does not match its schema: {problems[0]}")
        envelope = dsse.sign(dsse.canonical_json(payload), dsse.RECORD_TYPE, self.signer.sign, self.signer.keyid)
        line = dsse.canonical_json(envelope)
        self._fh.write(line + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        digest = record_digest(line)
        self.digests.append(digest)
        self.bodies.setdefault(record_type, body)
        return digest

    def checkpoint(self, extensions: tuple[str, ...]) -> str:
        """The C2SP signed note of the chain's size and Merkle root (with `extensions` lines), for
        the manifest; signed under the key name `chain_origin`, as tlog-checkpoint recommends."""
        origin = chain_origin(self.digests[0])
        text = signed_note.Checkpoint(origin, len(self.digests), bytes.fromhex(chain_root(self.digests)), extensions).to_text()
        return signed_note.sign_note(text, origin, self.signer.public_key, self.signer.sign)

    def close(self) -> None:
        self._fh.close()


def chain_root(digests: list[str]) -> str:
    return merkle.root([bytes.fromhex(d) for d in digests]).hex()


def chain_origin(first_digest: str) -> str:
    """A chain's checkpoint origin and key name: every bundle is its own log (one examiner key
    signs many bundles, and a log must never sign two inconsistent trees)."""
    return ORIGIN_PREFIX + first_digest


def _open_record(line: bytes, key: Ed25519PublicKey, i: int) -> dict[str, Any]:
    envelope = loads(line, f"record {i}")
    return loads_object(dsse.open_envelope(envelope, key, dsse.RECORD_TYPE), f"record {i}'s payload")


def read_chain(bundle: Path, key: Ed25519PublicKey) -> tuple[ChainView, list[Check]]:
    """Parse chain.jsonl and check signatures, schemas and hash links. Only records that are
    signed by `key` and match their schema have a payload in the view; the others are None.

    Records after the PROBLEM_BUDGET-th bad one are kept as lines but not opened (their payloads
    are None), so a chain of a million copies of one record costs a few signature checks."""
    view = ChainView()
    try:
        view.lines, terminated = read_lines(Path(bundle), CHAIN_FILE, RECORD_MAX_BYTES, CHAIN_MAX_RECORDS, CHAIN_MAX_BYTES)
    except UnsafeFile as exc:
        missing = str(exc) == f"{CHAIN_FILE} is missing"
        return view, [Check.failed("chain.present" if missing else "chain.format", str(exc))]
    checks: list[Check] = []
    if not terminated:
        checks.append(Check.failed("chain.format", "chain.jsonl does not end with a newline: the last record was cut off"))
    blank = [i for i, line in enumerate(view.lines) if not line.strip()]
    if blank:
        checks.append(Check.failed("chain.format", f"chain.jsonl has {len(blank)} blank line(s), first at line {blank[0] + 1}"))
        view.lines = [line for line in view.lines if line.strip()]
    sig_problems: list[str] = []
    schema_problems: list[str] = []
    link_problems: list[str] = []
    prev: str | None = None
    for i, line in enumerate(view.lines):
        if len(sig_problems) + len(link_problems) >= PROBLEM_BUDGET:
            link_problems.append(f"records {i}..{len(view.lines) - 1} not checked after {PROBLEM_BUDGET} problems")
            view.payloads.extend([None] * (len(view.lines) - i))
            break
        try:
            payload = _open_record(line, key, i)
        except (UnsafeFile, dsse.EnvelopeError) as exc:
            sig_problems.append(f"record {i}: {exc}")
            view.payloads.append(None)
            prev = record_digest(line)
            continue
        if payload.get("seq") != i:
            link_problems.append(f"record {i}: sequence number is {str(payload.get('seq'))[:20]}, expected {i}")
        if payload.get("prev") != prev:
            link_problems.append(f"record {i}: prev is {str(payload.get('prev'))[:16]}…, expected {str(prev)[:16]}…")
        problems = record_errors(payload)
        if problems:
            schema_problems.append(f"record {i}: {problems[0][:200]}")
        view.payloads.append(None if problems else payload)  # signed but malformed: not believed either
        prev = record_digest(line)
    n = len(view.lines)
    checks.append(
        Check.failed("chain.signatures", "; ".join(sig_problems[:PROBLEM_BUDGET]))
        if sig_problems
        else Check.passed("chain.signatures", f"{n} records, each signed by the supplied key")
    )
    checks.append(
        Check.failed("chain.schema", "; ".join(schema_problems[:PROBLEM_BUDGET]))
        if schema_problems
        else Check.passed("chain.schema", f"{n} records match audit/ schemas")
    )
    checks.append(
        Check.failed("chain.links", "; ".join(link_problems[: PROBLEM_BUDGET + 1]))
        if link_problems
        else Check.passed("chain.links", f"{n} records hash-linked in sequence")
    )
    return view, checks
