"""What a failed write means to the user: a full or read-only file system, or a permission,
named as the file system and the file, instead of an internal error.

The OSError may come from any layer (Python's file objects, PyAV's muxer on a worker thread,
an fsync); the one that names a file may be further down the exception's context chain, where
a later cleanup error was raised while handling it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from forensic_vsr import layout
from forensic_vsr.audit.completeness import partial_bundle_name
from forensic_vsr.errors import OutputError

_CAUSES = {
    errno.ENOSPC: "no space left on {fs}",
    errno.EDQUOT: "disk quota exceeded on {fs}",
    errno.EROFS: "{fs} is a read-only file system",
    errno.EFBIG: "a file grew beyond what {fs} allows",
}
_PERMISSION = (errno.EACCES, errno.EPERM)


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding `path` (or its nearest existing ancestor)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    dev = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == dev:
        path = path.parent
    return path


def _os_errors(exc: BaseException) -> list[OSError]:
    found: list[OSError] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            found.append(current)
        current = current.__cause__ or current.__context__
    return found[::-1]  # the first failure first: later ones were raised while handling it


def _in_bundle(path: Path) -> tuple[Path, str] | None:
    """(bundle, file name in it) for a path inside a hidden build directory."""
    for parent in path.parents:
        partial = partial_bundle_name(parent.name)
        if partial is not None:
            return parent.parent / partial[0], str(path.relative_to(parent))
    return None


def _shown(filename: str) -> str:
    """A file inside a hidden build directory is named as the bundle's file."""
    inside = _in_bundle(Path(filename))
    return f"{inside[1]} of {inside[0]}" if inside else filename


def _within(filename: str, target: Path) -> bool:
    path, target = Path(os.path.abspath(filename)), Path(os.path.abspath(target))
    inside = _in_bundle(path)
    return path == target or target in path.parents or (inside is not None and inside[0] == target)


def nothing_written(target: Path) -> bool:
    """Neither `target` nor this process's hidden build directory for it exists."""
    return not target.exists() and not (target.parent / layout.partial_dir_name(target.name, os.getpid())).exists()


def write_error(exc: BaseException, target: Path | None = None) -> OutputError | None:
    """The OutputError to report for `exc` if it is a failed write (ENOSPC, EDQUOT, EROFS, EFBIG
    anywhere; EACCES/EPERM on `target` or inside it), else None. `target`: the output the command
    was creating; "nothing was written" is said only when it is verifiably absent."""
    errors = _os_errors(exc)
    storage = [e for e in errors if e.errno in _CAUSES]
    if storage:
        chosen = next((e for e in storage if e.filename), storage[0])
        where = Path(chosen.filename) if chosen.filename else target
        cause = _CAUSES[chosen.errno].format(fs=mount_point(where) if where is not None else "the output's file system")
    else:
        denied = [e for e in errors if e.errno in _PERMISSION and e.filename and target is not None and _within(e.filename, target)]
        if not denied:
            return None
        chosen, cause = denied[0], "permission denied"
    file = _shown(chosen.filename) if chosen.filename else (str(target) if target is not None else None)
    message = cause + (f" while writing {file}" if file else "")
    if target is not None and nothing_written(target):
        message += "; nothing was written"
    return OutputError(message)
