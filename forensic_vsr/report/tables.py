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
    (re.compile(r"(^|_)(length|radius|px|width|height|max_length|max_radius|shift|x|y|size|margin)$"), "px"),
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


def value_text(v: Any, limit: int | None = MAX_VALUE_CHARS) -> str:
    """A value for a cell: numbers plain, lists of over six numbers summarised (count, min, max),
    other lists joined whole; text over `limit` characters cut, its length stated (None: never)."""
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "-"}[v]
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        nums = [x for x in v if isinstance(x, int | float) and not isinstance(x, bool)]
        if len(v) > 6 and len(nums) == len(v):
            return f"{len(v)} values, min {min(nums):g}, max {max(nums):g}"
        return ", ".join(value_text(x, limit) for x in v) or "none"
    if isinstance(v, dict):
        return plain(v) or "none"
    text = str(v)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + f"… ({len(text)} characters)"


def plain(record: dict[str, Any]) -> str:
    """A small record as one line of "name value unit" items, for a table cell (no JSON)."""
    return "; ".join(" ".join(filter(None, row)) for row in parameter_rows(record))


def parameter_rows(record: dict[str, Any], prefix: str = "") -> list[list[str]]:
    """[name, value, unit] for every leaf of a record; nested names joined with " / "."""
    rows: list[list[str]] = []
    for key in sorted(record):
        v = record[key]
        name = f"{prefix}{key}"
        if isinstance(v, dict) and v:
            rows += parameter_rows(v, name + " / ")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for n, item in enumerate(v, 1):  # one row per item: "name value unit; ..."
                rows.append([f"{name} {n}", plain(item), ""])
        else:
            numeric = isinstance(v, int | float | list) and not isinstance(v, bool)  # "no", "motion" carry no unit
            rows.append([name, value_text(v, None), unit(str(key)) if numeric else ""])
    return rows


# exiftool's numeric (-n) values of these tags, by the tag's name: their unit
TAG_UNITS = (
    (re.compile(r"(Duration|Time)$"), "s"),
    (re.compile(r"(FrameRate|VideoFrameRate)$"), "frames per second"),
    (re.compile(r"Bitrate$", re.I), "bit/s"),
    (re.compile(r"Rotation$"), "deg"),
    (re.compile(r"(FileSize|DataSize)$"), "bytes"),
    (re.compile(r"(ImageSize|ImageWidth|ImageHeight|SourceImageWidth|SourceImageHeight)$"), "px"),
    (re.compile(r"SampleRate$"), "Hz"),
)


def tag_value(tag: str, v: Any) -> str:
    """An exiftool value with its unit where the tag's name says one (numbers only)."""
    text = value_text(v)
    numeric = (isinstance(v, int | float) and not isinstance(v, bool)) or tag.endswith("ImageSize")
    name = tag.split(":")[-1]
    u = next((u for pattern, u in TAG_UNITS if pattern.search(name)), "") if numeric else ""
    return f"{text} {u}" if u else text


def relevant_metadata(exif: dict[str, Any]) -> list[list[str]]:
    """[tag, value] of the metadata that matters (container, codec, dates, device, GPS,
    durations), junk such as MPlayer's "junk data" left out."""
    return [
        [k, tag_value(k, v)]
        for k, v in sorted(exif.items())
        if RELEVANT.search(k.split(":")[-1]) and not JUNK.search(k) and not UNSET.match(str(v))
    ]


def all_metadata(exif: dict[str, Any]) -> list[list[str]]:
    """Every tag exiftool reported, values over MAX_VALUE_CHARS cut (their length stated)."""
    return [[k, tag_value(k, v)] for k, v in sorted(exif.items())]


def registration_rows(temporal: dict[str, Any]) -> list[list[str]]:
    """A temporal operation's registrations, one row a frame: the frames averaged, their spread,
    and each neighbour whose registration failed (left out), with the reason."""
    rows = [["Output frame", "Neighbours / registered", "Mean count (frames)", "Mean spread (8-bit levels)", "Left out (offset: reason)"]]
    for f in temporal.get("per_frame") or []:
        failed = [r for r in f.get("registrations") or [] if not r.get("ok")]
        left = "; ".join(f"{r.get('offset', 0):+d}: {r.get('reason', 'failed')}" for r in failed) or "none"
        rows.append(
            [
                str(f.get("frame", "-")),
                f"{f.get('neighbours', '-')} / {f.get('registered', '-')}",
                value_text(f.get("mean_count")),
                value_text(f.get("mean_spread_levels")),
                left,
            ]
        )
    return rows


