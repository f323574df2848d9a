"""The report's stills: evidence, enhanced and overlay PNGs of chosen output frames, written into
the bundle at enhance time (OpenCV is imported here only; `fvsr verify` never calls this)."""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# The magnified crop: about a third of the evidence frame's width (48 to 160 evidence pixels),
# zoomed so that each of the three panels is about ZOOM_TARGET_PX pixels wide.
CROP_MIN, CROP_MAX, ZOOM_TARGET_PX = 48, 160, 420
# zlib level of the stills: lossless whatever the level; 1 against 6 is 4x faster for 10% more
# bytes (1536x1152 frame: 0.42 s and 2.35 MB against 1.75 s and 2.13 MB, load 10). The Up filter
# on every row, not libpng's adaptive choice, halves the encoding time at level 1 for 1% fewer
# bytes (the nine stills of a 768x576 x2 run: 0.48 s and 18.29 MB against 0.78 s and 18.47 MB).
PNG_LEVEL = 1


def crop_region(ev_size: tuple[int, int], scale: int, box: dict[str, int] | None, roi: tuple[int, int, int, int] | None) -> dict[str, Any]:
    """The region the report magnifies, in evidence pixels: around the most flagged region of S
    (`box`, output pixels), else the region of interest, else the frame centre; `zoom` is the
    nearest-neighbour factor of the evidence pixels (a multiple of `scale`, so the output's
    pixels are magnified by the whole number zoom / scale)."""
    ev_w, ev_h = ev_size
    if box is not None:
        source = "most flagged region of S"
        cx, cy = (box["x"] + box["w"] / 2) / scale, (box["y"] + box["h"] / 2) / scale
        need_w, need_h = box["w"] / scale + 8, box["h"] / scale + 8
    elif roi is not None:
        source = "region of interest"
        cx, cy = roi[0] + roi[2] / 2, roi[1] + roi[3] / 2
        need_w, need_h = roi[2], roi[3]
    else:
        source, cx, cy, need_w, need_h = "frame centre", ev_w / 2, ev_h / 2, 0, 0
    w = min(ev_w, max(CROP_MIN, min(CROP_MAX, ev_w // 3), int(need_w)))
    h = min(ev_h, max(round(w * 3 / 4), int(need_h)))
    x = int(min(max(round(cx - w / 2), 0), ev_w - w))
    y = int(min(max(round(cy - h / 2), 0), ev_h - h))
    zoom = scale * max(1, round(ZOOM_TARGET_PX / (w * scale)))
    return {"x": x, "y": y, "w": w, "h": h, "zoom": zoom, "scale": scale, "source": source}


def write_psf(bundle: Path, psf: dict[str, Any] | None) -> dict[str, Any] | None:
    """stills/psf.png, the deblurring kernel drawn from its recorded parameters (motion or
    defocus; 255 = the kernel's largest weight), and its record; None for other PSFs."""
    import cv2
    import numpy as np

    from forensic_vsr.ops.deblur import defocus_psf, motion_psf

    if not psf or psf.get("kind") not in ("motion", "defocus"):
        return None
    kernel = motion_psf(psf["length"], psf["angle"]) if psf["kind"] == "motion" else defocus_psf(psf["radius"])
    img = np.rint(255 * kernel.kernel / kernel.kernel.max()).astype(np.uint8)
    name = "stills/psf.png"
    ok, png = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError(f"{name}: OpenCV could not encode the PSF as PNG")
    (bundle / "stills").mkdir(exist_ok=True)
    (bundle / name).write_bytes(png.tobytes())
    data = png.tobytes()
    entry = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return {"label": "point spread function", "psf": psf, "files": {"psf": entry}}


def recomputed_s(x_hat: Any, scale: int, pix_fmt: str) -> Any:
    """S of one master plane, as bundle.maps computed it (forensic_vsr.uncertainty.exact)."""
    from forensic_vsr.media import plane_geometry
    from forensic_vsr.uncertainty.exact import ExactMaps

    return ExactMaps(*x_hat.shape, scale).synthesized(x_hat, plane_geometry(pix_fmt)[0][2])[0]


def region_overview(frame: Any, region: tuple[int, int, int, int]) -> Any:
    """The whole evidence frame (RGB) with the --roi region outlined in yellow, two pixels wide
    outside the region (so no pixel of the region is covered)."""
    out = frame.copy()
    x, y, w, h = region
    x0, y0, x1, y1 = max(x - 2, 0), max(y - 2, 0), min(x + w + 2, out.shape[1]), min(y + h + 2, out.shape[0])
    sides = [(slice(y0, y), slice(x0, x1)), (slice(y + h, y1), slice(x0, x1))]  # above, below
    sides += [(slice(y0, y1), slice(x0, x)), (slice(y0, y1), slice(x + w, x1))]  # left, right
    for rows, cols in sides:
        out[rows, cols] = (255, 255, 0)
    return out


CHANGE_FULL_LEVELS = 16.0  # the change panel: full red at this change (8-bit levels), grey below


def levels8(plane: Any, bits: int) -> Any:
    """A plane's samples in 8-bit levels (float32), whatever its bit depth."""
    import numpy as np

    return plane.astype(np.float32) * (255.0 / (2**bits - 1))


def change_panel(enhanced: Any, r: Any, threshold: float) -> tuple[Any, dict[str, Any]]:
    """x1 operations: the change made, R = |output - evidence| (the contradiction map's value
    where the operator is the identity), drawn in red over the output in grey (full red at
    CHANGE_FULL_LEVELS), and its statistics in 8-bit levels."""
    import cv2
    import numpy as np

    gray = cv2.cvtColor(enhanced, cv2.COLOR_RGB2GRAY).astype(np.float32)
    heat = np.clip(r / CHANGE_FULL_LEVELS, 0, 1)
    img = np.stack([gray * (1 - heat) + 255 * heat, gray * (1 - heat), gray * (1 - heat)], axis=-1)
    stats = {
        "mean_levels": round(float(r.mean()), 3),
        "p99_levels": round(float(np.percentile(r, 99)), 3),
        "max_levels": round(float(r.max()), 3),
        "threshold_levels": threshold,
        "fraction_over_threshold": round(float((r > threshold).mean()), 6),
        "full_red_levels": CHANGE_FULL_LEVELS,
    }
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), stats


def make_stills(
    bundle: Path,
    evidence: Path,
    frames: dict[str, int],
    start: int,
    threshold: float,
    per_input: int = 1,
    map_scale: float | None = None,
    roi: tuple[int, int, int, int] | None = None,
    recompute_scale: int | None = None,
    region: tuple[int, int, int, int] | None = None,
) -> list[dict[str, Any]]:
    """Write stills/NNNNNN-{evidence,enhanced,overlay}.png for the given output-frame indices
    (labels: first, middle, most-flagged, requested) and return their records: with the time in
    seconds from the evidence's first frame and the region the report magnifies (`crop_region`).
    Output frame i comes from evidence frame start + i // per_input (per_input is 2 when each
    field became a frame). `recompute_scale`: S is not stored (format 3) and is computed from the
    master frame at this scale, as the maps writer computed it. `region` (--roi, evidence pixels):
    the outputs are the region, so the evidence still is cut to it, and NNNNNN-overview.png is the
    whole evidence frame with the region outlined."""
    from fractions import Fraction

    import cv2
    import numpy as np

    from forensic_vsr.media import VideoReader, frame_planes, planes_sha256
    from forensic_vsr.uncertainty.exact import MAP_SCALE, flagged_regions

    map_scale = map_scale or MAP_SCALE
    wanted = sorted(set(frames.values()))
    out_dir = bundle / "stills"
    out_dir.mkdir(exist_ok=True)
    grabbed: dict[str, dict[int, Any]] = {"evidence": {}, "enhanced": {}, "s": {}, "evidence_luma": {}, "enhanced_luma": {}}
    meta: dict[int, dict[str, Any]] = {}
    first: list[Fraction] = [Fraction(0)]  # the evidence's first frame, in seconds
    stop = threading.Event()

    def grab_evidence(path: Path, offset: int) -> None:
        with VideoReader(path) as reader:
            tb = reader.info.time_base
            for decoded in reader.frames():
                if stop.is_set():  # the main thread failed: stop decoding
                    return
                if decoded.index == 0:
                    first[0] = decoded.file_pts * tb
                base = (decoded.index - offset) * per_input
                for i in range(base, base + per_input):
                    if i in wanted:
                        grabbed["evidence"][i] = decoded.frame.to_ndarray(format="rgb24")
                        grabbed["evidence_luma"][i] = levels8(frame_planes(decoded.frame)[0], decoded.frame.format.components[0].bits)
                if base + per_input - 1 >= wanted[-1]:
                    break

    def grab_output(kind: str, path: Path) -> None:
        with VideoReader(path) as reader:
            tb = reader.info.time_base
            # the master and the map are intra-only FFV1: only the wanted frames are decoded
            for decoded in reader.intra_frames(set(wanted)):
                i = decoded.index
                if i in wanted:
                    if kind == "s":
                        grabbed[kind][i] = frame_planes(decoded.frame)[0].astype(np.float32) / map_scale
                    else:
                        grabbed[kind][i] = decoded.frame.to_ndarray(format="rgb24")
                        grabbed["enhanced_luma"][i] = levels8(frame_planes(decoded.frame)[0], decoded.frame.format.components[0].bits)
                        if recompute_scale:
                            grabbed["s"][i] = recomputed_s(frame_planes(decoded.frame)[0], recompute_scale, decoded.frame.format.name)
                        meta[i] = {"pts": decoded.pts, "tb": tb, "sha256": planes_sha256(frame_planes(decoded.frame))}
                if i >= wanted[-1]:
                    break

    # the evidence (decoded from its first frame) in a thread beside the master and the map
    # (PyAV and OpenCV decode and compute without the GIL)
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(grab_evidence, evidence, start)] if evidence.exists() else []
        try:
            for kind, path in (("enhanced", bundle / "output/master.mkv"), ("s", bundle / "maps/synthesized.mkv")):
                if path.exists():
                    grab_output(kind, path)
        except BaseException:
            stop.set()
            raise
        for job in jobs:
            job.result()
    for i, m in meta.items():
        tb = m.pop("tb")
        meta[i] = {
            "pts": m["pts"],
            "time_base": f"{tb.numerator}/{tb.denominator}",
            "time_s": round(float(m["pts"] * tb - first[0]), 6),
            "sha256": m["sha256"],
        }
    records = []
    todo: dict[str, Any] = {}  # stills to write: encoded together, in threads, after the loop
    for label, i in sorted(frames.items(), key=lambda kv: (kv[1], kv[0])):
        files = {}
        images = {"evidence": grabbed["evidence"].get(i), "enhanced": grabbed["enhanced"].get(i)}
        ev_luma, enh_luma = grabbed["evidence_luma"].get(i), grabbed["enhanced_luma"].get(i)
        if region is not None and images["evidence"] is not None:
            images["overview"] = region_overview(images["evidence"], region)
            x, y, w, h = region
            images["evidence"] = np.ascontiguousarray(images["evidence"][y : y + h, x : x + w])
            ev_luma = ev_luma[y : y + h, x : x + w] if ev_luma is not None and ev_luma.ndim == 2 else None
        s = grabbed["s"].get(i)
        boxes = []
        change = None
        x1 = ev_luma is not None and enh_luma is not None and ev_luma.ndim == 2 and ev_luma.shape == enh_luma.shape
        if x1 and images["enhanced"] is not None:  # S is zero at x1: the panel shows the change made, R
            images["change"], change = change_panel(images["enhanced"], np.abs(enh_luma - ev_luma), threshold)
        elif images["enhanced"] is not None and s is not None:
            gray = cv2.cvtColor(images["enhanced"], cv2.COLOR_RGB2GRAY).astype(np.float32)
            heat = np.clip(s / max(threshold, 1e-6), 0, 1)
            overlay = np.stack([gray * (1 - heat) + 255 * heat, gray * (1 - heat), gray * (1 - heat)], axis=-1)
            overlay = np.clip(np.rint(overlay), 0, 255).astype(np.uint8)
            boxes = flagged_regions(s, threshold)["boxes"]
            for box in boxes:  # the regions maps/flagged.json lists
                x, y, w, h = box["x"], box["y"], box["w"], box["h"]
                cv2.rectangle(overlay, (x, y), (x + w - 1, y + h - 1), (255, 255, 0), 1)
            images["overlay"] = overlay
        for kind, img in images.items():
            if img is None:
                continue
            name = f"stills/{i:06d}-{kind}.png"
            if not (bundle / name).exists():
                todo[name] = img
            files[kind] = {"name": name}
        record = {"label": label, "frame": i, "evidence_frame": start + i // per_input, **meta.get(i, {}), "files": files}
        if region is not None:
            record["region"] = list(region)
        if change is not None:
            record["change"] = change
        ev, enh = images["evidence"], images["enhanced"]
        if ev is not None and enh is not None:
            sx, sy = enh.shape[1] / ev.shape[1], enh.shape[0] / ev.shape[0]
            if sx == sy and sx == int(sx):  # the crop needs one whole-number factor (not deinterlaced fields)
                interest = roi if region is None else (0, 0, region[2], region[3])  # --roi: the stills are the region
                record["crop"] = crop_region((ev.shape[1], ev.shape[0]), int(sx), boxes[0] if boxes else None, interest)
        records.append(record)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # OpenCV encodes without the GIL
        futures = [pool.submit(write_png, bundle / name, img) for name, img in todo.items()]
        try:
            for future in futures:
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the first failure stops the stills not yet started
            raise
    for record in records:
        for entry in record["files"].values():
            data = (bundle / entry["name"]).read_bytes()
            entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return records


def write_png(path: Path, rgb: Any) -> None:
    """One still, lossless: zlib level PNG_LEVEL with the Up filter on every row."""
    import cv2

    options = [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, png = cv2.imencode(".png", rgb[..., ::-1], options)
    if not ok:
        raise ValueError(f"{path.parent.name}/{path.name}: OpenCV could not encode the still as PNG")
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(png.tobytes())  # an OSError (disk full) propagates, unlike imwrite's
        os.replace(partial, path)  # a still is whole or absent (BundleDir.commit fsyncs every file)
    finally:
        partial.unlink(missing_ok=True)
