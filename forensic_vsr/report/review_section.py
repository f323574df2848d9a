"""The report's Review section (`fvsr report` only): the signed review records `fvsr review` saved
in review/, each with who signed it, when, the frame it names and what was marked, and the frame's
evidence | enhanced crop with the boxes, regions, arrows and text points drawn on the report's
copy (nearest-neighbour zoom, as the stills' crops). The enhanced pixels in the bundle never
change, and report.pdf (signed before any review existed) is not touched: verify renders it
without this section.

The frames are decoded from output/master.mkv and the evidence (when its sha256 is the recorded
one); a decoded output frame whose sha256 is not the one the signed record names is refused."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr import layout
from forensic_vsr.audit.checks import ChainView
from forensic_vsr.audit.records import step_annotations
from forensic_vsr.audit.review import REVIEW_MAX_BYTES, ReviewRecord, open_review, review_files
from forensic_vsr.audit.safe_read import FRAMEHASH_HEADER_MAX, FRAMEHASH_LINE_MAX, bundle_entries, read_in_bundle
from forensic_vsr.errors import UsageError
from forensic_vsr.integrity.framehash import FrameHash, parse
from forensic_vsr.media import BITEXACT_DECODE, DecoderSettings, VideoReader, file_sha256, frame_planes, planes_sha256
from forensic_vsr.report.figures import crop_box, flowable, scale_bar
from forensic_vsr.report.stills import crop_region

FRAMEHASH_MAX = FRAMEHASH_HEADER_MAX + 10_000_000 * FRAMEHASH_LINE_MAX
MARK = (0, 255, 0)  # the colour the review page draws saved annotations in
PANEL_KINDS = ("evidence", "enhanced")


def read_framehash(bundle: Path, name: str) -> tuple[Fraction, list[FrameHash]]:
    """A bundle's framehash file: its time base (`#tb 0:`) and its lines."""
    text = read_in_bundle(bundle, name, FRAMEHASH_MAX).decode("ascii")
    tb = next((Fraction(line.split(":", 1)[1].strip()) for line in text.splitlines() if line.startswith("#tb 0:")), None)
    if tb is None:
        raise UsageError(f"{name} has no `#tb 0:` line: not a framehash file")
    return tb, list(parse(text.splitlines()))


def evidence_decoding(ingest: dict[str, Any]) -> tuple[DecoderSettings, Fraction | None]:
    """The recorded decoder settings of the evidence and the rate given with --rate (None when the
    file's own timestamps were used): how the run decoded it."""
    derived = (ingest.get("timing") or {}).get("derived") or {}
    rate = Fraction(str(derived["rate"])) if str(derived.get("from", "")).startswith("--rate") and derived.get("rate") else None
    return DecoderSettings.from_record(ingest.get("decoder")), rate


@dataclass(frozen=True)
class ReviewedFrame:
    """One verified review record, the region its crop shows, and that region of its frames."""

    file: str
    record: ReviewRecord
    evidence_frame: int
    time_s: float
    crop: dict[str, Any]  # crop_region's, around the annotations: evidence pixels, or output pixels (scale 1)
    in_evidence_pixels: bool  # False where the output is no whole-number scale of the evidence
    enhanced: Any  # RGB pixels of the output frame inside the crop
    evidence: Any | None  # RGB pixels of the evidence frame inside the crop, when it is shown


def plan_crop(annotations: tuple[dict[str, Any], ...], out_size: tuple[int, int], ev_size: tuple[int, int]) -> tuple[dict[str, Any], bool]:
    """The region to magnify around the annotations (the whole frame without any), and whether
    it is in evidence pixels: only where the output is a whole-number scale of the evidence (else
    in output pixels, and no evidence panel)."""
    (w, h), (ev_w, ev_h) = out_size, ev_size
    scale = w // ev_w if ev_w and w % ev_w == 0 and ev_h * (w // ev_w) == h else None
    bounds = _bounds(annotations) or {"x": 0, "y": 0, "w": w, "h": h}
    crop = crop_region((w, h), 1, bounds, None) if scale is None else crop_region((ev_w, ev_h), scale, bounds, None)
    crop["source"] = "around the annotations" if annotations else "the whole frame"
    return crop, scale is not None


def _cut(
    path: Path,
    boxes: dict[int, list[tuple[int, tuple[int, int, int, int]]]],
    decoder: DecoderSettings = BITEXACT_DECODE,
    rate: Fraction | None = None,
) -> tuple[dict[int, Any], dict[int, str]]:
    """One pass over a video: for frame n, each (key, box) in boxes[n] gives cuts[key], the box's
    RGB pixels (swscale, as the stills); and shas[n], the sha256 of the frame's native planes.
    Only the cuts are kept, so memory holds one frame at a time."""
    cuts: dict[int, Any] = {}
    shas: dict[int, str] = {}
    if not boxes:
        return cuts, shas
    with VideoReader(path, decoder, rate) as reader:
        for decoded in reader.frames():
            if decoded.index in boxes:
                rgb = decoded.frame.to_ndarray(format="rgb24")
                shas[decoded.index] = planes_sha256(frame_planes(decoded.frame))
                for key, (left, top, right, bottom) in boxes[decoded.index]:
                    cuts[key] = rgb[top:bottom, left:right].copy()
            if decoded.index >= max(boxes):
                break
    missing = sorted(set(boxes) - set(shas))
    if missing:
        raise UsageError(f"{path.name} has no frame {missing[0]}")
    return cuts, shas


