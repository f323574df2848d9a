"""The report's stills: evidence, enhanced and overlay PNGs of chosen output frames, written into
the bundle at enhance time (OpenCV is imported here only; `fvsr verify` never calls this)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


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
    from forensic_vsr.uncertainty.exact import MAP_SCALE, flagged_regions

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
            for box in flagged_regions(s, threshold)["boxes"]:  # the regions maps/flagged.json lists
                x, y, w, h = box["x"], box["y"], box["w"], box["h"]
                cv2.rectangle(overlay, (x, y), (x + w - 1, y + h - 1), (255, 255, 0), 1)
            images["overlay"] = overlay
        for kind, img in images.items():
            if img is None:
                continue
            name = f"stills/{i:06d}-{kind}.png"
            if not (bundle / name).exists():
                ok, png = cv2.imencode(".png", img[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 6])
                if not ok:
                    raise ValueError(f"{name}: OpenCV could not encode the still as PNG")
                (bundle / name).write_bytes(png.tobytes())  # an OSError (disk full) propagates, unlike imwrite's
            data = (bundle / name).read_bytes()
            files[kind] = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        records.append({"label": label, "frame": i, "evidence_frame": start + i // per_input, **meta.get(i, {}), "files": files})
    return records
