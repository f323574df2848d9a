"""`fvsr verify` of the maps a format-3 bundle leaves to recomputation (step.run `maps.recomputed`):
S from the verified master alone, R from the master and the evidence the auditor supplies,
each recomputed frame by frame with the signed filter taps (forensic_vsr.audit.exact_maps), and
compared with the per-frame figures `maps/flagged.json` signs: S max, S mean and the flagged
fraction (S), R max (R). The fixed-formula interval is a function of the master alone
(`u = 1 + S + |∇x̂|/2`, λ signed); nothing of it is stored, so there is nothing to compare, and
the check says so. numpy and PyAV only."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from forensic_vsr.audit.checks import Check
from forensic_vsr.audit.exact_maps import MapFilters, degrade, exact_maps, pinv
from forensic_vsr.audit.records import step_annotations
from forensic_vsr.audit.safe_read import UnsafeFile, loads_object, read_recorded
from forensic_vsr.media import OUTPUT_DECODE, DecoderSettings, VideoReader, frame_planes, plane_geometry

MASTER = "output/master.mkv"
FLAGGED_MAX = 64 << 20  # bytes of maps/flagged.json read at most
# How far the verifier's arithmetic may differ from the writer's (OpenCV's filters), in 8-bit
# levels: measured differences are below 4e-4; the figures in flagged.json are rounded to 3
# (S max), 4 (R max, S mean) and 6 (fraction) decimals.
TOLERANCE_LEVELS = 0.01


@dataclass
class _Worst:
    """The largest difference seen for one map, and the first frame outside the tolerance."""

    name: str
    largest: float = 0.0
    problem: str | None = None

    def compare(self, frame: int, what: str, recorded: Any, found: float, tolerance: float) -> None:
        if not isinstance(recorded, int | float) or isinstance(recorded, bool):
            self.problem = self.problem or f"frame {frame}: flagged.json records {what} {recorded!r}, not a number"
            return
        diff = abs(float(recorded) - found)
        self.largest = max(self.largest, diff)
        if diff > tolerance and self.problem is None:
            self.problem = f"frame {frame}: {what} recomputed {found:.4f}, flagged.json records {recorded}"


WINDOW = 2  # frames recomputed at once


@dataclass(frozen=True)
class _Figures:
    """What verify compares of one frame's recomputed S and R (R max None: no evidence)."""

    s_max: float
    s_mean: float
    low: float
    high: float
    r_max: float | None


def _figures(y: np.ndarray | None, x_hat: np.ndarray, filters: MapFilters, vmax: int, threshold: float) -> _Figures:
    """One frame's S (and, with the evidence plane `y`, R) recomputed, reduced to its figures."""
    r_max = None
    if y is None:
        x = np.multiply(x_hat, np.float32(255.0 / vmax), dtype=np.float32)
        s = np.abs(np.subtract(x, pinv(degrade(x, filters), filters)))
    else:
        s, r = exact_maps(y, x_hat, filters, vmax)
        r_max = float(r.max())
    low, high = _fraction_bounds(s, threshold)
    return _Figures(float(s.max()), float(s.mean(dtype=np.float64)), low, high, r_max)


def _done(entry: tuple[int, dict[str, Any], Future[_Figures]]) -> tuple[int, dict[str, Any], _Figures]:
    i, fig, future = entry
    return i, fig, future.result()


def _fraction_bounds(s: np.ndarray, threshold: float) -> tuple[float, float]:
    """The flagged fraction any implementation within the tolerance can find."""
    n = s.size
    return float(np.count_nonzero(s > threshold + TOLERANCE_LEVELS)) / n, float(np.count_nonzero(s > threshold - TOLERANCE_LEVELS)) / n


def _frames(path: Path, decoder: DecoderSettings | None, start: int, rate: Fraction | None) -> Iterator[tuple[str, np.ndarray]]:
    """The pixel format and the first plane of every frame from `start` on."""
    reader = VideoReader(path, decoder, rate) if decoder is not None else VideoReader(path)
    with reader:
        for decoded in reader.frames():
            if decoded.index >= start:
                yield decoded.frame.format.name, frame_planes(decoded.frame)[0]