def reviewed_frames(bundle: Path, view: ChainView, key: Ed25519PublicKey, evidence: Path | None) -> tuple[list[ReviewedFrame], str]:
    """The review records (already verified by `fvsr verify`'s review checks) with the crops of
    their frames, and a note on the evidence: whether its frames are shown and why. A decoded
    output frame whose sha256 is not the one its record signs is refused (UsageError)."""
    names = review_files(bundle_entries(bundle))
    if not names:
        return [], ""
    ingest, step = view.first("evidence.ingest"), view.first("step.run")
    if ingest is None or step is None:
        return [], ""
    run = step_annotations(step)
    recorded = ingest["evidence"]
    path = evidence or Path(recorded.get("path") or "")
    if not path.is_file():
        note, shown = f"frames not shown: {path} not found (pass --evidence FILE)", None
    elif (got := file_sha256(path)) != recorded["sha256"]:
        note, shown = f"frames not shown: {path} has sha256 {got[:16]}…, the recorded evidence {recorded['sha256'][:16]}…", None
    else:
        note, shown = f"{path.name}, sha256 {got[:16]}… as recorded: its frames are shown", path
    out_tb, _ = read_framehash(bundle, layout.OUTPUT_FRAMEHASH)
    in_tb, inputs = read_framehash(bundle, layout.INPUT_FRAMEHASH)
    first = inputs[0].pts * in_tb if inputs else Fraction(0)
    start, per_input = int((run.get("frames") or {}).get("start", 0)), int(run.get("frames_per_input") or 1)
    probe = ingest.get("probe") or {}
    ev_size = (int(probe.get("width") or 0), int(probe.get("height") or 0))
    out_size = (int(run["width_out"]), int(run["height_out"]))
    records = [open_review(read_in_bundle(bundle, name, REVIEW_MAX_BYTES), key, name) for name in names]
    plans = [plan_crop(r.annotations, out_size, ev_size) for r in records]
    out_boxes: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = {}
    ev_boxes: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = {}
    for i, (r, (crop, in_ev)) in enumerate(zip(records, plans, strict=True)):
        out_boxes.setdefault(r.frame, []).append((i, crop_box(crop, "enhanced")))
        if shown and in_ev:
            ev_boxes.setdefault(start + r.frame // per_input, []).append((i, crop_box(crop, "evidence")))
    enhanced, shas = _cut(bundle / layout.MASTER, out_boxes)
    ev_cuts = _cut(shown, ev_boxes, *evidence_decoding(ingest))[0] if shown else {}
    found = []
    for i, (name, r, (crop, in_ev)) in enumerate(zip(names, records, plans, strict=True)):
        if shas[r.frame] != r.frame_sha256:
            sha, signed = shas[r.frame][:16], r.frame_sha256[:16]
            raise UsageError(f"{name}: output frame {r.frame} decodes to sha256 {sha}…, the record names {signed}…")
        ev_index = start + r.frame // per_input
        found.append(ReviewedFrame(name, r, ev_index, float(r.pts * out_tb - first), crop, in_ev, enhanced[i], ev_cuts.get(i)))
    return found, note


def _where(a: dict[str, Any]) -> str:
    if a["type"] == "arrow":
        return f"from ({a['x']}, {a['y']}) to ({a['x2']}, {a['y2']})"
    if "w" in a:
        return f"x {a['x']} to {a['x'] + a['w'] - 1}, y {a['y']} to {a['y'] + a['h'] - 1} ({a['w']} x {a['h']})"
    return f"({a['x']}, {a['y']})"


def _bounds(annotations: tuple[dict[str, Any], ...]) -> dict[str, int] | None:
    """The output-pixel box holding every annotation (None without annotations)."""
    if not annotations:
        return None
    xs = [v for a in annotations for v in (a["x"], a.get("x2", a["x"]), a["x"] + a.get("w", 1) - 1)]
    ys = [v for a in annotations for v in (a["y"], a.get("y2", a["y"]), a["y"] + a.get("h", 1) - 1)]
    return {"x": min(xs), "y": min(ys), "w": max(xs) - min(xs) + 1, "h": max(ys) - min(ys) + 1}


def annotated_crop(pixels: Any, crop: dict[str, Any], annotations: tuple[dict[str, Any], ...]) -> Any:
    """The crop's pixels (evidence or output pixels) repeated (nearest neighbour) to the crop's
    zoom, the annotations drawn over them and numbered from 1: a panel pixel is (output pixel /
    scale - crop origin) x zoom on both panels."""
    from PIL import Image, ImageDraw, ImageFont

    s, zoom = int(crop["scale"]), int(crop["zoom"])
    img = Image.fromarray(pixels).resize((crop["w"] * zoom, crop["h"] * zoom), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(14, img.width // 16))

    def at(x: float, y: float) -> tuple[float, float]:
        return (x / s - crop["x"]) * zoom, (y / s - crop["y"]) * zoom

    for number, a in enumerate(annotations, 1):
        x0, y0 = at(a["x"], a["y"])
        if "w" in a:
            x1, y1 = at(a["x"] + a["w"], a["y"] + a["h"])
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=MARK, width=2)
        elif a["type"] == "arrow":
            cx0, cy0 = at(a["x"] + 0.5, a["y"] + 0.5)
            cx1, cy1 = at(a["x2"] + 0.5, a["y2"] + 0.5)
            draw.line((cx0, cy0, cx1, cy1), fill=MARK, width=2)
            back = math.atan2(cy0 - cy1, cx0 - cx1)
            head = max(8.0, 1.5 * zoom)
            wings = [(cx1 + head * math.cos(back + d), cy1 + head * math.sin(back + d)) for d in (0.45, -0.45)]
            draw.polygon([(cx1, cy1), *wings], fill=MARK)
        else:
            cx, cy = at(a["x"] + 0.5, a["y"] + 0.5)
            r = max(3, zoom // 2)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=MARK, width=2)
        above = y0 - font.size - 3
        draw.text((x0 + 3, above if above >= 0 else y0 + 6), str(number), fill=MARK, font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return img


def review_flowables(frames: list[ReviewedFrame], note: str, width: float, st: dict[str, Any]) -> list[Any]:
    """The Review section: per record, what it says and the annotated evidence | enhanced crop."""
    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph, Table, TableStyle

    out: list[Any] = [
        Paragraph("Review records (added after the run; not part of the signed report.pdf)", st["h1"]),
        Paragraph(
            escape(
                f"{len(frames)} review record(s) in review/, made with `fvsr review`: each one a DSSE envelope signed with the "
                "examiner key, bound to this bundle's chain head and to the sha256 of the output frame it names, checked by "
                "`fvsr verify` before this report was rendered (review.NNNN PASS). The annotations are drawn on this report's "
                "copy of the frames (green, numbered as in the tables); the bundle's enhanced frames are unchanged. "
                f"Evidence: {note}."
            ),
            st["body"],
        ),
    ]
    for item in frames:
        r = item.record
        head = (
            f"<b>{escape(item.file)}</b>: signed by <b>{escape(r.examiner)}</b> (key id <font face='Courier'>{r.keyid[:16]}…</font>) "
            f"at {escape(r.time)} (UTC); output frame <b>{r.frame}</b> (evidence frame {item.evidence_frame}), "
            f"{item.time_s:.3f} s from the start of the evidence, pts {r.pts}, frame sha256 "
            f"<font face='Courier' size='7'>{r.frame_sha256}</font>; bound to chain head "
            f"<font face='Courier' size='7'>{r.bundle.chain_head[:16]}…</font> ({r.bundle.tree_size} records); "
            + ("marked as a <b>still</b>." if r.still else "not marked as a still.")
        )
        block: list[Any] = [Paragraph(head, st["body"])]
        rows = [["#", "Kind", "Where (output pixels)", "Text"]] + [
            [str(i), a["type"], _where(a), a.get("text") or "-"] for i, a in enumerate(r.annotations, 1)
        ]
        if r.annotations:
            table = Table(
                [[Paragraph(escape(str(c)), st["small"]) for c in row] for row in rows],
                colWidths=[8 * mm, 18 * mm, 62 * mm, width - 88 * mm],
            )
            table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
            block.append(table)
        else:
            block.append(Paragraph("No annotations.", st["small"]))
        crop, in_evidence_pixels = item.crop, item.in_evidence_pixels
        with_evidence = item.evidence is not None
        kinds = PANEL_KINDS if with_evidence else ("enhanced",)
        images = {"evidence": item.evidence, "enhanced": item.enhanced}
        panel_w = width / 2 - 2 * mm
        panels = [flowable(annotated_crop(images[k], crop, r.annotations), panel_w) for k in kinds]
        drawn = ", annotations drawn" if r.annotations else ""
        block.append(Table([panels, [k + drawn for k in kinds]], colWidths=[width / 2] * len(kinds)))
        pixels = "evidence pixels" if in_evidence_pixels else "output pixels"
        if in_evidence_pixels:
            block.append(scale_bar(crop, panel_w, width))
        text = (
            f"Magnified crop ({crop['source']}): {pixels} x {crop['x']} to {crop['x'] + crop['w'] - 1}, "
            f"y {crop['y']} to {crop['y'] + crop['h'] - 1}; nearest-neighbour zoom x{crop['zoom']}"
            + ("" if crop["scale"] == 1 else f" of the evidence pixels, x{crop['zoom'] // crop['scale']} of the output pixels")
        )
        if not with_evidence:
            why = "the evidence frames are not available (above)" if in_evidence_pixels else "the output is not a whole-number scale"
            text += f". Evidence panel omitted: {why}"
        block.append(Paragraph(escape(text), st["small"]))
        out.append(KeepTogether(block))
    return out
