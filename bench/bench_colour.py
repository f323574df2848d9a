"""What running a learned model on each colour plane costs, on the same frames of carphone as
yuv420p (the network on luma) and as rgb24 (the network on R, G and B), interleaved:
`--stage`: fidelity-sr-x2's stage alone (network, projection, chroma kernel) in one process, frame
by frame; otherwise `fvsr enhance --model fidelity-sr-x2` end to end, the time per frame taken as
(t(N) - t(1)) / (N - 1) so that start-up and the one-off work drop out.

Run by hand: `.venv/bin/python bench/bench_colour.py [--stage] [--frames 10] [--repeats 3]`."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "data" / "clips" / "carphone_distorted.mp4"
ENV = {**os.environ, "FVSR_KEY_PASSPHRASE": "bench-passphrase"}


def run(evidence: Path, frames: int, key: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "forensic_vsr", "enhance", str(evidence), "-o", str(out), "--key", str(key)]
    cmd += ["--model", "fidelity-sr-x2", "--mode", "investigative", "--no-report", "--frames", f"0:{frames}", "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def stage(frames: int) -> None:
    from forensic_vsr.media import VideoReader, frame_planes
    from forensic_vsr.models.registry import resolve
    from forensic_vsr.ops.operations import stage_for
    from forensic_vsr.ops.stages import StageParams

    model = resolve("fidelity-sr-x2", None, [])
    inputs: dict[str, list] = {"yuv420p": [], "rgb24": []}
    with VideoReader(CLIP) as reader:
        for decoded in reader.frames():
            inputs["yuv420p"].append(frame_planes(decoded.frame))
            inputs["rgb24"].append(frame_planes(decoded.frame.reformat(format="rgb24")))  # the bench's own copy, not evidence
            if decoded.index + 1 == frames:
                break
    w, h = inputs["yuv420p"][0][0].shape[::-1]
    stages = {f: stage_for(model, StageParams(scale=2, src_fmt=f, siting="left", in_width=w, in_height=h, project=True)) for f in inputs}
    times: dict[str, list[float]] = {f: [] for f in inputs}
    for i in range(frames):
        for fmt, st in stages.items():
            t0 = time.perf_counter()
            st.push((i, i), inputs[fmt][i])
            st.flush()
            times[fmt].append(time.perf_counter() - t0)
    print(f"load {Path('/proc/loadavg').read_text().split()[:3]}")
    for fmt, t in times.items():
        print(f"{fmt}: {statistics.median(t[1:]) * 1000:.0f} ms/frame (median of frames 2-{frames})")
    print(f"rgb24 / yuv420p: {statistics.median(times['rgb24'][1:]) / statistics.median(times['yuv420p'][1:]):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stage", action="store_true")
    args = ap.parse_args()
    if args.stage:
        stage(args.frames)
        return
    from forensic_vsr.audit.keys import generate

    d = Path(tempfile.mkdtemp(prefix="bench-colour-"))
    generate(d / "k.key", "Bench", b"bench-passphrase")
    clips = {"yuv420p": d / "yuv.mkv", "rgb24": d / "rgb.mkv"}
    for fmt, path in clips.items():
        codec = ["-c:v", "ffv1"] if fmt == "yuv420p" else ["-c:v", "png"]
        cut = ["-frames:v", str(args.frames), "-pix_fmt", fmt, *codec]
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(CLIP), *cut, str(path)], check=True)
    times: dict[tuple[str, int], list[float]] = {}
    n = 0
    for _ in range(args.repeats):
        for frames in (1, args.frames):
            for fmt, path in clips.items():  # interleaved: the load falls on both alike
                n += 1
                times.setdefault((fmt, frames), []).append(run(path, frames, d / "k.key", d / f"b{n}"))
    print(f"load {Path('/proc/loadavg').read_text().split()[:3]}")
    per_frame = {}
    for fmt in clips:
        t1, tn = statistics.median(times[(fmt, 1)]), statistics.median(times[(fmt, args.frames)])
        per_frame[fmt] = (tn - t1) / (args.frames - 1)
        ms = per_frame[fmt] * 1000
        print(f"{fmt}: 1 frame {t1:.2f} s, {args.frames} frames {tn:.2f} s (medians of {args.repeats}), {ms:.0f} ms/frame")
    print(f"rgb24 / yuv420p per frame: {per_frame['rgb24'] / per_frame['yuv420p']:.2f}")


if __name__ == "__main__":
    main()
