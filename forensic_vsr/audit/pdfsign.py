"""PAdES signatures on the court report (pyHanko), with an X.509 certificate bound to the
examiner's Ed25519 key.

`fvsr keys generate` issues a self-signed certificate for the new key (KEY.crt); a lab can
supply its own certificate (and chain) instead with `--cert`. Either way the certificate's public
key must be the examiner key: `fvsr verify` pins the signature to the public key the auditor
supplies, so no certificate authority has to be trusted for the check to mean something.

The signature is an incremental update: the signed file starts with the unsigned report's exact
bytes, which `fvsr verify` re-renders from the signed records."""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from forensic_vsr.audit.keys import Signer
from forensic_vsr.errors import KeyUseError

FIELD = "ExaminerSignature"


def self_signed_certificate(signer: Signer, days: int = 3650) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, signer.name or "forensic-vsr examiner")])
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(signer.private_key, None)
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class ReportCertificate:
    chain: list[x509.Certificate]  # signing certificate first

    @property
    def signing(self) -> x509.Certificate:
        return self.chain[0]


def load_certificate(path: Path, signer: Signer) -> ReportCertificate:
    """A PEM file with the examiner's certificate first, then any intermediates."""
    try:
        chain = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyUseError(f"{path}: not a readable PEM certificate ({exc})") from None
    if not chain:
        raise KeyUseError(f"{path}: no certificate in the file")
    if not _same_key(chain[0].public_key(), signer.public_key):
        raise KeyUseError(f"{path}: the certificate's public key is not the examiner key {signer.keyid[:16]}…")
    return ReportCertificate(chain)


def _same_key(a: object, b: Ed25519PublicKey) -> bool:
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    return isinstance(a, Ed25519PublicKey) and a.public_bytes(*raw) == b.public_bytes(*raw)


def sign_pdf(unsigned: bytes, signer: Signer, cert: ReportCertificate, reason: str) -> bytes:
    from asn1crypto import keys as akeys
    from asn1crypto import x509 as ax509
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    der = [ax509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in cert.chain]
    key = akeys.PrivateKeyInfo.load(
        signer.private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pdf_signer = signers.SimpleSigner(signing_cert=der[0], signing_key=key, cert_registry=SimpleCertificateStore.from_certs(der))
    meta = signers.PdfSignatureMetadata(field_name=FIELD, subfilter=SigSeedSubFilter.PADES, reason=reason, name=signer.name or None)
    out = io.BytesIO()
    signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(unsigned)), meta, signer=pdf_signer, output=out)
    return out.getvalue()


def check_signature(data: bytes, key: Ed25519PublicKey) -> tuple[bool, str]:
    """(ok, reason): exactly one signature, cryptographically intact, covering the whole file,
    made with a certificate whose public key is `key` (the auditor's)."""
    from asn1crypto import x509 as ax509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    try:
        sigs = PdfFileReader(io.BytesIO(data)).embedded_signatures
    except Exception as exc:
        return False, f"report.pdf does not parse as a PDF ({type(exc).__name__}: {exc})"
    if len(sigs) != 1:
        return False, f"report.pdf holds {len(sigs)} signatures, expected 1"
    sig = sigs[0]
    cert = sig.signer_cert
    signing_key = x509.load_der_x509_certificate(cert.dump()).public_key()
    if not _same_key(signing_key, key):
        return False, "report.pdf is signed with a certificate for another key than the one supplied"
    status = validate_pdf_signature(sig, ValidationContext(trust_roots=[ax509.Certificate.load(cert.dump())]))
    if not (status.intact and status.valid):
        return False, "report.pdf signature does not verify: the signed bytes were altered"
    if status.coverage.name != "ENTIRE_FILE":
        return False, f"report.pdf signature covers {status.coverage.name}, not the entire file (something was appended)"
    subject = cert.subject.human_friendly
    return True, f"PAdES signature intact over the whole file, by {subject} with the supplied key"
