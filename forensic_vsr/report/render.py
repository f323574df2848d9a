"""report.pdf, rendered with reportlab in invariant mode from the records and the bundle's stills:
the same bundle gives the same PDF bytes."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from forensic_vsr import __version__
from forensic_vsr.report.content import (
    LIMITATIONS,
    LIMITATIONS_TEMPORAL,
    LIMITATIONS_X1,
    MAPS_TEXT,
    MAPS_TEXT_TEMPORAL,
    MAPS_TEXT_X1,
    NOT_EVIDENTIAL,
    OPERATION_TEXT,
    REFERENCES,
    aspect,
    examiner_shown,
    short,
)
from forensic_vsr.report.figures import binary_streams, psf_block, still_block
from forensic_vsr.report.tables import (
    all_metadata,
    parameter_rows,
    plain,
    region_rows,
    registration_rows,
    relevant_metadata,
    timing_rows,
    value_text,
    wall_clock,
)

# The report template's version, recorded in report.generate: bump it with every change to what
# the report prints or how: verify reads a byte difference as an alteration only in a report of
# the running template (another one is checked by its facts, report/facts.py).
# 1: format-1 bundles (none recorded); 2: the framehash cross-check carries -flags +bitexact;
# 4: derived timestamps, timestamp discontinuities and repeated (duplicated) frames of the evidence;
# 5: SAR and DAR of evidence and output; a low-confidence blind PSF estimate is printed as a
# warning beside the PSF (3 was never released); 6: stills as a magnified crop (evidence | enhanced |
# map, nearest-neighbour zoom, scale bar) and a reduced overview, times in seconds, parameters as
# tables with units, metadata filtered (the full dump in an appendix), the examiner's name from the
# report certificate, the PDF's dates from the run's start, the PSF drawn; 7: --roi: the region and
# the margin taken around it, the whole evidence frame with the region outlined beside each still;
# 8: no raw JSON (decoder damage, round trip, environment as tables), units on metadata, x1 operations
# show the change made (R, stills/NNNNNN-change.png) with its statistics and x1 texts, temporal
# operations their registrations (failed ones in the summary), a frame that is two stills shown once;
# 9: streams Flate only (no ASCII85) and pictures embedded from their pixels (no PNG round trip).
TEMPLATE_VERSION = 9


def _pdf_canvas(started: str) -> Any:
    """A reportlab canvas whose CreationDate and ModDate are the run's recorded start (UTC), not
    invariant mode's fixed 2000-01-01: still a function of the records, so the bytes stay the same."""
    import calendar
    import datetime

    from reportlab.pdfbase.pdfdoc import TimeStamp
    from reportlab.pdfgen.canvas import Canvas

    when = datetime.datetime.fromisoformat(started.replace("Z", "+00:00")).astimezone(datetime.UTC)
    stamp = TimeStamp(invariant=True)
    stamp.t = calendar.timegm(when.timetuple())
    stamp.lt = when.timetuple()
    stamp.YMDhms = tuple(stamp.lt)[:6]

    class RunDatedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._doc._timeStamp = stamp

    return RunDatedCanvas


def _styles() -> dict[str, Any]:
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet

    base = getSampleStyleSheet()
    return {
        "title": ParagraphStyle("t", parent=base["Title"], fontSize=18, leading=22),
        "h1": ParagraphStyle("h1", parent=base["Heading1"], fontSize=13, leading=16, spaceBefore=10),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontSize=11, leading=13),
        "body": ParagraphStyle("b", parent=base["BodyText"], fontSize=9, leading=11.5),
        "small": ParagraphStyle("s", parent=base["BodyText"], fontSize=7.5, leading=9),
        "mono": ParagraphStyle("m", parent=base["Code"], fontName="Courier", fontSize=7, leading=8.5),
        "banner": ParagraphStyle("ban", parent=base["Title"], fontSize=14, textColor=colors.white, backColor=colors.red),
    }


def _esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _params(rows: list[list[str]], width: float, st: dict[str, Any], label: str = "") -> Any:
    """A table of [name, value, unit] rows (`tables.parameter_rows`), under a header."""
    from reportlab.lib.units import mm

    head = [[label or "Parameter", "Value", "Unit"]]
    return _table(head + rows, [70 * mm, width - 92 * mm, 22 * mm], st)


