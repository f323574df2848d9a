"""The report step: stills (first, middle, most flagged, requested frames), report.pdf rendered
from the signed records and PAdES-signed, then the `report.generate` record naming all of them."""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from pathlib import Path

from forensic_vsr import layout
from forensic_vsr.audit.chain import ChainWriter
from forensic_vsr.audit.step_record import StepRecord
from forensic_vsr.bundle.writer import BundleDir
from forensic_vsr.errors import UsageError
from forensic_vsr.integrity import dsse
from forensic_vsr.models.registry import ResolvedModel
from forensic_vsr.models.tasks import runs_on_luma
from forensic_vsr.recipe import STILL_HELP, Examiner, Recipe

# the slow imports of write_report (pyhanko alone about 0.5 s, reportlab 0.2 s on a 2-core box):
# third-party packages the frame pass never imports, so the two threads never wait on each
# other's import locks (our own modules and Pillow, 30 ms together, are left to write_report)
REPORT_MODULES = (
    "pyhanko.sign",
    "pyhanko.pdf_utils.incremental_writer",
    "pyhanko_certvalidator.registry",
    "reportlab.platypus",
    "reportlab.graphics.charts.lineplots",
)


def prefetch_imports() -> threading.Thread:
    """Import the report's libraries in a background thread, while the frames are processed
    (their decoding and encoding hold the GIL little); join it before `write_report`. A module
    that fails to import here is imported again there, which says why."""

    def load() -> None:
        for name in REPORT_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # write_report imports it again and reports the failure
                return

    thread = threading.Thread(target=load, name="fvsr-report-imports", daemon=True)
    thread.start()
    return thread


def still_frames(step: StepRecord, requested: tuple[int, ...]) -> dict[str, int]:
    """The output frames the report shows, by caption."""
    count = step.frames.count
    frames = {"first frame": 0, "middle frame": count // 2}
    maps = step.maps
    if maps and maps["flagged"]["most_flagged_frame"] is not None:
        frames["most flagged frame"] = int(maps["flagged"]["most_flagged_frame"])
    for n in requested:
        if not 0 <= n < count:
            raise UsageError(f"--still {n}: the output has frames 0 to {count - 1}. {STILL_HELP}")
        frames[f"requested frame {n}"] = n
    return frames


def write_report(
    bundle: BundleDir, chain: ChainWriter, evidence: Path, examiner: Examiner, model: ResolvedModel, recipe: Recipe, step: StepRecord
) -> None:
    from forensic_vsr.audit.pdfsign import report_certificate, sign_pdf
    from forensic_vsr.report.content import report_records
    from forensic_vsr.report.facts import running_renderer
    from forensic_vsr.report.render import render
    from forensic_vsr.report.stills import make_stills, write_psf

    maps = step.maps
    threshold = maps["flagged"]["threshold_levels"] if maps else 8.0
    per_input = step.frames_per_input
    map_scale = maps.get("scale") if maps else None
    frames = still_frames(step, recipe.stills)
    recompute = recipe.scale if maps and "synthesized" in maps.get("recomputed", {}) else None  # format 3: S not stored
    region = step.region.box if step.region else None
    made = make_stills(bundle.dir, evidence, frames, step.frames.start, threshold, per_input, map_scale, recipe.roi, recompute, region)
    deblurs = [step.deblur, *(pre.get("deblur") for pre in step.pre_operations)]
    psf = write_psf(bundle.dir, next((d["psf"] for d in deblurs if d and d.get("psf")), None))
    stills = json.loads(dsse.canonical_json(made + ([psf] if psf else [])))
    refs = list(model.card.data.get("references", [])) if model.card is not None and (runs_on_luma(model) or recipe.scale == 1) else []
    cert = examiner.certificate or report_certificate(examiner.signer)
    subject = cert.signing.subject.rfc4514_string()
    records = report_records(chain.bodies, examiner.name, chain.signer.keyid, refs, subject)
    head = chain.digests[-1]
    draft = bundle.path(".report-unsigned.pdf")
    render(bundle.dir, records, stills, head, draft)
    unsigned = draft.read_bytes()
    draft.unlink()
    signed = sign_pdf(unsigned, examiner.signer, cert, f"forensic-vsr {recipe.mode} report, chain head {head}")
    with open(bundle.path(layout.REPORT), "xb") as fh:
        fh.write(signed)
    body = {
        "file": bundle.file_entry(layout.REPORT),
        "unsigned": {"sha256": hashlib.sha256(unsigned).hexdigest(), "size": len(unsigned)},
        "signature": {
            "format": "PAdES baseline (ETSI.CAdES.detached), incremental update",
            "certificate_sha256": cert.sha256,
            "certificate_subject": subject,
            "self_signed": cert.self_signed,
        },
        "stills": stills,
        "chain_head": head,
        "references": refs,
        "renderer": running_renderer().to_json(),
    }
    chain.append("report.generate", body)
