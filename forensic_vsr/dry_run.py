"""`fvsr enhance --dry-run`: what a run would do, without doing it.

The recipe is judged as `pipeline.enhance` judges it (every rule printed), the frame range and
region are resolved against the evidence, the output size is checked against the bundle's
encoders, and the expected time is measured, not guessed: the enhancement pass (`FramePass`: the
operations, hashing, the FFV1 master and its lossless round trip, the preview, the maps) runs on
the first selected frame (cold), on it again (warm) and on the first few, into a temporary
directory that is removed after; the last two differ by the cost of frames, and the cold pass
less one frame is the run's one-time work (a PSF estimate, importing torch, a network's warm-up).
The cold pass also gives the PSF (estimated there, with its confidence) and the region's
margins. Ingest (decode and hash every evidence frame, the file's sha256 twice) is
measured on the first frames; the report and signing are a fixed cost measured once (REPORT_S)
plus the decoding of its stills. No key is needed and nothing is written where the bundle would go."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forensic_vsr import layout
from forensic_vsr.audit.step_record import StepRecord
from forensic_vsr.bundle.frames import FramePass
from forensic_vsr.bundle.limits import check_evidence_output_size
from forensic_vsr.bundle.writer import BundleDir
from forensic_vsr.errors import UsageError
from forensic_vsr.media import VideoReader, file_sha256, frame_planes, planes_sha256
from forensic_vsr.models.registry import ResolvedModel
from forensic_vsr.policy import Decision
from forensic_vsr.recipe import Recipe, bounded_frames, decide_recipe

TIMED_FRAMES = 4  # frames of the second timing pass (the first has one): fewer give a noisier cost a frame
INGEST_SAMPLE = 10  # evidence frames decoded and hashed to measure ingest
# Measured on the 2-core CPU of docs/benchmarks.md ("Dry-run estimate"): the run's start (imports,
# key unlock) and the report (render, PAdES signature, chain and manifest) besides its stills'
# decoding, which is measured. A faster or slower machine scales them, hence the range printed.
START_S = 2.0
REPORT_S = 2.5
LOW, HIGH = 0.7, 1.5  # the range printed around the estimate; tests/test_workflow checks a run falls in 0.5x to 2x


def decision_lines(model: ResolvedModel, decision: Decision) -> list[str]:
    """The policy, the model, every rule with its outcome and reason, and the verdict (also
    what `fvsr policy explain` prints)."""
    policy = decision.policy
    lines = [
        f"policy {policy.data['id']} v{policy.data['version']} ({policy.source}) sha256 {policy.sha256}",
        f"model  {model.id} [{model.model_class}]" + (f" weights sha256 {model.weights_sha256}" if model.weights_sha256 else ""),
    ]
    lines += [f"{r.outcome.upper():<15} {r.rule}: {r.reason}" for r in decision.results]
    lines.append("ALLOWED" if decision.allowed else f"REFUSED: {len(decision.failures)} rule(s) failed")
    return lines


def dry_run(evidence: Path, recipe: Recipe, say: Callable[[str], None] = print) -> bool:
    """Print the plan of `fvsr enhance` for `recipe` on `evidence`, line by line; True if the
    policy allows the recipe. Raises what the run would raise before its first output."""
    model, decision = decide_recipe(recipe)
    for line in decision_lines(model, decision):
        say(line)
    if not decision.allowed:
        say("dry run: a run would write a signed bundle holding this refusal, and no outputs")
        return False
    with VideoReader(evidence) as reader:
        info = reader.info
        n_packets = sum(1 for _ in reader.packet_timestamps())
    start, end = bounded_frames(recipe.frames, n_packets) if recipe.frames else (0, n_packets)
    selected = end - start
    say(f"evidence {evidence.name}: {info.width}x{info.height} {info.pix_fmt} {info.codec}, {n_packets} frames (counted from packets)")
    say(f"frames {start}:{end}: {selected} evidence frames, decoded frames {start} to {end - 1} counted from 0 in decode order")
    check_evidence_output_size(evidence, recipe.scale, recipe.maps, recipe.region)
    estimate = estimate_time(evidence, recipe, model, decision, start, end, n_packets)
    step = estimate.step
    say(_region_line(step, info.width, info.height))
    for record in [*(pre.get("deblur") for pre in step.pre_operations), step.deblur]:
        if record:
            say(_psf_line(record, start))
    factor = step.frames_per_input
    out_frames = selected * factor
    say(
        f"output {step.width_out}x{step.height_out} (x{recipe.scale}), {out_frames} frames"
        + (f" ({factor} per evidence frame)" if factor > 1 else "")
    )
    say(estimate.line())
    say("dry run: nothing was written where the bundle would go (the timing passes ran in a removed temporary directory); no key was used")
    return True


@dataclass(frozen=True)
class TimeEstimate:
    """The expected wall time of the run, in parts (seconds), and what they were measured on."""

    step: StepRecord  # the first timing pass's step record (PSF estimate, region, geometry)
    start_s: float
    ingest_s: float
    pass_s: float
    report_s: float
    frame_s: float  # the pass's cost of one more frame
    one_time_s: float  # the pass's cost besides its frames
    ingest_frame_s: float
    timed: int  # frames of the longer timing pass

    @property
    def total(self) -> float:
        return self.start_s + self.ingest_s + self.pass_s + self.report_s

    def line(self) -> str:
        return (
            f"expected time: {_duration(self.total)} (likely {_duration(LOW * self.total)} to {_duration(HIGH * self.total)}): "
            f"start-up {self.start_s:.1f} s; ingest {self.ingest_s:.1f} s ({self.ingest_frame_s:.4f} s to decode and hash an evidence "
            f"frame, and the file's sha256 twice); enhancement pass {_duration(self.pass_s)} ({self.frame_s:.3f} s a frame, timed through "
            f"the whole pass (operations, hashing, master, round trip, preview, maps) on {self.timed} frames, and "
            f"{self.one_time_s:.2f} s of one-time work); report and signing {self.report_s:.1f} s"
        )


def estimate_time(
    evidence: Path, recipe: Recipe, model: ResolvedModel, decision: Decision, start: int, end: int, n_frames: int
) -> TimeEstimate:
    """Measure the parts of a run's time (see the module's docstring)."""
    t0 = time.perf_counter()
    file_sha256(evidence)
    sha_s = time.perf_counter() - t0
    ingest_frame_s = _ingest_frame_seconds(evidence, min(n_frames, INGEST_SAMPLE))
    timed = min(TIMED_FRAMES, end - start)
    with tempfile.TemporaryDirectory(prefix="fvsr-dry-run-") as tmp:
        # cold (torch's import, a network's first run, a PSF estimate: what the run pays once), then warm
        one_s, step, decode_s = _timed_pass(evidence, Path(tmp) / "cold", recipe, model, decision, start, 1)
        frame_s = one_s
        if timed > 1:
            logging.disable(logging.WARNING)  # the first pass said it (a low-confidence PSF, failed registrations)
            try:
                warm_s, _, _ = _timed_pass(evidence, Path(tmp) / "warm", recipe, model, decision, start, 1)
                more_s, _, decode_s = _timed_pass(evidence, Path(tmp) / "more", recipe, model, decision, start, timed)
            finally:
                logging.disable(logging.NOTSET)
            frame_s = max(more_s - warm_s, 0.0) / (timed - 1)
    selected = end - start
    one_time_s = max(one_s - frame_s, 0.0)
    out_frames = selected * step.frames_per_input
    # the stills are cut from the master, S and the evidence, decoded up to the last still (at most every frame)
    report_s = REPORT_S + (2 * decode_s + ingest_frame_s) * out_frames if recipe.report else 0.0
    return TimeEstimate(
        step,
        START_S,
        ingest_frame_s * n_frames + 2 * sha_s,
        one_time_s + frame_s * selected,
        report_s,
        frame_s,
        one_time_s,
        ingest_frame_s,
        max(timed, 1),
    )


def _ingest_frame_seconds(evidence: Path, count: int) -> float:
    """Seconds to decode and hash one evidence frame, over the first `count` (ingest's work)."""
    with VideoReader(evidence) as reader:
        t0 = time.perf_counter()
        n = 0
        for decoded in reader.frames():
            planes_sha256(frame_planes(decoded.frame))
            n += 1
            if n >= count:
                break
        if n == 0:
            raise UsageError(f"{evidence}: no frame decodes")
        return (time.perf_counter() - t0) / n


def _timed_pass(
    evidence: Path, target: Path, recipe: Recipe, model: ResolvedModel, decision: Decision, start: int, count: int
) -> tuple[float, StepRecord, float]:
    """The enhancement pass over frames [start, start + count) into a scratch bundle at `target`:
    (its seconds, its step record, seconds to decode one frame of its master)."""
    bundle = BundleDir(target)
    try:
        t0 = time.perf_counter()
        step, _ = FramePass(evidence, bundle, recipe, model, decision).run(start, start + count, False)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        with VideoReader(bundle.path(layout.MASTER)) as reader:
            decoded = sum(1 for _ in reader.frames())
        return seconds, step, (time.perf_counter() - t0) / max(decoded, 1)
    finally:
        bundle.discard()


def _region_line(step: StepRecord, width: int, height: int) -> str:
    region = step.region
    if region is None:
        return f"region whole frame, {width}x{height} at 0,0"
    taken = region.margin_taken
    return (
        f"region --roi {region.width}x{region.height} at {region.x},{region.y} of the {width}x{height} frame: the outputs are this "
        f"region x{region.scale}; margin {region.margin_needed} pixels needed on each side, taken left {taken['left']}, "
        f"top {taken['top']}, right {taken['right']}, bottom {taken['bottom']}"
    )


def _psf_line(deblur: dict[str, Any], start: int) -> str:
    psf = deblur.get("psf") or {}
    shown = ", ".join(f"{k} {v}" for k, v in psf.items() if k not in ("kind", "size"))
    estimate = deblur.get("estimate")
    if not estimate:
        return f"psf    {psf.get('kind')} ({shown}), given by --psf"
    line = f"psf    {psf.get('kind')} ({shown}), estimated blindly on frame {start}"
    if estimate.get("confidence") is None:
        return line
    low = "LOW, " if estimate.get("low_confidence") else ""
    threshold = estimate["confidence_threshold"]
    return line + f"; confidence {estimate['confidence']} ({low}threshold {threshold}: {estimate['confidence_measure']})"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
