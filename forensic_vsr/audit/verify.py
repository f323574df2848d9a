"""Offline verification of a bundle against a public key the auditor supplies.

Nothing in the bundle is trusted until it has been checked against that key: the manifest's
own public key is only compared, never used. Each check yields one `Check` with a reason that
names what was expected and what was found. Imports neither torch nor cv2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr.audit.chain import record_digest
from forensic_vsr.audit.schemas import record_errors, schema_errors
from forensic_vsr.integrity import dsse, merkle
from forensic_vsr.integrity.framehash import FrameHash, parse, video_framehashes

FIXED_FILES = ("manifest.json", "chain.jsonl")
TERMINAL = ("run.complete", "run.aborted")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS | FAIL | INCOMPLETE
    reason: str

    @classmethod
    def passed(cls, name: str, reason: str) -> Check:
        return cls(name, "PASS", reason)

    @classmethod
    def failed(cls, name: str, reason: str) -> Check:
        return cls(name, "FAIL", reason)

    @property
    def ok(self) -> bool:
        return self.status == "PASS"

    def line(self) -> str:
        return f"{self.status:<10} {self.name}: {self.reason}"


_pass = Check.passed
_fail = Check.failed


@dataclass
class ChainView:
    """Records that passed signature checks, in file order."""

    lines: list[bytes] = field(default_factory=list)
    payloads: list[dict[str, Any] | None] = field(default_factory=list)

    def first(self, record_type: str) -> dict[str, Any] | None:
        for p in self.payloads:
            if p is not None and p.get("type") == record_type:
                return p["body"]
        return None


def _sha256_file(path: Path) -> str:
    from forensic_vsr.media import file_sha256

    return file_sha256(path)


def read_chain(bundle: Path, key: Ed25519PublicKey) -> tuple[ChainView, list[Check]]:
    """Parse chain.jsonl and check signatures, schemas and hash links."""
    checks: list[Check] = []
    view = ChainView()
    path = bundle / "chain.jsonl"
    try:
        raw = path.read_bytes()
    except OSError:
        return view, [_fail("chain.present", "chain.jsonl is missing")]
    if raw and not raw.endswith(b"\n"):
        checks.append(_fail("chain.format", "chain.jsonl does not end with a newline: the last record was cut off"))
    view.lines = [ln for ln in raw.split(b"\n") if ln]
    sig_problems, schema_problems = [], []
    for i, line in enumerate(view.lines):
        try:
            envelope = json.loads(line)
            payload = json.loads(dsse.open_envelope(envelope, key, dsse.RECORD_TYPE))
        except (ValueError, dsse.EnvelopeError) as exc:
            sig_problems.append(f"record {i}: {exc}")
            view.payloads.append(None)
            continue
        problems = record_errors(payload)
        if problems:
            schema_problems.append(f"record {i}: {problems[0]}")
        view.payloads.append(payload if isinstance(payload, dict) else None)
    n = len(view.lines)
    checks.append(
        _fail("chain.signatures", "; ".join(sig_problems[:5]))
        if sig_problems
        else _pass("chain.signatures", f"{n} records, each signed by the supplied key")
    )
    checks.append(
        _fail("chain.schema", "; ".join(schema_problems[:5]))
        if schema_problems
        else _pass("chain.schema", f"{n} records match audit/ schemas")
    )
    link_problems = []
    prev = None
    for i, (line, payload) in enumerate(zip(view.lines, view.payloads, strict=True)):
        if payload is not None:
            if payload.get("seq") != i:
                link_problems.append(f"record {i}: sequence number is {payload.get('seq')}, expected {i}")
            if payload.get("prev") != prev:
                link_problems.append(f"record {i}: prev is {str(payload.get('prev'))[:16]}…, expected {str(prev)[:16]}…")
        prev = record_digest(line)
    checks.append(
        _fail("chain.links", "; ".join(link_problems[:5]))
        if link_problems
        else _pass("chain.links", f"{n} records hash-linked in sequence")
    )
    return view, checks


def _structure(view: ChainView) -> list[Check]:
    types = [p.get("type") if p else None for p in view.payloads]
    if not types:
        return [_fail("chain.structure", "chain.jsonl holds no records")]
    if types[0] != "policy.decision":
        return [_fail("chain.structure", f"first record is {types[0]}, expected policy.decision")]
    if types[-1] not in TERMINAL:
        return [
            Check(
                "chain.complete",
                "INCOMPLETE",
                f"run stopped after record {len(types) - 1} ({types[-1]}): no run.complete record; this bundle is not a finished run",
            )
        ]
    if any(t in TERMINAL for t in types[:-1]):
        return [_fail("chain.structure", "a terminal record (run.complete/run.aborted) is followed by more records")]
    if types[-1] == "run.aborted":
        body = view.payloads[-1]["body"]  # type: ignore[index]
        decision = view.first("policy.decision")
        if types == ["policy.decision", "run.aborted"] and decision is not None and not decision["allowed"]:
            failed = [r["rule"] for r in decision["rules"] if r["outcome"] == "fail"]
            return [
                _pass(
                    "chain.complete",
                    f"signed refusal: policy {decision['policy']['id']} refused the recipe ({', '.join(failed)}); no outputs, by design",
                )
            ]
        return [_fail("chain.complete", f"the run was aborted: {body.get('reason')}")]
    decision = view.first("policy.decision")
    if decision is None or not decision["allowed"]:
        return [_fail("chain.structure", "outputs were produced although the policy decision did not allow the recipe")]
    dupes = sorted({t for t in types if t is not None and types.count(t) > 1 and t != "step.run"})
    if dupes:
        return [_fail("chain.structure", f"record types appear more than once: {', '.join(dupes)}")]
    return [_pass("chain.complete", f"{len(types)} records from policy.decision (allowed) to run.complete")]


def _checkpoint(bundle: Path, view: ChainView, key: Ed25519PublicKey) -> list[Check]:
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return [
            Check(
                "manifest",
                "INCOMPLETE" if not (bundle / "manifest.json").exists() else "FAIL",
                f"manifest.json unreadable ({exc.__class__.__name__}): no signed checkpoint",
            )
        ]
    checks = []
    supplied = dsse.keyid(key)
    named = manifest.get("keyid")
    checks.append(
        _pass("manifest.key", f"manifest names key {supplied[:16]}…, the supplied key")
        if named == supplied
        else _fail("manifest.key", f"manifest names key {str(named)[:16]}…, the supplied key is {supplied[:16]}…")
    )
    try:
        body = json.loads(dsse.open_envelope(manifest.get("checkpoint"), key, dsse.CHECKPOINT_TYPE))
    except (ValueError, dsse.EnvelopeError) as exc:
        return [*checks, _fail("checkpoint.signature", str(exc))]
    checks.append(_pass("checkpoint.signature", "checkpoint signed by the supplied key"))
    problems = schema_errors("checkpoint", body)
    if problems:
        return [*checks, _fail("checkpoint.schema", problems[0])]
    digests = [record_digest(line) for line in view.lines]
    root = merkle.root([bytes.fromhex(d) for d in digests]).hex()
    found = []
    if body["tree_size"] != len(digests):
        found.append(f"tree size {body['tree_size']} signed, chain has {len(digests)} records")
    if digests and body["head"] != digests[-1]:
        found.append(f"head {body['head'][:16]}… signed, chain ends with {digests[-1][:16]}…")
    if body["root_hash"] != root:
        found.append(f"root {body['root_hash'][:16]}… signed, chain's Merkle root is {root[:16]}…")
    checks.append(
        _fail("checkpoint.chain", "; ".join(found))
        if found
        else _pass("checkpoint.chain", f"signed tree size {len(digests)}, head and Merkle root match the chain")
    )
    return checks


def _recorded_files(view: ChainView) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    write = view.first("output.write")
    if write:
        files.update({f["name"]: f for f in write["files"]})
    report = view.first("report.generate")
    if report:
        files[report["file"]["name"]] = report["file"]
        for still in report.get("stills", []):
            files.update({f["name"]: f for f in still["files"].values()})
    return files


def _bundle_files(bundle: Path) -> set[str]:
    found = set()
    for root, _dirs, names in os.walk(bundle):
        for name in names:
            found.add(os.path.relpath(os.path.join(root, name), bundle).replace(os.sep, "/"))
    return found


def _files(bundle: Path, view: ChainView) -> list[Check]:
    recorded = _recorded_files(view)
    present = _bundle_files(bundle)
    extra = sorted(present - set(recorded) - set(FIXED_FILES))
    missing = sorted(set(recorded) - present)
    checks = [
        _fail("files.inventory", "; ".join([*(f"unrecorded file {e}" for e in extra), *(f"missing file {m}" for m in missing)][:6]))
        if extra or missing
        else _pass("files.inventory", f"{len(recorded)} recorded files present, no others")
    ]
    bad = []
    for name, entry in sorted(recorded.items()):
        if name in missing:
            continue
        path = bundle / name
        got = _sha256_file(path)
        if got != entry["sha256"] or path.stat().st_size != entry["size"]:
            bad.append(f"{name}: expected sha256 {entry['sha256'][:16]}…, found {got[:16]}…")
    checks.append(
        _fail("files.digests", "; ".join(bad[:6]))
        if bad
        else _pass("files.digests", f"{len(recorded) - len(missing)} files match their recorded sha256")
    )
    step = view.first("step.run")
    if step:
        sub_bad = []
        for subject in step["subject"]:
            entry = recorded.get(subject["name"])
            want = subject["digest"].get("sha256")
            if want and (entry is None or entry["sha256"] != want):
                sub_bad.append(
                    f"{subject['name']}: step.run names {want[:16]}…, output.write names {(entry or {}).get('sha256', 'nothing')[:16]}…"
                )
        checks.append(
            _fail("step.subjects", "; ".join(sub_bad)) if sub_bad else _pass("step.subjects", "step.run subjects match the written files")
        )
    return checks


def _framehash_file(path: Path) -> list[FrameHash]:
    with open(path, encoding="ascii") as fh:
        return list(parse(fh))


def _leaf_root(lines: list[FrameHash]) -> str:
    return merkle.root([fh.line().encode() for fh in lines]).hex()


def _frames(bundle: Path, view: ChainView) -> list[Check]:
    checks = []
    ingest = view.first("evidence.ingest")
    write = view.first("output.write")
    step = view.first("step.run")
    if not (ingest and write and step):
        return [_fail("frames.records", "evidence.ingest, step.run or output.write record missing")]
    try:
        inp = _framehash_file(bundle / "input.framehash")
        out = _framehash_file(bundle / "output.framehash")
    except (OSError, ValueError) as exc:
        return [_fail("frames.files", f"framehash file unreadable: {exc}")]
    in_root = _leaf_root(inp)
    rec = ingest["input_framehash"]
    checks.append(
        _pass("frames.input_root", f"{len(inp)} input frame hashes, Merkle root {in_root[:16]}… as recorded")
        if in_root == rec["merkle_root"] == write["frame_roots"]["input"] and len(inp) == rec["tree_size"]
        else _fail(
            "frames.input_root",
            f"input.framehash root {in_root[:16]}… ({len(inp)} frames), recorded {rec['merkle_root'][:16]}… ({rec['tree_size']} frames)",
        )
    )
    out_root = _leaf_root(out)
    subject = next((s for s in step["subject"] if s["name"] == "frames:output/master.mkv"), None)
    signed_root = subject["digest"].get("rfc9162-sha256") if subject else None
    checks.append(
        _pass("frames.output_root", f"{len(out)} output frame hashes, Merkle root {out_root[:16]}… as signed in step.run")
        if out_root == signed_root == write["frame_roots"]["output"]
        else _fail("frames.output_root", f"output.framehash root {out_root[:16]}…, step.run signs {str(signed_root)[:16]}…")
    )
    master = bundle / "output/master.mkv"
    if master.exists():
        try:
            decoded = _decode_lines(master)
        except Exception as exc:
            checks.append(_fail("frames.master_decode", f"output/master.mkv does not decode: {exc}"))
        else:
            checks.append(_compare_lines("frames.master_decode", "output/master.mkv decoded now", decoded, "output.framehash", out))
    checks += _maps(bundle, step)
    return checks


def _maps(bundle: Path, step: dict[str, Any]) -> list[Check]:
    """Every map video signed in step.run decodes to its framehash file, whose Merkle root is
    the signed one; the flagged-regions sidecar is the one the step names."""
    annotations = next((b["annotations"] for b in step["predicate"]["runDetails"]["byproducts"] if b["name"] == "step"), {})
    maps = annotations.get("maps")
    if not maps:
        return []
    checks = []
    signed = {s["name"]: s["digest"].get("rfc9162-sha256") for s in step["subject"]}
    for name, entry in sorted(maps["files"].items()):
        check = f"maps.{name}"
        try:
            recorded = _framehash_file(bundle / entry["framehash"])
            decoded = _decode_lines(bundle / entry["video"])
        except Exception as exc:
            checks.append(_fail(check, f"{entry['video']}: cannot decode or read its framehash ({exc})"))
            continue
        root = _leaf_root(recorded)
        if root != signed.get(f"frames:{entry['video']}") or root != entry["merkle_root"]:
            checks.append(_fail(check, f"{entry['framehash']} root {root[:16]}… is not the root step.run signs"))
            continue
        checks.append(_compare_lines(check, f"{entry['video']} decoded now", decoded, entry["framehash"], recorded))
    flagged = maps["flagged"]
    path = bundle / flagged["file"]
    got = _sha256_file(path) if path.is_file() else "missing"
    checks.append(
        _pass("maps.flagged", f"{flagged['file']} is the sidecar step.run names")
        if got == flagged["sha256"]
        else _fail("maps.flagged", f"{flagged['file']}: sha256 {got[:16]}…, step.run names {flagged['sha256'][:16]}…")
    )
    return checks


def _decode_lines(path: Path) -> list[FrameHash]:
    _head, lines, reader = video_framehashes(path)
    with reader:
        return [fh for fh, _ in lines]


def _compare_lines(name: str, what: str, got: list[FrameHash], ref_name: str, ref: list[FrameHash]) -> Check:
    if got == ref:
        return _pass(name, f"{what}: {len(got)} frames hash exactly as {ref_name}")
    for i, (a, b) in enumerate(zip(got, ref, strict=False)):
        if a != b:
            return _fail(name, f"{what}: frame {i} is {a.sha256[:16]}… (pts {a.pts}), {ref_name} has {b.sha256[:16]}… (pts {b.pts})")
    return _fail(name, f"{what}: {len(got)} frames, {ref_name} lists {len(ref)}")


def _evidence(bundle: Path, view: ChainView, evidence: Path) -> list[Check]:
    ingest = view.first("evidence.ingest")
    if not ingest:
        return [_fail("evidence.sha256", "no evidence.ingest record")]
    if not evidence.is_file():
        return [_fail("evidence.sha256", f"{evidence}: no such file")]
    want = ingest["evidence"]["sha256"]
    got = _sha256_file(evidence)
    checks = [
        _pass("evidence.sha256", f"{evidence.name} has the recorded sha256 {want[:16]}…")
        if got == want
        else _fail("evidence.sha256", f"{evidence.name}: expected sha256 {want[:16]}…, found {got[:16]}…")
    ]
    try:
        decoded = _decode_lines(evidence)
        recorded = _framehash_file(bundle / "input.framehash")
    except Exception as exc:
        return [*checks, _fail("evidence.frames", f"cannot decode {evidence.name}: {exc}")]
    checks.append(_compare_lines("evidence.frames", f"{evidence.name} decoded now", decoded, "input.framehash", recorded))
    return checks


def verify_bundle(
    bundle: Path,
    key: Ed25519PublicKey,
    evidence: Path | None = None,
    extra_checks: Sequence[Callable[[Path, ChainView, Ed25519PublicKey], list[Check]]] = (),
) -> Iterator[Check]:
    """Every check, in order. The bundle verifies when all of them pass. Higher layers add their
    own checks through `extra_checks` (the report's: `forensic_vsr.report.report_checks`)."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        yield _fail("bundle", f"{bundle}: not a directory")
        return
    view, chain_checks = read_chain(bundle, key)
    yield from chain_checks
    structure = _structure(view)
    yield from structure
    yield from _checkpoint(bundle, view, key)
    if view.first("output.write") is None:
        if structure and structure[0].ok:  # a signed refusal: nothing but the chain and the manifest
            extra = sorted(_bundle_files(bundle) - set(FIXED_FILES))
            yield (
                _fail("files.inventory", f"a refused run has files: {', '.join(extra[:6])}")
                if extra
                else _pass("files.inventory", "no output files, as a refusal requires")
            )
        return
    yield from _files(bundle, view)
    yield from _frames(bundle, view)
    for extra in extra_checks:
        yield from extra(bundle, view, key)
    if evidence is not None:
        yield from _evidence(bundle, view, Path(evidence))
