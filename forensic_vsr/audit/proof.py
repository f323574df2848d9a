"""Self-contained proof that one output frame belongs to a signed bundle.

A proof carries: the frame's framehash line (index, pts, size, sha256); its RFC 9162 inclusion
proof in the output-frame tree; the signed step.run record whose subject names that tree's root
and size; that record's inclusion proof in the chain tree; and the signed checkpoint of the
chain (proof format 1: format 1's DSSE checkpoint; proof format 2: format 2's C2SP signed note,
verified under the key name its origin line states, which must be a chain origin). Verifying
needs only the proof file and the examiner's public key. A proof file is
hostile input: it is read as a regular file of bounded size, parsed as strict depth-limited
JSON into `FrameProof` (every field type-checked, unknown fields refused) before anything in it
is used."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr.audit.bundle_format import manifest_checks, read_manifest
from forensic_vsr.audit.chain import ORIGIN_PREFIX, read_chain, record_digest
from forensic_vsr.audit.checks import Check, guarded
from forensic_vsr.audit.safe_read import PROOF_MAX_BYTES, UnsafeFile, loads, loads_object, open_user_file, read_capped
from forensic_vsr.audit.schemas import record_errors, schema_errors
from forensic_vsr.audit.verify import FRAMES_SUBJECT, read_framehash
from forensic_vsr.errors import UsageError, VerificationFailed
from forensic_vsr.integrity import dsse, merkle, signed_note

PROOF_FORMAT_1 = "forensic-vsr-frame-proof/1"  # checkpoint: a DSSE envelope (bundle format 1)
PROOF_FORMAT_2 = "forensic-vsr-frame-proof/2"  # checkpoint: a C2SP tlog-checkpoint signed note (bundle format 2)
CHECKPOINT_KIND: dict[str, type] = {PROOF_FORMAT_1: dict, PROOF_FORMAT_2: str}
MAX_PATH = 64  # an inclusion proof in a tree of up to 2**64 leaves


def _field(obj: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{where} has no {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}.{key} is {type(value).__name__}, expected {kind.__name__}")
    if isinstance(value, int) and not 0 <= value < 1 << 63:
        raise ValueError(f"{where}.{key} is out of range")
    return value


def _exactly(obj: dict[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(obj) - keys)
    if unknown:
        raise ValueError(f"{where} has unknown field {unknown[0][:40]!r}")


_LOWER_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")  # one spelling per digest: a proof that differs is another proof


def _hashes(obj: Any, key: str, where: str) -> tuple[bytes, ...]:
    items = _field(obj, key, list, where)
    if len(items) > MAX_PATH:
        raise ValueError(f"{where}.{key} has {len(items)} hashes, more than {MAX_PATH}")
    out = []
    for h in items:
        if not isinstance(h, str) or not _LOWER_HEX_SHA256.fullmatch(h):
            raise ValueError(f"{where}.{key} holds {str(h)[:20]!r}, not a lower-case hex SHA-256")
        out.append(bytes.fromhex(h))
    return tuple(out)


@dataclass(frozen=True)
class FrameProof:
    frame_index: int
    framehash_line: str
    frames_tree_size: int
    frames_root: str
    frames_inclusion: tuple[bytes, ...]
    step_index: int
    step_line: str
    chain_inclusion: tuple[bytes, ...]
    checkpoint: dict[str, Any] | str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROOF_FORMAT_2 if isinstance(self.checkpoint, str) else PROOF_FORMAT_1,
            "frame": {"index": self.frame_index, "framehash_line": self.framehash_line},
            "frames_tree": {
                "tree_size": self.frames_tree_size,
                "root": self.frames_root,
                "inclusion": [h.hex() for h in self.frames_inclusion],
            },
            "step_record": {"index": self.step_index, "line": self.step_line},
            "chain": {"inclusion": [h.hex() for h in self.chain_inclusion], "checkpoint": self.checkpoint},
        }

    @classmethod
    def from_json(cls, obj: Any) -> FrameProof:
        """Raises ValueError naming the first field that is missing, mistyped or unknown."""
        if not isinstance(obj, dict):
            raise ValueError(f"the proof is not a JSON object (found {type(obj).__name__})")
        fmt = obj.get("format")
        if not isinstance(fmt, str) or fmt not in CHECKPOINT_KIND:
            raise ValueError(f"format is {str(fmt)[:60]!r}, expected one of {', '.join(CHECKPOINT_KIND)}")
        _exactly(obj, {"format", "frame", "frames_tree", "step_record", "chain"}, "proof")
        frame, tree = _field(obj, "frame", dict, "proof"), _field(obj, "frames_tree", dict, "proof")
        step, chain = _field(obj, "step_record", dict, "proof"), _field(obj, "chain", dict, "proof")
        for part, keys, where in (
            (frame, {"index", "framehash_line"}, "frame"),
            (tree, {"tree_size", "root", "inclusion"}, "frames_tree"),
            (step, {"index", "line"}, "step_record"),
            (chain, {"inclusion", "checkpoint"}, "chain"),
        ):
            _exactly(part, keys, where)
        root = _field(tree, "root", str, "frames_tree")
        if not _LOWER_HEX_SHA256.fullmatch(root):
            raise ValueError("frames_tree.root is not a lower-case hex SHA-256")
        line = _field(frame, "framehash_line", str, "frame")
        if not line.isascii():
            raise ValueError("frame.framehash_line is not ASCII")
        _field(step, "line", str, "step_record").encode()  # a lone surrogate is not UTF-8
        return cls(
            frame_index=_field(frame, "index", int, "frame"),
            framehash_line=line,
            frames_tree_size=_field(tree, "tree_size", int, "frames_tree"),
            frames_root=root,
            frames_inclusion=_hashes(tree, "inclusion", "frames_tree"),
            step_index=_field(step, "index", int, "step_record"),
            step_line=_field(step, "line", str, "step_record"),
            chain_inclusion=_hashes(chain, "inclusion", "chain"),
            checkpoint=_field(chain, "checkpoint", CHECKPOINT_KIND[fmt], "chain"),
        )


def make_proof(bundle: Path, frame: int, key: Ed25519PublicKey) -> dict[str, Any]:
    """Build a proof for output frame `frame`, refusing a bundle whose chain, manifest or
    output.framehash does not verify. Raises only FvsrError subclasses."""
    bundle = Path(bundle)
    try:
        return _make(bundle, frame, key)
    except (UsageError, VerificationFailed):
        raise
    except Exception as exc:  # hostile input: one error line, never an internal error
        raise VerificationFailed(f"{bundle}: cannot build a proof from this bundle ({type(exc).__name__}: {str(exc)[:200]})") from None


def _make(bundle: Path, frame: int, key: Ed25519PublicKey) -> dict[str, Any]:
    view, checks = read_chain(bundle, key)
    try:
        manifest = read_manifest(bundle)
    except UnsafeFile as exc:
        raise VerificationFailed(f"{bundle}: {exc}") from None
    step_index = next((i for i, p in enumerate(view.payloads) if p and p.get("type") == "step.run"), None)
    checks += manifest_checks(manifest, view, key, refusal=step_index is None)
    failed = [c for c in checks if not c.ok]
    if failed or not view.lines:
        why = f"{failed[0].name}: {failed[0].reason}" if failed else "empty"
        raise VerificationFailed(f"{bundle}: chain does not verify with the supplied key ({why})")
    write = view.first("output.write")
    if step_index is None or write is None:
        raise UsageError(f"{bundle}: the bundle has no step.run and output.write records (a refusal?): no output frames to prove")
    step = view.payloads[step_index]["body"]  # type: ignore[index]
    subject = next((s for s in step["subject"] if s["name"] == FRAMES_SUBJECT), None)
    entry = next((f for f in write["files"] if f["name"] == "output.framehash"), None)
    if subject is None or entry is None:
        raise VerificationFailed(f"{bundle}: the signed records name no output-frame tree or output.framehash")
    try:
        lines = [f.line() for f in read_framehash(bundle, entry, subject["annotations"]["tree_size"])]
    except (UnsafeFile, UnicodeDecodeError) as exc:
        raise VerificationFailed(f"{bundle}: {exc}") from None
    if not 0 <= frame < len(lines):
        raise UsageError(f"--frame {frame}: the bundle's output has frames 0..{len(lines) - 1}")
    leaf_hashes = [merkle.hash_leaf(line.encode()) for line in lines]
    chain_leaves = [merkle.hash_leaf(bytes.fromhex(record_digest(line))) for line in view.lines]
    return FrameProof(
        frame_index=frame,
        framehash_line=lines[frame],
        frames_tree_size=len(lines),
        frames_root=merkle.root_from_leaf_hashes(leaf_hashes).hex(),
        frames_inclusion=tuple(merkle.inclusion_proof(leaf_hashes, frame)),
        step_index=step_index,
        step_line=view.lines[step_index].decode(),
        chain_inclusion=tuple(merkle.inclusion_proof(chain_leaves, step_index)),
        checkpoint=manifest["checkpoint"],
    ).to_json()


def load_proof(path: Path) -> Any:
    """The parsed proof file: a regular file of at most PROOF_MAX_BYTES, strict JSON."""
    try:
        fd, size = open_user_file(Path(path))
        return loads(read_capped(fd, size, PROOF_MAX_BYTES, str(path)), str(path))
    except UnsafeFile as exc:
        raise UsageError(f"not a readable proof file: {exc}") from None


def verify_proof_file(path: Path, key: Ed25519PublicKey) -> list[Check]:
    """`verify_proof` of the file at `path`; an unreadable file is one FAIL proof.file."""
    try:
        proof = load_proof(path)
    except UsageError as exc:
        return [Check.failed("proof.file", str(exc))]
    return verify_proof(proof, key)


def verify_proof(proof: Any, key: Ed25519PublicKey) -> list[Check]:
    """Every check of a parsed proof, in order; never raises."""
    try:
        parsed = FrameProof.from_json(proof)
    except ValueError as exc:
        return [Check.failed("proof.format", f"proof is malformed: {exc}")]
    return list(guarded("proof", lambda: _verify(parsed, key)))


def _checkpoint(checkpoint: dict[str, Any] | str, key: Ed25519PublicKey) -> tuple[int, bytes]:
    """(tree size, root hash) of a checkpoint signed by `key`; raises ValueError saying why not."""
    if isinstance(checkpoint, str):
        origin = checkpoint.split("\n", 1)[0]
        if not (origin.startswith(ORIGIN_PREFIX) and len(origin) == len(ORIGIN_PREFIX) + 64 and origin[-64:].isalnum()):
            raise ValueError(f"the checkpoint's origin {origin[:60]!r} is not a forensic-vsr chain ({ORIGIN_PREFIX}…)")
        note = signed_note.Checkpoint.from_text(signed_note.open_note(checkpoint, origin, key))
        return note.tree_size, note.root_hash
    try:
        cp = loads_object(dsse.open_envelope(checkpoint, key, dsse.CHECKPOINT_TYPE), "the checkpoint payload")
    except UnsafeFile as exc:
        raise ValueError(str(exc)) from None
    problems = schema_errors("checkpoint", cp)
    if problems or cp["keyid"] != dsse.keyid(key):
        raise ValueError(problems[0] if problems else "the checkpoint names another key")
    return cp["tree_size"], bytes.fromhex(cp["root_hash"])


def _verify(proof: FrameProof, key: Ed25519PublicKey) -> Iterator[Check]:
    try:
        tree_size, root_hash = _checkpoint(proof.checkpoint, key)
    except ValueError as exc:  # NoteError and EnvelopeError are ValueErrors
        yield Check.failed("proof.checkpoint", str(exc))
        return
    yield Check.passed("proof.checkpoint", f"checkpoint of {tree_size} records signed by the supplied key")
    line, index = proof.step_line.encode(), proof.step_index
    try:
        payload = loads_object(dsse.open_envelope(loads(line, "the step record"), key, dsse.RECORD_TYPE), "the step record's payload")
    except (UnsafeFile, dsse.EnvelopeError) as exc:
        yield Check.failed("proof.step_signature", str(exc))
        return
    yield Check.passed("proof.step_signature", f"step.run record {index} signed by the supplied key")
    in_chain = merkle.verify_inclusion(
        merkle.hash_leaf(bytes.fromhex(record_digest(line))), index, tree_size, proof.chain_inclusion, root_hash
    )
    yield (
        Check.passed("proof.step_in_chain", f"record {index} is in the signed chain of {tree_size} records")
        if in_chain
        else Check.failed("proof.step_in_chain", "the step record's inclusion proof does not reach the checkpoint root")
    )
    problems = record_errors(payload)
    if problems or payload["type"] != "step.run" or payload["seq"] != index:
        what = problems[0] if problems else f"it is {payload['type']} with sequence number {payload['seq']}"
        yield Check.failed("proof.step_type", f"record {index} is not the step.run record at {index}: {what[:200]}")
        return
    subject = next((s for s in payload["body"]["subject"] if s["name"] == FRAMES_SUBJECT), None)
    if subject is None:
        yield Check.failed("proof.frames_root", "step.run names no output-frame tree")
        return
    signed_root, signed_size = subject["digest"]["rfc9162-sha256"], subject["annotations"]["tree_size"]
    if (signed_root, signed_size) != (proof.frames_root, proof.frames_tree_size):
        yield Check.failed(
            "proof.frames_root",
            f"proof claims root {proof.frames_root[:16]}… of {proof.frames_tree_size} frames, "
            f"step.run signs {signed_root[:16]}… of {signed_size}",
        )
        return
    yield Check.passed("proof.frames_root", f"output-frame tree root {signed_root[:16]}… of {signed_size} frames is signed")
    ok = merkle.verify_inclusion(
        merkle.hash_leaf(proof.framehash_line.encode()), proof.frame_index, signed_size, proof.frames_inclusion, bytes.fromhex(signed_root)
    )
    yield (
        Check.passed("proof.frame_inclusion", f"frame {proof.frame_index} [{proof.framehash_line.strip()[:120]}] is in the signed output")
        if ok
        else Check.failed("proof.frame_inclusion", f"frame {proof.frame_index}'s inclusion proof does not reach the signed root")
    )
