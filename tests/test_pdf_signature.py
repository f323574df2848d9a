"""Report signatures that standard tools validate (poppler's pdfsig, `openssl cms`), lab
certificates issued by a real CA, key files (format 2 with scrypt, format 1 still read) and the
all-or-nothing `keys generate`."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from asn1crypto import cms, pem
from asn1crypto import keys as akeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from forensic_vsr.audit.keys import REPORT_KEY_INFO, Signer, generate, load_public_key, load_signer, public_pem
from forensic_vsr.audit.pdfsign import certificate_sha256, check_report_signature, is_self_signed, report_certificate, sign_pdf
from forensic_vsr.errors import KeyUseError, OutputError
from tests.helpers import run_fvsr

GOLDEN = Path(__file__).parent / "golden"
PASS = b"test-passphrase-123"
OLD_PASS = b"golden-old-key-passphrase"  # tests/golden/old-key-format1.key, written by the format-1 code
NOW = datetime.datetime.now(datetime.UTC)


def _unsigned_pdf() -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    page = canvas.Canvas(buf, invariant=1)
    page.drawString(72, 720, "forensic-vsr test report")
    page.showPage()
    page.save()
    return buf.getvalue()


def _signed_parts(pdf: bytes) -> tuple[bytes, bytes]:
    """(DER CMS signature, the bytes it signs) from the PDF's last /ByteRange and /Contents."""
    a, b, c, d = map(int, re.findall(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)[-1])
    hex_contents = pdf[a + b : c].strip().removeprefix(b"<").removesuffix(b">")
    der = bytes.fromhex(hex_contents.decode())
    assert der[0] == 0x30 and der[1] & 0x80  # a SEQUENCE with a long-form length
    n = der[1] & 0x7F
    length = 2 + n + int.from_bytes(der[2 : 2 + n], "big")  # DER SEQUENCE; the rest is zero padding
    assert not der[length:].strip(b"\x00")
    return der[:length], pdf[a : a + b] + pdf[c : c + d]


def _openssl_cms_verify(tmp: Path, pdf: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    sig, signed = _signed_parts(pdf)
    (tmp / "sig.der").write_bytes(sig)
    (tmp / "signed.bin").write_bytes(signed)
    args = ["-noverify"] if not extra else list(extra)
    cmd = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp / "sig.der"), "-content", str(tmp / "signed.bin")]
    return subprocess.run([*cmd, *args, "-out", os.devnull], capture_output=True, text=True)


def _pdfsig(tmp: Path, pdf: bytes) -> str:
    path = tmp / "signed.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdfsig", str(path)], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def examiner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, Path]:
    d = tmp_path_factory.mktemp("examiner")
    return generate(d / "alice.key", "Alice Examiner", PASS), d / "alice.key"


def test_keys_generate_certifies_a_p256_report_key(examiner: tuple[Signer, Path]) -> None:
    signer, key = examiner
    cert = x509.load_pem_x509_certificate(Path(f"{key}.crt").read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and isinstance(cert.public_key().curve, ec.SECP256R1)
    assert cert.public_key() == signer.report_key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Alice Examiner"
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"
    assert is_self_signed(cert)
    again = load_signer(key, PASS, "Alice Examiner")
    assert again.keyid == signer.keyid and again.report_key.private_numbers() == signer.report_key.private_numbers()


def test_report_signature_validates_with_pdfsig_and_openssl(examiner: tuple[Signer, Path], tmp_path: Path) -> None:
    signer, key = examiner
    cert = report_certificate(signer, Path(f"{key}.crt"))
    pdf = sign_pdf(_unsigned_pdf(), signer, cert, "test report")
    out = _pdfsig(tmp_path, pdf)
    assert "Signature is Valid." in out and "Total document signed" in out, out
    assert "Signer Certificate Common Name: Alice Examiner" in out
    done = _openssl_cms_verify(tmp_path, pdf)
    assert done.returncode == 0 and "Verification successful" in done.stderr, done.stderr
    ok, reason = check_report_signature(pdf, certificate_sha256=cert.sha256)
    assert ok and "ecdsa" in reason, reason
    # one altered byte in the signed range: openssl, pdfsig and our check all refuse it
    first = int(re.findall(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)", pdf)[-1][1])
    at = pdf.rindex(b"endstream", 0, first) - 2  # inside the last content stream before the signature
    bad = pdf[:at] + bytes([pdf[at] ^ 0x01]) + pdf[at + 1 :]
    assert _openssl_cms_verify(tmp_path, bad).returncode != 0
    assert "Signature is Valid." not in _pdfsig(tmp_path, bad)
    assert not check_report_signature(bad, certificate_sha256=cert.sha256)[0]


def test_bundle_report_validates_with_pdfsig(carphone_bundle: Path, tmp_path: Path) -> None:
    pdf = (carphone_bundle / "report.pdf").read_bytes()
    out = _pdfsig(tmp_path, pdf)
    assert "Signature is Valid." in out and "Total document signed" in out, out
    assert _openssl_cms_verify(tmp_path, pdf).returncode == 0
    sig, _ = _signed_parts(pdf)
    signing = cms.ContentInfo.load(sig)["content"]["certificates"][0].chosen
    line = next(ln for ln in (carphone_bundle / "chain.jsonl").read_text().splitlines() if '"report.generate"' in _payload(ln))
    recorded = json.loads(_payload(line))["body"]["signature"]["certificate_sha256"]
    assert hashlib.sha256(signing.dump()).hexdigest() == recorded
    ok, reason = check_report_signature(pdf, certificate_sha256=recorded)
    assert ok, reason


def _payload(line: str) -> str:
    return base64.b64decode(json.loads(line)["payload"]).decode()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Forensic Lab"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str = "Test Lab Root CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, public: object, cn: str) -> x509.Certificate:
    usage = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, passphrase: bytes | None = PASS) -> Path:
    enc = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("algorithm", ["p256", "rsa2048"])
