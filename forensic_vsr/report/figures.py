"""The report's pictures, cut from the bundle's full-resolution stills at render time (Pillow,
lossless, deterministic; no OpenCV, so `fvsr verify` renders them again): the magnified crop
(evidence | enhanced | map, nearest-neighbour zoom, scale bar in evidence pixels), a small
overview of the whole frame with the crop box drawn, and the PSF magnified."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

OVERVIEW_MAX_PX = 240  # the overview's width in the PDF, in image pixels
PSF_PANEL_PX = 160
_RL_CONFIG = threading.Lock()
CROP_KINDS = ("evidence", "enhanced", "overlay", "change")
CROP_CAPTIONS = {
    "evidence": "evidence",
    "enhanced": "enhanced",
    "overlay": "S (red), flagged regions outlined",
    "change": "change made, R (red)",
}


def crop_box(crop: dict[str, Any], kind: str) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the crop in the pixels of a still of `kind` (the evidence
    still has evidence pixels, the others output pixels, `scale` times as many)."""
    f = 1 if kind == "evidence" else int(crop["scale"])
    return crop["x"] * f, crop["y"] * f, (crop["x"] + crop["w"]) * f, (crop["y"] + crop["h"]) * f


def open_rgb(path: Path) -> Any:
    """A still decoded, as a Pillow RGB image."""
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def decoded(bundle: Path, files: dict[str, Any]) -> dict[str, Any]:
    """Each still of `files` (kind -> its record) decoded once, in threads (Pillow decodes
    without the GIL)."""
    kinds = list(files)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1, max(1, len(kinds)))) as pool:
        return dict(zip(kinds, pool.map(lambda k: open_rgb(bundle / files[k]["name"]), kinds), strict=True))


def zoomed_crop(img: Any, crop: dict[str, Any], kind: str) -> Any:
    """The crop of one still, each pixel repeated zoom (evidence) or zoom / scale (output) times."""
    from PIL import Image

    f = int(crop["zoom"]) // (1 if kind == "evidence" else int(crop["scale"]))
    part = img.crop(crop_box(crop, kind))
    return part.resize((part.width * f, part.height * f), Image.Resampling.NEAREST)