def timing_rows(ingest: dict[str, Any]) -> list[list[Any]]:
    """Derived timestamps, discontinuities and repeated frames, where the record has them
    (records before template 4 do not)."""
    timing, rows = ingest["timing"], []
    derived = timing.get("derived")
    if derived:
        reason = derived.get("reason", "has none")
        rows.append(["Timestamps", f"DERIVED: the file {reason}; frame index / {derived['rate']} frames per second ({derived['from']})"])
    if "discontinuities" in timing:
        jumps = timing["discontinuities"]
        total = timing.get("discontinuities_total", len(jumps))
        text = "none" if not total else f"{total}: " + "; ".join(f"before frame {j['frame']}, {j['gap_s']:+.3f} s" for j in jumps[:5])
        text += " ..." if total > 5 else ""
        if any("output_shift" in j for j in jumps):
            text += " (outputs: frames after a backward jump follow the frame before it, one interval later)"
        rows.append(["Timestamp discontinuities", text])
    dup = ingest.get("duplicates")
    if dup is not None:
        text = "none" if not dup["frames"] else f"{dup['frames']} frames repeat the frame before them, in {dup['runs_total']} runs: "
        text += "; ".join(f"frame {r['first']} x{r['length']} at {r['time_s']:.3f} s" for r in dup["runs"][:5]) if dup["frames"] else ""
        text += " ..." if dup["runs_total"] > 5 else ""
        rows.append(["Repeated frames (identical pixels)", text])
    return rows


def region_rows(region: dict[str, Any] | None) -> list[list[Any]]:
    """--roi: where the outputs lie in the evidence frame, and the margin the operations took."""
    if not region:
        return []
    x, y, w, h = region["x"], region["y"], region["width"], region["height"]
    taken, crop = region["margin_taken"], region["crop"]
    by_op = ", ".join(f"{m['op']} {m['margin']}" for m in region["margin_by_operation"])
    return [
        [
            "Region (--roi)",
            f"evidence pixels x {x} to {x + w - 1}, y {y} to {y + h - 1} ({w} x {h}); every output frame, map and still is this "
            f"region x{region['scale']} ({region['output']['width']} x {region['output']['height']})",
        ],
        [
            "Margin around the region",
            f"{region['margin_needed']} evidence pixels needed on each side ({by_op}); taken from the evidence: left {taken['left']}, "
            f"top {taken['top']}, right {taken['right']}, bottom {taken['bottom']} (less at the frame's border); the operations ran on "
            f"x {crop['x']}, y {crop['y']}, {crop['width']} x {crop['height']}",
        ],
    ]


# Container tags that state when the recording started (exiftool -G -n), first found wins
WALL_CLOCK_TAGS = (
    "QuickTime:CreateDate",
    "QuickTime:MediaCreateDate",
    "QuickTime:TrackCreateDate",
    "Matroska:DateTimeOriginal",
    "RIFF:DateTimeOriginal",
)


def wall_clock(exif: dict[str, Any]) -> tuple[str, Any] | None:
    """(tag, datetime) of the container's recording date, read as UTC where it names no zone
    (QuickTime stores UTC); None where the container has none (or QuickTime's zero date)."""
    import datetime

    for tag in WALL_CLOCK_TAGS:
        text = str(exif.get(tag) or "")
        if not text or UNSET.match(text):
            continue
        try:
            when = datetime.datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        zone = text[19:].strip()
        offset = datetime.timedelta(0)
        if zone and zone != "Z":
            try:
                sign = -1 if zone[0] == "-" else 1
                hours, minutes = zone.lstrip("+-").split(":")
                offset = sign * datetime.timedelta(hours=int(hours), minutes=int(minutes))
            except ValueError:
                continue
        return tag, (when - offset).replace(tzinfo=datetime.UTC)
    return None
