"""`fvsr enhance --dry-run`: what a run would do, without doing it.

The recipe is judged as `pipeline.enhance` judges it (every rule printed), the frame range and
region are resolved against the evidence, the output size is checked against the bundle's
encoders, and the operations run once on the first selected frame: for deblur that gives the
PSF (estimated there, with its confidence), and for every recipe the per-frame cost that the
expected time is extrapolated from. No key is needed and nothing is written: no bundle, no
build directory, no scratch file."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forensic_vsr.bundle.frames import stage_params
from forensic_vsr.bundle.limits import check_evidence_output_size
from forensic_vsr.errors import UsageError
from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.models.registry import ResolvedModel
from forensic_vsr.models.tasks import runs_on_luma, task
from forensic_vsr.ops.operations import stage_for
from forensic_vsr.ops.stages import Chain, Stage
from forensic_vsr.policy import Decision
from forensic_vsr.recipe import Recipe, bounded_frames, decide_recipe, pre_models, recipe_facts


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
    x, y, w, h = recipe.roi or (0, 0, info.width, info.height)
    say(f"region {'--roi ' if recipe.roi else 'whole frame, '}{w}x{h} at {x},{y}" + (" (deblur only)" if recipe.roi else ""))
    check_evidence_output_size(evidence, recipe.scale, recipe.maps)
    first, stages, ops_first, ops_next, decode_each = _first_frame(evidence, recipe, model, start)
    for stage in stages:
        if task(stage.model) == "deblur":
            say(_psf_line(stage.record()["deblur"], start))
    factor = math.prod(stage.frames_per_input for stage in stages)
    out_w, out_h = info.width * recipe.scale, info.height * recipe.scale
    say(f"output {out_w}x{out_h} (x{recipe.scale}), {selected * factor} frames" + (f" ({factor} per evidence frame)" if factor > 1 else ""))
    one_time = max(ops_first - ops_next, 0.0)
    total = decode_each * (n_packets + selected) + ops_next * selected + one_time
    say(
        f"expected time: at least {_duration(total)} (a lower-bound estimate: the operations took {ops_next:.3f} s on frame {first}"
        f"{f' after {one_time:.2f} s of one-time work' if one_time >= 0.01 else ''}, decoding {decode_each:.4f} s a frame; "
        f"x {selected} frames, with every evidence frame decoded twice; encoding, maps, the report and signing come on top)"
    )
    say("dry run: nothing was written and no key was used")
    return True


def _first_frame(evidence: Path, recipe: Recipe, model: ResolvedModel, start: int) -> tuple[int, list[Stage], float, float, float]:
    """Run the stages (as bundle.frames builds them) on the first selected frame, twice: the
    first time includes one-time work (a PSF estimate, a network's warm-up), the second is the
    per-frame cost. Returns (frame index, stages, first time, second time, decode time a frame)."""
    with VideoReader(evidence) as reader:
        info = reader.info
        t0 = time.perf_counter()
        decoded = next((d for d in reader.frames() if d.index >= start), None)
        if decoded is None:
            raise UsageError(f"--frames {start}: the evidence decodes to fewer frames")
        decode_each = (time.perf_counter() - t0) / (decoded.index + 1)
        planes = frame_planes(decoded.frame)
    siting = "center" if info.pix_fmt.startswith("yuvj") else "left"
    project = runs_on_luma(model) and recipe_facts(recipe, model).data_consistency_available
    params = stage_params(recipe, info.pix_fmt, siting, info.width, info.height, project)
    pre_params = dataclasses.replace(params, scale=1, project=False, keep_maps=False)
    stages = [*(stage_for(m, pre_params) for m in pre_models(recipe)), stage_for(model, params)]
    rate = info.guessed_rate
    for stage in stages:
        stage.stream_field_order = info.field_order
        if rate:
            stage.field_ticks = max(1, round(1 / (rate * info.time_base)))
    chain = Chain(stages)
    times = []
    for n in range(2):
        t0 = time.perf_counter()
        chain.push((decoded.index + n, decoded.pts + n), [p.copy() for p in planes])
        chain.flush()
        times.append(time.perf_counter() - t0)
    return decoded.index, stages, times[0], times[1], decode_each


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
