"""Examiner signing keys: Ed25519, stored as encrypted PKCS#8 PEM with file mode 0600."""

from __future__ import annotations

import getpass
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from forensic_vsr.errors import KeyUseError, OutputError
from forensic_vsr.integrity.dsse import keyid

PASSPHRASE_ENV = "FVSR_KEY_PASSPHRASE"


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


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise OutputError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, mode)


def generate(out: Path, name: str, passphrase: bytes) -> Signer:
    """Create PATH (encrypted private key, 0600), PATH.pub (public key PEM) and PATH.crt (a
    self-signed X.509 certificate for the key, used to sign report PDFs)."""
    out = Path(out)
    pub_path = out.with_name(out.name + ".pub")
    if out.exists() or pub_path.exists():
        raise OutputError(f"{out} or {pub_path} already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    _write_new(out, pem, 0o600)
    signer = Signer(key, name)
    _write_new(pub_path, signer.public_pem().encode(), 0o644)
    from forensic_vsr.audit.pdfsign import certificate_pem, self_signed_certificate

    _write_new(out.with_name(out.name + ".crt"), certificate_pem(self_signed_certificate(signer)), 0o644)
    return signer


def load_signer(path: Path, passphrase: bytes, name: str) -> Signer:
    """Unlock a private key, refusing group/world-readable files and non-Ed25519 keys."""
    path = Path(path)
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise KeyUseError(f"{path}: cannot read key ({exc.strerror})") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyUseError(f"{path}: key file is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise KeyUseError(f"{path}: key is not encrypted; forensic-vsr only uses passphrase-protected keys") from None
    except ValueError:
        raise KeyUseError(f"{path}: wrong passphrase or not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyUseError(f"{path}: key is {type(key).__name__.removeprefix('_')}, not Ed25519")
    return Signer(key, name)


def load_public_key(path: Path) -> Ed25519PublicKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyUseError(f"{path}: cannot read public key ({exc.strerror})") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyUseError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyUseError(f"{path}: public key is not Ed25519")
    return key
