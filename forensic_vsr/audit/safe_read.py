"""Reading a hostile bundle safely: regular files only, sizes bounded before anything is read,
JSON depth-limited and type-checked.

Every file a verifier opens may be a FIFO (open blocks forever), a symlink to /dev/zero (read
never ends), a symlink to a copy outside the bundle (the bytes match but are not the bundle's),
or ten million lines long. A name inside a bundle is therefore walked component by component
with directory descriptors, each component `lstat`ed before it is opened and opened with
`O_NOFOLLOW | O_NONBLOCK`, and the opened file `fstat`ed again: it must be the same regular file.
Sizes come from signed records (or fixed caps) and are compared before a byte is hashed or
parsed. Every failure is an `UnsafeFile` (a ValueError) whose message names the file and says
what was found.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_MAX_BYTES = 1 << 20
PROOF_MAX_BYTES = 64 << 20
RECORD_MAX_BYTES = 32 << 20  # one chain line; evidence.ingest lists every frame's pts
CHAIN_MAX_BYTES = 256 << 20
CHAIN_MAX_RECORDS = 10_000
FRAMEHASH_LINE_MAX = 256  # a frame line is about 120 bytes; `#` header lines are bounded too
FRAMEHASH_HEADER_MAX = 4096
JSON_MAX_DEPTH = 64
BUNDLE_MAX_ENTRIES = 100_000
BUNDLE_MAX_DEPTH = 16
_CHUNK = 1 << 20


class UnsafeFile(ValueError):
    """A file is not a regular file inside the bundle, has the wrong size, or does not parse."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def name_parts(name: str) -> tuple[str, ...]:
    """The components of a bundle-relative POSIX name; refuses absolute names, `..`, `.` and empty parts."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise UnsafeFile(f"{name!r} is not a bundle-relative file name")
    parts = tuple(name.split("/"))
    if PurePosixPath(name).is_absolute() or any(p in ("", ".", "..") for p in parts):
        raise UnsafeFile(f"{name!r} is not a bundle-relative file name")
    return parts


def _open_regular(dir_fd: int, part: str, shown: str) -> tuple[int, os.stat_result]:
    """Open `part` in `dir_fd` read-only if, and only if, it is a regular file (never followed, never blocking)."""
    try:
        before = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise UnsafeFile(f"{shown} is missing") from None
    if not stat.S_ISREG(before.st_mode):
        raise UnsafeFile(f"{shown} is {_kind(before.st_mode)}, not a regular file")
    fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise UnsafeFile(f"{shown} was replaced while it was being opened")
    return fd, after


def open_in_bundle(bundle: Path, name: str) -> tuple[int, int]:
    """(descriptor, size) of the regular file `name` inside `bundle`, reached without following
    any symlink below the bundle directory. The caller closes the descriptor."""
    parts = name_parts(name)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        dir_fd = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeFile(f"{bundle}: cannot open the bundle directory ({exc.strerror})") from None
    try:
        for i, part in enumerate(parts[:-1]):
            shown = "/".join(parts[: i + 1])
            try:
                st = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise UnsafeFile(f"{name} is missing ({shown}/ does not exist)") from None
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeFile(f"{name}: {shown} is {_kind(st.st_mode)}, not a directory")
            next_fd = os.open(part, flags, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        fd, st = _open_regular(dir_fd, parts[-1], name)
        return fd, st.st_size
    except OSError as exc:
        raise UnsafeFile(f"{name}: cannot be opened ({exc.strerror})") from None
    finally:
        os.close(dir_fd)


def open_user_file(path: Path) -> tuple[int, int]:
    """(descriptor, size) of a file the auditor named (evidence, proof): symlinks the auditor
    made are followed, but the target must be a regular file, opened without blocking."""
    try:
        before = os.stat(path)
    except OSError as exc:
        raise UnsafeFile(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(before.st_mode):
        raise UnsafeFile(f"{path} is {_kind(before.st_mode)}, not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeFile(f"{path}: cannot be opened ({exc.strerror})") from None
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise UnsafeFile(f"{path} was replaced while it was being opened")
    return fd, after.st_size


def _read_fd(fd: int, size: int, shown: str) -> bytes:
    """Exactly `size` bytes; a file that grows or shrinks while read is refused."""
    with os.fdopen(fd, "rb", closefd=True) as fh:
        data = fh.read(size + 1)
    if len(data) != size:
        raise UnsafeFile(f"{shown} changed size while it was read")
    return data


def read_capped(fd: int, size: int, cap: int, shown: str) -> bytes:
    """The whole file behind `fd` if it is at most `cap` bytes (closes `fd`)."""
    if size > cap:
        os.close(fd)
        raise UnsafeFile(f"{shown} is {size} bytes, more than the {cap}-byte limit")
    return _read_fd(fd, size, shown)


def read_in_bundle(bundle: Path, name: str, cap: int) -> bytes:
    fd, size = open_in_bundle(bundle, name)
    return read_capped(fd, size, cap, name)


def _expect_size(fd: int, size: int, want: Any, shown: str) -> int:
    if not isinstance(want, int) or isinstance(want, bool) or want < 0:
        os.close(fd)
        raise UnsafeFile(f"{shown}: the signed record gives no valid size ({want!r})")
    if size != want:
        os.close(fd)
        raise UnsafeFile(f"{shown} is {size} bytes, the signed record says {want}")
    return want


def read_recorded(bundle: Path, name: str, size: Any, sha256: Any, cap: int) -> bytes:
    """The bytes of a recorded file, only if its size and then its sha256 are the signed ones:
    nothing is parsed from a file whose digest failed."""
    fd, found = open_in_bundle(bundle, name)
    want = _expect_size(fd, found, size, name)
    data = read_capped(fd, want, cap, name)
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise UnsafeFile(f"{name}: expected sha256 {str(sha256)[:16]}…, found {got[:16]}…")
    return data


def hash_fd(fd: int, size: int, shown: str) -> str:
    """SHA-256 of exactly `size` bytes behind `fd`, streamed (closes `fd`)."""
    digest = hashlib.sha256()
    left = size
    with os.fdopen(fd, "rb", closefd=True) as fh:
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                raise UnsafeFile(f"{shown} shrank while it was read")
            digest.update(chunk)
            left -= len(chunk)
        if fh.read(1):
            raise UnsafeFile(f"{shown} grew while it was read")
    return digest.hexdigest()


def hash_recorded(bundle: Path, name: str, size: Any) -> str:
    """SHA-256 of a recorded file, streamed, after its size was found to be the signed one."""
    fd, found = open_in_bundle(bundle, name)
    return hash_fd(fd, _expect_size(fd, found, size, name), name)


def read_lines(bundle: Path, name: str, max_line: int, max_lines: int, max_total: int) -> tuple[list[bytes], bool]:
    """The lines of a line-oriented file without their newlines, and whether the file ends with
    a newline (a last line without one is still returned). The size is bounded before reading,
    each line and the number of lines while reading, so a file of a million copies of one line
    stops at line `max_lines` + 1."""
    fd, size = open_in_bundle(bundle, name)
    if size > max_total:
        os.close(fd)
        raise UnsafeFile(f"{name} is {size} bytes, more than the {max_total}-byte limit")
    lines: list[bytes] = []
    partial = b""
    with os.fdopen(fd, "rb", closefd=True) as fh:
        while chunk := fh.read(_CHUNK):
            pieces = (partial + chunk).split(b"\n")
            partial = pieces.pop()
            lines.extend(pieces)
            if len(lines) > max_lines:
                raise UnsafeFile(f"{name} has more than {max_lines} lines, the limit")
            if len(partial) > max_line or any(len(p) > max_line for p in pieces):
                raise UnsafeFile(f"{name} has a line longer than the {max_line}-byte limit")
    if partial:
        lines.append(partial)
        if len(lines) > max_lines:
            raise UnsafeFile(f"{name} has more than {max_lines} lines, the limit")
    return lines, not partial


def bundle_entries(bundle: Path) -> dict[str, str]:
    """Every non-directory entry below `bundle` (symlinks included, never followed) and what it is,
    by bundle-relative name; bounded in count and depth."""
    found: dict[str, str] = {}
    stack: list[tuple[Path, str, int]] = [(bundle, "", 0)]
    while stack:
        path, prefix, depth = stack.pop()
        if depth > BUNDLE_MAX_DEPTH:
            raise UnsafeFile(f"{prefix or bundle} is nested deeper than {BUNDLE_MAX_DEPTH} directories")
        with os.scandir(path) as it:
            for entry in it:
                name = f"{prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), f"{name}/", depth + 1))
                    continue
                found[name] = _kind(entry.stat(follow_symlinks=False).st_mode)
                if len(found) > BUNDLE_MAX_ENTRIES:
                    raise UnsafeFile(f"{bundle} holds more than {BUNDLE_MAX_ENTRIES} files")
    return found


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key[:40]!r}")
        obj[key] = value
    return obj


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _depth(obj: Any) -> int:
    """Nesting depth of a parsed value, iteratively (no recursion to exhaust)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if deepest > JSON_MAX_DEPTH:
                return deepest
            children: Iterator[Any] = iter(value.values() if isinstance(value, dict) else value)
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def loads(data: bytes | str, what: str) -> Any:
    """Strict JSON: UTF-8, finite numbers, no duplicate keys, nested at most JSON_MAX_DEPTH deep.
    Raises UnsafeFile naming `what`; never RecursionError."""
    try:
        obj = json.loads(data, object_pairs_hook=_pairs, parse_float=_finite, parse_constant=_refuse_constant)
    except RecursionError:
        raise UnsafeFile(f"{what} is nested deeper than {JSON_MAX_DEPTH} levels") from None
    except (ValueError, TypeError) as exc:
        raise UnsafeFile(f"{what} is not valid JSON ({str(exc)[:120]})") from None
    if _depth(obj) > JSON_MAX_DEPTH:
        raise UnsafeFile(f"{what} is nested deeper than {JSON_MAX_DEPTH} levels")
    return obj


def loads_object(data: bytes | str, what: str) -> dict[str, Any]:
    obj = loads(data, what)
    if not isinstance(obj, dict):
        raise UnsafeFile(f"{what} is not a JSON object (found {type(obj).__name__})")
    return obj
