"""`fvsr verify`'s report checks: render report.pdf again from the verified records and the
bundle's stills and compare it byte for byte; check its PAdES signature."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr.audit.chain import record_digest
from forensic_vsr.audit.checks import ChainView, Check
from forensic_vsr.report.content import report_records
from forensic_vsr.report.render import render


def render_report(bundle: Path, view: ChainView, out: Path) -> dict[str, Any] | None:
    """Render the (unsigned) report from the verified records and the bundle's stills into `out`.
    Returns the report.generate record, or None for a bundle run with --no-report (its report is
    then rendered without stills, at the chain head before run.complete)."""
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
    records = report_records(bodies, examiner, keyid, (rec or {}).get("references", []))
    render(bundle, records, (rec or {}).get("stills", []), rec["chain_head"] if rec else str(head), out)
    return rec


def report_checks(bundle: Path, view: ChainView, key: Ed25519PublicKey) -> list[Check]:
    """Render the report again from the verified records and the bundle's stills: the bytes must
    equal report.pdf, so every hash and fact printed in it is the bundle's."""
    import tempfile

    rec = view.first("report.generate")
    if rec is None:
        return []
    path = bundle / rec["file"]["name"]
    if not path.is_file():
        return [Check.failed("report.content", f"{rec['file']['name']} is missing")]
    with tempfile.TemporaryDirectory() as tmp:
        again = Path(tmp) / "report.pdf"
        try:
            render_report(bundle, view, again)
        except Exception as exc:
            return [Check.failed("report.content", f"the report cannot be rendered again from the bundle: {type(exc).__name__}: {exc}")]
        rendered = again.read_bytes()
    data = path.read_bytes()
    unsigned = rec.get("unsigned")
    same = (
        data[: len(rendered)] == rendered and hashlib.sha256(rendered).hexdigest() == unsigned["sha256"] if unsigned else data == rendered
    )
    checks = [
        Check.passed("report.content", "report.pdf renders again byte for byte from the signed records: its facts are the bundle's")
        if same
        else Check.failed("report.content", "report.pdf differs from the report the signed records give: its text was altered")
    ]
    if unsigned:
        from forensic_vsr.audit.bundle_format import FORMAT_1, bundle_format, read_manifest
        from forensic_vsr.audit.pdfsign import check_report_signature

        # format 1 signed the report with the Ed25519 examiner key itself; later formats with the
        # certificate whose sha256 report.generate records (a P-256 key or a lab's certificate)
        old = bundle_format(read_manifest(bundle)) == FORMAT_1
        recorded = rec.get("signature", {}).get("certificate_sha256")
        ok, reason = check_report_signature(data, certificate_sha256=recorded, ed25519_public_key=key if old else None)
        checks.append(Check.passed("report.signature", reason) if ok else Check.failed("report.signature", reason))
    return checks
