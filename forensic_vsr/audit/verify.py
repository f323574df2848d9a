"""Offline verification of a bundle against a public key the auditor supplies.

Nothing in the bundle is trusted until it has been checked against that key: the manifest's
own public key is only compared, never used. Every file is hostile (see `safe_read`): regular
files inside the bundle only, sizes compared with the signed ones before a byte is hashed, and
nothing parsed from a file whose digest failed. `verify_bundle` yields each `Check` as soon as it
is known, each step guarded so that an exception becomes a FAIL line naming the step; the
bundle verifies when every check passes. Imports neither torch nor cv2.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr.audit.attestation import attestation_checks, recorded_attestations
from forensic_vsr.audit.bundle_format import (
    CHAIN,
    DEFAULT_UNSIGNED_FILES,
    MANIFEST,
    BundleFormat,
    bundle_format,
    manifest_checks,
    read_manifest,
)
from forensic_vsr.audit.chain import read_chain
from forensic_vsr.audit.checks import ChainView, Check, guarded
from forensic_vsr.audit.completeness import unfinished_run
from forensic_vsr.audit.geometry import evidence_format, master_geometry
from forensic_vsr.audit.maps_check import recomputed_checks
from forensic_vsr.audit.records import step_annotations
from forensic_vsr.audit.review import review_checks, review_files
from forensic_vsr.audit.safe_read import (
    FRAMEHASH_HEADER_MAX,
    FRAMEHASH_LINE_MAX,
    UnsafeFile,
    bundle_entries,
    hash_fd,
    hash_recorded,
    open_user_file,
    read_recorded,
)
from forensic_vsr.errors import IntegrityError
from forensic_vsr.integrity import merkle
from forensic_vsr.integrity.framehash import FrameHash, parse
from forensic_vsr.media import BITEXACT_DECODE, OUTPUT_DECODE, DecoderSettings, video_framehashes

__all__ = ["ChainView", "Check", "ExtraCheck", "bundle_checks", "read_chain", "read_framehash", "verify_bundle"]

FIXED_FILES = (MANIFEST, CHAIN)
TERMINAL = ("run.complete", "run.aborted")
MASTER = "output/master.mkv"
FRAMES_SUBJECT = f"frames:{MASTER}"

ExtraCheck = Callable[[Path, ChainView, Ed25519PublicKey], Sequence[Check]]

_pass = Check.passed
_fail = Check.failed


@dataclass
class _Run:
    """What the steps of one verification learn, in order: later steps only use what passed."""

    bundle: Path
    key: Ed25519PublicKey
    view: ChainView = field(default_factory=ChainView)
    fmt: BundleFormat | None = None
    recorded: dict[str, dict[str, Any]] = field(default_factory=dict)
    verified: set[str] = field(default_factory=set)  # recorded files whose size and sha256 matched
    evidence: Path | None = None  # the auditor's evidence, once its sha256 is the recorded one
    failures: int = 0

    def note(self, checks: Iterator[Check]) -> Iterator[Check]:
        for check in checks:
            self.failures += not check.ok
            yield check


def _structure(view: ChainView) -> Check:
    types = [p.get("type") if p else None for p in view.payloads]
    if not types:
        return _fail("chain.structure", "chain.jsonl holds no records")
    if types[0] != "policy.decision":
        return _fail("chain.structure", f"first record is {types[0]}, expected policy.decision")
    if types[-1] not in TERMINAL:
        return Check(
            "chain.complete",
            "INCOMPLETE",
            f"run stopped after record {len(types) - 1} ({types[-1]}): no run.complete record; this bundle is not a finished run",
        )
    if any(t in TERMINAL for t in types[:-1]):
        return _fail("chain.structure", "a terminal record (run.complete/run.aborted) is followed by more records")
    decision = view.first("policy.decision")
    if types[-1] == "run.aborted":
        body = view.payloads[-1]["body"]  # type: ignore[index]
        if types == ["policy.decision", "run.aborted"] and decision is not None and not decision["allowed"]:
            failed = [r["rule"] for r in decision["rules"] if r["outcome"] == "fail"]
            return _pass(
                "chain.complete",
                f"signed refusal: policy {decision['policy']['id']} refused the recipe ({', '.join(failed)}); no outputs, by design",
            )
        return _fail("chain.complete", f"the run was aborted: {body.get('reason')}")
    if decision is None or not decision["allowed"]:
        return _fail("chain.structure", "outputs were produced although the policy decision did not allow the recipe")
    dupes = sorted({t for t in types if t is not None and types.count(t) > 1 and t != "step.run"})
    if dupes:
        return _fail("chain.structure", f"record types appear more than once: {', '.join(dupes)}")
    return _pass("chain.complete", f"{len(types)} records from policy.decision (allowed) to run.complete")


def _is_refusal(view: ChainView) -> bool:
    return _structure(view).ok and view.first("output.write") is None


def _manifest(run: _Run) -> Iterator[Check]:
    try:
        manifest = read_manifest(run.bundle)
    except UnsafeFile as exc:
        finished = bool(run.view.payloads) and run.view.payloads[-1] is not None and run.view.payloads[-1].get("type") in TERMINAL
        missing = str(exc) == f"{MANIFEST} is missing"
        status = "INCOMPLETE" if missing and not finished else "FAIL"
        yield Check("manifest", status, f"{exc}: no signed checkpoint")
        return
    run.fmt = bundle_format(manifest)
    yield from manifest_checks(manifest, run.view, run.key, _is_refusal(run.view))


def _entry(name: str, entry: Any, recorded: dict[str, dict[str, Any]], conflicts: list[str]) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ValueError(f"a file entry of the signed records is malformed: {str(entry)[:60]}")
    old = recorded.setdefault(name, entry)
    if (old.get("sha256"), old.get("size")) != (entry.get("sha256"), entry.get("size")):
        conflicts.append(f"{name} is recorded twice with different digests")


def _recorded_files(view: ChainView) -> tuple[dict[str, dict[str, Any]], list[str]]:
    files: dict[str, dict[str, Any]] = {}
    conflicts: list[str] = []
    write = view.first("output.write")
    for f in write["files"] if write else []:
        _entry(f["name"], f, files, conflicts)
    for ref in recorded_attestations(view):
        _entry(ref["name"], ref, files, conflicts)
    report = view.first("report.generate")
    if report:
        _entry(report["file"]["name"], report["file"], files, conflicts)
        for still in report.get("stills", []):
            for f in still["files"].values():
                _entry(f["name"], f, files, conflicts)
    return files, conflicts


def _unsigned_files(run: _Run) -> frozenset[str]:
    return run.fmt.unsigned_files if run.fmt else DEFAULT_UNSIGNED_FILES


def _refusal_inventory(run: _Run) -> Iterator[Check]:
    extra = sorted(set(bundle_entries(run.bundle)) - _unsigned_files(run))
    yield (
        _fail("files.inventory", f"a refused run has files: {', '.join(extra[:6])}")
        if extra
        else _pass("files.inventory", "no output files, as a refusal requires")
    )


def _review_names(run: _Run, present: dict[str, str]) -> list[str]:
    """The review records a bundle of this format may hold (checked by `_reviews`)."""
    return review_files(present) if run.fmt is not None and run.fmt.review_records else []


def _files(run: _Run) -> Iterator[Check]:
    run.recorded, conflicts = _recorded_files(run.view)
    present = bundle_entries(run.bundle)
    extra = sorted(set(present) - set(run.recorded) - _unsigned_files(run) - set(_review_names(run, present)))
    missing = sorted(set(run.recorded) - set(present))
    odd = sorted(f"{name} is {kind}" for name, kind in present.items() if kind != "a regular file")
    problems = [*conflicts, *odd, *(f"unrecorded file {e}" for e in extra), *(f"missing file {m}" for m in missing)]
    yield (
        _fail("files.inventory", "; ".join(problems[:6]) + (f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""))
        if problems
        else _pass("files.inventory", f"{len(run.recorded)} recorded files present, no others")
    )
    bad = []
    for name, entry in sorted(run.recorded.items()):
        try:
            got = hash_recorded(run.bundle, name, entry.get("size"))
        except UnsafeFile as exc:
            bad.append(str(exc))
            continue
        if got == entry.get("sha256"):
            run.verified.add(name)
        else:
            bad.append(f"{name}: expected sha256 {str(entry.get('sha256'))[:16]}…, found {got[:16]}…")
    yield (
        _fail("files.digests", "; ".join(bad[:6]) + (f" (and {len(bad) - 6} more)" if len(bad) > 6 else ""))
        if bad
        else _pass("files.digests", f"{len(run.verified)} files match their recorded size and sha256")
    )
    step = run.view.first("step.run")
    if step:
        sub_bad = []
        for subject in step["subject"]:
            written = run.recorded.get(subject["name"])
            want = subject["digest"].get("sha256")
            if want and (written is None or written["sha256"] != want):
                sub_bad.append(
                    f"{subject['name']}: step.run names {want[:16]}…, output.write names {(written or {}).get('sha256', 'nothing')[:16]}…"
                )
        yield (
            _fail("step.subjects", "; ".join(sub_bad[:6]))
            if sub_bad
            else _pass("step.subjects", "step.run subjects match the written files")
        )
    yield from attestation_checks(run.bundle, run.view, run.key, required=run.fmt is not None and run.fmt.step_attestation)


def framehash_bound(frames: int) -> int:
    """Largest framehash file `frames` frame lines can make."""
    return FRAMEHASH_HEADER_MAX + max(frames, 0) * FRAMEHASH_LINE_MAX


def read_framehash(bundle: Path, entry: dict[str, Any], frames: int) -> list[FrameHash]:
    """The frame lines of a recorded framehash file: read only if its size is the signed one
    and within what `frames` signed frames can take, parsed only if its sha256 is the signed one.
    Raises UnsafeFile."""
    cap = framehash_bound(frames)
    data = read_recorded(bundle, entry["name"], entry.get("size"), entry.get("sha256"), cap)
    try:
        lines = list(parse(data.decode("ascii").splitlines()))
    except ValueError as exc:
        raise UnsafeFile(f"{entry['name']}: {exc}") from None
    if len(lines) != frames:
        raise UnsafeFile(f"{entry['name']} has {len(lines)} frame lines, the signed records say {frames}")
    return lines


def _leaf_root(lines: list[FrameHash]) -> str:
    return merkle.root([fh.line().encode() for fh in lines]).hex()


def _not_verified(name: str, check: str) -> Check:
    return _fail(check, f"not checked: {name} is missing or failed files.digests")


def _subject(step: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in step["subject"] if s["name"] == name), None)


def _frames(run: _Run) -> Iterator[Check]:
    view, bundle = run.view, run.bundle
    ingest, write, step = view.first("evidence.ingest"), view.first("output.write"), view.first("step.run")
    if not (ingest and write and step):
        yield _fail("frames.records", "evidence.ingest, step.run or output.write record missing")
        return
    rec = ingest["input_framehash"]
    if "input.framehash" not in run.verified:
        yield _not_verified("input.framehash", "frames.input_root")
    else:
        try:
            inp = read_framehash(bundle, run.recorded["input.framehash"], rec["tree_size"])
        except UnsafeFile as exc:
            yield _fail("frames.input_root", str(exc))
            return
        in_root = _leaf_root(inp)
        yield (
            _pass("frames.input_root", f"{len(inp)} input frame hashes, Merkle root {in_root[:16]}… as recorded")
            if in_root == rec["merkle_root"] == write["frame_roots"]["input"] and rec["sha256"] == run.recorded["input.framehash"]["sha256"]
            else _fail(
                "frames.input_root", f"input.framehash root {in_root[:16]}… ({len(inp)} frames), recorded {rec['merkle_root'][:16]}…"
            )
        )
    subject = _subject(step, FRAMES_SUBJECT)
    if subject is None:
        yield _fail("frames.output_root", f"step.run signs no {FRAMES_SUBJECT} subject")
        return
    if "output.framehash" not in run.verified:
        yield _not_verified("output.framehash", "frames.output_root")
        return
    try:
        out = read_framehash(bundle, run.recorded["output.framehash"], subject["annotations"]["tree_size"])
    except UnsafeFile as exc:
        yield _fail("frames.output_root", str(exc))
        return
    out_root = _leaf_root(out)
    signed_root = subject["digest"].get("rfc9162-sha256")
    yield (
        _pass("frames.output_root", f"{len(out)} output frame hashes, Merkle root {out_root[:16]}… as signed in step.run")
        if out_root == signed_root == write["frame_roots"]["output"]
        else _fail("frames.output_root", f"output.framehash root {out_root[:16]}…, step.run signs {str(signed_root)[:16]}…")
    )
    if MASTER not in run.verified:
        yield _not_verified(MASTER, "frames.master_decode")
        return
    yield from guarded(
        "frames.master_decode",
        lambda: [
            _compare_lines(
                "frames.master_decode", f"{MASTER} decoded now", _decode_lines(bundle / MASTER, OUTPUT_DECODE), "output.framehash", out
            )
        ],
    )
    yield from guarded("frames.geometry", lambda: [master_geometry(bundle / MASTER, step_annotations(step))])


def _maps(run: _Run) -> Iterator[Check]:
    """Every map video signed in step.run decodes to its framehash file, whose Merkle root is
    the signed one; the flagged-regions sidecar is the one the step names."""
    step = run.view.first("step.run")
    if step is None:
        return
    annotations: dict[str, Any] = next((b["annotations"] for b in step["predicate"]["runDetails"]["byproducts"] if b["name"] == "step"), {})
    maps = annotations.get("maps")
    if not maps:
        return
    for name, entry in sorted(maps["files"].items()):
        yield from guarded(f"maps.{name}", functools.partial(lambda check, entry: [_map(run, step, check, entry)], f"maps.{name}", entry))
    flagged = maps["flagged"]
    recorded = run.recorded.get(flagged["file"])
    yield (
        _not_verified(flagged["file"], "maps.flagged")
        if flagged["file"] not in run.verified or recorded is None
        else _pass("maps.flagged", f"{flagged['file']} is the sidecar step.run names")
        if recorded["sha256"] == flagged["sha256"]
        else _fail(
            "maps.flagged", f"{flagged['file']}: output.write names {recorded['sha256'][:16]}…, step.run names {flagged['sha256'][:16]}…"
        )
    )


def _map(run: _Run, step: dict[str, Any], check: str, entry: dict[str, Any]) -> Check:
    video, framehash = entry["video"], entry["framehash"]
    for name in (video, framehash):
        if name not in run.verified:
            return _not_verified(name, check)
    subject = _subject(step, f"frames:{video}")
    if subject is None:
        return _fail(check, f"step.run signs no frames:{video} subject")
    try:
        recorded = read_framehash(run.bundle, run.recorded[framehash], subject["annotations"]["tree_size"])
    except UnsafeFile as exc:
        return _fail(check, str(exc))
    root = _leaf_root(recorded)
    if root != subject["digest"].get("rfc9162-sha256") or root != entry["merkle_root"]:
        return _fail(check, f"{framehash} root {root[:16]}… is not the root step.run signs")
    return _compare_lines(check, f"{video} decoded now", _decode_lines(run.bundle / video, OUTPUT_DECODE), framehash, recorded)


def _reviews(run: _Run) -> Iterator[Check]:
    """Every review/NNNN.json (format 2) against the key, this chain's head and output.framehash."""
    names = _review_names(run, bundle_entries(run.bundle))
    step = run.view.first("step.run")
    if not names or step is None:
        return
    subject = _subject(step, FRAMES_SUBJECT)
    if subject is None or "output.framehash" not in run.verified:
        yield _not_verified("output.framehash", "review")
        return
    out = read_framehash(run.bundle, run.recorded["output.framehash"], subject["annotations"]["tree_size"])
    run_summary = step_annotations(step)
    yield from review_checks(run.bundle, run.view, run.key, names, out, (run_summary["width_out"], run_summary["height_out"]))


