"""Benchmark `fvsr enhance --model lanczos --scale 2` against the equivalent ffmpeg pipeline
(decode, lanczos x2, framehash, FFV1 encode) on the same clip, and peak RSS for 30 vs 300 frames.

Run by hand: `make bench` (results go to bench/results/ and are copied into docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "data" / "clips" / "bikes.mp4"
ENV = {**os.environ, "FVSR_KEY_PASSPHRASE": "bench-passphrase"}


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall time and the child's peak RSS (KiB)."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return time.perf_counter() - t0, max(peak, before)


def rss_of(cmd: list[str]) -> int:
    code = (
        "import resource,subprocess,sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], check=True, env=ENV, capture_output=True, text=True).stdout
    return int(out.strip())


def main() -> int:
    fvsr = [sys.executable, "-m", "forensic_vsr"]
    results: dict[str, object] = {"clip": CLIP.name, "platform": platform.platform(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        subprocess.run([*fvsr, "keys", "generate", "--out", str(t / "k")], check=True, env=ENV, stdout=subprocess.DEVNULL)
        runs_f, runs_x = [], []
        for i in range(3):
            runs_f.append(
                timed(
                    [*fvsr, "enhance", str(CLIP), "-o", str(t / f"b{i}"), "--key", str(t / "k"), "--model", "lanczos", "--scale", "2", "-q"]
                )[0]
            )
            runs_x.append(
                timed(
                    [
                        "ffmpeg",
                        "-v",
                        "error",
                        "-y",
                        "-i",
                        str(CLIP),
                        "-filter_complex",
                        "[0:v:0]scale=iw*2:ih*2:flags=lanczos,split[m][h]",
                        "-map",
                        "[m]",
                        "-c:v",
                        "ffv1",
                        "-level",
                        "3",
                        "-g",
                        "1",
                        "-slicecrc",
                        "1",
                        str(t / f"x{i}.mkv"),
                        "-map",
                        "[h]",
                        "-f",
                        "framehash",
                        "-hash",
                        "sha256",
                        str(t / f"x{i}.framehash"),
                    ]
                )[0]
            )
        results["fvsr_s"] = min(runs_f)
        results["ffmpeg_s"] = min(runs_x)
        results["ratio"] = round(min(runs_f) / min(runs_x), 2)
        for n in (30, 300):
            clip = t / f"c{n}.mp4"
            subprocess.run(["ffmpeg", "-v", "error", "-i", str(CLIP), "-frames:v", str(n), "-c", "copy", str(clip)], check=True)
            results[f"peak_rss_kib_{n}"] = rss_of([*fvsr, "enhance", str(clip), "-o", str(t / f"r{n}"), "--key", str(t / "k"), "-q"])
        # the same ffmpeg pipeline plus the work fvsr adds: H.264 preview and a decode-back framehash
        t0 = time.perf_counter()
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-i",
                str(t / "x0.mkv"),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-crf",
                "18",
                str(t / "x0.mp4"),
            ],
            check=True,
        )
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(t / "x0.mkv"), "-f", "framehash", "-hash", "sha256", "-"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(CLIP), "-f", "framehash", "-hash", "sha256", "-"], check=True, stdout=subprocess.DEVNULL
        )
        results["ffmpeg_same_work_s"] = round(min(runs_x) + time.perf_counter() - t0, 3)
        results["ratio_same_work"] = round(min(runs_f) / results["ffmpeg_same_work_s"], 2)  # type: ignore[operator]
        # verify time for a 1,000-frame bundle
        long_clip = t / "long.mp4"
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
                "-frames:v",
                "1000",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                str(long_clip),
            ],
            check=True,
        )
        subprocess.run(
            [*fvsr, "enhance", str(long_clip), "-o", str(t / "long"), "--key", str(t / "k"), "-q"],
            check=True,
            env=ENV,
            stdout=subprocess.DEVNULL,
        )
        results["verify_1000_frames_s"] = round(timed([*fvsr, "verify", str(t / "long"), "--pubkey", str(t / "k.pub")])[0], 2)
        results["verify_1000_frames_with_evidence_s"] = round(
            timed([*fvsr, "verify", str(t / "long"), "--pubkey", str(t / "k.pub"), "--evidence", str(long_clip)])[0], 2
        )
        results["rss_ratio_300_30"] = round(results["peak_rss_kib_300"] / results["peak_rss_kib_30"], 3)  # type: ignore[operator]
        shutil.rmtree(t, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "enhance.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
