"""What step.run records of the frames' geometry, checked against what the auditor has rather than
believed: against the decoded files, the output size review annotations are bounded by
(audit/review.py) is the master's and the input pixel format (which colour planes verify
judges, judgement.colour_consistency_problems) the evidence's; against the recipe that ran
(judgement's checks), the frame range and the --roi region, which verify cuts the evidence
to when it recomputes R (audit/maps_check.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forensic_vsr.audit.checks import Check
from forensic_vsr.audit.records import external_parameters, step_annotations
from forensic_vsr.media import DecoderSettings, VideoReader


def master_geometry(master: Path, summary: dict[str, Any]) -> Check:
    """frames.geometry: the first decoded frame of `master` is width_out x height_out of the step
    summary (FFV1 masters keep one size; frames.master_decode has checked every frame's bytes)."""
    with VideoReader(master) as reader:
        first = next(iter(reader.frames()), None)
    found = (first.frame.width, first.frame.height) if first else None
    what = f"{master.parent.name}/{master.name} decodes to " + (f"{found[0]}x{found[1]} frames" if found else "no frame")
    recorded = (summary.get("width_out"), summary.get("height_out"))
    if found != recorded:
        return Check.failed("frames.geometry", f"{what}, step.run records {recorded[0]!r}x{recorded[1]!r}")
    return Check.passed("frames.geometry", f"{what}, as step.run records")


def evidence_format(evidence: Path, decoder: DecoderSettings, recorded: Any) -> Check:
    """evidence.pix_fmt: the auditor's evidence decodes (as the ingest decoded it) to the pixel
    format step.run records as pix_fmt_in."""
    with VideoReader(evidence, decoder) as reader:
        first = next(iter(reader.frames()), None)
    found = first.frame.format.name if first else None
    if found != recorded:
        return Check.failed("evidence.pix_fmt", f"{evidence.name} decodes to {found} frames, step.run records pix_fmt_in {recorded!r}")
    return Check.passed("evidence.pix_fmt", f"{evidence.name} decodes to {found} frames, as step.run records")


def frame_range_check(step: dict[str, Any], ingest: dict[str, Any] | None) -> Check:
    """step.run's frames (start, end) against the recipe's --frames A:B (an open end, or none, is
    the ingest's decoded frame count; no --frames: from 0)."""
    frames, recipe = step_annotations(step).get("frames") or {}, external_parameters(step).get("frames")
    decoded = ingest.get("frames_decoded") if ingest else None
    start, _, end = (recipe if isinstance(recipe, str) else "0:-1").partition(":")
    want = (start, str(decoded) if end == "-1" else end)
    got = (str(frames.get("start")), str(frames.get("end")))
    if got != want:
        return Check.failed("frames.range", f"step.run ran frames {got[0]}:{got[1]}, the recipe's --frames is {want[0]}:{want[1]}")
    return Check.passed("frames.range", f"step.run ran frames {got[0]}:{got[1]}, the recipe's --frames")


def region_problems(region: Any, recipe: dict[str, Any], width_out: Any, height_out: Any) -> list[str]:
    """How step.run's signed --roi region disagrees with the recipe that ran (`recipe`, its
    external parameters) and with itself: the box is the recipe's region, the scale the main
    operation's, the output the box times the scale and the step's output size, the crop the box
    widened by the margin taken, the margins those of the recipe's operations. (The margin each
    operation needs is its stage's to say; verify does not recompute output pixels, --reproduce does.)"""
    wanted = recipe.get("region")
    if not isinstance(region, dict):
        return [f"step.run records region {region!r}, the recipe {wanted!r}"]
    box = [region.get(k) for k in ("x", "y", "width", "height")]
    if box != wanted:
        return [f"step.run records the region {box!r}, the recipe that ran {wanted!r}"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in box):
        return [f"the region {box!r} is not four whole numbers >= 0"]
    x, y, w, h = (int(v or 0) for v in box)  # whole numbers, checked above
    operations = recipe.get("operations") or [{}]
    scale = operations[-1].get("scale") if isinstance(operations[-1], dict) else None
    if region.get("scale") != scale or not isinstance(scale, int):
        return [f"region {x},{y} {w}x{h} recorded at scale {region.get('scale')!r}, the recipe's {scale!r}"]
    out = {"width": w * scale, "height": h * scale}
    problems = (
        []
        if region.get("output") == out == {"width": width_out, "height": height_out}
        else [
            f"region {w}x{h} x{scale} is {out['width']}x{out['height']}; step.run records output {region.get('output')!r}, "
            f"frames {width_out!r}x{height_out!r}"
        ]
    )
    crop, taken, needed = region.get("crop"), region.get("margin_taken"), region.get("margin_needed")
    by_op = region.get("margin_by_operation")
    ops = [(op.get("op"), op.get("model")) for op in operations if isinstance(op, dict)]
    if (
        not isinstance(by_op, list)
        or [(m.get("op"), m.get("model")) for m in by_op if isinstance(m, dict)] != ops
        or len(by_op) != len(ops)
    ):
        return [*problems, f"the margins are recorded for {by_op!r}, not for the recipe's operations {ops!r}"]
    margins = [m.get("margin") for m in by_op]
    if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in margins) or needed != sum(margins):
        return [*problems, f"margin_needed {needed!r} is not the sum of the operations' margins {margins!r}"]
    sides = ("left", "top", "right", "bottom")
    if not isinstance(taken, dict) or not all(isinstance(taken.get(k), int) and taken[k] >= 0 for k in sides) or not isinstance(crop, dict):
        return [*problems, f"margin taken {taken!r}, crop {crop!r}: not whole numbers"]
    expect = {
        "x": x - taken["left"],
        "y": y - taken["top"],
        "width": w + taken["left"] + taken["right"],
        "height": h + taken["top"] + taken["bottom"],
    }
    if crop != expect or expect["x"] < 0 or expect["y"] < 0:
        problems.append(f"the crop {crop!r} is not the region widened by the margin taken {taken!r}")
    short = [k for k, at in (("left", expect["x"]), ("top", expect["y"])) if taken[k] < needed and at != 0]
    if short:
        problems.append(f"less margin than needed ({needed}) taken on the {' and '.join(short)} side(s) away from the frame's border")
    return problems


def region_check(step: dict[str, Any]) -> Check:
    """step.run's --roi region against the recipe that ran (`region_problems`)."""
    summary = step_annotations(step)
    problems = region_problems(summary.get("region"), external_parameters(step), summary.get("width_out"), summary.get("height_out"))
    if problems:
        return Check.failed("region.recorded", "; ".join(problems))
    r = summary["region"]
    return Check.passed(
        "region.recorded",
        f"the region {r['x']},{r['y']} {r['width']}x{r['height']} is the recipe's --roi; its output and crop follow from it",
    )