def _decode_lines(path: Path, decoder: DecoderSettings = BITEXACT_DECODE, rate: Fraction | None = None) -> list[FrameHash]:
    _head, lines, reader = video_framehashes(path, decoder, rate)
    with reader:
        return [fh for fh, _ in lines]


def _compare_lines(name: str, what: str, got: list[FrameHash], ref_name: str, ref: list[FrameHash]) -> Check:
    if got == ref:
        return _pass(name, f"{what}: {len(got)} frames hash exactly as {ref_name}")
    for i, (a, b) in enumerate(zip(got, ref, strict=False)):
        if a != b:
            return _fail(name, f"{what}: frame {i} is {a.sha256[:16]}… (pts {a.pts}), {ref_name} has {b.sha256[:16]}… (pts {b.pts})")
    return _fail(name, f"{what}: {len(got)} frames, {ref_name} lists {len(ref)}")


def _evidence(run: _Run, evidence: Path) -> Iterator[Check]:
    ingest = run.view.first("evidence.ingest")
    if not ingest:
        yield _fail("evidence.sha256", "no evidence.ingest record")
        return
    want, size = ingest["evidence"]["sha256"], ingest["evidence"].get("size")
    try:
        fd, found = open_user_file(evidence)
        if isinstance(size, int) and found != size:
            os.close(fd)
            raise UnsafeFile(f"{evidence.name} is {found} bytes, the recorded evidence is {size}")
        got = hash_fd(fd, found, evidence.name)
    except UnsafeFile as exc:
        yield _fail("evidence.sha256", str(exc))
        yield _fail("evidence.frames", f"not decoded: {evidence.name} is not the recorded evidence")
        return
    if got != want:
        yield _fail("evidence.sha256", f"{evidence.name}: expected sha256 {want[:16]}…, found {got[:16]}…")
        yield _fail("evidence.frames", f"not decoded: {evidence.name} is not the recorded evidence")
        return
    yield _pass("evidence.sha256", f"{evidence.name} has the recorded sha256 {want[:16]}…")
    run.evidence = evidence
    if "input.framehash" not in run.verified:
        yield _not_verified("input.framehash", "evidence.frames")
        return
    try:
        recorded = read_framehash(run.bundle, run.recorded["input.framehash"], ingest["input_framehash"]["tree_size"])
    except UnsafeFile as exc:
        yield _fail("evidence.frames", str(exc))
        return
    # decoded as the ingest did: the recorded decoder options (format 1 recorded none: a plain decode)
    try:
        decoder = DecoderSettings.from_record(ingest.get("decoder"))
    except IntegrityError as exc:
        yield _fail("evidence.frames", f"the recorded decoder settings cannot be reproduced: {exc}")
        return
    derived = (ingest.get("timing") or {}).get("derived") or {}
    # timestamps the evidence does not carry were derived from the examiner's --rate: derive them alike
    rate = Fraction(str(derived["rate"])) if str(derived.get("from", "")).startswith("--rate") and derived.get("rate") else None
    lines = _decode_lines(evidence, decoder, rate)
    yield _compare_lines(
        "evidence.frames",
        f"{evidence.name} decoded now ({' '.join(f'-{k} {v}' for k, v in decoder.options().items()) or 'plain decode'})",
        lines,
        "input.framehash",
        recorded,
    )
    step = run.view.first("step.run")
    if step is not None:  # the colour planes verify judges (judgement) follow pix_fmt_in: the file's, not the record's
        yield evidence_format(evidence, decoder, step_annotations(step).get("pix_fmt_in"))


