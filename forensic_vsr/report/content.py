"""The report's fixed texts (operations, references, maps, limitations) and the records it is
rendered from."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from typing import Any

from forensic_vsr.integrity.dsse import canonical_json

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
MAPS_TEXT_X1 = (
    "This operation keeps the frame size (x1): the degradation operator A is the identity, so the synthesized-content "
    "map S is zero everywhere (every output pixel has an evidence pixel at its place) and says nothing. What matters "
    "is the change the operation made: R = |x - y|, the output x against the evidence y, in 8-bit levels (the "
    "contradiction map). Each still shows it in red, with its statistics."
)
MAPS_TEXT_TEMPORAL = (
    " A temporal operation combines each frame with registered neighbours: maps/count.mkv holds how many frames were "
    "averaged at each pixel and maps/spread.mkv how much they disagreed there (8-bit levels); a neighbour whose "
    "registration failed was left out, as the table below lists."
)
LIMITATIONS_X1 = [
    "The operation changed the evidence's pixels by the amounts R shows; nothing it adds is new information about the "
    "scene. A deblurred frame is an estimate that depends on the point spread function assumed: where the true blur "
    "differs (or varies across the frame), edges can ring or double, and fine detail can be invented by the inversion.",
    "Where R is large, the output differs most from what the camera recorded: read those regions in the evidence as well.",
]
LIMITATIONS_TEMPORAL = [
    "Averaging registered frames lowers noise only where the scene did not move: moving content is masked or blurred, "
    "and a misregistered neighbour blurs or doubles edges. Frames whose registration failed were left out (listed in "
    "Results); where few frames were averaged (count map), the output is close to the single evidence frame.",
]
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


def report_records(
    chain_bodies: dict[str, Any], examiner: str, keyid: str, references: list[str], certificate_subject: str | None = None
) -> dict[str, Any]:
    """What `report.render` reads: the records' bodies by type, as JSON gives them back (so the
    report rendered at enhance time and by `fvsr verify` are built from identical values)."""
    records: dict[str, Any] = json.loads(canonical_json(chain_bodies))
    records["_meta"] = {"examiner": examiner, "keyid": keyid, "references": list(references)}
    if certificate_subject:
        records["_meta"]["certificate_subject"] = certificate_subject
    return records


DEFAULT_EXAMINER = "examiner"  # the name `fvsr enhance` records when neither --examiner, FVSR_EXAMINER nor USER is set


def common_name(subject: str | None) -> str | None:
    """The CN of an RFC 4514 subject ("CN=Jane Doe,O=Lab"), unescaped; None when it has none."""
    for part in re.split(r"(?<!\\),", subject or ""):
        key, _, value = part.partition("=")
        if key.strip().upper() == "CN" and value:
            return re.sub(r"\\(.)", r"\1", value)
    return None


def examiner_shown(meta: dict[str, Any]) -> str:
    """The examiner as the report prints it: the recorded name, or, where it is the placeholder
    (or empty), the name the report certificate was issued to, with the recorded one beside it;
    a certificate issued to another name is named beside the recorded one."""
    name = str(meta.get("examiner") or "")
    cn = common_name(meta.get("certificate_subject"))
    if not cn or cn == name:
        return name or "-"
    if name in ("", DEFAULT_EXAMINER):
        return f"{cn} (from the report certificate; recorded name: {name or '-'})"
    return f"{name} (report certificate issued to {cn})"


def short(h: str | None, n: int = 16) -> str:
    return "-" if not h else f"{h[:n]}…"


def aspect(sar: str | None, width: int | None, height: int | None) -> str:
    """ ", SAR a:b (DAR c:d)" for a frame of this size, or "" when the stream declares no SAR."""
    if not sar or not width or not height:
        return ""
    try:
        ratio = Fraction(str(sar).replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        return ""
    if ratio <= 0:
        return ""
    dar = ratio * width / height
    return f", SAR {ratio.numerator}:{ratio.denominator} (DAR {dar.numerator}:{dar.denominator})"
