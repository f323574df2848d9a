"""Examiner keys: an Ed25519 key that signs the audit chain, and the P-256 report key derived
from it that signs report PDFs (PDF readers do not validate Ed25519).

Key file format 2 (written now) is a JSON document: the Ed25519 seed sealed with AES-256-GCM
under a key stretched from the passphrase by scrypt, the KDF and its parameters in the clear and
authenticated with the ciphertext. Format 1 (encrypted PKCS#8 PEM, PBKDF2 with 2,048 rounds) is
still read. docs/keys.md describes both files, the report-key derivation and the key ids."""

from __future__ import annotations

import base64
import binascii
import datetime
import getpass
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.x509.oid import NameOID

from forensic_vsr.atomic import fsync_dir
from forensic_vsr.errors import KeyUseError, OutputError
from forensic_vsr.integrity.dsse import canonical_json, keyid

PASSPHRASE_ENV = "FVSR_KEY_PASSPHRASE"
KEY_FILE_FORMAT = "forensic-vsr-key/2"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
_SCRYPT_MAX_N = 2**20  # 1 GiB of scrypt memory at r=8: the most a hostile key file may make us spend
REPORT_KEY_INFO = b"forensic-vsr report signing key v1: ECDSA P-256"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

ReportKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def derive_report_key(examiner_key: Ed25519PrivateKey) -> ec.EllipticCurvePrivateKey:
    """The examiner's P-256 report key: d = (HKDF-SHA256(seed, salt="", info=REPORT_KEY_INFO,
    L=48) mod (n - 1)) + 1, FIPS 186-5 A.2.1's reduction with 128 spare bits. Deterministic, so
    key files of every format yield the same report key; the label keeps it independent of any
    other use of the seed."""
    seed = examiner_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    okm = HKDF(hashes.SHA256(), length=48, salt=None, info=REPORT_KEY_INFO).derive(seed)
    return ec.derive_private_key(int.from_bytes(okm, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1())


@dataclass(frozen=True)
class Signer:
    """An unlocked examiner key."""

    private_key: Ed25519PrivateKey
    name: str

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def keyid(self) -> str:
        return keyid(self.public_key)

    @property
    def report_key(self) -> ec.EllipticCurvePrivateKey:
        return derive_report_key(self.private_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def public_pem(self) -> str:
        return public_pem(self.public_key)


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def read_passphrase(confirm: bool = False) -> bytes:
    """Passphrase from FVSR_KEY_PASSPHRASE, else from an interactive prompt."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        if not sys.stdin.isatty():
            raise KeyUseError(f"no passphrase: set {PASSPHRASE_ENV} or run from a terminal to be prompted")
        value = getpass.getpass("Key passphrase: ")
        if confirm and getpass.getpass("Repeat passphrase: ") != value:
            raise KeyUseError("passphrases do not match")
    if len(value) < 8:
        raise KeyUseError("passphrase too short: use at least 8 characters")
    return value.encode()


def self_signed_certificate(signer: Signer, days: int = 3650) -> x509.Certificate:
    """An X.509 certificate for the examiner's report key, subject CN = the examiner's name,
    signed by that key (ECDSA with SHA-256)."""
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
    key = signer.report_key
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def _aad(doc: dict[str, Any]) -> bytes:
    """Everything but the ciphertext, so that no parameter can be changed without the passphrase."""
    return canonical_json({k: v for k, v in doc.items() if k != "ciphertext"})


def seal_key(key: Ed25519PrivateKey, passphrase: bytes) -> bytes:
    """Key file format 2 for `key` (docs/keys.md)."""
    salt, nonce = os.urandom(16), os.urandom(12)
    doc: dict[str, Any] = {
        "format": KEY_FILE_FORMAT,
        "algorithm": "ed25519",
        "public_key": public_pem(key.public_key()),
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "cipher": {"name": "aes-256-gcm", "nonce": _b64(nonce)},
    }
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    sealed = AESGCM(_scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(nonce, seed, _aad(doc))
    return json.dumps({**doc, "ciphertext": _b64(sealed)}, indent=2).encode() + b"\n"


def _open_key_file(path: Path, data: bytes, passphrase: bytes) -> Ed25519PrivateKey:
    try:
        doc = json.loads(data)
        kdf, cipher = doc["kdf"], doc["cipher"]
        if doc["format"] != KEY_FILE_FORMAT or doc["algorithm"] != "ed25519":
            raise KeyUseError(f"{path}: key file format {doc['format']!r} ({doc['algorithm']!r}) is not one this version reads")
        if kdf["name"] != "scrypt" or cipher["name"] != "aes-256-gcm":
            raise KeyUseError(f"{path}: key file uses {kdf['name']!r}/{cipher['name']!r}; this version reads scrypt/aes-256-gcm")
        n, r, p = (int(kdf[k]) for k in ("n", "r", "p"))
        salt, nonce = base64.b64decode(kdf["salt"], validate=True), base64.b64decode(cipher["nonce"], validate=True)
        sealed = base64.b64decode(doc["ciphertext"], validate=True)
        recorded = doc["public_key"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise KeyUseError(f"{path}: not a forensic-vsr key file ({type(exc).__name__}: {exc})") from None
    if not (2 <= n <= _SCRYPT_MAX_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and n * r <= _SCRYPT_MAX_N * 8):
        raise KeyUseError(f"{path}: scrypt parameters n={n} r={r} p={p} are out of range")
    try:
        seed = AESGCM(_scrypt(passphrase, salt, n, r, p)).decrypt(nonce, sealed, _aad(doc))
        key = Ed25519PrivateKey.from_private_bytes(seed)
    except (InvalidTag, ValueError):
        raise KeyUseError(f"{path}: wrong passphrase, or the key file was altered") from None
    if public_pem(key.public_key()) != recorded:
        raise KeyUseError(f"{path}: the key file's public key does not belong to its private key")
    return key


def _read_private(path: Path, what: str) -> bytes:
    """A private key file's bytes, refusing group/world-accessible files."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise KeyUseError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyUseError(f"{path}: {what} file is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 {path}")
    return data


def _load_encrypted_pem(path: Path, data: bytes, passphrase: bytes) -> object:
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise KeyUseError(f"{path}: key is not encrypted; forensic-vsr only uses passphrase-protected keys") from None
    except ValueError:
        raise KeyUseError(f"{path}: wrong passphrase or not a PEM private key") from None


def load_signer(path: Path, passphrase: bytes, name: str) -> Signer:
    """Unlock an examiner key file of either format, refusing group/world-readable files and
    non-Ed25519 keys."""
    path = Path(path)
    data = _read_private(path, "key")
    if data.lstrip().startswith(b"{"):
        return Signer(_open_key_file(path, data, passphrase), name)
    key = _load_encrypted_pem(path, data, passphrase)  # key file format 1
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyUseError(f"{path}: key is {type(key).__name__.removeprefix('_')}, not Ed25519")
    return Signer(key, name)


def load_report_key(path: Path, passphrase: bytes) -> ReportKey:
    """The private key of a lab-issued report certificate: an encrypted PEM (PKCS#8 or
    traditional) ECDSA P-256/P-384 or RSA (2048 bits or more) key, mode 0600."""
    path = Path(path)
    key = _load_encrypted_pem(path, _read_private(path, "certificate key"), passphrase)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
        return key
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key
    raise KeyUseError(f"{path}: a report certificate key must be ECDSA P-256/P-384 or RSA of 2048 bits or more")


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The auditor's copy of the examiner's public key: a regular file of at most 64 KiB (a FIFO
    or device named by mistake is refused, never read)."""
    from forensic_vsr.audit.safe_read import UnsafeFile, open_user_file, read_capped

    path = Path(path)
    try:
        fd, size = open_user_file(path)
        data = read_capped(fd, size, 65536, str(path))
    except UnsafeFile as exc:
        raise KeyUseError(f"cannot read the public key: {exc}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyUseError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyUseError(f"{path}: public key is not Ed25519")
    return key


def _refuse_existing(paths: list[Path]) -> None:
    for path in paths:
        if path.exists() or path.is_symlink():
            raise OutputError(f"{path}: already exists; refusing to overwrite a key (nothing was written)")
        if not path.parent.is_dir():
            raise OutputError(f"{path.parent}: no such directory (nothing was written)")


def _write_new_files(files: list[tuple[Path, bytes, int]]) -> None:
    """Create every (path, data, mode) or none: all targets are checked first, each file is
    written to a hidden sibling, synced, then linked into place (a link never replaces a file that
    appeared meanwhile); on any failure whatever was created is removed."""
    _refuse_existing([path for path, _, _ in files])
    temps: list[Path] = []
    placed: list[Path] = []
    target = files[0][0]
    try:
        for target, data, mode in files:
            tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
        for (target, _, _), tmp in zip(files, temps, strict=True):
            os.link(tmp, target)
            placed.append(target)
        for directory in {path.parent for path, _, _ in files}:
            fsync_dir(directory)
    except OSError as exc:
        for path in placed:
            path.unlink(missing_ok=True)
        raise OutputError(f"{target}: cannot write ({exc.strerror}); nothing was written") from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def generate(out: Path, name: str, passphrase: bytes) -> Signer:
    """Create PATH (key file format 2, 0600), PATH.pub (the Ed25519 public key, PEM) and PATH.crt
    (a self-signed certificate for the report key, subject CN = `name`), all or none."""
    out = Path(out)
    pub, crt = out.with_name(out.name + ".pub"), out.with_name(out.name + ".crt")
    _refuse_existing([out, pub, crt])  # before the costly scrypt
    signer = Signer(Ed25519PrivateKey.generate(), name)
    certificate = self_signed_certificate(signer).public_bytes(serialization.Encoding.PEM)
    _write_new_files(
        [
            (out, seal_key(signer.private_key, passphrase), 0o600),
            (pub, signer.public_pem().encode(), 0o644),
            (crt, certificate, 0o644),
        ]
    )
    return signer
