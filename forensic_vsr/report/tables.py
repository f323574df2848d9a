"""Records as a reader reads them: parameters as rows of name, value and unit (no raw JSON), and
the evidence's metadata filtered to what matters for a court (the full dump goes to an appendix)."""

from __future__ import annotations

import re
from typing import Any

# Units by the last part of a parameter's name (the records' own naming: *_s seconds, *_levels
# 8-bit grey levels, lengths and radii in pixels, angles in degrees).
UNITS = (
    (re.compile(r"(_s|seconds)$"), "s"),
    (re.compile(r"levels"), "8-bit levels"),
    (re.compile(r"(^|_)(length|radius|px|width|height|max_length|max_radius|shift|x|y)$"), "px"),
    (re.compile(r"(^|_)(angle|deg)$"), "deg"),
    (re.compile(r"(fraction|confidence)$"), "fraction"),
)
MAX_VALUE_CHARS = 300

# Metadata a court asks about: container and codec, dates, the device, GPS, durations, sizes.
RELEVANT = re.compile(
    r"(FileType$|MIMEType|MajorBrand|CompressorID|CompressorName|Codec|Encoder|Format|Date|Make$|Model$|Software|GPS|Duration$"
    r"|ImageSize|VideoFrameRate|FrameRate$|Rotation|SerialNumber|Creator|Author|Title|Comment|Location)",
    re.I,
)
JUNK = re.compile(r"(Junk|Unknown|Padding|Warning|Offset|Permissions|Directory|ExifToolVersion|Preview|Selection|Poster)", re.I)
UNSET = re.compile(r"^(0000:00:00 00:00:00|0)$")  # QuickTime's "no date", a zero duration: nothing to read


def unit(name: str) -> str:
    """The unit of a numeric parameter, from its name ("" when the name says none)."""
    for pattern, u in UNITS:
        if pattern.search(name):
            return u
    return ""


def value_text(v: Any) -> str:
    """A value for a cell: numbers plain, lists of numbers summarised, short lists joined."""
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "-"}[v]
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        nums = [x for x in v if isinstance(x, int | float) and not isinstance(x, bool)]
        if len(v) > 6 and len(nums) == len(v):
            return f"{len(v)} values, min {min(nums):g}, max {max(nums):g}"
        text = ", ".join(value_text(x) for x in v[:6]) + (f", ... ({len(v) - 6} more)" if len(v) > 6 else "")
        return text or "none"
    text = str(v)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + f"… ({len(text)} characters)"


def parameter_rows(record: dict[str, Any], prefix: str = "") -> list[list[str]]:
    """[name, value, unit] for every leaf of a record; nested names joined with " / "."""
    rows: list[list[str]] = []
    for key in sorted(record):
        v = record[key]
        name = f"{prefix}{key}"
        if isinstance(v, dict) and v:
            rows += parameter_rows(v, name + " / ")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for n, item in enumerate(v[:6], 1):  # one row per item: "name value unit; ..."
                rows.append([f"{name} {n}", "; ".join(" ".join(filter(None, r)) for r in parameter_rows(item)), ""])
            if len(v) > 6:
                rows.append([name, f"... {len(v) - 6} more", ""])
        else:
            numeric = isinstance(v, int | float | list) and not isinstance(v, bool)  # "no", "motion" carry no unit
            rows.append([name, value_text(v), unit(str(key)) if numeric else ""])
    return rows


def relevant_metadata(exif: dict[str, Any]) -> list[list[str]]:
    """[tag, value] of the metadata that matters (container, codec, dates, device, GPS,
    durations), junk such as MPlayer's "junk data" left out."""
    return [
        [k, value_text(v)]
        for k, v in sorted(exif.items())
        if RELEVANT.search(k.split(":")[-1]) and not JUNK.search(k) and not UNSET.match(str(v))
    ]


def all_metadata(exif: dict[str, Any]) -> list[list[str]]:
    """Every tag exiftool reported, values over MAX_VALUE_CHARS cut (their length stated)."""
    return [[k, value_text(v)] for k, v in sorted(exif.items())]
