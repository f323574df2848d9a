"""The evidence file as a file: its bytes' digest and the tags exiftool reads from it. Both only
read; nothing is ever written into the evidence file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_READ_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read through a read-only descriptor."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def exiftool_metadata(path: Path) -> dict[str, object]:
    """All tags exiftool reads from the file (`-G -n`), or the reason it could not."""
    try:
        import exiftool

        with exiftool.ExifToolHelper(common_args=["-G", "-n"]) as et:
            tags = et.get_metadata(str(path))[0]
    except Exception as exc:
        return {"error": f"exiftool unavailable or failed: {exc}".strip()}
    volatile = {"SourceFile", "File:Directory", "File:FileAccessDate", "File:FileInodeChangeDate"}
    return {k: v for k, v in tags.items() if k not in volatile}
