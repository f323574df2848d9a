"""--roi (issue 16 item 1): time per frame of fidelity-sr-x2 and fidelity-sr-x4 on a 768x576 clip
(bikes.mp4 scaled by ffmpeg, bench_cpu.make_clip), the whole frame against a 256x256 region at
its centre, with `fvsr enhance` end to end (investigative, maps on, no report).

The time of the enhancement pass is read from the run's own signed chain: from evidence.ingest to
step.run (decode, the operations, hashing, master, round trip, preview, maps). Each configuration
runs at 1 frame and at N frames; the time per frame is the difference divided by N - 1 (the model's
load and the first frame's one-time work cancel); likewise the process's CPU seconds (user + system,
all threads), which a busy shared machine disturbs far less. Whole and region runs alternate (ABAB), so a
drift of the shared machine's load hits both alike; the load average is printed with every run.

    .venv/bin/python bench/bench_roi.py [--frames 4] [--repeat 2]     # bench/results/roi.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu import CLIP_SIZE, MODELS, ROOT, load, make_clip

REGION = (256, 160, 256, 256)  # the centre of the 768x576 frame, on the 4:2:0 grid


def pass_seconds(bundle: Path) -> float:
    """Seconds from evidence.ingest to step.run, by the chain's signed UTC times."""
    times = {}
    for line in (bundle / "chain.jsonl").read_text().splitlines():
        payload = json.loads(base64.b64decode(json.loads(line)["payload"]))
        times.setdefault(payload["type"], datetime.fromisoformat(payload["time"].replace("Z", "+00:00")))
    return (times["step.run"] - times["evidence.ingest"]).total_seconds()


def run(clip: Path, key: Path, model: str, frames: int, region: bool, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "forensic_vsr", "enhance", str(clip), "-o", str(out), "--key", str(key), "--model", model]
    cmd += ["--frames", f"0:{frames}", "--mode", "investigative", "--no-report", "-q"]
    if region:
        cmd += ["--roi", ",".join(map(str, REGION))]
    before, cpu = load(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "FVSR_KEY_PASSPHRASE": "bench-passphrase"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    return {"pass_s": round(pass_seconds(out), 3), "cpu_s": round(cpu_s, 3), "load_before": before, "load_after": load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from forensic_vsr.audit.keys import generate

    results: dict[str, Any] = {"clip": f"bikes.mp4 scaled to {CLIP_SIZE[0]}x{CLIP_SIZE[1]}", "region": list(REGION), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work / "clip.mp4", args.frames)
        key = work / "bench.key"
        generate(key, "bench", b"bench-passphrase")
        n = 0
        for model, _scale in MODELS:
            per: dict[str, dict[bool, list[float]]] = {"pass_s": {False: [], True: []}, "cpu_s": {False: [], True: []}}
            for _ in range(args.repeat):
                for region in (False, True):  # alternating
                    one = run(clip, key, model, 1, region, work / f"b{(n := n + 1)}")
                    many = run(clip, key, model, args.frames, region, work / f"b{(n := n + 1)}")
                    entry: dict[str, Any] = {"model": model, "region": region, "frames": args.frames, "one": one, "many": many}
                    for what, values in per.items():
                        values[region].append((many[what] - one[what]) / (args.frames - 1))
                        entry[f"{what}_per_frame"] = round(values[region][-1], 3)
                    results["runs"].append(entry)
                    print(json.dumps(entry), flush=True)
            summary: dict[str, Any] = {"model": model}
            for what, values in per.items():
                whole, part = statistics.median(values[False]), statistics.median(values[True])
                summary[what] = {"whole_per_frame": round(whole, 3), "region_per_frame": round(part, 3), "ratio": round(whole / part, 2)}
            results.setdefault("summary", []).append(summary)
            print(json.dumps(summary), flush=True)
    out = ROOT / "bench" / "results" / "roi.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