def overview(full: Any, crop: dict[str, Any] | None) -> Any:
    """The whole enhanced frame, reduced by a whole factor to at most OVERVIEW_MAX_PX wide, the
    crop box drawn in yellow."""
    from PIL import ImageDraw

    factor = max(1, -(-full.width // OVERVIEW_MAX_PX))
    small = full.reduce(factor) if factor > 1 else full.copy()
    if crop is not None:
        left, top, right, bottom = crop_box(crop, "enhanced")
        box = (left // factor, top // factor, max(left // factor, (right - 1) // factor), max(top // factor, (bottom - 1) // factor))
        ImageDraw.Draw(small).rectangle(box, outline=(255, 255, 0), width=2)
    return small


def psf_image(path: Path) -> Any:
    """The PSF still magnified (nearest neighbour) to about PSF_PANEL_PX pixels, a grey grid."""
    from PIL import Image

    with Image.open(path) as img:
        kernel = img.convert("L")
    f = max(1, PSF_PANEL_PX // max(kernel.size))
    return kernel.resize((kernel.width * f, kernel.height * f), Image.Resampling.NEAREST), f


@functools.cache
def _picture_class() -> Any:
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Flowable

    class Picture(Flowable):  # type: ignore[misc]
        """A Pillow RGB image drawn `width` x `height` points: reportlab embeds its pixels
        losslessly (Flate), with no PNG encoded and decoded on the way."""

        def __init__(self, img: Any, width: float, height: float) -> None:
            super().__init__()
            self.img, self.width, self.height = img, width, height
            self.hAlign = "CENTER"  # as reportlab's Image flowable, which template 8 used

        def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
            return self.width, self.height

        def draw(self) -> None:
            self.canv.drawImage(ImageReader(self.img), 0, 0, self.width, self.height)

    return Picture


def flowable(img: Any, width: float) -> Any:
    """A flowable of a Pillow image, `width` points wide, embedded losslessly (RGB, or grey for a
    grey image such as the PSF)."""
    pixels = img if img.mode in ("RGB", "L") else img.convert("RGB")
    return _picture_class()(pixels, width, width * img.height / img.width)


@contextlib.contextmanager
def binary_streams() -> Iterator[None]:
    """reportlab writes streams Flate-compressed only, not also ASCII85-encoded (a quarter larger,
    and the pure-Python encoder took most of a report's rendering time); `rl_config` is
    process-wide, so renders in threads (the review page) take turns."""
    from reportlab import rl_config

    with _RL_CONFIG:
        before = rl_config.useA85
        rl_config.useA85 = 0
        try:
            yield
        finally:
            rl_config.useA85 = before


def scale_bar(crop: dict[str, Any], panel_w: float, total_w: float) -> Any:
    """A bar of N evidence pixels at the crop's zoom, drawn to the panels' scale, with its label."""
    from reportlab.graphics.shapes import Drawing, Line, String

    per_px = panel_w / crop["w"]  # points per evidence pixel on the page
    n = next((n for n in (50, 20, 10, 5, 2, 1) if n * per_px <= panel_w / 2), 1)
    d = Drawing(total_w, 14)
    d.add(Line(2, 8, 2 + n * per_px, 8, strokeWidth=2))
    d.add(Line(2, 5, 2, 11, strokeWidth=1))
    d.add(Line(2 + n * per_px, 5, 2 + n * per_px, 11, strokeWidth=1))
    mm_per_px = per_px * 25.4 / 72
    d.add(String(8 + n * per_px, 5, f"{n} evidence pixels (1 evidence pixel = {mm_per_px:.2f} mm on the page)", fontSize=7))
    return d


def still_block(bundle: Path, still: dict[str, Any], width: float, st: dict[str, Any]) -> list[Any]:
    """The flowables of one still: the magnified crop side by side with its scale bar and the
    overview with the crop box; a still without a crop (records before template 6, deinterlaced
    output) shows the three frames whole, reduced."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Table

    files, crop = still["files"], still.get("crop")
    kinds = [k for k in CROP_KINDS if k in files]
    out: list[Any] = []
    panel_w = width / 3 - 2 * mm
    images = decoded(bundle, files)
    if crop is not None and kinds:
        panels = [flowable(zoomed_crop(images[k], crop, k), panel_w) for k in kinds]
        out.append(Table([panels, [CROP_CAPTIONS[k] for k in kinds]], colWidths=[width / 3] * len(kinds)))
        out.append(scale_bar(crop, panel_w, width))
        zoom_out = int(crop["zoom"]) // int(crop["scale"])
        ox, oy = (still.get("region") or (0, 0))[:2]  # --roi: the stills are the region; say where in the evidence frame
        text = (
            f"Magnified crop ({crop['source']}): evidence pixels x {ox + crop['x']} to {ox + crop['x'] + crop['w'] - 1}, "
            f"y {oy + crop['y']} to {oy + crop['y'] + crop['h'] - 1} ({crop['w']} x {crop['h']}); nearest-neighbour zoom x{crop['zoom']} "
            f"of the evidence pixels" + ("" if int(crop["scale"]) == 1 else f", x{zoom_out} of the output pixels (output x{crop['scale']})")
        )
        out.append(Paragraph(text, st["small"]))
    change = still.get("change")
    if change:  # x1: the change made, over the whole still
        out.append(
            Paragraph(
                f"Change made R = |enhanced - evidence| over the whole frame (plane 0, 8-bit levels): mean "
                f"{change['mean_levels']:g}, 99th percentile {change['p99_levels']:g}, maximum {change['max_levels']:g}; "
                f"{100 * change['fraction_over_threshold']:.2f}% of pixels changed by more than {change['threshold_levels']:g} levels. "
                f"Red: the change, full red at {change['full_red_levels']:g} levels or more; grey: unchanged.",
                st["small"],
            )
        )
    region = still.get("region")
    whole = crop is not None and region is not None and (crop["x"], crop["y"], crop["w"], crop["h"]) == (0, 0, region[2], region[3])
    if "enhanced" in files and not whole:  # --roi with the crop all of the region: the crop is the whole output frame
        ov = overview(images["enhanced"], crop)
        caption = "Whole output frame, reduced" + (", the crop outlined in yellow" if crop is not None else "")
        if crop is None:
            row = [flowable(overview(images[k], None), panel_w) for k in kinds]
            out.append(Table([row, [CROP_CAPTIONS[k] for k in kinds]], colWidths=[width / 3] * len(kinds)))
        else:
            cells = [[flowable(ov, width / 3), Paragraph(caption, st["small"])]]
            out.append(Table(cells, colWidths=[width / 3 + 2 * mm, width * 2 / 3 - 2 * mm]))
    if "overview" in files and still.get("region"):
        x, y, w, h = still["region"]
        text = (
            f"Whole evidence frame, reduced: the region (--roi) that every output frame shows is outlined in yellow "
            f"(evidence pixels x {x} to {x + w - 1}, y {y} to {y + h - 1}, {w} x {h})"
        )
        cells = [[flowable(overview(images["overview"], None), width / 3), Paragraph(text, st["small"])]]
        out.append(Table(cells, colWidths=[width / 3 + 2 * mm, width * 2 / 3 - 2 * mm]))
    return out


def psf_block(bundle: Path, entry: dict[str, Any], st: dict[str, Any]) -> list[Any]:
    """The PSF drawn: its kernel from the recorded parameters, magnified, and what it is."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Table

    img, f = psf_image(bundle / entry["files"]["psf"]["name"])
    psf = entry["psf"]
    what = (
        f"motion {psf['length']:g} px at {psf['angle']:g} deg"
        if psf["kind"] == "motion"
        else f"defocus, radius {psf['radius']:g} px"
        if psf["kind"] == "defocus"
        else psf["kind"]
    )
    size = psf.get("size") or [img.height // f, img.width // f]
    text = (
        f"<b>Point spread function</b> used for deblurring: {what}; kernel {size[1]} x {size[0]} pixels, each drawn "
        f"{f} times magnified (nearest neighbour); white = the kernel's largest weight, black = zero."
    )
    return [Table([[flowable(img, 30 * mm), Paragraph(text, st["body"])]], colWidths=[35 * mm, 100 * mm])]