def _format_problem(pix_fmt_in: str, vmax: int, master: str, evidence: str | None) -> str | None:
    """Why the samples cannot be scaled to 8-bit levels by the recorded pix_fmt_in: the bit depth
    is read from the decoded master and evidence, not taken from the record."""
    if plane_geometry(master)[0][2] != vmax:
        return f"{MASTER} decodes as {master}, step.run records pix_fmt_in {pix_fmt_in} (another bit depth)"
    if evidence is not None and evidence != pix_fmt_in:
        return f"the evidence decodes as {evidence}, step.run records pix_fmt_in {pix_fmt_in}"
    return None


def _region(region: Any, scale: int) -> tuple[int, int, int, int] | None:
    """The --roi box (x, y, width, height, evidence pixels) the step record signs, or None for a
    whole-frame run; a box that is not four whole numbers >= 0 at the signed scale is a ValueError."""
    if region is None:
        return None
    if not isinstance(region, dict):
        raise ValueError(f"step.run region is {type(region).__name__}, not an object")
    box = tuple(region.get(k) for k in ("x", "y", "width", "height"))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in box):
        raise ValueError(f"step.run region {box!r}: not four whole numbers >= 0")
    if region.get("scale") != scale:
        raise ValueError(f"step.run region has scale {region.get('scale')!r}, the signed filters {scale}")
    return box  # type: ignore[return-value]


def _cut(y: np.ndarray, box: tuple[int, int, int, int], out: tuple[int, ...], scale: int) -> tuple[np.ndarray, str | None]:
    """The region of an evidence plane (the main operation's input under --roi), or why it cannot be cut."""
    x0, y0, w, h = box
    if x0 + w > y.shape[1] or y0 + h > y.shape[0]:
        return y, f"the region {x0},{y0},{w},{h} does not lie inside the {y.shape[1]}x{y.shape[0]} evidence plane"
    if (h * scale, w * scale) != tuple(out):
        return y, f"the region {w}x{h} times {scale} is not the master's {out[1]}x{out[0]}"
    return y[y0 : y0 + h, x0 : x0 + w], None


