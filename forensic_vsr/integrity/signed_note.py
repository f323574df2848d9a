"""C2SP signed notes (c2sp.org/signed-note) with Ed25519, and tlog checkpoints (c2sp.org/tlog-checkpoint).

A signed note is a text ending in a newline, a blank line, then signature lines
`— <key name> <base64(key ID || signature)>` (em dash U+2014). For Ed25519 (signature type 0x01)
the key ID is the first four bytes of SHA-256(key name || 0x0A || 0x01 || 32-byte public key) and
the signature is RFC 8032 Ed25519 over the note text, final newline included. A checkpoint's text
is `origin`, the decimal tree size, the base64 RFC 9162 root hash, then optional extension lines.
Pure functions on text; parsing treats every note as hostile and raises NoteError naming the flaw.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "
MAX_NOTE_CHARS = 64 * 1024
MAX_SIGNATURES = 16  # the spec asks verifiers to accept at least 16
_KEY_NAME = re.compile(r"\A[^\s+]+\Z")
_TREE_SIZE = re.compile(r"\A(0|[1-9][0-9]{0,18})\Z")


class NoteError(ValueError):
    """A note is malformed, or no signature by the expected key verifies; the message says which."""


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key ID the signed-note spec recommends for an Ed25519 key under `name`."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + raw).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The note verifier key (vkey) `name+hex(key ID)+base64(0x01 || public key)`."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"{name}+{key_id(name, public_key).hex()}+{base64.b64encode(bytes([ED25519]) + raw).decode()}"


def _check_key_name(name: str) -> None:
    if not _KEY_NAME.match(name):
        raise NoteError(f"key name {name[:80]!r} is empty or holds a space or '+'")


def sign_note(text: str, name: str, public_key: Ed25519PublicKey, sign: Callable[[bytes], bytes]) -> str:
    """`text` (ending in a newline) signed by the Ed25519 key `public_key` under key name `name`."""
    _check_key_name(name)
    if not text.endswith("\n"):
        raise NoteError("a note text must end with a newline")
    signature = key_id(name, public_key) + sign(text.encode())
    return f"{text}\n{SIGNATURE_PREFIX}{name} {base64.b64encode(signature).decode()}\n"


def _split(note: str) -> tuple[str, list[str]]:
    if not isinstance(note, str):
        raise NoteError(f"the note is {type(note).__name__}, not text")
    if len(note) > MAX_NOTE_CHARS:
        raise NoteError(f"the note is over {MAX_NOTE_CHARS} characters")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise NoteError("the note holds a control character other than newline")
    if not note.endswith("\n"):
        raise NoteError("the note does not end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("the note has no blank line before its signatures")
    text, lines = note[: cut + 1], note[cut + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has {len(lines)} signature lines, more than {MAX_SIGNATURES}")
    return text, lines


def open_note(note: str, name: str, public_key: Ed25519PublicKey) -> str:
    """The note text, if a signature line under `name` with this key's ID verifies.

    As the spec says: lines by other keys (another name or another ID) are ignored, a
    signature by this key that fails rejects the note, and a note without one is rejected."""
    text, lines = _split(note)
    want = key_id(name, public_key)
    verified = False
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX) or line.count(" ") != 2:
            raise NoteError(f"signature line {line[:60]!r} is not '— <key name> <base64 signature>'")
        line_name, b64 = line[len(SIGNATURE_PREFIX) :].split(" ")
        _check_key_name(line_name)
        try:
            blob = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise NoteError(f"the signature of {line_name[:60]!r} is not base64") from None
        if len(blob) < 5:
            raise NoteError(f"the signature of {line_name[:60]!r} is shorter than a key ID and a signature")
        if line_name != name or blob[:4] != want:
            continue
        try:
            public_key.verify(blob[4:], text.encode())
        except InvalidSignature:
            raise NoteError(f"the signature by {name[:60]} (key ID {want.hex()}) does not verify") from None
        verified = True
    if not verified:
        raise NoteError(f"no signature by key name {name[:80]!r} with key ID {want.hex()} (the supplied key)")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint's note text: origin, tree size, root hash, extension lines."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def to_text(self) -> str:
        lines = [self.origin, str(self.tree_size), base64.b64encode(self.root_hash).decode(), *self.extensions]
        if any(not line or "\n" in line for line in lines):
            raise NoteError("checkpoint lines must be non-empty single lines")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a (verified) note text; raises NoteError naming the first malformed line."""
        lines = text.split("\n")
        if lines[-1] != "" or len(lines) < 4 or any(not line for line in lines[:-1]):
            raise NoteError("a checkpoint is at least three non-empty lines, each ending in a newline")
        origin, size, root, *extensions = lines[:-1]
        if not _TREE_SIZE.match(size):
            raise NoteError(f"tree size {size[:30]!r} is not a decimal number without leading zeroes")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError):
            raise NoteError(f"root hash {root[:60]!r} is not base64") from None
        if len(root_hash) != 32 or base64.b64encode(root_hash).decode() != root:
            raise NoteError(f"root hash {root[:60]!r} is not the base64 of a SHA-256 hash")
        return cls(origin, int(size), root_hash, tuple(extensions))

    def extension(self, key: str) -> str | None:
        """The value of the one extension line `key VALUE`, or None (two such lines: NoteError)."""
        values = [line[len(key) + 1 :] for line in self.extensions if line.startswith(key + " ")]
        if len(values) > 1:
            raise NoteError(f"the checkpoint has {len(values)} {key!r} extension lines")
        return values[0] if values else None
