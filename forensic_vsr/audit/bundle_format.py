"""What each bundle format requires of its manifest, and the manifest checks.

`manifest.json` is not signed as a whole: only its `checkpoint` is signed (format 1: a DSSE
envelope; format 2: a C2SP tlog-checkpoint signed note whose extension lines sign `format`, `tool`
and `tool_version`). Every other field is therefore checked against the auditor's key or against
signed data, and a field the format does not define fails: nothing unsigned is believed.
`FORMATS` decides, per format string, which fields a manifest has, which bundle files no signed
record lists, how the checkpoint is signed, whether steps carry in-toto attestations and where
the tool version is signed; a new format is a new row.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from forensic_vsr.audit.chain import chain_origin, chain_root, record_digest
from forensic_vsr.audit.checks import ChainView, Check
from forensic_vsr.audit.safe_read import MANIFEST_MAX_BYTES, UnsafeFile, loads_object, read_in_bundle
from forensic_vsr.audit.schemas import schema_errors
from forensic_vsr.integrity import dsse, signed_note

TOOL = "forensic-vsr"
BUILDER_PREFIX = "https://forensic-vsr.invalid/fvsr@"
MANIFEST = "manifest.json"
CHAIN = "chain.jsonl"


@dataclass(frozen=True)
class BundleFormat:
    """What a bundle of one format holds besides what its signed records list."""

    name: str
    manifest_fields: frozenset[str]
    unsigned_files: frozenset[str]  # files no signed record lists (they are checked otherwise)
    refusal_signs_tool_version: bool  # format 1 signs the tool version only in step.run
    checkpoint: str  # "dsse": a DSSE envelope of a JSON checkpoint; "c2sp-note": a tlog-checkpoint signed note
    step_attestation: bool  # step.run is also a signed in-toto attestation in attestations/, bound by sha256
    review_records: bool = False  # review/NNNN.json (signed by `fvsr review`) may be present; each must verify
    recomputed_maps: bool = False  # maps that are exact functions of master and evidence may be left unstored (step.run `maps.recomputed`)


FORMAT_1 = BundleFormat(
    name="forensic-vsr-bundle/1",
    manifest_fields=frozenset({"format", "tool", "tool_version", "public_key", "keyid", "chain_root", "checkpoint"}),
    unsigned_files=frozenset({MANIFEST, CHAIN}),
    refusal_signs_tool_version=False,
    checkpoint="dsse",
    step_attestation=False,
)
# Format 2: report.pdf is PAdES-signed under the certificate report.generate records (ECDSA P-256
# or a lab's certificate), no longer with the Ed25519 examiner key itself; evidence.ingest records
# the decoder; step.run is an in-toto attestation on the wire; the checkpoint is a C2SP signed
# note whose extension lines sign format, tool and tool_version (refusals included).
FORMAT_2 = BundleFormat(
    name="forensic-vsr-bundle/2",
    manifest_fields=FORMAT_1.manifest_fields,
    unsigned_files=FORMAT_1.unsigned_files,
    refusal_signs_tool_version=True,
    checkpoint="c2sp-note",
    step_attestation=True,
    review_records=True,
)
# Format 3: S, R and the fixed-formula interval are not stored where they are exact functions of
# the master and the evidence; step.run signs the filter taps and flagged.json the per-frame
# figures, which `fvsr verify` recomputes (audit/maps_check.py). Everything else as format 2.
FORMAT_3 = dataclasses.replace(FORMAT_2, name="forensic-vsr-bundle/3", recomputed_maps=True)
NOTE_SIGNED_FIELDS = ("format", "tool", "tool_version")  # manifest fields the note signs, one extension line each
FORMATS: dict[str, BundleFormat] = {f.name: f for f in (FORMAT_1, FORMAT_2, FORMAT_3)}
DEFAULT_UNSIGNED_FILES = FORMAT_1.unsigned_files  # when the manifest names no known format

_PEM = re.compile(r"\A\s*-----BEGIN PUBLIC KEY-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END PUBLIC KEY-----\s*\Z")


def read_manifest(bundle: Path) -> dict[str, Any]:
    """The parsed manifest (an UnsafeFile when it is missing, not a regular file, too large, not
    strict JSON or not an object)."""
    return loads_object(read_in_bundle(bundle, MANIFEST, MANIFEST_MAX_BYTES), MANIFEST)


def bundle_format(manifest: dict[str, Any] | None) -> BundleFormat | None:
    name = manifest.get("format") if manifest else None
    return FORMATS.get(name) if isinstance(name, str) else None


def pem_der(text: Any) -> bytes | None:
    """The DER bytes of one PEM `PUBLIC KEY` block and nothing else, or None."""
    if not isinstance(text, str):
        return None
    m = _PEM.match(text)
    if not m:
        return None
    try:
        return base64.b64decode("".join(m.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def checkpoint_extensions(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The note's extension lines: `<field> <value>` for each of NOTE_SIGNED_FIELDS."""
    return tuple(f"{name} {manifest[name]}" for name in NOTE_SIGNED_FIELDS)