def recomputed_checks(
    bundle: Path,
    step: dict[str, Any],
    ingest: dict[str, Any] | None,
    recorded: dict[str, dict[str, Any]],
    verified: set[str],
    allowed: bool,
    evidence: Path | None,
) -> Iterator[Check]:
    """One check per recomputed map. `verified`: the bundle files whose signed size and sha256
    matched; `evidence`: the auditor's evidence file, already checked against its signed sha256
    (None: R cannot be recomputed, and its check says NOT VERIFIED)."""
    summary = step_annotations(step)
    maps = summary.get("maps") or {}
    names = maps.get("recomputed")
    if not names:
        return
    if not allowed:
        yield Check.failed("maps.recomputed", "step.run leaves maps unstored (maps.recomputed), which only bundle format 3 allows")
        return
    if not isinstance(names, dict) or not set(names) <= {"synthesized", "contradiction", "interval"}:
        yield Check.failed("maps.recomputed", f"maps.recomputed names {sorted(names) if isinstance(names, dict) else names!r}")
        return
    flagged = maps["flagged"]
    for name in (MASTER, flagged["file"]):
        if name not in verified or name not in recorded:
            yield Check.failed("maps.recomputed", f"not checked: {name} is missing or failed files.digests")
            return
    try:
        filters = MapFilters.from_json(maps.get("filters") or {})
        entry = recorded[flagged["file"]]
        frames = loads_object(read_recorded(bundle, entry["name"], entry.get("size"), entry.get("sha256"), FLAGGED_MAX), entry["name"])
    except (ValueError, UnsafeFile) as exc:
        yield Check.failed("maps.recomputed", str(exc))
        return
    per_frame = frames.get("frames")
    count, start = summary["frames"]["count"], summary["frames"]["start"]
    if not isinstance(per_frame, list) or len(per_frame) != count or not all(isinstance(f, dict) for f in per_frame):
        yield Check.failed("maps.recomputed", f"{flagged['file']} does not list {count} frames")
        return
    threshold = float(flagged["threshold_levels"])
    vmax = plane_geometry(summary["pix_fmt_in"])[0][2]
    s_check, r_check = _Worst("synthesized"), _Worst("contradiction")
    masters = _frames(bundle / MASTER, OUTPUT_DECODE, 0, None)
    inputs: Iterator[tuple[str, np.ndarray] | None] = itertools.repeat(None)
    if evidence is not None and ingest is not None:
        derived = (ingest.get("timing") or {}).get("derived") or {}
        rate = Fraction(str(derived["rate"])) if str(derived.get("from", "")).startswith("--rate") and derived.get("rate") else None
        inputs = _frames(evidence, DecoderSettings.from_record(ingest.get("decoder")), start, rate)
    try:
        box = _region(summary.get("region"), filters.scale)
    except ValueError as exc:
        yield Check.failed("maps.recomputed", str(exc))
        return
    seen = 0
    pending: collections.deque[tuple[int, dict[str, Any], Future[_Figures]]] = collections.deque()

    def settle(i: int, fig: dict[str, Any], got: _Figures) -> None:
        if got.r_max is not None:
            r_check.compare(i, "R max", fig.get("r_max"), got.r_max, TOLERANCE_LEVELS)
        s_check.compare(i, "S max", fig.get("s_max"), got.s_max, TOLERANCE_LEVELS)
        s_check.compare(i, "S mean", fig.get("s_mean"), got.s_mean, TOLERANCE_LEVELS)
        fraction = fig.get("fraction_flagged")
        if not isinstance(fraction, int | float) or not got.low - 1e-6 <= fraction <= got.high + 1e-6:
            found = f"flagged fraction recomputed {got.low:.6f} to {got.high:.6f}"
            s_check.problem = s_check.problem or f"frame {i}: {found}, flagged.json records {fraction}"

    # frames are recomputed WINDOW at a time on threads (numpy computes without the GIL) and
    # compared in order; at most WINDOW frames are held, whatever the video's length
    with ThreadPoolExecutor(max_workers=WINDOW) as pool:
        for i, ((master_fmt, x_hat), decoded, fig) in enumerate(zip(masters, inputs, per_frame, strict=False)):
            y_fmt, y = decoded if decoded is not None else (None, None)
            problem = _format_problem(summary["pix_fmt_in"], vmax, master_fmt, y_fmt)
            if problem:
                yield Check.failed("maps.recomputed", f"frame {i}: {problem}")
                return
            if x_hat.ndim != 2 or not filters.fits(*x_hat.shape):
                yield Check.failed("maps.recomputed", f"frame {i} of {MASTER} is {x_hat.shape}: not a plane the signed filters apply to")
                return
            if y is not None and box is None and (y.shape[0] * filters.scale, y.shape[1] * filters.scale) != x_hat.shape:
                yield Check.failed(
                    "maps.recomputed", f"frame {i}: the evidence plane {y.shape} times {filters.scale} is not the master's {x_hat.shape}"
                )
                return
            if y is not None and box is not None:
                y, problem = _cut(y, box, x_hat.shape, filters.scale)
                if problem:
                    yield Check.failed("maps.recomputed", f"frame {i}: {problem}")
                    return
            pending.append((i, fig, pool.submit(_figures, y, x_hat, filters, vmax, threshold)))
            if len(pending) >= WINDOW:
                settle(*_done(pending.popleft()))
            seen += 1
        while pending:
            settle(*_done(pending.popleft()))
    if seen != count:
        yield Check.failed("maps.recomputed", f"{seen} frames recomputed, the step records {count}")
        return
    where = "" if box is None else f" (its region {box[0]},{box[1]} {box[2]}x{box[3]})"
    for check, what in ((s_check, f"{MASTER}"), (r_check, f"{MASTER} and {evidence.name if evidence else 'the evidence'}{where}")):
        name = f"maps.{check.name}"
        if check.name not in names:
            continue
        if check is r_check and evidence is None:
            yield Check.not_verified(name, "not stored, recomputed from the master and the evidence: run verify with --evidence")
        elif check.problem:
            yield Check.failed(name, f"recomputed from {what}: {check.problem}")
        else:
            figures = "S max, S mean and flagged fraction" if check is s_check else "R max"
            yield Check.passed(
                name,
                f"not stored; {count} frames recomputed from {what}: {figures} of every frame as {flagged['file']} signs"
                f" (largest difference {check.largest:.5f} levels)",
            )
    if "interval" in names:
        yield Check.passed(
            "maps.interval",
            f"not stored: lambda * u of the verified master ({maps.get('calibration', {}).get('lambda')}), computed by whoever shows it",
        )