def test_lab_ca_issued_certificate(examiner: tuple[Signer, Path], tmp_path: Path, algorithm: str) -> None:
    signer, _ = examiner
    ca_key, ca = _ca()
    lab_key = ec.generate_private_key(ec.SECP256R1()) if algorithm == "p256" else rsa.generate_private_key(65537, 2048)
    cert = _issue(ca_key, ca, lab_key.public_key(), "Alice Examiner")
    (tmp_path / "alice.pem").write_bytes(_pem(cert, ca))
    _write_key(tmp_path / "alice-cert.key", lab_key)
    (tmp_path / "ca.pem").write_bytes(_pem(ca))

    chosen = report_certificate(signer, tmp_path / "alice.pem", tmp_path / "alice-cert.key", PASS)
    assert not chosen.self_signed and is_self_signed(ca) and not is_self_signed(cert)
    pdf = sign_pdf(_unsigned_pdf(), signer, chosen, "lab-certified report")
    out = _pdfsig(tmp_path, pdf)
    assert "Signature is Valid." in out and "Signer full Distinguished Name: CN=Alice Examiner,O=Test Forensic Lab" in out, out
    sig, _ = _signed_parts(pdf)
    embedded = {c.chosen.subject.human_friendly for c in cms.ContentInfo.load(sig)["content"]["certificates"]}
    assert embedded == {
        "Common Name: Alice Examiner, Organization: Test Forensic Lab",
        "Common Name: Test Lab Root CA, Organization: Test Forensic Lab",
    }
    # openssl validates the path to the lab's root, and refuses another root
    trusted = _openssl_cms_verify(tmp_path, pdf, "-CAfile", str(tmp_path / "ca.pem"), "-purpose", "any")
    assert trusted.returncode == 0 and "Verification successful" in trusted.stderr, trusted.stderr
    (tmp_path / "other.pem").write_bytes(_pem(_ca("Another Root")[1]))
    assert _openssl_cms_verify(tmp_path, pdf, "-CAfile", str(tmp_path / "other.pem"), "-purpose", "any").returncode != 0
    ok, reason = check_report_signature(pdf, certificate_sha256=certificate_sha256(cert))
    assert ok, reason
    assert not check_report_signature(pdf, certificate_sha256=certificate_sha256(ca))[0]


