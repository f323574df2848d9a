"""`fvsr enhance --dry-run`'s expected time against the real run (issue 16 item 4), and the two
fixed parts it does not time itself (dry_run.START_S, dry_run.REPORT_S).

For each case: the dry run (its printed estimate), then the real run with the same options
(evidential, report on), timed from outside; from the real run's signed chain, the start-up (the
process start to policy.decision: imports, key unlock) and the report (output.write to
report.generate: stills, render, PAdES signature). The load average is printed with every run.

    .venv/bin/python bench/bench_dry_run.py [--repeat 2]      # bench/results/dry-run.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "data" / "clips"
CASES = {
    "carphone fidelity-sr-x2, 12 frames": ["carphone_distorted.mp4", "--model", "fidelity-sr-x2", "--frames", "0:12"],
    "carphone lanczos x2, 60 frames": ["carphone_distorted.mp4", "--model", "lanczos", "--frames", "0:60"],
    "bikes deblur (blind PSF), 50 frames": ["bikes.mp4", "--model", "deblur", "--frames", "0:50"],
    "bikes fidelity-sr-x2 --roi 192,64,256,144, 20 frames": [
        "bikes.mp4",
        "--model",
        "fidelity-sr-x2",
        "--frames",
        "0:20",
        "--roi",
        "192,64,256,144",
    ],
}
UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}
PASSPHRASE = "bench-passphrase"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def fvsr(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FVSR_KEY_PASSPHRASE": PASSPHRASE}
    return subprocess.run([sys.executable, "-m", "forensic_vsr", *args], check=True, capture_output=True, text=True, env=env)


def chain_times(bundle: Path) -> dict[str, datetime]:
    times = {}
    for line in (bundle / "chain.jsonl").read_text().splitlines():
        payload = json.loads(base64.b64decode(json.loads(line)["payload"]))
        times.setdefault(payload["type"], datetime.fromisoformat(payload["time"].replace("Z", "+00:00")))
    return times


def one(name: str, work: Path, key: Path, n: int) -> dict[str, Any]:
    clip, *options = CASES[name]
    evidence = str(CLIPS / clip)
    before = load()
    dry = fvsr("enhance", evidence, "-o", str(work / f"dry{n}"), "--dry-run", *options)
    found = re.search(r"expected time: ([\d.]+) (s|min|h)", dry.stdout)
    assert found, dry.stdout
    expected = float(found.group(1)) * UNITS[found.group(2)]
    bundle = work / f"run{n}"
    started = datetime.now().astimezone()
    t0 = time.perf_counter()
    fvsr("enhance", evidence, "-o", str(bundle), "--key", str(key), "-q", *options)
    real = time.perf_counter() - t0
    times = chain_times(bundle)
    return {
        "case": name,
        "expected_s": expected,
        "real_s": round(real, 2),
        "real_over_expected": round(real / expected, 2),
        "start_up_s": round((times["policy.decision"] - started).total_seconds(), 2),
        "report_s": round((times["report.generate"] - times["output.write"]).total_seconds(), 2),
        "estimate": next(ln for ln in dry.stdout.splitlines() if ln.startswith("expected time")),
        "load_before": before,
        "load_after": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from forensic_vsr.audit.keys import generate

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = work / "bench.key"
        generate(key, "bench", PASSPHRASE.encode())
        for r in range(args.repeat):
            for i, name in enumerate(CASES):
                runs.append(one(name, work, key, r * len(CASES) + i))
                print(json.dumps(runs[-1]), flush=True)
    out = ROOT / "bench" / "results" / "dry-run.json"
    out.write_text(json.dumps(runs, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
