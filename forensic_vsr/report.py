"""The court report: a PDF built with reportlab from the bundle's signed records and files.

The report is a pure function of the records it is given and of the bundle's files (stills PNGs
included): reportlab runs in invariant mode and every date printed comes from the records, so the
same bundle gives the same PDF bytes. `fvsr verify` uses that: it renders the report again from
the verified records and compares it with `report.pdf` byte for byte, which proves that every hash
printed in the report is the bundle's.

This module imports neither torch nor OpenCV (an auditor's `fvsr verify` renders with it); the
stills are made at enhance time by `make_stills`, which imports OpenCV itself."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr import __version__
from forensic_vsr.audit.chain import record_digest
from forensic_vsr.audit.verify import ChainView, Check
from forensic_vsr.integrity.dsse import canonical_json

REPORT_NAME = "report.pdf"
NOT_EVIDENTIAL = "NOT FOR EVIDENTIAL USE"
STILL_KINDS = ("evidence", "enhanced", "overlay")

OPERATION_TEXT = {
    "bicubic": (
        "Bicubic interpolation: every output pixel is a fixed weighted average of the 4x4 nearest input pixels "
        "(Keys cubic convolution). Nothing is learned; the weights depend only on the pixel's position."
    ),
    "lanczos": (
        "Lanczos interpolation: every output pixel is a fixed weighted average of the 6x6 nearest input pixels "
        "(windowed sinc, a = 3). Nothing is learned; sharper than bicubic, with slight ringing at hard edges."
    ),
}
REFERENCES = {
    "bicubic": ["R. Keys, Cubic convolution interpolation for digital image processing, IEEE TASSP 29(6), 1981"],
    "lanczos": ["C. Duchon, Lanczos filtering in one and two dimensions, J. Applied Meteorology 18, 1979"],
}
MAPS_TEXT = (
    "Synthesized-content map S = |(I - A+A) x|: for the output x and the degradation operator A (the antialiased "
    "bicubic shrink that maps the output back to the input's size), S is the part of each output pixel that the "
    "input does not determine at all: any value there would reproduce the input equally well. Interpolation puts "
    "smooth content there; a learned model puts whatever it learned. Contradiction map R = |A+(y - A x)|: where the "
    "output disagrees with the input y. Regions where S exceeds the policy's threshold are flagged and outlined."
)
LIMITATIONS = [
    "Single-image super-resolution cannot recover detail that the evidence did not record. Whatever the output shows "
    "in the flagged regions (S above the threshold) is not determined by the evidence and must not be relied on.",
    "The synthesized-content map is exact for the stated degradation operator (antialiased bicubic). Real cameras blur, "
    "compress and sample differently; where the evidence's true degradation differs, the split between determined and "
    "undetermined content differs too.",
    "Data-consistency projection guarantees that shrinking the output with the card's operator gives back the input "
    "(up to rounding, residual recorded per frame); it does not guarantee that the added detail is true.",
    "The calibrated intervals (maps/interval.mkv, where the model card carries a calibration) promise that, with "
    "probability 1 - delta over the calibration draw, the expected fraction of pixels outside their interval is at most "
    "alpha. The guarantee is marginal over images (an average), not about any single pixel, and holds only when the "
    "evidence's degradation and content resemble the calibration data's (photographs shrunk with the same operator).",
]


def report_records(chain_bodies: dict[str, Any], examiner: str, keyid: str, references: list[str]) -> dict[str, Any]:
    """What `report.render` reads: the records' bodies by type, as JSON gives them back (so the
    report rendered at enhance time and by `fvsr verify` are built from identical values)."""
    records: dict[str, Any] = json.loads(canonical_json(chain_bodies))
    records["_meta"] = {"examiner": examiner, "keyid": keyid, "references": list(references)}
    return records


def _short(h: str | None, n: int = 16) -> str:
    return "-" if not h else f"{h[:n]}…"


def _brief(record: dict[str, Any], limit: int = 900) -> str:
    """A record for a table cell: per-frame lists summarised (count, min, max), the rest as JSON."""

    def shrink(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: shrink(x) for k, x in v.items()}
        if isinstance(v, list) and len(v) > 6:
            nums = [x for x in v if isinstance(x, int | float)]
            if len(nums) == len(v):
                return f"{len(v)} values, min {min(nums)}, max {max(nums)}"
            return [shrink(x) for x in v[:3]] + [f"... {len(v) - 3} more"]
        return v

    text = json.dumps(shrink(record), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def make_stills(
    bundle: Path, evidence: Path, frames: dict[str, int], start: int, threshold: float, per_input: int = 1, map_scale: float | None = None
) -> list[dict[str, Any]]:
    """Write stills/NNNNNN-{evidence,enhanced,overlay}.png for the given output-frame indices
    (labels: first, middle, most-flagged, requested) and return their records. Output frame i
    comes from evidence frame start + i // per_input (per_input is 2 when each field became a
    frame)."""
    import cv2
    import numpy as np

    from forensic_vsr.media import VideoReader, frame_planes, planes_sha256
    from forensic_vsr.uncertainty import MAP_SCALE

    map_scale = map_scale or MAP_SCALE
    wanted = sorted(set(frames.values()))
    out_dir = bundle / "stills"
    out_dir.mkdir(exist_ok=True)
    grabbed: dict[str, dict[int, Any]] = {"evidence": {}, "enhanced": {}, "s": {}}
    sources = {
        "evidence": (evidence, start),
        "enhanced": (bundle / "output/master.mkv", 0),
        "s": (bundle / "maps/synthesized.mkv", 0),
    }
    meta: dict[int, dict[str, Any]] = {}
    for kind, (path, offset) in sources.items():
        if not path.exists():
            continue
        with VideoReader(path) as reader:
            for decoded in reader.frames():
                if kind == "evidence":
                    base = (decoded.index - offset) * per_input
                    for i in range(base, base + per_input):
                        if i in wanted:
                            grabbed[kind][i] = decoded.frame.to_ndarray(format="rgb24")
                    if base + per_input - 1 >= wanted[-1]:
                        break
                    continue
                i = decoded.index - offset
                if i in wanted:
                    if kind == "s":
                        grabbed[kind][i] = frame_planes(decoded.frame)[0].astype(np.float32) / map_scale
                    else:
                        grabbed[kind][i] = decoded.frame.to_ndarray(format="rgb24")
                        if kind == "enhanced":
                            meta[i] = {"pts": decoded.pts, "sha256": planes_sha256(frame_planes(decoded.frame))}
                if i >= wanted[-1]:
                    break
    records = []
    for label, i in sorted(frames.items(), key=lambda kv: (kv[1], kv[0])):
        files = {}
        images = {"evidence": grabbed["evidence"].get(i), "enhanced": grabbed["enhanced"].get(i)}
        s = grabbed["s"].get(i)
        if images["enhanced"] is not None and s is not None:
            gray = cv2.cvtColor(images["enhanced"], cv2.COLOR_RGB2GRAY).astype(np.float32)
            heat = np.clip(s / max(threshold, 1e-6), 0, 1)
            overlay = np.stack([gray * (1 - heat) + 255 * heat, gray * (1 - heat), gray * (1 - heat)], axis=-1)
            overlay = np.clip(np.rint(overlay), 0, 255).astype(np.uint8)
            mask = (s > threshold).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for k in range(1, n):
                x, y, w, h = (int(v) for v in stats[k][:4])
                cv2.rectangle(overlay, (x, y), (x + w - 1, y + h - 1), (255, 255, 0), 1)
            images["overlay"] = overlay
        for kind, img in images.items():
            if img is None:
                continue
            name = f"stills/{i:06d}-{kind}.png"
            if not (bundle / name).exists():
                cv2.imwrite(str(bundle / name), img[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 6])
            data = (bundle / name).read_bytes()
            files[kind] = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        records.append({"label": label, "frame": i, "evidence_frame": start + i // per_input, **meta.get(i, {}), "files": files})
    return records


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


def render(bundle: Path, records: dict[str, dict[str, Any]], stills: list[dict[str, Any]], chain_head: str, out: Path) -> None:
    """Write the report PDF for a bundle to `out` (deterministic bytes for the same inputs)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Spacer

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
    examiner = who.get("examiner", "")
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
        author=examiner or "forensic-vsr",
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
        f"The evidence file <b>{_esc(ev['name'])}</b> ({ev['size']} bytes, sha256 {_short(ev['sha256'])}) was decoded "
        + ("(a still image: one frame) and it was " if n_in == 1 else f"({n_in} frames) and output frames {first} to {last} were ")
        + verb
        + f" with <b>{_esc(model['id'])}</b> (class {model['class']}) in <b>{mode}</b> mode, under policy "
        f"{_esc(decision['policy']['id'])} (sha256 {_short(decision['policy']['sha256'])}), which allowed the recipe. The evidence "
        f"file was unchanged by processing (sha256 identical before and after). Every frame is hashed and the hashes are "
        f"committed in signed Merkle trees."
    )
    if maps:
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
                ["Examiner", examiner or "-"],
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
        ["Dimensions", f"{probe.get('width')} x {probe.get('height')}"],
        ["Frames decoded", ingest["frames_decoded"]],
        ["Time base / VFR", f"{probe.get('time_base')} / {ingest['timing'].get('vfr')}"],
        ["Rotation", ingest.get("rotation")],
        ["Decoder damage", json.dumps(ingest.get("decode"), sort_keys=True)],
        ["Input frame hashes: Merkle root", ingest["input_framehash"]["merkle_root"]],
    ]
    s.append(_table(rows, [55 * mm, W - 55 * mm], st, mono_cols=(1,)))
    if exif:
        s.append(Paragraph("Metadata (exiftool)", st["h2"]))
        s.append(_table([[k, v] for k, v in sorted(exif.items())][:60], [55 * mm, W - 55 * mm], st))

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
            [45 * mm, 22 * mm, W - 67 * mm],
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
            s.append(Paragraph(_esc(_brief(facts)), st["small"]))
    s.append(Paragraph(f"<b>{_esc(op.get('op', 'upscale'))} x{op['scale']} with {_esc(model['id'])}</b>. {_esc(desc)}", st["body"]))
    if step.get("luma"):
        s.append(Paragraph(f"The network processes the luma plane; the chroma planes are interpolated with {_esc(kind)}.", st["body"]))
    rows = [
        ["Model id / class", f"{model['id']} / {model['class']}"],
        ["Model card sha256", (model.get("card") or {}).get("sha256") or "-"],
        ["Weights sha256", model.get("weights_sha256") or "none (classical)"],
        ["Parameters", json.dumps(params, sort_keys=True)],
        ["Pixel formats", f"{step['pix_fmt_in']} -> {step['pix_fmt_out']}, {step['width_out']} x {step['height_out']}"],
        ["Chroma siting assumed", step.get("chroma_siting_assumed")],
        ["Lossless round trip", json.dumps(step.get("lossless_round_trip"), sort_keys=True)],
    ]
    dc = step.get("data_consistency")
    if dc:
        rows.append(["Data-consistency residual (RMS, 8-bit levels)", f"max {dc['rms_residual_max']} (tolerance {dc['tolerance']})"])
    for key, label in (
        ("deblur", "Deblurring"),
        ("deinterlace", "Deinterlacing"),
        ("temporal", "Temporal operation"),
        ("multiframe", "Multi-frame reconstruction"),
        ("temporal_consistency", "Temporal consistency (E_warp)"),
        ("runner", "Inference runner"),
    ):
        if step.get(key):
            rows.append([label, _brief(step[key])])
    s.append(_table(rows, [55 * mm, W - 55 * mm], st, mono_cols=(1,)))
    refs = REFERENCES.get(model["id"], []) + list(who.get("references", []))
    if refs:
        s.append(Paragraph("References: " + "; ".join(_esc(r) for r in refs), st["small"]))

    s.append(Paragraph("4. Environment", st["h1"]))
    s.append(
        _table(
            [[k, json.dumps(v, sort_keys=True) if not isinstance(v, str) else v] for k, v in sorted(env.items())],
            [45 * mm, W - 45 * mm],
            st,
        )
    )

    s.append(PageBreak())
    s.append(Paragraph("5. Results", st["h1"]))
    if maps:
        s.append(Paragraph(_esc(MAPS_TEXT), st["body"]))
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
    for still in stills:
        files = still["files"]
        block: list[Any] = []
        block.append(
            Paragraph(
                f"<b>{_esc(still['label'])}</b>: output frame {still['frame']} (evidence frame {still['evidence_frame']}), "
                f"pts {still.get('pts')}, frame sha256 <font face='Courier' size='7'>{still.get('sha256')}</font>",
                st["body"],
            )
        )
        imgs: list[Any] = []
        for k in STILL_KINDS:
            if k in files:
                path = bundle / files[k]["name"]
                from reportlab.lib.utils import ImageReader

                iw, ih = ImageReader(str(path)).getSize()
                w = W / 3 - 3 * mm
                imgs.append(Image(str(path), width=w, height=w * ih / iw))
        if imgs:
            from reportlab.platypus import Table

            captions = ["evidence", "enhanced", "S overlay (red), flagged regions outlined"][: len(imgs)]
            block.append(Table([imgs, captions], colWidths=[W / 3] * len(imgs)))
        block.append(Spacer(1, 3 * mm))
        s.append(KeepTogether(block))
    if maps:
        try:
            fractions = [f["fraction_flagged"] for f in json.loads((bundle / flagged["file"]).read_text())["frames"]]
        except (OSError, ValueError, KeyError):
            fractions = []
        s.append(Paragraph("Flagged fraction per frame", st["h2"]))
        s.append(_plot(fractions, W, 55 * mm))
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
    rows += [[f"Still {st_['files'][k]['name']}", st_["files"][k]["sha256"]] for st_ in stills for k in STILL_KINDS if k in st_["files"]]
    rows.append(["Chain head at report time", chain_head])
    rows.append(["Examiner key id", who.get("keyid", "-")])
    s.append(_table(rows, [60 * mm, W - 60 * mm], st, mono_cols=(1,)))

    s.append(Paragraph("7. How to verify", st["h1"]))
    cmds = [
        "fvsr verify BUNDLE --pubkey EXAMINER.pub            # signatures, chain, every digest and Merkle root, report",
        "fvsr verify BUNDLE --pubkey EXAMINER.pub --evidence EVIDENCE   # also re-hash and decode the evidence",
        "fvsr prove BUNDLE --frame N -o proof.json ; fvsr verify-proof proof.json --pubkey EXAMINER.pub",
        "ffmpeg -v error -i BUNDLE/output/master.mkv -map 0:v:0 -fps_mode passthrough -f framehash -hash sha256 -  "
        "# equals output.framehash outside # lines",
    ]
    for c in cmds:
        s.append(Paragraph(_esc(c), st["mono"]))
    s.append(Paragraph("8. Limitations", st["h1"]))
    for text in LIMITATIONS:
        s.append(Paragraph("• " + _esc(text), st["body"]))
    doc.build(s, onFirstPage=page, onLaterPages=page)