def _signed_tool_versions(view: ChainView) -> list[str]:
    """Every tool version the signed step records state (builder id and library list)."""
    found = []
    for p in view.payloads:
        if p is None or p.get("type") != "step.run":
            continue
        predicate = p["body"]["predicate"]
        builder = predicate["runDetails"]["builder"]["id"]
        if not isinstance(builder, str) or not builder.startswith(BUILDER_PREFIX):
            raise ValueError(f"step.run record {p.get('seq')} names builder {str(builder)[:60]!r}, not {BUILDER_PREFIX}…")
        found.append(builder[len(BUILDER_PREFIX) :])
        libraries = predicate["buildDefinition"]["internalParameters"].get("libraries", {})
        if TOOL in libraries:
            found.append(libraries[TOOL])
    return found


def manifest_checks(manifest: dict[str, Any], view: ChainView, key: Ed25519PublicKey, refusal: bool) -> Iterator[Check]:
    """Every manifest field against the supplied key or signed data, one check each."""
    fmt = bundle_format(manifest)
    yield (
        Check.passed("manifest.format", f"format {fmt.name}")
        if fmt
        else Check.failed(
            "manifest.format", f"format {str(manifest.get('format'))[:60]!r} is not one this release knows: {', '.join(FORMATS)}"
        )
    )
    if fmt:
        unknown = sorted(set(manifest) - fmt.manifest_fields)
        missing = sorted(fmt.manifest_fields - set(manifest))
        yield (
            Check.failed(
                "manifest.fields",
                "; ".join([*(f"unknown field {k[:40]!r}" for k in unknown[:5]), *(f"missing field {k!r}" for k in missing)]),
            )
            if unknown or missing
            else Check.passed("manifest.fields", f"exactly the fields {fmt.name} defines")
        )
    supplied = dsse.keyid(key)
    named = manifest.get("keyid")
    yield (
        Check.passed("manifest.key", f"manifest names key {supplied[:16]}…, the supplied key")
        if named == supplied
        else Check.failed("manifest.key", f"manifest names key {str(named)[:16]}…, the supplied key is {supplied[:16]}…")
    )
    der = pem_der(manifest.get("public_key"))
    want = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    yield (
        Check.passed("manifest.public_key", "the manifest's public key is the supplied key")
        if der == want
        else Check.failed(
            "manifest.public_key",
            "the manifest's public_key is not one PEM public key" if der is None else "the manifest's public key is not the supplied key",
        )
    )
    signed: dict[str, str] = {}
    if fmt is not None and fmt.checkpoint == "c2sp-note":
        yield from _checkpoint_note(manifest, view, key, signed)
    else:
        yield from _checkpoint(manifest, view, key)
    digests = [record_digest(line) for line in view.lines]
    root = chain_root(digests)
    claimed = manifest.get("chain_root")
    yield (
        Check.passed("manifest.chain_root", f"chain root {root[:16]}… recomputed from the chain")
        if claimed == root
        else Check.failed("manifest.chain_root", f"manifest states {str(claimed)[:16]}…, the chain's Merkle root is {root[:16]}…")
    )
    yield _tool(manifest, view, fmt, refusal, signed.get("tool_version"))


def _tool(manifest: dict[str, Any], view: ChainView, fmt: BundleFormat | None, refusal: bool, note_version: str | None) -> Check:
    """The manifest's tool and tool_version against every signed statement of them: step.run
    (builder id, library list) and, in format 2, the checkpoint note."""
    tool, version = manifest.get("tool"), manifest.get("tool_version")
    if tool != TOOL:
        return Check.failed("manifest.tool", f"tool is {str(tool)[:40]!r}, expected {TOOL!r}")
    in_step = _signed_tool_versions(view)
    signed = in_step + ([note_version] if note_version is not None else [])
    if not signed:
        if refusal and fmt is not None and not fmt.refusal_signs_tool_version:
            return Check.passed(
                "manifest.tool", f"{fmt.name} refusals sign no tool version: the manifest's {str(version)[:20]!r} is not relied on"
            )
        return Check.failed("manifest.tool", "no signed record states the tool version")
    where = " and ".join([*(["step.run"] if in_step else []), *(["the checkpoint"] if note_version is not None else [])])
    differing = sorted({s for s in signed if s != version})
    return (
        Check.failed("manifest.tool", f"manifest states tool_version {str(version)[:20]!r}, {where} sign(s) {differing[0][:20]!r}")
        if differing or not isinstance(version, str)
        else Check.passed("manifest.tool", f"{TOOL} {version}, as signed by {where}")
    )


