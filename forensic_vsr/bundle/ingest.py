"""The ingest pass: decode every evidence frame once and record what was found.

input.framehash (one line per decoded frame, in ffmpeg's framehash format), per-frame timestamps
and their regularity (VFR, derived timestamps, discontinuities), repeated frames (DVR frame
duplication), rotation, interlacing, and every packet the decoder rejected or concealed -> the
body of the `evidence.ingest` record."""

from __future__ import annotations

import itertools
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from forensic_vsr import layout
from forensic_vsr.bundle.writer import BundleDir
from forensic_vsr.errors import EvidenceError
from forensic_vsr.integrity import merkle
from forensic_vsr.media import exiftool_metadata, file_sha256, video_framehashes
from forensic_vsr.progress import progress
from forensic_vsr.timebase import fraction_text

log = logging.getLogger(__name__)

MAX_LISTED = 100  # discontinuities and duplicate runs listed in the record; the totals count all
DISCONTINUITY_INTERVALS = 10  # a forward step longer than this many nominal intervals is a jump


def timing(pts: list[int], time_base: Fraction, rate: Fraction | None, shifts: dict[int, int] | None = None) -> dict[str, Any]:
    """Frame timing summary. VFR: some frame interval differs from the nominal one by more
    than one tick of the stream time base (the rounding a millisecond container adds).
    Discontinuities: a step backwards, or forwards by more than `DISCONTINUITY_INTERVALS`
    nominal intervals (a DVR export spliced from recordings, a gap in recording); `shifts`
    (frame index -> ticks, `VideoReader.shifts`) says how far the outputs moved the frames from
    a backward jump on so that their timestamps never go back."""
    deltas = [b - a for a, b in itertools.pairwise(pts)]
    if not deltas:
        return {"vfr": False, "min_interval": None, "max_interval": None, "nominal_interval": None, "discontinuities": []}
    nominal = (1 / rate) / time_base if rate else Fraction(sorted(deltas)[len(deltas) // 2])
    vfr = any(abs(d - nominal) > 1 for d in deltas) or any(d <= 0 for d in deltas)
    jumps = [i for i, d in enumerate(deltas, 1) if d < 0 or d > DISCONTINUITY_INTERVALS * nominal]
    listed = []
    for i in jumps[:MAX_LISTED]:
        entry: dict[str, Any] = {
            "frame": i,
            "pts_before": pts[i - 1],
            "pts_after": pts[i],
            "gap_s": round(float(deltas[i - 1] * time_base), 6),
        }
        if shifts and i in shifts:
            entry["output_shift"] = shifts[i]
        listed.append(entry)
    return {
        "vfr": vfr,
        "min_interval": min(deltas),
        "max_interval": max(deltas),
        "nominal_interval": fraction_text(Fraction(nominal)),
        "non_increasing": sum(d <= 0 for d in deltas),
        "discontinuities": listed,
        "discontinuities_total": len(jumps),
    }


def duplicates(hashes: list[str], pts: list[int], time_base: Fraction) -> dict[str, Any]:
    """Runs of consecutive frames whose decoded pixels hash the same (a DVR repeating frames to
    fill its nominal rate): `frames` counts the repeats (a run of n identical frames adds
    n - 1), each run gives its first frame, its length and that frame's time in seconds."""
    runs: list[dict[str, Any]] = []
    total = repeats = 0
    first = 0
    for i in range(1, len(hashes) + 1):
        if i < len(hashes) and hashes[i] == hashes[first]:
            continue
        if i - first > 1:
            total += 1
            repeats += i - first - 1
            if len(runs) < MAX_LISTED:
                runs.append({"first": first, "length": i - first, "time_s": round(float(pts[first] * time_base), 6)})
        first = i
    return {"frames": repeats, "runs_total": total, "runs": runs}


def ingest(
    evidence: Path,
    bundle: BundleDir,
    case_id: str | None,
    sha256: str,
    stat: os.stat_result,
    show_progress: bool | None,
    accept_damage: bool,
    rate: Fraction | None = None,
) -> tuple[dict[str, Any], list[bytes]]:
    """Decode every evidence frame once: returns the `evidence.ingest` body and the Merkle leaf
    hashes of input.framehash. A damaged stream is refused unless `accept_damage`; `rate` (the
    examiner's --rate) only for a stream without timestamps."""
    head, lines, reader = video_framehashes(evidence, rate=rate)
    if rate is not None and reader.info.derived is None:
        reader.close()
        raise EvidenceError(f"{evidence}: the file carries its own timestamps; --rate is only for streams without them: leave it out")
    leaf_hashes: list[bytes] = []
    hashes: list[str] = []
    pts: list[int] = []
    rotation = 0
    interlaced = 0
    with reader, open(bundle.path(layout.INPUT_FRAMEHASH), "w", encoding="ascii") as out:
        out.write("\n".join(head) + "\n")
        info = reader.info
        with progress("ingest ", info.header_frame_count or None, show_progress) as advance:
            for frame_hash, decoded in lines:
                if decoded.index == 0:
                    rotation = int(decoded.frame.rotation or 0)
                interlaced += bool(decoded.frame.interlaced_frame)
                pts.append(decoded.file_pts)
                hashes.append(frame_hash.sha256)
                line = frame_hash.line()
                out.write(line + "\n")
                leaf_hashes.append(merkle.hash_leaf(line.encode()))
                advance()
        damage = reader.stats
        stats = damage.to_json()
        decoder = reader.decoder_record()
        shifts = dict(reader.shifts)
    if not pts:
        raise EvidenceError(f"{evidence}: no decodable video frames ({damage.summary()})")
    if damage.damaged:
        first = damage.errors[0] if damage.errors else ""
        if not accept_damage:
            raise EvidenceError(
                f"{evidence}: damaged stream: {damage.summary()} (first: {first}); "
                "rerun with --accept-decode-errors to process what decodes, with the damage recorded"
            )
        log.warning("%s: damaged stream accepted: %s", evidence, damage.summary())
    body = {
        "case_id": case_id,
        "evidence": {
            "name": evidence.name,
            "path": str(evidence.resolve()),
            "size": stat.st_size,
            "sha256": sha256,
            "mtime_ns": stat.st_mtime_ns,
        },
        "probe": info.to_json(),
        "frames_decoded": len(pts),
        "pts": pts,
        "timing": timing(pts, info.time_base, info.guessed_rate, shifts) | ({"derived": info.derived.to_json()} if info.derived else {}),
        "duplicates": duplicates(hashes, pts, info.time_base),
        "rotation": rotation,
        "interlaced_frames": interlaced,
        "decode": stats,
        "decoder": decoder,
        "input_framehash": {
            "file": layout.INPUT_FRAMEHASH,
            "sha256": file_sha256(bundle.path(layout.INPUT_FRAMEHASH)),
            "merkle_root": merkle.root_from_leaf_hashes(leaf_hashes).hex(),
            "tree_size": len(leaf_hashes),
        },
        "exiftool": exiftool_metadata(evidence),
    }
    return body, leaf_hashes