def render_report(bundle: Path, view: ChainView, out: Path) -> dict[str, Any] | None:
    """Render the (unsigned) report from the verified records and the bundle's stills into `out`.
    Returns the report.generate record, or None for a bundle run with --no-report (its report is
    then rendered without stills, at the chain head before run.complete)."""
    rec = view.first("report.generate")
    bodies: dict[str, Any] = {}
    head = None
    for line, p in zip(view.lines, view.payloads, strict=False):
        if p is None or p["type"] in ("report.generate", "run.complete", "run.aborted"):
            break
        bodies.setdefault(p["type"], p["body"])
        head = record_digest(line)
    examiner = next((p["actor"]["name"] for p in view.payloads if p is not None), "")
    keyid = next((p["actor"]["keyid"] for p in view.payloads if p is not None), "")
    records = report_records(bodies, examiner, keyid, (rec or {}).get("references", []))
    render(bundle, records, (rec or {}).get("stills", []), rec["chain_head"] if rec else str(head), out)
    return rec


def report_checks(bundle: Path, view: ChainView, key: Ed25519PublicKey) -> list[Check]:
    """Render the report again from the verified records and the bundle's stills: the bytes must
    equal report.pdf, so every hash and fact printed in it is the bundle's."""
    import tempfile

    rec = view.first("report.generate")
    if rec is None:
        return []
    path = bundle / rec["file"]["name"]
    if not path.is_file():
        return [Check.failed("report.content", f"{rec['file']['name']} is missing")]
    with tempfile.TemporaryDirectory() as tmp:
        again = Path(tmp) / "report.pdf"
        try:
            render_report(bundle, view, again)
        except Exception as exc:
            return [Check.failed("report.content", f"the report cannot be rendered again from the bundle: {type(exc).__name__}: {exc}")]
        rendered = again.read_bytes()
    data = path.read_bytes()
    unsigned = rec.get("unsigned")
    same = (
        data[: len(rendered)] == rendered and hashlib.sha256(rendered).hexdigest() == unsigned["sha256"] if unsigned else data == rendered
    )
    checks = [
        Check.passed("report.content", "report.pdf renders again byte for byte from the signed records: its facts are the bundle's")
        if same
        else Check.failed("report.content", "report.pdf differs from the report the signed records give: its text was altered")
    ]
    if unsigned:
        from forensic_vsr.audit.bundle_format import FORMAT_1, bundle_format, read_manifest
        from forensic_vsr.audit.pdfsign import check_report_signature

        # format 1 signed the report with the Ed25519 examiner key itself; later formats with the
        # certificate whose sha256 report.generate records (a P-256 key or a lab's certificate)
        old = bundle_format(read_manifest(bundle)) == FORMAT_1
        recorded = rec.get("signature", {}).get("certificate_sha256")
        ok, reason = check_report_signature(data, certificate_sha256=recorded, ed25519_public_key=key if old else None)
        checks.append(Check.passed("report.signature", reason) if ok else Check.failed("report.signature", reason))
    return checks