def _checkpoint(manifest: dict[str, Any], view: ChainView, key: Ed25519PublicKey) -> Iterator[Check]:
    try:
        body = loads_object(dsse.open_envelope(manifest.get("checkpoint"), key, dsse.CHECKPOINT_TYPE), "the checkpoint payload")
    except (UnsafeFile, dsse.EnvelopeError) as exc:
        yield Check.failed("checkpoint.signature", str(exc))
        return
    yield Check.passed("checkpoint.signature", "checkpoint signed by the supplied key")
    problems = schema_errors("checkpoint", body)
    if problems:
        yield Check.failed("checkpoint.schema", problems[0])
        return
    digests = [record_digest(line) for line in view.lines]
    root = chain_root(digests)
    found = []
    if body["keyid"] != dsse.keyid(key):
        found.append(f"checkpoint names key {str(body['keyid'])[:16]}…, not the supplied key")
    if body["tree_size"] != len(digests):
        found.append(f"tree size {body['tree_size']} signed, chain has {len(digests)} records")
    if digests and body["head"] != digests[-1]:
        found.append(f"head {str(body['head'])[:16]}… signed, chain ends with {digests[-1][:16]}…")
    if body["root_hash"] != root:
        found.append(f"root {str(body['root_hash'])[:16]}… signed, chain's Merkle root is {root[:16]}…")
    yield (
        Check.failed("checkpoint.chain", "; ".join(found))
        if found
        else Check.passed("checkpoint.chain", f"signed tree size {len(digests)}, head and Merkle root match the chain")
    )


def _checkpoint_note(manifest: dict[str, Any], view: ChainView, key: Ed25519PublicKey, signed: dict[str, str]) -> Iterator[Check]:
    """Format 2: the note verifies under key name `chain_origin(record 0)` with the supplied key,
    and states this chain's size and root and the manifest's format, tool and tool version.
    The fields it signs are put in `signed`."""
    if not view.lines:
        yield Check.failed("checkpoint.signature", "not checked: the chain has no record to name the checkpoint's origin")
        return
    origin = chain_origin(record_digest(view.lines[0]))
    try:
        cp = signed_note.Checkpoint.from_text(signed_note.open_note(manifest.get("checkpoint"), origin, key))  # type: ignore[arg-type]
    except signed_note.NoteError as exc:
        yield Check.failed("checkpoint.signature", str(exc))
        return
    yield Check.passed(
        "checkpoint.signature", f"C2SP signed note by the supplied key as {origin[:44]}… (key ID {signed_note.key_id(origin, key).hex()})"
    )
    digests = [record_digest(line) for line in view.lines]
    root = chain_root(digests)
    found = []
    if cp.origin != origin:
        found.append(f"origin {cp.origin[:60]!r} signed, this chain's is {origin[:44]}…")
    if cp.tree_size != len(digests):
        found.append(f"tree size {cp.tree_size} signed, chain has {len(digests)} records")
    if cp.root_hash.hex() != root:
        found.append(f"root {cp.root_hash.hex()[:16]}… signed, chain's Merkle root is {root[:16]}…")
    names = [line.split(" ", 1)[0] for line in cp.extensions]
    if sorted(names) != sorted(NOTE_SIGNED_FIELDS):
        found.append(f"extension lines {names[:6]}, expected one each of {', '.join(NOTE_SIGNED_FIELDS)}")
    else:
        for name in NOTE_SIGNED_FIELDS:
            value = cp.extension(name) or ""
            signed[name] = value
            if manifest.get(name) != value:
                found.append(f"the note signs {name} {value[:40]!r}, the manifest states {str(manifest.get(name))[:40]!r}")
    yield (
        Check.failed("checkpoint.chain", "; ".join(found))
        if found
        else Check.passed(
            "checkpoint.chain", f"signed tree size {len(digests)} and Merkle root match the chain; format, tool and tool_version signed"
        )
    )