def _extra(run: _Run, extra: ExtraCheck) -> Iterator[Check]:
    if run.failures:
        yield _fail(
            getattr(extra, "__name__", "extra_checks"),
            "not run: the checks above failed, so the bundle's records and files are not trusted",
        )
        return
    yield from extra(run.bundle, run.view, run.key)


def verify_bundle(
    bundle: Path,
    key: Ed25519PublicKey,
    evidence: Path | None = None,
    extra_checks: Sequence[ExtraCheck] = (),
) -> Iterator[Check]:
    """Every check, each yielded as soon as it is known. The bundle verifies when all of them
    pass. Higher layers add their own checks through `extra_checks` (the report's:
    `forensic_vsr.report.report_checks`); they run only when every check before them passed."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        yield _fail("bundle", f"{bundle}: not a directory")
        return
    run = _Run(bundle, key)
    yield from unfinished_run(bundle)  # a hidden build directory is INCOMPLETE whatever it holds

    def chain() -> list[Check]:
        run.view, checks = read_chain(bundle, key)
        return checks

    yield from run.note(guarded("chain", chain))
    yield from run.note(guarded("chain.structure", lambda: [_structure(run.view)]))
    yield from run.note(guarded("manifest", lambda: _manifest(run)))
    if run.view.first("output.write") is None:
        if not _is_refusal(run.view):
            return
        # a signed refusal: nothing but the chain and the manifest (and its decision re-judged)
        yield from run.note(guarded("files.inventory", lambda: _refusal_inventory(run)))
    else:
        yield from run.note(guarded("files", lambda: _files(run)))
        yield from run.note(guarded("frames", lambda: _frames(run)))
        yield from run.note(guarded("maps", lambda: _maps(run)))
        yield from run.note(guarded("review", lambda: _reviews(run)))
    for extra in extra_checks:
        yield from run.note(guarded(getattr(extra, "__name__", "extra_checks"), functools.partial(_extra, run, extra)))
    if evidence is not None and run.view.first("output.write") is not None:
        yield from run.note(guarded("evidence", lambda: _evidence(run, Path(evidence))))
    step = run.view.first("step.run")
    if step is not None and run.view.first("output.write") is not None:  # format 3: the maps not stored, recomputed
        allowed = run.fmt is not None and run.fmt.recomputed_maps
        args = (run.bundle, step, run.view.first("evidence.ingest"), run.recorded, run.verified, allowed, run.evidence)
        yield from run.note(guarded("maps.recomputed", lambda: recomputed_checks(*args)))


def bundle_checks(
    bundle: Path, key: Ed25519PublicKey, evidence: Path | None = None, extra_checks: Sequence[ExtraCheck] = ()
) -> list[Check]:
    """All of `verify_bundle`'s checks as a list, for callers that want them at once."""
    return list(verify_bundle(bundle, key, evidence, extra_checks))