def _table(rows: list[list[Any]], widths: list[float], st: dict[str, Any], mono_cols: tuple[int, ...] = ()) -> Any:
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Table, TableStyle

    cells = [
        [Paragraph(_esc(c), st["mono"] if j in mono_cols else st["small"]) if not hasattr(c, "wrap") else c for j, c in enumerate(r)]
        for r in rows
    ]
    t = Table(cells, colWidths=widths, repeatRows=0)
    t.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f0f0f0")),
            ]
        )
    )
    return t


def _plot(values: list[float], width: float, height: float) -> Any:
    from reportlab.graphics.charts.lineplots import LinePlot
    from reportlab.graphics.shapes import Drawing, String

    d = Drawing(width, height)
    lp = LinePlot()
    lp.x, lp.y, lp.width, lp.height = 40, 25, width - 60, height - 45
    pts = [(i, round(100 * v, 4)) for i, v in enumerate(values)] or [(0, 0)]
    if len(pts) == 1:
        pts.append((1, pts[0][1]))
    lp.data = [pts]
    lp.xValueAxis.valueMin = 0
    lp.yValueAxis.valueMin = 0
    lp.yValueAxis.valueMax = max(1.0, max(p[1] for p in pts) * 1.1)
    d.add(lp)
    d.add(String(width / 2, 5, "output frame", fontSize=7, textAnchor="middle"))
    d.add(String(5, height - 10, "% of pixels flagged", fontSize=7))
    return d


