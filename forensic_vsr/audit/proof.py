"""Self-contained proof that one output frame belongs to a signed bundle.

A proof carries: the frame's framehash line (index, pts, size, sha256); its RFC 9162 inclusion
proof in the output-frame tree; the signed step.run record whose subject names that tree's root
and size; that record's inclusion proof in the chain tree; and the signed checkpoint of the
chain. Verifying needs only the proof file and the examiner's public key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr.audit.chain import record_digest
from forensic_vsr.audit.verify import Check, _fail, _pass, read_chain
from forensic_vsr.errors import UsageError, VerificationFailed
from forensic_vsr.integrity import dsse, merkle
from forensic_vsr.integrity.framehash import parse

PROOF_FORMAT = "forensic-vsr-frame-proof/1"
FRAMES_SUBJECT = "frames:output/master.mkv"


def make_proof(bundle: Path, frame: int, key: Ed25519PublicKey) -> dict[str, Any]:
    """Build a proof for output frame `frame`, refusing a bundle whose chain does not verify."""
    bundle = Path(bundle)
    view, checks = read_chain(bundle, key)
    failed = [c for c in checks if not c.ok]
    if failed or not view.lines:
        raise VerificationFailed(f"{bundle}: chain does not verify with the supplied key ({failed[0].reason if failed else 'empty'})")
    try:
        with open(bundle / "output.framehash", encoding="ascii") as fh:
            lines = [f.line() for f in parse(fh)]
    except OSError as exc:
        raise UsageError(f"{bundle}: no output.framehash ({exc.strerror})") from None
    if not 0 <= frame < len(lines):
        raise UsageError(f"--frame {frame}: the bundle's output has frames 0..{len(lines) - 1}")
    step_index = next(i for i, p in enumerate(view.payloads) if p and p["type"] == "step.run")
    manifest = json.loads((bundle / "manifest.json").read_text())
    leaf_hashes = [merkle.hash_leaf(line.encode()) for line in lines]
    chain_leaves = [merkle.hash_leaf(bytes.fromhex(record_digest(line))) for line in view.lines]
    return {
        "format": PROOF_FORMAT,
        "frame": {"index": frame, "framehash_line": lines[frame]},
        "frames_tree": {
            "tree_size": len(lines),
            "root": merkle.root_from_leaf_hashes(leaf_hashes).hex(),
            "inclusion": [h.hex() for h in merkle.inclusion_proof(leaf_hashes, frame)],
        },
        "step_record": {"index": step_index, "line": view.lines[step_index].decode()},
        "chain": {"inclusion": [h.hex() for h in merkle.inclusion_proof(chain_leaves, step_index)], "checkpoint": manifest["checkpoint"]},
    }


def verify_proof(proof: Any, key: Ed25519PublicKey) -> list[Check]:
    try:
        return _verify(proof, key)
    except (KeyError, TypeError, ValueError) as exc:
        return [_fail("proof.format", f"proof is malformed ({exc.__class__.__name__}: {exc})")]


def _verify(proof: dict[str, Any], key: Ed25519PublicKey) -> list[Check]:
    if proof.get("format") != PROOF_FORMAT:
        return [_fail("proof.format", f"format is {proof.get('format')!r}, expected {PROOF_FORMAT!r}")]
    checks = []
    try:
        cp = json.loads(dsse.open_envelope(proof["chain"]["checkpoint"], key, dsse.CHECKPOINT_TYPE))
        checks.append(_pass("proof.checkpoint", f"checkpoint of {cp['tree_size']} records signed by the supplied key"))
    except dsse.EnvelopeError as exc:
        return [_fail("proof.checkpoint", str(exc))]
    line = proof["step_record"]["line"].encode()
    index = proof["step_record"]["index"]
    try:
        payload = json.loads(dsse.open_envelope(json.loads(line), key, dsse.RECORD_TYPE))
        checks.append(_pass("proof.step_signature", f"step.run record {index} signed by the supplied key"))
    except dsse.EnvelopeError as exc:
        return [*checks, _fail("proof.step_signature", str(exc))]
    in_chain = merkle.verify_inclusion(
        merkle.hash_leaf(bytes.fromhex(record_digest(line))),
        index,
        cp["tree_size"],
        [bytes.fromhex(h) for h in proof["chain"]["inclusion"]],
        bytes.fromhex(cp["root_hash"]),
    )
    checks.append(
        _pass("proof.step_in_chain", f"record {index} is in the signed chain of {cp['tree_size']} records")
        if in_chain
        else _fail("proof.step_in_chain", "the step record's inclusion proof does not reach the checkpoint root")
    )
    if payload.get("type") != "step.run":
        return [*checks, _fail("proof.step_type", f"record {index} is {payload.get('type')}, not step.run")]
    subject = next((s for s in payload["body"]["subject"] if s["name"] == FRAMES_SUBJECT), None)
    tree = proof["frames_tree"]
    if subject is None:
        return [*checks, _fail("proof.frames_root", "step.run names no output-frame tree")]
    signed_root, signed_size = subject["digest"]["rfc9162-sha256"], subject["annotations"]["tree_size"]
    if (signed_root, signed_size) != (tree["root"], tree["tree_size"]):
        checks.append(
            _fail(
                "proof.frames_root",
                f"proof claims root {tree['root'][:16]}… of {tree['tree_size']} frames, "
                f"step.run signs {signed_root[:16]}… of {signed_size}",
            )
        )
        return checks
    checks.append(_pass("proof.frames_root", f"output-frame tree root {signed_root[:16]}… of {signed_size} frames is signed"))
    frame = proof["frame"]
    ok = merkle.verify_inclusion(
        merkle.hash_leaf(frame["framehash_line"].encode()),
        frame["index"],
        signed_size,
        [bytes.fromhex(h) for h in tree["inclusion"]],
        bytes.fromhex(signed_root),
    )
    checks.append(
        _pass("proof.frame_inclusion", f"frame {frame['index']} [{frame['framehash_line'].strip()}] is in the signed output")
        if ok
        else _fail("proof.frame_inclusion", f"frame {frame['index']}'s inclusion proof does not reach the signed root")
    )
    return checks