def test_lab_certificate_problems_are_one_line(examiner: tuple[Signer, Path], tmp_path: Path) -> None:
    signer, _ = examiner
    ca_key, ca = _ca()
    lab_key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(ca_key, ca, lab_key.public_key(), "Alice Examiner")
    (tmp_path / "alice.pem").write_bytes(_pem(cert, ca))
    (tmp_path / "reversed.pem").write_bytes(_pem(ca, cert))
    other = _write_key(tmp_path / "other.key", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(KeyUseError, match="not the examiner key's report key"):
        report_certificate(signer, tmp_path / "alice.pem")
    with pytest.raises(KeyUseError, match="not the key in"):
        report_certificate(signer, tmp_path / "alice.pem", other, PASS)
    with pytest.raises(KeyUseError, match="is not issued by the next certificate"):
        report_certificate(signer, tmp_path / "reversed.pem", other, PASS)
    with pytest.raises(KeyUseError, match="not encrypted"):
        report_certificate(signer, tmp_path / "alice.pem", _write_key(tmp_path / "plain.key", lab_key, None), PASS)
    with pytest.raises(KeyUseError, match="wrong passphrase"):
        report_certificate(signer, tmp_path / "alice.pem", _write_key(tmp_path / "lab.key", lab_key), b"not-the-passphrase")
    (tmp_path / "lab.key").chmod(0o640)
    with pytest.raises(KeyUseError, match="readable by others"):
        report_certificate(signer, tmp_path / "alice.pem", tmp_path / "lab.key", PASS)
    with pytest.raises(KeyUseError, match="RSA of 2048 bits"):
        report_certificate(signer, tmp_path / "alice.pem", _write_key(tmp_path / "weak.key", rsa.generate_private_key(65537, 1024)), PASS)
    with pytest.raises(KeyUseError, match="needs --cert"):
        report_certificate(signer, None, other, PASS)


def test_is_self_signed_needs_its_own_signature() -> None:
    """Issuer equal to subject is not enough: a certificate naming itself but signed by another key is not self-signed."""
    key, impostor = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("Alice Examiner"))
        .issuer_name(_name("Alice Examiner"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
    )
    assert is_self_signed(builder.sign(key, hashes.SHA256()))
    assert not is_self_signed(builder.sign(impostor, hashes.SHA256()))


def test_check_report_signature_refuses(examiner: tuple[Signer, Path]) -> None:
    signer, key = examiner
    cert = report_certificate(signer, Path(f"{key}.crt"))
    pdf = sign_pdf(_unsigned_pdf(), signer, cert, "test report")
    assert check_report_signature(pdf, certificate_sha256=cert.sha256)[0]
    ok, reason = check_report_signature(pdf + b"\n% appended\n", certificate_sha256=cert.sha256)
    assert not ok and "not the entire file" in reason
    ok, reason = check_report_signature(pdf, certificate_sha256="0" * 64)
    assert not ok and "the signed chain records 0000000000000000" in reason
    ok, reason = check_report_signature(pdf, certificate_sha256=None)
    assert not ok and "no recorded certificate" in reason
    ok, reason = check_report_signature(pdf, certificate_sha256=cert.sha256, ed25519_public_key=signer.public_key)
    assert not ok and "another key" in reason
    ok, reason = check_report_signature(_unsigned_pdf(), certificate_sha256=cert.sha256)
    assert not ok and "0 signatures" in reason
    ok, reason = check_report_signature(b"not a pdf at all", certificate_sha256=cert.sha256)
    assert not ok and "does not parse" in reason


def test_format1_report_still_verifies(tmp_path: Path) -> None:
    """Format-1 reports are signed with the Ed25519 examiner key: checked against the auditor's key, as then."""
    with tarfile.open(GOLDEN / "format1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    pdf = (tmp_path / "format1-lanczos-x2" / "report.pdf").read_bytes()
    public = load_public_key(tmp_path / "examiner.key.pub")
    lines = (tmp_path / "format1-lanczos-x2" / "chain.jsonl").read_text().splitlines()
    recorded = json.loads(_payload(next(ln for ln in lines if '"report.generate"' in _payload(ln))))["body"]["signature"]
    ok, reason = check_report_signature(pdf, certificate_sha256=None, ed25519_public_key=public)
    assert ok, reason
    ok, reason = check_report_signature(pdf, certificate_sha256=recorded["certificate_sha256"], ed25519_public_key=public)
    assert ok, reason
    ok, reason = check_report_signature(pdf, certificate_sha256=None, ed25519_public_key=Ed25519PrivateKey.generate().public_key())
    assert not ok and "another key" in reason


def _old_key(tmp_path: Path) -> Path:
    copy = tmp_path / "old.key"
    shutil.copy(GOLDEN / "old-key-format1.key", copy)
    copy.chmod(0o600)
    return copy


def _hkdf_sha256(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 with the standard library, independent of the code under test (empty salt = 32 zero bytes)."""
    prk = hmac.new(b"\x00" * 32, ikm, "sha256").digest()
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), "sha256").digest()
        out += block
    return out[:length]


def test_format1_key_file_still_loads_and_yields_its_report_key(tmp_path: Path) -> None:
    data = (GOLDEN / "old-key-format1.key").read_bytes()
    kdf = akeys.EncryptedPrivateKeyInfo.load(pem.unarmor(data)[2])["encryption_algorithm"]["parameters"]["key_derivation_func"]
    assert kdf["algorithm"].native == "pbkdf2" and kdf["parameters"]["iteration_count"].native == 2048  # the old code's
    signer = load_signer(_old_key(tmp_path), OLD_PASS, "Old Format Examiner")
    assert signer.public_key == load_public_key(GOLDEN / "old-key-format1.key.pub")
    assert signer.keyid == "6b46437dc2fe22bd087fbd8343f17706f4b636d18fadbb1c38df2cdd35f877e5"
    seed = signer.private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    d = int.from_bytes(_hkdf_sha256(seed, b"forensic-vsr report signing key v1: ECDSA P-256", 48), "big") % (order - 1) + 1
    assert REPORT_KEY_INFO == b"forensic-vsr report signing key v1: ECDSA P-256"
    assert signer.report_key.private_numbers().private_value == d
    point = signer.report_key.public_key().public_numbers()
    assert (point.x, point.y) == (  # known answer, so the derivation can never change silently
        0x4A36DC9F074AE5B5A99910B5A92D95E0B1038384F021A5B281AE399525ACF14C,
        0x66C6B307E2E24A1EC677663656C5B8E16C5D55E425CC0DDF097F6E94776CA7F8,
    )


def test_format1_certificate_beside_an_old_key_signs_with_p256(tmp_path: Path) -> None:
    """KEY.crt written by format-1 `keys generate` certifies the Ed25519 key; PDF readers cannot
    use it, so the run self-signs its report key."""
    old_crt = x509.load_pem_x509_certificate((GOLDEN / "old-key-format1.key.crt").read_bytes())
    signer = load_signer(_old_key(tmp_path), OLD_PASS, "Old Format Examiner")
    assert old_crt.public_key() == signer.public_key
    chosen = report_certificate(signer, GOLDEN / "old-key-format1.key.crt")
    assert chosen.signing.public_key() == signer.report_key.public_key() and chosen.self_signed
    pdf = sign_pdf(_unsigned_pdf(), signer, chosen, "old key, new report")
    assert "Signature is Valid." in _pdfsig(tmp_path, pdf)


def test_key_file_format2_records_scrypt_and_authenticates_it(examiner: tuple[Signer, Path], tmp_path: Path) -> None:
    signer, key = examiner
    doc = json.loads(key.read_bytes())
    assert doc["format"] == "forensic-vsr-key/2" and doc["cipher"]["name"] == "aes-256-gcm"
    kdf = doc["kdf"]
    assert kdf["name"] == "scrypt" and kdf["n"] >= 2**17 and (kdf["r"], kdf["p"]) == (8, 1) and len(base64.b64decode(kdf["salt"])) == 16
    assert b"PRIVATE KEY" not in key.read_bytes() and signer.public_pem() == doc["public_key"]
    started = time.monotonic()
    load_signer(key, PASS, "x")
    print(f"scrypt N=2^17 key load: {time.monotonic() - started:.2f} s")
    with pytest.raises(KeyUseError, match="wrong passphrase"):
        load_signer(key, b"not-the-passphrase", "x")

    def altered(change: dict[str, object]) -> Path:
        path = tmp_path / "altered.key"
        path.unlink(missing_ok=True)
        path.write_text(json.dumps({**doc, **change}))
        path.chmod(0o600)
        return path

    with pytest.raises(KeyUseError, match="key file was altered"):  # a weaker KDF cannot be swapped in
        load_signer(altered({"kdf": {**kdf, "n": 2**14}}), PASS, "x")
    with pytest.raises(KeyUseError, match="key file was altered"):
        load_signer(altered({"public_key": public_pem(Ed25519PrivateKey.generate().public_key())}), PASS, "x")
    with pytest.raises(KeyUseError, match="out of range"):  # no hostile file makes us allocate 128 GiB
        load_signer(altered({"kdf": {**kdf, "n": 2**30}}), PASS, "x")
    with pytest.raises(KeyUseError, match="not a forensic-vsr key file"):
        load_signer(altered({"ciphertext": "***"}), PASS, "x")
    with pytest.raises(KeyUseError, match="not one this version reads"):
        load_signer(altered({"format": "forensic-vsr-key/9"}), PASS, "x")


def test_keys_generate_refuses_an_existing_certificate_before_writing(tmp_path: Path) -> None:
    key = tmp_path / "alice.key"
    Path(f"{key}.crt").write_text("a lab certificate kept here\n")
    proc = run_fvsr("keys", "generate", "--out", key, "--name", "Alice")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "alice.key.crt: already exists" in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.key.crt"]
    assert Path(f"{key}.crt").read_text() == "a lab certificate kept here\n"


def test_keys_generate_into_an_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    proc = run_fvsr("keys", "generate", "--out", "/proc/fvsr-test.key", "--name", "Alice")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "cannot write" in proc.stderr, proc.stderr
    with pytest.raises(OutputError, match="no such directory"):
        generate(tmp_path / "missing" / "alice.key", "Alice", PASS)


def test_keys_generate_failing_midway_leaves_nothing(tmp_path: Path) -> None:
    """The key's temporary file fits NAME_MAX (255) but PATH.pub's does not: the kernel refuses the
    second write after the first succeeded, and nothing may be left."""
    name = "k" * (245 - len(str(os.getpid())))
    with pytest.raises(OutputError, match="nothing was written"):
        generate(tmp_path / name, "Alice", PASS)
    assert list(tmp_path.iterdir()) == []


def test_generated_private_key_is_mode_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        generate(tmp_path / "k", "Alice", PASS)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k.pub").stat().st_mode) == 0o644
