"""Throughput of each model's frame operation at 720x576 (PAL SD, yuv420p): the network or the
multi-frame reconstruction on luma, the data-consistency projection where the policy applies
it, and the classical chroma. Frames are real footage (bikes.mp4) resized to 720x576.

Run by hand: `python bench/bench_models.py [--device cuda] [--frames N] [MODEL ...]`; results go
to bench/results/models-throughput-<device>.json and into docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forensic_vsr.bundle.frames import stage_params  # noqa: E402
from forensic_vsr.media import VideoReader, frame_planes  # noqa: E402
from forensic_vsr.models.registry import resolve  # noqa: E402
from forensic_vsr.models.tasks import task  # noqa: E402
from forensic_vsr.ops.operations import stage_for  # noqa: E402
from forensic_vsr.recipe import Recipe, recipe_facts  # noqa: E402

DEFAULT = ["lanczos", "fidelity-sr-x2", "fidelity-sr-x4", "fidelity-restore", "mfsr-x2", "perceptual-sr-x4"]


def frames(n: int) -> list[list[np.ndarray]]:
    out = []
    with VideoReader(ROOT / "data" / "clips" / "bikes.mp4") as reader:
        for decoded in reader.frames():
            y, u, v = frame_planes(decoded.frame)
            out.append([cv2.resize(y, (720, 576), interpolation=cv2.INTER_AREA), *(cv2.resize(p, (360, 288)) for p in (u, v))])
            if len(out) == n:
                break
    return out


def measure(model_id: str, device: str, clip: list[list[np.ndarray]], batch: int | None) -> dict[str, object]:
    model = resolve(model_id, None)
    scale = 1 if task(model) == "restore" else (model.card.data["scales"][-1] if model.card else 2)
    scale = 2 if model_id in ("lanczos", "bicubic") else scale
    recipe = Recipe(mode="investigative", model=model_id, scale=scale, device=device, batch=batch)
    project = recipe_facts(recipe, model).data_consistency_available
    params = stage_params(recipe, "yuv420p", "left", 720, 576, project)
    op = stage_for(model, params)
    op.push((0, 0), clip[0])  # warm-up (allocations, oneDNN kernels); not counted
    op.flush()
    op = stage_for(model, params)
    t0 = time.perf_counter()
    done = 0
    for i, planes in enumerate(clip):
        done += len(op.push((i, i), planes))
    done += len(op.flush())
    seconds = time.perf_counter() - t0
    fps = round(done / seconds, 3)
    return {"model": model_id, "scale": scale, "frames": done, "seconds": round(seconds, 2), "fps": fps, "projected": project}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--batch", type=int)
    args = ap.parse_args()
    clip = frames(args.frames)
    rows = []
    for m in args.models or DEFAULT:
        try:
            rows.append(measure(m, args.device, clip, args.batch))
        except Exception as exc:  # a model not shipped on this checkout
            print(f"{m}: skipped ({exc})", file=sys.stderr)
            continue
        print(json.dumps(rows[-1]))
    import torch

    result = {
        "input": "720x576 yuv420p (bikes.mp4 resized)",
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / f"models-throughput-{args.device}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
