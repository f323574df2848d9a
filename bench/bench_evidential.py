"""Issue 17 item 1: evidential lanczos x2 with maps and report against the ffmpeg pipeline doing
the same work (input framehash + lanczos x2 + FFV1 master + H.264 preview + output framehash),
and without maps and report; interleaved side by side, medians of --runs; maps bytes vs master.

Run by hand: `python bench/bench_evidential.py [--frames 100] [--runs 3]` (a 768x576 H.264 clip
is cut from data/clips/cityCC0.mpg into a temporary directory); results go to
bench/results/evidential.json and docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forensic_vsr.bundle.master import FFV1_OPTIONS, PREVIEW_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "FVSR_KEY_PASSPHRASE": "bench-passphrase"}
FVSR = str(Path(sys.executable).parent / "fvsr")


CPU: dict[str, list[float]] = {}  # CPU seconds (user + sys) of each timed command, by label


def timed(cmd: list[str], label: str = "") -> float:
    """Wall seconds of `cmd`; its CPU seconds are added to CPU[label] (less sensitive than wall
    time to what else the machine runs)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault(label, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def encoder_args(codec: str, options: dict[str, str]) -> list[str]:
    """ffmpeg's output options for `codec` with exactly the options fvsr's own encoder uses."""
    return ["-c:v", codec, *(arg for key, value in options.items() for arg in (f"-{key}", value))]


def ffmpeg_pipeline(clip: Path, out: Path) -> list[list[str]]:
    q = ["ffmpeg", "-v", "error", "-y", "-threads", "0"]
    return [
        [*q, "-flags", "+bitexact", "-i", str(clip), "-f", "framehash", "-hash", "sha256", str(out / "in.framehash")],
        [
            *q,
            "-i",
            str(clip),
            "-filter_complex",
            "[0:v:0]scale=iw*2:ih*2:flags=lanczos,split[m][p]",
            "-map",
            "[m]",
            *encoder_args("ffv1", FFV1_OPTIONS),
            str(out / "m.mkv"),
            "-map",
            "[p]",
            *encoder_args("libx264", PREVIEW_OPTIONS),
            "-pix_fmt",
            "yuv420p",
            str(out / "p.mp4"),
        ],
        [*q, "-i", str(out / "m.mkv"), "-f", "framehash", "-hash", "sha256", str(out / "out.framehash")],
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        clip = t / "city768.mp4"
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-i",
                str(ROOT / "data/clips/cityCC0.mpg"),
                "-frames:v",
                str(args.frames),
                "-vf",
                "scale=768:576",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-crf",
                "18",
                str(clip),
            ],
            check=True,
        )
        subprocess.run([FVSR, "keys", "generate", "--out", str(t / "k")], check=True, env=ENV, stdout=subprocess.DEVNULL)
        base = ["enhance", str(clip), "--key", str(t / "k"), "--model", "lanczos", "--scale", "2", "-q"]
        times: dict[str, list[float]] = {"ffmpeg": [], "evidential": [], "no_maps_no_report": []}
        for i in range(args.runs):
            times["ffmpeg"].append(sum(timed(c, f"ffmpeg{i}") for c in ffmpeg_pipeline(clip, t)))
            times["evidential"].append(timed([FVSR, *base, "-o", str(t / f"e{i}"), "--mode", "evidential"], "evidential"))
            times["no_maps_no_report"].append(
                timed([FVSR, *base, "-o", str(t / f"n{i}"), "--mode", "investigative", "--no-maps", "--no-report"], "no_maps_no_report")
            )
        bundle = t / "e0"
        maps_bytes = sum(p.stat().st_size for p in (bundle / "maps").iterdir())
        master = (bundle / "output/master.mkv").stat().st_size
        verify = timed([FVSR, "verify", str(bundle), "--pubkey", str(t / "k.pub"), "--evidence", str(clip)], "verify")
        med = {k: round(statistics.median(v), 2) for k, v in times.items()}
        cpu = {
            "ffmpeg": [sum(CPU[f"ffmpeg{i}"]) for i in range(args.runs)],
            "evidential": CPU["evidential"],
            "no_maps_no_report": CPU["no_maps_no_report"],
        }
        cpu_med = {k: round(statistics.median(v), 2) for k, v in cpu.items()}
        result = {
            "clip": f"cityCC0 scaled to 768x576, {args.frames} frames, H.264",
            "load_after": Path("/proc/loadavg").read_text().split()[:3],
            "runs": {k: [round(x, 2) for x in v] for k, v in times.items()},
            "median_s": med,
            "evidential_vs_ffmpeg": round(med["evidential"] / med["ffmpeg"], 2),
            "cpu_median_s": cpu_med,
            "evidential_vs_ffmpeg_cpu": round(cpu_med["evidential"] / cpu_med["ffmpeg"], 2),
            "no_maps_vs_ffmpeg": round(med["no_maps_no_report"] / med["ffmpeg"], 2),
            "maps_bytes": maps_bytes,
            "master_bytes": master,
            "maps_vs_master": round(maps_bytes / master, 5),
            "verify_with_evidence_s": round(verify, 2),
        }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "evidential.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
