"""The display aspect of a Matroska video track, written into the file FFmpeg produced.

FFmpeg's Matroska muxer takes the sample aspect ratio from `AVStream.sample_aspect_ratio`, which
PyAV cannot set (PyAV issue #764): the codec's SAR alone leaves DisplayWidth/DisplayHeight out
and DisplayUnit "unknown". `write_display_aspect` puts them in after the muxer is done, as
FFmpeg 8 would have (display aspect ratio, DisplayUnit 3), without moving a byte outside the
track header: the growth is taken from the Void the muxer leaves in the TrackEntry, and the
Tracks CRC-32 is recomputed. Frame data, cues and seek positions are untouched.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from forensic_vsr.errors import OutputError

_EBML, _SEGMENT, _TRACKS, _CLUSTER = 0x1A45DFA3, 0x18538067, 0x1654AE6B, 0x1F43B675
_TRACK_ENTRY, _VIDEO, _VOID, _CRC32 = 0xAE, 0xE0, 0xEC, 0xBF
_DISPLAY_WIDTH, _DISPLAY_HEIGHT, _DISPLAY_UNIT = 0x54B0, 0x54BA, 0x54B2
_DISPLAY_UNIT_DAR = 3
_HEADER_LIMIT = 1 << 20


@dataclass(frozen=True)
class _Element:
    id: int
    start: int
    """Offset of the element's ID."""
    data: int
    """Offset of its content."""
    end: int

    @property
    def size_length(self) -> int:
        return self.data - self.start - _id_length(self.id)


def _id_length(eid: int) -> int:
    return (eid.bit_length() + 7) // 8


def _vint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, length) of the EBML variable-length integer at `pos`, marker bit removed."""
    if pos >= len(buf) or buf[pos] == 0:
        raise OutputError("Matroska header is malformed (bad EBML length)")
    length = 9 - buf[pos].bit_length()
    value = buf[pos] & (0xFF >> length)
    for byte in buf[pos + 1 : pos + length]:
        value = value << 8 | byte
    return value, length


def _element(buf: bytes, pos: int, limit: int) -> _Element:
    first = buf[pos]
    id_length = 9 - first.bit_length() if first else 9
    if id_length > 4:
        raise OutputError("Matroska header is malformed (bad EBML ID)")
    eid = int.from_bytes(buf[pos : pos + id_length], "big")
    size, size_length = _vint(buf, pos + id_length)
    data = pos + id_length + size_length
    unknown = size == (1 << (7 * size_length)) - 1
    return _Element(eid, pos, data, limit if unknown else data + size)


def _children(buf: bytes, parent: _Element) -> list[_Element]:
    out, pos = [], parent.data
    while pos < parent.end:
        child = _element(buf, pos, parent.end)
        out.append(child)
        if child.id == _CLUSTER:
            break
        pos = child.end
    return out


def _size(value: int, length: int | None = None) -> bytes:
    length = length or max(1, (value.bit_length() + 6) // 7)
    if value >= (1 << (7 * length)) - 1:
        raise OutputError("Matroska element too large for its length field")
    return ((1 << (7 * length)) | value).to_bytes(length, "big")


def _uint(eid: int, value: int, pad: int = 0) -> bytes:
    body = bytes(pad) + value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return eid.to_bytes(_id_length(eid), "big") + _size(len(body)) + body


def _void(length: int) -> bytes:
    if length == 0:
        return b""
    if length - 2 <= 126:
        return bytes([_VOID]) + _size(length - 2, 1) + bytes(length - 2)
    return bytes([_VOID]) + _size(length - 9, 8) + bytes(length - 9)


def _find(children: list[_Element], eid: int) -> _Element:
    for child in children:
        if child.id == eid:
            return child
    raise OutputError(f"Matroska header has no element {eid:#x} where FFmpeg writes one")


def write_display_aspect(path: Path, display_aspect: Fraction) -> None:
    """Set the single video track's DisplayWidth:DisplayHeight to `display_aspect` (DisplayUnit
    3), in place. Raises OutputError if the header is not laid out as FFmpeg's muxer writes it."""
    with open(path, "r+b") as fh:
        buf = fh.read(_HEADER_LIMIT)
        top = _element(buf, 0, len(buf))
        if top.id != _EBML:
            raise OutputError(f"{path}: not a Matroska file")
        segment = _element(buf, top.end, len(buf))
        if segment.id != _SEGMENT:
            raise OutputError(f"{path}: Matroska file without a Segment")
        tracks = _find(_children(buf, segment), _TRACKS)
        track_children = _children(buf, tracks)
        entry = _find(track_children, _TRACK_ENTRY)
        entry_children = _children(buf, entry)
        video = _find(entry_children, _VIDEO)
        voids = [c for c in entry_children if c.id == _VOID and c.start >= video.end]
        if not voids:
            raise OutputError(f"{path}: no reserved space in the Matroska track header for the display aspect")
        void = voids[0]
        kept = b"".join(buf[c.start : c.end] for c in _children(buf, video) if c.id not in (_DISPLAY_WIDTH, _DISPLAY_HEIGHT, _DISPLAY_UNIT))
        room = (void.end - void.start) + (video.end - video.start)
        for pad in (0, 1):  # a Void is at least 2 bytes: one byte left over goes into a leading zero
            display = _uint(_DISPLAY_WIDTH, display_aspect.numerator, pad) + _uint(_DISPLAY_HEIGHT, display_aspect.denominator)
            content = kept + display + _uint(_DISPLAY_UNIT, _DISPLAY_UNIT_DAR)
            new_video = bytes([_VIDEO]) + _size(len(content), video.size_length) + content
            left = room - len(new_video)
            if left == 0 or left >= 2:
                break
        if left < 0:
            raise OutputError(f"{path}: the Matroska track header has no room for the display aspect")
        new_entry = buf[entry.data : video.start] + new_video + buf[video.end : void.start] + _void(left) + buf[void.end : entry.end]
        body = bytearray(buf[tracks.data : tracks.end])
        body[entry.data - tracks.data : entry.end - tracks.data] = new_entry
        crc = track_children[0]
        if crc.id == _CRC32:
            offset = crc.data - tracks.data
            body[offset : offset + 4] = zlib.crc32(body[crc.end - tracks.data :]).to_bytes(4, "little")
        fh.seek(tracks.data)
        fh.write(body)
