"""Issue 17 item 4: `fvsr enhance --ray local` against one process, for 1 and 2 Ray workers,
interleaved side by side (one process, 1 worker, 2 workers, then again for each of --runs);
every bundle's output.framehash must be the one-process bundle's.

Run by hand: `python bench/bench_ray.py [--clip data/clips/bikes.mp4] [--frames 24]
[--model fidelity-sr-x2] [--segment 4] [--runs 1]`. Wall time is the whole `fvsr enhance`
(ingest, the frame pass, maps, report; with --ray also starting the local Ray runtime); the
step record's per-segment seconds show the work in the tasks. Results go to
bench/results/ray.json; the table is printed for docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from forensic_vsr.audit.keys import generate  # noqa: E402
from tests.helpers import chain_payloads, step  # noqa: E402

PASSPHRASE = "bench-passphrase"
ENV = {**os.environ, "FVSR_KEY_PASSPHRASE": PASSPHRASE}
FVSR = str(Path(sys.executable).parent / "fvsr")


def run(args: argparse.Namespace, key: Path, out: Path, ray: list[str]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of the fvsr process and the processes it waited for: with
    --ray local not Ray's worker processes (measured: their CPU seconds, which the step record's
    segments carry, are not in it), so this is the head's share."""
    cmd = [FVSR, "enhance", str(args.clip), "-o", str(out), "--key", str(key), "--model", args.model]
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "--frames", f"0:{args.frames}", "-q", *ray], env=ENV, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"fvsr enhance exited {proc.returncode}")
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def frame_pass_seconds(bundle: Path) -> float:
    """evidence.ingest to step.run in the chain: the frame pass (with --ray: starting Ray, the
    tasks, and writing master, preview and maps here)."""
    times = {p["type"]: datetime.fromisoformat(p["time"].replace("Z", "+00:00")) for p in chain_payloads(bundle)}
    return (times["step.run"] - times["evidence.ingest"]).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=ROOT / "data" / "clips" / "bikes.mp4")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--model", default="fidelity-sr-x2")
    ap.add_argument("--segment", type=int, default=4)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    variants = {
        "one process": [],
        "--ray local, 1 worker": ["--ray", "local", "--ray-workers", "1", "--ray-segment-frames", str(args.segment)],
        "--ray local, 2 workers": ["--ray", "local", "--ray-workers", "2", "--ray-segment-frames", str(args.segment)],
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    task_seconds: dict[str, list[float]] = {name: [] for name in variants}
    pass_seconds: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    worker_cpu: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "bench.key"
        generate(key, "Bench", PASSPHRASE.encode())
        reference = None
        for r in range(args.runs):
            for i, (name, ray) in enumerate(variants.items()):
                out = Path(tmp) / f"b{r}-{i}"
                wall, cpu_s = run(args, key, out, ray)
                times[name].append(wall)
                cpu[name].append(cpu_s)
                hashes = (out / "output.framehash").read_bytes()
                reference = reference or hashes
                if hashes != reference:
                    raise SystemExit(f"{name}: output.framehash differs from the one-process bundle's")
                pass_seconds[name].append(frame_pass_seconds(out))
                plan = step(out).get("distributed")
                if plan:
                    task_seconds[name].append(sum(s["seconds"] for s in plan["plan"]["segments"]))
                    parts = [s.get("cpu_seconds", {}) for s in plan["plan"]["segments"]]
                    worker_cpu[name].append({k: sum(p.get(k, 0.0) for p in parts) for k in ("chain", "maps")})
                print(f"run {r + 1} {name}: {times[name][-1]:.1f} s", flush=True)
                load.append(os.getloadavg()[0])
    base = statistics.median(times["one process"])
    rows = []
    for name in variants:
        t = statistics.median(times[name])
        tasks = f"{statistics.median(task_seconds[name]):.1f}" if task_seconds[name] else "-"
        frame_pass = round(statistics.median(pass_seconds[name]), 2)
        total = statistics.median(cpu[name])
        workers = {k: round(statistics.median(w[k] for w in worker_cpu[name]), 2) for k in ("chain", "maps")} if worker_cpu[name] else None
        rows.append(
            {"variant": name, "wall_s": round(t, 2), "frame_pass_s": frame_pass, "task_s": tasks, "speedup": round(base / t, 2)}
            | {"cpu_s": round(total, 2), "worker_cpu_s": workers}
        )
    result = {
        "clip": str(args.clip.relative_to(ROOT)) if args.clip.is_relative_to(ROOT) else str(args.clip),
        "frames": args.frames,
        "model": args.model,
        "segment_frames": args.segment,
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "load_1min": [round(v, 2) for v in load],
        "rows": rows,
        "output_framehash_identical": True,
    }
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "ray.json").write_text(json.dumps(result, indent=1) + "\n")
    print(
        "| variant | wall (s) | frame pass (s) | time in tasks, summed (s) | speed-up (wall) vs one process "
        "| CPU s, fvsr process (head) | CPU s in workers: stages + maps |\n|---|---|---|---|---|---|---|"
    )
    for row in rows:
        w = row["worker_cpu_s"]
        split = f"{w['chain']} + {w['maps']}" if w else "-"
        print(
            f"| {row['variant']} | {row['wall_s']} | {row['frame_pass_s']} | {row['task_s']} | {row['speedup']} "
            f"| {row['cpu_s']} | {split} |"
        )
    print(f"load (1 min) during the runs: {result['load_1min']}")


if __name__ == "__main__":
    main()
