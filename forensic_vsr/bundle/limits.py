"""The largest frames a bundle can hold, checked before any work: the master (FFV1), the maps
(FFV1, gray16le) and the preview (libx264) must all open at the output size, else the run is
refused in one line that names the encoder, the rule and the largest --scale that fits. Without
this check a too-large output failed deep inside the encoder as an internal error."""

from __future__ import annotations

from pathlib import Path

from forensic_vsr.bundle.master import FFV1_OPTIONS, PREVIEW_OPTIONS, master_pix_fmt
from forensic_vsr.errors import UsageError
from forensic_vsr.media import VideoReader, plane_geometry
from forensic_vsr.media.limits import encoder_accepts
from forensic_vsr.ops.region import check_region

X264_MAX_SIDE = 16384  # x264 refuses a wider or taller frame ("invalid width x height")
FFMPEG_MAX_AREA = 2**28  # av_image_check_size: (width+128) * (height+128) must stay below INT_MAX/8
MAP_PIX_FMT = "gray16le"


def _encoders(pix_fmt: str, maps: bool) -> list[tuple[str, str, str, dict[str, str]]]:
    """(what, codec, pixel format, options) of every video a bundle encodes at the output size."""
    found = [("the master (FFV1)", "ffv1", master_pix_fmt(pix_fmt), FFV1_OPTIONS)]
    if maps:
        found.append(("the maps (FFV1)", "ffv1", MAP_PIX_FMT, FFV1_OPTIONS))
    found.append(("the preview (libx264)", "libx264", "yuv420p", PREVIEW_OPTIONS))
    return found


def _refusing(width: int, height: int, pix_fmt: str, maps: bool) -> str | None:
    for what, codec, fmt, options in _encoders(pix_fmt, maps):
        w, h = (width - width % 2, height - height % 2) if codec == "libx264" else (width, height)
        if not encoder_accepts(codec, fmt, w, h, options):
            return what
    return None


def _rule(what: str, width: int, height: int) -> str:
    if (width + 128) * (height + 128) >= FFMPEG_MAX_AREA:
        return "FFmpeg refuses every frame whose (width+128) x (height+128) reaches 2^28 (about 16,000 x 16,000)"
    if "libx264" in what and max(width, height) > X264_MAX_SIDE:
        return f"libx264 encodes at most {X264_MAX_SIDE} pixels a side"
    if "FFV1" in what:
        return "FFV1 cannot cut a frame of this size into slices its coder accepts"
    return "the encoder refuses the size"


def check_output_size(width: int, height: int, scale: int, pix_fmt: str, maps: bool = True) -> None:
    """Refuse (UsageError) a --scale whose output frames one of the bundle's encoders cannot open."""
    out_w, out_h = width * scale, height * scale
    what = _refusing(out_w, out_h, pix_fmt, maps)
    if what is None:
        return
    best = next((s for s in range(scale - 1, 0, -1) if _refusing(width * s, height * s, pix_fmt, maps) is None), None)
    advice = f"the largest --scale for this evidence is {best}" if best else "this evidence is too large for the bundle's encoders"
    raise UsageError(
        f"--scale {scale} on {width}x{height} evidence gives {out_w}x{out_h} frames, which {what} cannot encode "
        f"({_rule(what, out_w, out_h)}); {advice}"
    )


def check_evidence_output_size(evidence: Path, scale: int, maps: bool = True, region: tuple[int, int, int, int] | None = None) -> None:
    """`check_output_size` for the evidence file's first video stream (its header only), or for
    its --roi `region`, which must lie inside the frame on the chroma grid (ops.region.check_region)."""
    with VideoReader(evidence) as reader:
        info = reader.info
    if region is None:
        check_output_size(info.width, info.height, scale, info.pix_fmt, maps)
        return
    check_region(region, info.width, info.height, tuple((sx, sy) for sx, sy, _ in plane_geometry(info.pix_fmt)))
    check_output_size(region[2], region[3], scale, info.pix_fmt, maps)
