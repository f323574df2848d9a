"""PAdES signatures on the court report (pyHanko), with an X.509 certificate for an ECDSA P-256
(or RSA) key, so that PDF readers, poppler's pdfsig and `openssl cms` validate them.

The signing key is the examiner's report key (derived from the Ed25519 examiner key, see
audit/keys.py) with the self-signed KEY.crt that `fvsr keys generate` writes, or a lab's
CA-issued certificate (then its chain) with that certificate's own private key. Either way the
binding to the examiner is the signed chain: report.generate records the signing certificate's
SHA-256, and `fvsr verify` requires the PDF's signing certificate to hash to it, so no
certificate authority has to be trusted for the check to mean something. Format-1 bundles were
signed with the Ed25519 key itself; they are checked against the auditor's key, as then.

The signature is an incremental update: the signed file starts with the unsigned report's exact
bytes, which `fvsr verify` re-renders from the signed records."""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr.audit.keys import ReportKey, Signer, load_report_key, self_signed_certificate
from forensic_vsr.errors import KeyUseError

FIELD = "ExaminerSignature"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportCertificate:
    """The certificate chain a report is signed under (signing certificate first) and the
    private key of the signing certificate; None: the examiner's own report key."""

    chain: list[x509.Certificate]
    key: ReportKey | None = None

    @property
    def signing(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def sha256(self) -> str:
        return certificate_sha256(self.signing)

    @property
    def self_signed(self) -> bool:
        return is_self_signed(self.signing)


def certificate_sha256(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex: what report.generate records as certificate_sha256."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issuer equals subject and the certificate's signature verifies with its own public key."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _public_der(key: object) -> bytes | None:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return None
    der: bytes = public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def report_certificate(
    signer: Signer, cert: Path | None = None, cert_key: Path | None = None, passphrase: bytes | None = None
) -> ReportCertificate:
    """What a run signs its report with: `cert` (a PEM file, the signing certificate first, then
    any intermediates) for the examiner's report key or, with `cert_key`, for that private key
    (an encrypted PEM unlocked with `passphrase`); without `cert`, a self-signed certificate made
    for the run. Checked before any work: a wrong certificate fails in one line."""
    if cert is None:
        if cert_key is not None:
            raise KeyUseError("--cert-key needs --cert, the certificate that goes with it")
        return ReportCertificate([self_signed_certificate(signer)])
    try:
        chain = x509.load_pem_x509_certificates(Path(cert).read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyUseError(f"{cert}: not a readable PEM certificate ({exc})") from None
    for child, issuer in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError):
            raise KeyUseError(f"{cert}: {child.subject.rfc4514_string()} is not issued by the next certificate in the file") from None
    signing = chain[0]
    if cert_key is None and _public_der(signing.public_key()) == _public_der(signer.public_key):
        # KEY.crt of a format-1 key: an Ed25519 certificate PDF readers cannot validate
        log.warning("%s certifies the Ed25519 examiner key itself; signing the report with a self-signed P-256 certificate", cert)
        return ReportCertificate([self_signed_certificate(signer)])
    key = load_report_key(cert_key, passphrase or b"") if cert_key is not None else None
    expected = key if key is not None else signer.report_key
    if _public_der(signing.public_key()) != _public_der(expected.public_key()):
        if key is not None:
            raise KeyUseError(f"{cert}: the certificate's public key is not the key in {cert_key}")
        raise KeyUseError(
            f"{cert}: the certificate's public key is not the examiner key's report key (P-256); pass its private key with --cert-key"
        )
    return ReportCertificate(chain, key)


def load_certificate(path: Path, signer: Signer) -> ReportCertificate:
    """`report_certificate(signer, path)`: a certificate for the examiner's own report key."""
    return report_certificate(signer, path)


def sign_pdf(unsigned: bytes, signer: Signer, cert: ReportCertificate, reason: str) -> bytes:
    from asn1crypto import keys as akeys
    from asn1crypto import x509 as ax509
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    der = [ax509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in cert.chain]
    private = cert.key if cert.key is not None else signer.report_key
    key = akeys.PrivateKeyInfo.load(
        private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pdf_signer = signers.SimpleSigner(signing_cert=der[0], signing_key=key, cert_registry=SimpleCertificateStore.from_certs(der))
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD, subfilter=SigSeedSubFilter.PADES, reason=reason, name=signer.name or None, md_algorithm="sha256"
    )
    out = io.BytesIO()
    signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(unsigned)), meta, signer=pdf_signer, output=out)
    return out.getvalue()


def check_report_signature(
    pdf: bytes, *, certificate_sha256: str | None, ed25519_public_key: Ed25519PublicKey | None = None
) -> tuple[bool, str]:
    """(ok, reason): exactly one signature, cryptographically intact, covering the whole file,
    made with the certificate whose SHA-256 the signed chain records (`certificate_sha256`)
    and, when `ed25519_public_key` is given (format-1 bundles), for that Ed25519 key. At least
    one of the two must be given: a signature pinned to nothing proves nothing."""
    from asn1crypto import x509 as ax509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    if certificate_sha256 is None and ed25519_public_key is None:
        return False, "report.pdf signature: no recorded certificate and no examiner key to check it against"
    try:
        sigs = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    except Exception as exc:  # hostile input: pyHanko raises many kinds; each is one FAIL line
        return False, f"report.pdf does not parse as a PDF ({type(exc).__name__}: {exc})"
    if len(sigs) != 1:
        return False, f"report.pdf holds {len(sigs)} signatures, expected 1"
    sig = sigs[0]
    try:
        der = sig.signer_cert.dump()
        cert = x509.load_der_x509_certificate(der)
    except Exception as exc:
        return False, f"report.pdf signature has no readable signing certificate ({type(exc).__name__}: {exc})"
    found = hashlib.sha256(der).hexdigest()
    if certificate_sha256 is not None and found != certificate_sha256:
        return False, f"report.pdf is signed with certificate sha256 {found[:16]}…, the signed chain records {certificate_sha256[:16]}…"
    if ed25519_public_key is not None and _public_der(cert.public_key()) != _public_der(ed25519_public_key):
        return False, "report.pdf is signed with a certificate for another key than the one supplied"
    try:
        status = validate_pdf_signature(sig, ValidationContext(trust_roots=[ax509.Certificate.load(der)]))
    except Exception as exc:
        return False, f"report.pdf signature cannot be validated ({type(exc).__name__}: {exc})"
    if not (status.intact and status.valid):
        return False, "report.pdf signature does not verify: the signed bytes were altered"
    coverage = status.coverage.name if status.coverage is not None else "nothing"
    if coverage != "ENTIRE_FILE":
        return False, f"report.pdf signature covers {coverage}, not the entire file (something was appended)"
    pinned = "the recorded certificate" if certificate_sha256 is not None else "the supplied key"
    by = cert.subject.rfc4514_string()
    return True, f"PAdES signature ({status.pkcs7_signature_mechanism}) intact over the whole file, by {by} with {pinned}"


def check_signature(data: bytes, key: Ed25519PublicKey) -> tuple[bool, str]:
    """Format-1 check, kept for callers not yet passing the recorded certificate:
    `check_report_signature(data, certificate_sha256=None, ed25519_public_key=key)`."""
    return check_report_signature(data, certificate_sha256=None, ed25519_public_key=key)