def render(
    bundle: Path,
    records: dict[str, dict[str, Any]],
    stills: list[dict[str, Any]],
    chain_head: str,
    out: Path,
    reviews: tuple[list[Any], str] | None = None,
) -> None:
    """Write the report PDF for a bundle to `out` (deterministic bytes for the same inputs).
    `reviews` (`fvsr report` only: review_section.reviewed_frames) adds the Review section; the
    signed report, and verify's rendering of it, have none."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Spacer

    st = _styles()
    decision, ingest, step_rec, write = (records[k] for k in ("policy.decision", "evidence.ingest", "step.run", "output.write"))
    build = step_rec["predicate"]["buildDefinition"]
    params = build["externalParameters"]
    env = build["internalParameters"]
    step = next(b["annotations"] for b in step_rec["predicate"]["runDetails"]["byproducts"] if b["name"] == "step")
    meta = step_rec["predicate"]["runDetails"]["metadata"]
    mode = params["mode"]
    evidential = mode == "evidential"
    model = decision["model"]
    op = params["operations"][-1]  # the main operation; earlier ones ran before it (--ops)
    pre_ops = params["operations"][:-1]
    ev = ingest["evidence"]
    probe = ingest["probe"]
    maps = step.get("maps")
    case_id = ingest.get("case_id") or "-"
    who = records.get("_meta", {})
    examiner = examiner_shown(who)
    deps = {d["name"]: d for d in build["resolvedDependencies"]}
    card_dep = deps.get(f"model-card:{model['id']}", {})
    title = f"forensic-vsr report — case {case_id}"

    def page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.drawString(15 * mm, 10 * mm, f"{title} — {mode} mode — forensic-vsr {__version__}")
        canvas.drawRightString(195 * mm, 10 * mm, f"page {doc.page}")
        if not evidential:
            canvas.setFillColor(colors.red)
            canvas.rect(0, 287 * mm, 210 * mm, 10 * mm, fill=1, stroke=0)
            canvas.setFillColor(colors.white)
            canvas.setFont("Helvetica-Bold", 12)
            canvas.drawCentredString(105 * mm, 290 * mm, f"{NOT_EVIDENTIAL} — {mode.upper()} MODE")
        canvas.restoreState()

    doc = SimpleDocTemplate(
        str(out),
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=18 * mm,
        bottomMargin=16 * mm,
        title=title,
        author=examiner if examiner != "-" else "forensic-vsr",
        subject=f"{mode} enhancement of {ev['name']}",
        creator=f"forensic-vsr {__version__}",
        invariant=1,
    )
    W = doc.width
    s: list[Any] = []
    s.append(Paragraph(_esc(title), st["title"]))
    if not evidential:
        s.append(Paragraph(f"{NOT_EVIDENTIAL}: {mode} mode", st["banner"]))
    flagged = (maps or {}).get("flagged", {})
    n_in = ingest["frames_decoded"]
    first, last = step["frames"]["start"], step["frames"]["end"] - 1
    verb = f"processed ({op.get('op', 'x1')}, x1)" if op["scale"] == 1 else f"upscaled x{op['scale']}"
    if pre_ops:
        verb = "processed by " + ", then ".join(o.get("op", o["model"]) for o in pre_ops) + ", then " + verb
    summary = (
        f"The evidence file <b>{_esc(ev['name'])}</b> ({ev['size']} bytes, sha256 {short(ev['sha256'])}) was decoded "
        + ("(a still image: one frame) and it was " if n_in == 1 else f"({n_in} frames) and its frames {first} to {last} were ")
        + verb
        + f" with <b>{_esc(model['id'])}</b> (class {model['class']}) in <b>{mode}</b> mode, under policy "
        f"{_esc(decision['policy']['id'])} (sha256 {short(decision['policy']['sha256'])}), which allowed the recipe. The evidence "
        f"file was unchanged by processing (sha256 identical before and after). Every frame is hashed and the hashes are "
        f"committed in signed Merkle trees."
    )
    out_count = step["frames"]["count"]
    if out_count != last - first + 1:
        summary += f" They gave {out_count} output frames."
    temporal = step.get("temporal") or {}
    links = [r for f in temporal.get("per_frame") or [] for r in f.get("registrations") or []]
    if links:
        failed = [r for r in links if not r.get("ok")]
        summary += (
            f" The temporal operation made {len(links)} registrations of neighbour frames onto the frames they were combined with: "
            + (
                f"<b>{len(failed)} registrations failed and those frames were left out</b> (Results lists them)."
                if failed
                else "all succeeded."
            )
        )
    x1 = op["scale"] == 1
    if maps and x1:
        summary += " The operation keeps the frame size: each still shows the change it made (R) with its statistics."
    elif maps:
        summary += (
            f" The synthesized-content map flags {flagged['frames_with_flags']} of {step['frames']['count']} frames with regions "
            f"where the output holds more than {flagged['threshold_levels']} grey levels of content the input does not determine "
            f"(at most {100 * flagged['max_fraction_flagged']:.2f}% of a frame, {100 * flagged['mean_fraction_flagged']:.3f}% on "
            f"average)."
        )
    s.append(Paragraph(summary, st["body"]))
    s.append(Spacer(1, 4 * mm))
    s.append(
        _table(
            [
                ["Case id", case_id],
                ["Examiner", examiner],
                ["Run started / finished (UTC)", f"{meta['startedOn']} / {meta['finishedOn']}"],
                ["Mode", mode + ("" if evidential else f" — {NOT_EVIDENTIAL}")],
                ["Tool", f"forensic-vsr {__version__}"],
            ],
            [55 * mm, W - 55 * mm],
            st,
        )
    )

    s.append(Paragraph("1. Evidence", st["h1"]))
    exif = ingest.get("exiftool") or {}
    rows = [
        ["File name", ev["name"]],
        ["Size (bytes)", ev["size"]],
        ["sha256 before processing", ev["sha256"]],
        ["sha256 after processing", write["evidence_sha256_after"] + (" (unchanged)" if write["evidence_unchanged"] else " (CHANGED)")],
        ["Container / codec / pix_fmt", f"{probe.get('container')} / {probe.get('codec')} / {probe.get('pix_fmt')}"],
        [
            "Dimensions",
            f"{probe.get('width')} x {probe.get('height')}"
            + aspect(probe.get("sample_aspect_ratio"), probe.get("width"), probe.get("height")),
        ],
        ["Frames decoded", ingest["frames_decoded"]],
        ["Time base / variable frame rate", f"{probe.get('time_base')} s / {value_text(ingest['timing'].get('vfr'))}"],
        *timing_rows(ingest),
        ["Rotation", f"{ingest.get('rotation')} deg"],
        ["Decoder damage", plain(ingest.get("decode") or {}) or "-"],
        ["Input frame hashes: Merkle root", ingest["input_framehash"]["merkle_root"]],
    ]
    s.append(_table(rows, [55 * mm, W - 55 * mm], st, mono_cols=(1,)))
    if exif:
        s.append(Paragraph("Metadata (exiftool): container, codec, dates, device, GPS, durations", st["h2"]))
        s.append(_table(relevant_metadata(exif) or [["-", "none of these tags"]], [55 * mm, W - 55 * mm], st))
        s.append(Paragraph(f"All {len(exif)} tags exiftool reported: Appendix A.", st["small"]))

    s.append(Paragraph("2. Policy", st["h1"]))
    s.append(
        Paragraph(
            f"Policy <b>{_esc(decision['policy']['id'])}</b> version {decision['policy'].get('version')} "
            f"({_esc(decision['policy'].get('source'))}), sha256 <font face='Courier'>{decision['policy']['sha256']}</font>. "
            f"Decision: <b>{'ALLOWED' if decision['allowed'] else 'REFUSED'}</b>.",
            st["body"],
        )
    )
    s.append(
        _table(
            [["Rule", "Outcome", "Reason"]] + [[r["rule"], r["outcome"], r["reason"]] for r in decision["rules"]],
            [60 * mm, 20 * mm, W - 80 * mm],
            st,
        )
    )

    s.append(Paragraph("3. Processing", st["h1"]))
    kind = step.get("planes_classical") or model["id"]
    desc = OPERATION_TEXT.get(model["id"]) or card_dep.get("annotations", {}).get("description") or model["id"]
    for n, pre in enumerate(step.get("pre_operations") or [], 1):
        s.append(Paragraph(f"<b>Step {n}: {_esc(pre['op'])} with {_esc(pre['model'])}</b> (x1, before the main step).", st["body"]))
        facts = {k: v for k, v in pre.items() if k not in ("op", "model") and v}
        if facts:
            s.append(_params(parameter_rows(facts), W, st))
    s.append(Paragraph(f"<b>{_esc(op.get('op', 'upscale'))} x{op['scale']} with {_esc(model['id'])}</b>. {_esc(desc)}", st["body"]))
    planes = (step.get("runner") or {}).get("planes")
    if step.get("luma") and planes:
        projected = ", each projected onto its own consistent set" if step.get("data_consistency") else ""
        s.append(
            Paragraph(
                f"The evidence has no luma plane: the network processes each colour plane ({_esc(', '.join(planes))}) "
                f"on its own, as it would luma{projected}; other components: {_esc(kind)}.",
                st["body"],
            )
        )
    elif step.get("luma"):
        s.append(Paragraph(f"The network processes the luma plane; the chroma planes are interpolated with {_esc(kind)}.", st["body"]))
    rows = [
        ["Model id / class", f"{model['id']} / {model['class']}"],
        ["Model card sha256", (model.get("card") or {}).get("sha256") or "-"],
        ["Weights sha256", model.get("weights_sha256") or "none (classical)"],
        [
            "Pixel formats",
            f"{step['pix_fmt_in']} -> {step['pix_fmt_out']}, {step['width_out']} x {step['height_out']}"
            + aspect(probe.get("sample_aspect_ratio"), step["width_out"], step["height_out"])
            + " (the master and the preview carry the evidence's sample aspect ratio and chroma siting)",
        ],
        *region_rows(step.get("region")),
        ["Chroma siting assumed", step.get("chroma_siting_assumed")],
        ["Lossless round trip", plain(step.get("lossless_round_trip") or {}) or "-"],
    ]
    dc = step.get("data_consistency")
    if dc:
        rows.append(["Data-consistency residual (RMS, 8-bit levels)", f"max {dc['rms_residual_max']} (tolerance {dc['tolerance']})"])
        for name in dc.get("planes") or []:  # RGB evidence: each colour plane's own projection
            rows.append([f"  of plane {name}", f"max {max(dc['rms_residual_per_plane'][name], default=0.0)}"])
    s.append(_table(rows, [55 * mm, W - 55 * mm], st, mono_cols=(1,)))
    s.append(Spacer(1, 2 * mm))
    s.append(_params(parameter_rows(params), W, st, "Parameter (as the examiner asked)"))
    for key, label in (
        ("deblur", "Deblurring"),
        ("deinterlace", "Deinterlacing"),
        ("temporal", "Temporal operation"),
        ("multiframe", "Multi-frame reconstruction"),
        ("temporal_consistency", "Temporal consistency (E_warp)"),
        ("runner", "Inference runner"),
    ):
        if step.get(key):
            s.append(Spacer(1, 2 * mm))
            shown_rec = {k: v for k, v in step[key].items() if k != "per_frame"} if key == "temporal" else step[key]
            s.append(_params(parameter_rows(shown_rec), W, st, label))
    for deblur in [step.get("deblur"), *(pre.get("deblur") for pre in step.get("pre_operations") or [])]:
        estimate = (deblur or {}).get("estimate") or {}
        if estimate.get("low_confidence"):  # beside the PSF it warns about, in the words the run printed
            warning = estimate.get("warning") or "the blind PSF estimate has low confidence"
            s.append(Paragraph(f"<b>Warning:</b> {_esc(warning)}", st["body"]))
    for entry in stills:
        if "psf" in entry.get("files", {}):
            s.append(Spacer(1, 2 * mm))
            s += psf_block(bundle, entry, st)
    refs = REFERENCES.get(model["id"], []) + list(who.get("references", []))
    if refs:
        s.append(Paragraph("References: " + "; ".join(_esc(r) for r in refs), st["small"]))

    s.append(Paragraph("4. Environment", st["h1"]))
    s.append(_params([r for r in parameter_rows(env) if r[1] != "-"], W, st, "Component"))  # not the CUDA facts of a CPU run

    s.append(PageBreak())
    s.append(Paragraph("5. Results", st["h1"]))
    if maps:
        s.append(Paragraph(_esc((MAPS_TEXT_X1 if x1 else MAPS_TEXT) + (MAPS_TEXT_TEMPORAL if links else "")), st["body"]))
        cal = maps.get("calibration")
        if cal:
            s.append(
                Paragraph(
                    _esc(
                        f"Calibrated intervals: each output pixel x carries the interval [x - w, x + w] with half-width "
                        f"w = {cal['lambda']} * u, where {cal.get('scale_formula')}. lambda was chosen on {cal.get('tiles')} "
                        f"calibration tiles (never benchmark images) so that, with probability {1 - cal['delta']:.2f}, the "
                        f"expected fraction of pixels outside their interval is at most {cal['alpha']} ({cal.get('method')})."
                    ),
                    st["body"],
                )
            )
    clock = wall_clock(exif)
    if any("time_s" in e for e in stills):
        s.append(
            Paragraph(
                _esc(
                    "Times: seconds from the evidence's first frame; "
                    + (
                        "wall-clock times from the container's " + clock[0] + " (the recording device's clock, as the file states it)."
                        if clock
                        else "the container records no wall-clock time (no recording date), so none is given."
                    )
                ),
                st["small"],
            )
        )
    shown: dict[int, dict[str, Any]] = {}  # a frame that is two stills (first and most flagged) is shown once, both labels
    for entry in stills:
        if "frame" in entry:
            first_entry = shown.setdefault(entry["frame"], {**entry, "label": entry["label"]})
            if first_entry is not entry and entry["label"] not in first_entry["label"]:
                first_entry["label"] += f", {entry['label']}"
    for still in shown.values():
        when = f", {still['time_s']:.3f} s from the start of the evidence" if "time_s" in still else ""
        if clock and "time_s" in still:
            at = (clock[1] + datetime.timedelta(seconds=still["time_s"])).isoformat(timespec="milliseconds")
            when += (
                f" (wall clock {at.replace('+00:00', ' UTC')}: the container's {clock[0]} plus that time; the camera's clock, not checked)"
            )
        tb = f" (time base {still['time_base']})" if "time_base" in still else ""
        block: list[Any] = [
            Paragraph(
                f"<b>{_esc(still['label'])}</b>: output frame {still['frame']} (evidence frame {still['evidence_frame']}), "
                f"pts {still.get('pts')}{tb}{when}, frame sha256 <font face='Courier' size='7'>{still.get('sha256')}</font>",
                st["body"],
            )
        ]
        block += still_block(bundle, still, W, st)
        block.append(Spacer(1, 3 * mm))
        s.append(KeepTogether(block))
    if maps:
        try:
            fractions = [f["fraction_flagged"] for f in json.loads((bundle / flagged["file"]).read_text())["frames"]]
        except (OSError, ValueError, KeyError):
            fractions = []
        s.append(KeepTogether([Paragraph("Flagged fraction per frame", st["h2"]), _plot(fractions, W, 55 * mm)]))
    if links:
        s.append(Paragraph("Registration of neighbour frames (temporal operation)", st["h2"]))
        s.append(_table(registration_rows(temporal), [22 * mm, 32 * mm, 28 * mm, 32 * mm, W - 114 * mm], st))
    if dc:
        s.append(Paragraph("Data-consistency residual per frame (RMS, 8-bit levels)", st["h2"]))
        s.append(Paragraph(_esc(", ".join(f"{r:.3f}" for r in dc["rms_residual_per_frame"][:400])), st["small"]))

    s.append(Paragraph("6. Integrity", st["h1"]))
    rows = [["Evidence sha256", ev["sha256"]], ["Input frames Merkle root", ingest["input_framehash"]["merkle_root"]]]
    rows += [[f"{f['name']} sha256", f["sha256"]] for f in write["files"]]
    rows.append(["Output frames Merkle root", write["frame_roots"]["output"]])
    if maps:
        rows += [[f"Map {name} Merkle root", m["merkle_root"]] for name, m in sorted(maps["files"].items())]
        rows.append(["Flagged-regions sidecar sha256", flagged["sha256"]])
    rows += [[f"Still {f['name']}", f["sha256"]] for entry in stills for _, f in sorted(entry["files"].items())]
    rows.append(["Chain head at report time", chain_head])
    rows.append(["Examiner key id", who.get("keyid", "-")])
    if who.get("certificate_subject"):
        rows.append(["Report certificate subject", who["certificate_subject"]])
    s.append(_table(rows, [60 * mm, W - 60 * mm], st, mono_cols=(1,)))

    s.append(Paragraph("7. How to verify", st["h1"]))
    cmds = [
        "fvsr verify BUNDLE --pubkey EXAMINER.pub            # signatures, chain, every digest and Merkle root, report",
        "fvsr verify BUNDLE --pubkey EXAMINER.pub --evidence EVIDENCE   # also re-hash and decode the evidence",
        "fvsr prove BUNDLE --frame N -o proof.json ; fvsr verify-proof proof.json --pubkey EXAMINER.pub",
        "ffmpeg -v error -flags +bitexact -noautorotate -i BUNDLE/output/master.mkv -map 0:v:0 -fps_mode passthrough "
        "-f framehash -hash sha256 -  "
        "# equals output.framehash outside # lines",
    ]
    for c in cmds:
        s.append(Paragraph(_esc(c), st["mono"]))
    s.append(Paragraph("8. Limitations", st["h1"]))
    deblurred = any(o.get("op") == "deblur" for o in pre_ops) and not x1  # a deblur before SR: its limitation too
    for text in (LIMITATIONS_X1 if x1 else LIMITATIONS + LIMITATIONS_X1[:1] * deblurred) + (LIMITATIONS_TEMPORAL if links else []):
        s.append(Paragraph("• " + _esc(text), st["body"]))
    if reviews and reviews[0]:
        from forensic_vsr.report.review_section import review_flowables

        s.append(PageBreak())
        s += review_flowables(reviews[0], reviews[1], W, st)
    if exif:
        s.append(PageBreak())
        s.append(Paragraph("Appendix A. Metadata (exiftool), every tag", st["h1"]))
        s.append(_table(all_metadata(exif), [55 * mm, W - 55 * mm], st))
    s.append(Spacer(1, 2 * mm))
    s.append(Paragraph(f"PDF creation date: the run's start, {_esc(meta['startedOn'])} (UTC), from the signed records.", st["small"]))
    with binary_streams():
        doc.build(s, onFirstPage=page, onLaterPages=page, canvasmaker=_pdf_canvas(meta["startedOn"]))
