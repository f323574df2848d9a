"""The audit chain: `chain.jsonl`, one DSSE envelope per line, each payload hash-linked to the
previous record and signed by the examiner key.

A record's digest is SHA-256 of its line (the canonical JSON of its envelope, without the
newline). The chain's Merkle tree has one leaf per record whose data is that 32-byte digest.
Lines are appended with fsync, so a run killed at any point leaves a prefix of valid records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

from forensic_vsr.audit.keys import Signer
from forensic_vsr.audit.schemas import record_errors
from forensic_vsr.integrity import dsse, merkle

RECORD_SCHEMA_ID = "https://forensic-vsr.invalid/record/v1"
CHECKPOINT_SCHEMA_ID = "https://forensic-vsr.invalid/checkpoint/v1"


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
        payload = {
            "_type": RECORD_SCHEMA_ID,
            "seq": len(self.digests),
            "prev": self.digests[-1] if self.digests else None,
            "time": utc_now(),
            "actor": {"name": self.actor, "keyid": self.signer.keyid},
            "type": record_type,
            "body": body,
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

    def checkpoint(self) -> dict[str, Any]:
        """A signed statement of the chain's size, head and Merkle root, for the manifest."""
        body = {
            "_type": CHECKPOINT_SCHEMA_ID,
            "tree_size": len(self.digests),
            "root_hash": chain_root(self.digests),
            "head": self.digests[-1] if self.digests else None,
            "time": utc_now(),
            "keyid": self.signer.keyid,
        }
        return dsse.sign(dsse.canonical_json(body), dsse.CHECKPOINT_TYPE, self.signer.sign, self.signer.keyid)

    def close(self) -> None:
        self._fh.close()


def chain_root(digests: list[str]) -> str:
    return merkle.root([bytes.fromhex(d) for d in digests]).hex()
