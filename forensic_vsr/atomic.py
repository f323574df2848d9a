"""Atomic file output: a file appears whole under its name or not at all.

Every file forensic-vsr writes outside a bundle's hidden build directory (keys, proofs, reports,
benchmark JSON, model cards, checkpoints) goes through here: written to a hidden sibling,
flushed to disk, renamed over the target, and the directory entry flushed too."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = 0o644, overwrite: bool = True) -> Iterator[Path]:
    """Yields a temporary path beside `path` for the caller to write; on success it is synced
    and renamed to `path` (refusing to replace an existing file when `overwrite` is False); on
    any error it is removed and nothing is left."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails with FileExistsError instead of replacing
            tmp.unlink()
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes | str, *, mode: int = 0o644, overwrite: bool = True) -> None:
    """Write `data` (text is UTF-8) to `path` atomically."""
    raw = data.encode() if isinstance(data, str) else data
    with atomic_output(path, mode=mode, overwrite=overwrite) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
