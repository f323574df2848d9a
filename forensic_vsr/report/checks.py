"""`fvsr verify`'s report checks: render report.pdf again from the verified records and the
bundle's stills and compare it byte for byte; check its PAdES signature. A report made by another
release (another template, reportlab or tool version) cannot be rendered again byte for byte:
it is checked by what it says instead (report/facts.py), never failed for its age."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr.audit.chain import record_digest
from forensic_vsr.audit.checks import ChainView, Check
from forensic_vsr.report.content import report_records
from forensic_vsr.report.facts import Renderer, check_facts, report_facts, running_renderer
from forensic_vsr.report.render import render

BYTE_FOR_BYTE = "renders again byte for byte"


def report_inputs(view: ChainView) -> tuple[dict[str, Any] | None, dict[str, Any], str]:
    """(report.generate, the records the report is rendered from, the chain head it names). For
    a bundle run with --no-report (no report.generate), the head before run.complete."""
    rec = view.first("report.generate")
    bodies: dict[str, Any] = {}
    head = None
    for line, p in zip(view.lines, view.payloads, strict=False):
        if p is None or p["type"] in ("report.generate", "run.complete", "run.aborted"):
            break
        bodies.setdefault(p["type"], p["body"])
        head = record_digest(line)
    examiner = next((p["actor"]["name"] for p in view.payloads if p is not None), "")
    keyid = next((p["actor"]["keyid"] for p in view.payloads if p is not None), "")
    subject = (rec or {}).get("signature", {}).get("certificate_subject")
    records = report_records(bodies, examiner, keyid, (rec or {}).get("references", []), subject)
    return rec, records, rec["chain_head"] if rec else str(head)


def render_report(bundle: Path, view: ChainView, out: Path, reviews: tuple[list[Any], str] | None = None) -> dict[str, Any] | None:
    """Render the (unsigned) report from the verified records and the bundle's stills into `out`
    (with `reviews`, `fvsr report`'s Review section). Returns the report.generate record, or None
    for a bundle run with --no-report (its report is then rendered without stills, at the chain
    head before run.complete)."""
    rec, records, head = report_inputs(view)
    render(bundle, records, (rec or {}).get("stills", []), head, out, reviews)
    return rec


def _rendered_again(bundle: Path, view: ChainView) -> tuple[bytes | None, str]:
    """(the report rendered again, or None and why not)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        again = Path(tmp) / "report.pdf"
        try:
            render_report(bundle, view, again)
        except Exception as exc:  # records of another release may not fit this renderer: reported, never a crash
            return None, f"{type(exc).__name__}: {exc}"
        return again.read_bytes(), ""


def _same_bytes(data: bytes, rendered: bytes, rec: dict[str, Any]) -> bool:
    """The signed file starts with the rendered bytes, which hash to the recorded unsigned sha256
    (a report signed by an incremental update), or is them (no signature recorded)."""
    unsigned = rec.get("unsigned")
    if unsigned:
        return data[: len(rendered)] == rendered and hashlib.sha256(rendered).hexdigest() == unsigned["sha256"]
    return data == rendered


def _content_by_facts(
    data: bytes, view: ChainView, rec: dict[str, Any], recorded: Renderer | None, signature: tuple[bool, str] | None
) -> Check:
    """report.content for a report of another renderer: the signed digests, the signature and the
    key facts of the signed records in its text."""
    by = f"rendered by {recorded.describe()}" if recorded else "rendered by an earlier release (no renderer recorded)"
    found = hashlib.sha256(data).hexdigest()
    if found != rec["file"]["sha256"]:
        signed = rec["file"]["sha256"]
        return Check.failed("report.content", f"report.pdf ({by}) has sha256 {found[:16]}…, not the signed {signed[:16]}…: altered")
    unsigned = rec.get("unsigned")
    if unsigned and hashlib.sha256(data[: unsigned["size"]]).hexdigest() != unsigned["sha256"]:
        return Check.failed("report.content", f"report.pdf's first {unsigned['size']} bytes are not the signed unsigned report: altered")
    if signature is not None and not signature[0]:
        return Check.failed("report.content", f"report.pdf ({by}) is not the signed report: {signature[1]}")
    _, records, head = report_inputs(view)
    try:
        facts = report_facts(records, head)
    except (KeyError, TypeError, StopIteration) as exc:
        return Check.failed("report.content", f"the signed records lack a fact the report must state ({type(exc).__name__}: {exc})")
    ok, reason = check_facts(data, facts)
    if not ok:
        return Check.failed("report.content", f"{reason} ({by}): its text was altered")
    checked = "signed digest, signature" if signature is not None else "signed digest"
    return Check.passed("report.content", f"{by}: {checked} and {reason} checked in its text")


def report_checks(bundle: Path, view: ChainView, key: Ed25519PublicKey) -> list[Check]:
    """report.content: the report rendered again from the verified records and the bundle's
    stills equals report.pdf, so every hash and fact printed in it is the bundle's; for a report
    of another renderer (or of a format-1 bundle, which recorded none) whose bytes differ, its
    signed digest, signature and key facts instead. report.signature: its PAdES signature."""
    rec = view.first("report.generate")
    if rec is None:
        return []
    path = bundle / rec["file"]["name"]
    if not path.is_file():
        return [Check.failed("report.content", f"{rec['file']['name']} is missing")]
    data = path.read_bytes()
    signature = _signature(bundle, rec, data, key) if rec.get("unsigned") else None
    recorded = Renderer.from_json(rec.get("renderer"))
    rendered, why = _rendered_again(bundle, view)
    if rendered is not None and _same_bytes(data, rendered, rec):
        content = Check.passed("report.content", f"report.pdf {BYTE_FOR_BYTE} from the signed records: its facts are the bundle's")
    elif recorded == running_renderer():
        content = (
            Check.failed("report.content", f"the report cannot be rendered again from the bundle: {why}")
            if rendered is None
            else Check.failed("report.content", "report.pdf differs from the report the signed records give: its text was altered")
        )
    else:
        content = _content_by_facts(data, view, rec, recorded, signature)
    checks = [content]
    if signature is not None:
        ok, reason = signature
        checks.append(Check.passed("report.signature", reason) if ok else Check.failed("report.signature", reason))
    return checks


def _signature(bundle: Path, rec: dict[str, Any], data: bytes, key: Ed25519PublicKey) -> tuple[bool, str]:
    from forensic_vsr.audit.bundle_format import FORMAT_1, bundle_format, read_manifest
    from forensic_vsr.audit.pdfsign import check_report_signature

    # format 1 signed the report with the Ed25519 examiner key itself; later formats with the
    # certificate whose sha256 report.generate records (a P-256 key or a lab's certificate)
    old = bundle_format(read_manifest(bundle)) == FORMAT_1
    recorded = rec.get("signature", {}).get("certificate_sha256")
    return check_report_signature(data, certificate_sha256=recorded, ed25519_public_key=key if old else None)
