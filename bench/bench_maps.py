"""Overhead of the uncertainty maps (issue 6): per 1280x544 output frame, the SR frame operation,
the exact layer (S, R and the flagged regions), the calibrated layer (interval scale) and the
lossless storage of each map (gray16 conversion, frame hash, FFV1 encoding, one thread); then
whole `fvsr enhance` runs of the clip with and without maps. Frames are real footage
(data/clips/bikes.mp4, 640x272, x2).

Run by hand: `python bench/bench_maps.py [--frames N] [--model-frames N] [--runs N]`; results go
to bench/results/maps-overhead.json and into docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forensic_vsr.allocator import keep_heap  # noqa: E402
from forensic_vsr.bundle.frames import stage_params  # noqa: E402
from forensic_vsr.bundle.master import FFV1_OPTIONS  # noqa: E402
from forensic_vsr.media import VideoReader, VideoWriter, frame_from_planes, frame_planes, planes_sha256  # noqa: E402
from forensic_vsr.models.registry import resolve  # noqa: E402
from forensic_vsr.ops.operations import stage_for  # noqa: E402
from forensic_vsr.recipe import Recipe, recipe_facts  # noqa: E402
from forensic_vsr.uncertainty.calibration import interval_scale  # noqa: E402
from forensic_vsr.uncertainty.exact import ExactMaps, flagged_regions, to_gray16  # noqa: E402
from forensic_vsr.uncertainty.head import LearnedScale  # noqa: E402

CLIP = ROOT / "data" / "clips" / "bikes.mp4"
W, H, SCALE = 1280, 544, 2


def clip(n: int) -> list[list[np.ndarray]]:
    out = []
    with VideoReader(CLIP) as reader:
        for decoded in reader.frames():
            out.append(frame_planes(decoded.frame))
            if len(out) == n:
                break
    return out


def per_frame_ms(fn, items) -> float:  # type: ignore[no-untyped-def]
    for item in items[:3]:  # warm-up (allocator, caches), not counted
        fn(item)
    t0 = time.perf_counter()
    for item in items:
        fn(item)
    return round((time.perf_counter() - t0) / len(items) * 1e3, 2)


def layers(model_id: str, frames: list[list[np.ndarray]]) -> dict[str, object]:
    model = resolve(model_id, None)
    recipe = Recipe(mode="evidential", model=model_id, scale=SCALE)
    project = recipe_facts(recipe, model).data_consistency_available
    params = stage_params(recipe, "yuv420p", "left", W // SCALE, H // SCALE, project)

    def sr(planes: list[np.ndarray]) -> list[np.ndarray]:
        return stage_for(model, params).push((0, 0), planes)[0][2]

    sr_ms = per_frame_ms(sr, frames)
    outs = [sr(p)[0] for p in frames]
    pairs = list(zip((p[0] for p in frames), outs, strict=True))
    exact = ExactMaps(H, W, SCALE)
    exact_ms = per_frame_ms(lambda p: exact.compute(*p), pairs)
    sr_maps = [exact.compute(*p) for p in pairs]
    flag_ms = per_frame_ms(lambda sr_: flagged_regions(sr_[0], 8.0), sr_maps)
    entry = (model.card.data.get("uncertainty") or {}).get(f"x{SCALE}") if model.card else None
    head = LearnedScale(entry["head"], model.card.path.parent, SCALE) if entry and "head" in entry else None
    triples = [(x.astype(np.float32), y, s) for (y, x), (s, _r) in zip(pairs, sr_maps, strict=True)]
    if head is None:
        interval_ms = per_frame_ms(lambda t: interval_scale(t[0], t[2]), triples)
    else:
        interval_ms = per_frame_ms(lambda t: head(t[0], t[1].astype(np.float32), t[2]), triples)
    lam = float(entry["lambda"]) if entry else 3.0
    us = [interval_scale(t[0], t[2]) for t in triples]
    storage = {}
    with tempfile.TemporaryDirectory() as tmp:
        maps = (("synthesized", [m[0] for m in sr_maps], 1.0), ("contradiction", [m[1] for m in sr_maps], 1.0), ("interval", us, lam))
        for name, values, factor in maps:
            path = Path(tmp) / f"{name}.mkv"
            tb = Fraction(1, 25)
            writer = VideoWriter(path, codec="ffv1", pix_fmt="gray16le", width=W, height=H, time_base=tb, rate=None, options=FFV1_OPTIONS)
            writer._stream.codec_context.thread_count = 1  # one core per map, as measured
            pts = iter(range(10**9))

            def store(levels: np.ndarray, writer: VideoWriter = writer, factor: float = factor, pts=pts) -> None:  # type: ignore[no-untyped-def]
                plane = to_gray16(levels, factor)
                planes_sha256([plane])
                writer.write(frame_from_planes([plane], "gray16le", W, H), next(pts))

            storage[name] = per_frame_ms(store, values)
            writer.close()
    exact_total = exact_ms + flag_ms + storage["synthesized"] + storage["contradiction"]
    calibrated_total = interval_ms + storage["interval"]
    return {
        "model": model_id,
        "frames": len(frames),
        "sr_step_ms": sr_ms,
        "exact_ms": exact_ms,
        "flagged_ms": flag_ms,
        "interval_ms": interval_ms,
        "interval_from": "learned head" if head else "fixed formula",
        "storage_ms": storage,
        "exact_compute_vs_sr": round((exact_ms + flag_ms) / sr_ms, 3),
        "calibrated_compute_vs_sr": round(interval_ms / sr_ms, 3),
        "exact_with_storage_vs_sr": round(exact_total / sr_ms, 3),
        "calibrated_with_storage_vs_sr": round(calibrated_total / sr_ms, 3),
    }


def enhance_wall(runs: int, model: str, frames: str | None) -> dict[str, object]:
    out: dict[str, object] = {"model": model, "frames": frames or "all 250"}
    env = {**os.environ, "FVSR_KEY_PASSPHRASE": "bench-passphrase"}
    fvsr = [str(Path(sys.executable).parent / "fvsr")]
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "k.key"
        subprocess.run([*fvsr, "keys", "generate", "--out", str(key), "--name", "Bench"], env=env, check=True, capture_output=True)
        for label, extra in (("no_maps_s", ["--no-maps"]), ("maps_s", [])):
            best = float("inf")
            for i in range(runs):
                bundle = Path(tmp) / f"b-{label}-{i}"
                t0 = time.perf_counter()
                base = ["enhance", str(CLIP), "-o", str(bundle), "--mode", "investigative", "--model", model, "--scale", "2"]
                base += ["--frames", frames] if frames else []
                subprocess.run([*fvsr, *base, "--key", str(key), "--no-report", "-q", *extra], env=env, check=True, capture_output=True)
                best = min(best, time.perf_counter() - t0)
            out[label] = round(best, 2)
    out["maps_vs_no_maps"] = round(float(out["maps_s"]) / float(out["no_maps_s"]), 3)  # type: ignore[arg-type]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=30, help="frames for classical operations")
    ap.add_argument("--model-frames", type=int, default=3, help="frames for learned models")
    ap.add_argument("--runs", type=int, default=2, help="whole enhance runs, best of")
    args = ap.parse_args()
    keep_heap()  # as `fvsr` does at start-up: the numbers are arithmetic, not page faults
    frames = clip(max(args.frames, args.model_frames) + 1)
    rows = []
    for model_id, n in (("lanczos", args.frames), ("fidelity-sr-x2", args.model_frames)):
        rows.append(layers(model_id, frames[: n + 1]))
        print(json.dumps(rows[-1]))
    wall = [enhance_wall(args.runs, "lanczos", None), enhance_wall(args.runs, "fidelity-sr-x2", "0:8")]
    print(json.dumps(wall))
    result = {
        "input": "bikes.mp4 640x272 -> 1280x544 (x2), luma maps",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "per_frame": rows,
        "enhance_wall_investigative_no_report": wall,
    }
    (ROOT / "bench" / "results" / "maps-overhead.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
