"""The golden-hash cases: one short run of every shipped operation on the fixture clips. Shared by
tests/golden/make_golden.py (which records the hashes) and tests/test_golden_hashes.py (which
requires them unchanged)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from forensic_vsr.audit.records import step_annotations
from forensic_vsr.media import planes_sha256
from forensic_vsr.uncertainty.recompute import recomputed_maps

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "data" / "clips" / "carphone_distorted.mp4"

# name: (fvsr enhance arguments, maps kept). Investigative mode, so that maps and the report may be
# left out; the master's samples do not depend on the mode (its label goes on the preview only).
CASES: dict[str, tuple[list[str], bool]] = {
    "lanczos-x2": (["--model", "lanczos", "--scale", "2", "--frames", "0:3"], True),
    "bicubic-x3": (["--model", "bicubic", "--scale", "3", "--frames", "0:2"], False),
    "fidelity-sr-x2": (["--model", "fidelity-sr-x2", "--scale", "2", "--frames", "0:2"], True),
    "fidelity-sr-x4": (["--model", "fidelity-sr-x4", "--scale", "4", "--frames", "0:1"], False),
    "mfsr-x2": (["--model", "mfsr-x2", "--scale", "2", "--frames", "0:3"], False),
    "fidelity-restore": (["--model", "fidelity-restore", "--scale", "1", "--frames", "0:2"], False),
    "deblur": (["--model", "deblur", "--scale", "1", "--psf", "motion:7,30", "--frames", "0:2"], False),
    "deinterlace": (["--model", "deinterlace", "--scale", "1", "--frames", "0:2"], False),
    "stabilise": (["--model", "stabilise", "--scale", "1", "--frames", "0:3"], False),
    "integrate": (["--model", "integrate", "--scale", "1", "--frames", "0:4"], True),
    # the registration of releases before moving-content masking: old runs reproduce exactly
    "mfsr-x2-whole": (["--model", "mfsr-x2", "--scale", "2", "--frames", "0:3", "--registration", "whole"], False),
    "stabilise-whole": (["--model", "stabilise", "--scale", "1", "--frames", "0:3", "--registration", "whole"], False),
    "integrate-whole": (["--model", "integrate", "--scale", "1", "--frames", "0:4", "--registration", "whole"], True),
    "chain": (["--ops", "deinterlace,deblur,sr", "--model", "lanczos", "--scale", "2", "--frames", "0:2"], False),
}


def _hashes(path: Path) -> list[str]:
    return [line.rsplit(",", 1)[-1].strip() for line in path.read_text().splitlines() if line and not line.startswith("#")]


def run_case(name: str, tmp: Path, key: Path, env: dict[str, str]) -> dict[str, list[str]]:
    """Runs one case with the real CLI; returns the output frame hashes (and every map's)."""
    args, maps = CASES[name]
    bundle = tmp / name
    cmd = [
        sys.executable,
        "-m",
        "forensic_vsr",
        "enhance",
        str(CLIP),
        "-o",
        str(bundle),
        "--key",
        str(key),
        "-q",
        "--no-report",
        "--mode",
        "investigative",
        *args,
    ]
    if not maps:
        cmd.append("--no-maps")
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise AssertionError(f"{name}: fvsr enhance failed ({proc.returncode}): {proc.stderr.strip()}")
    out = {"output": _hashes(bundle / "output.framehash")}
    for sidecar in sorted((bundle / "maps").glob("*.framehash")) if maps else []:
        out[f"maps/{sidecar.stem}"] = _hashes(sidecar)
    step = next(p["body"] for p in _payloads(bundle) if p["type"] == "step.run")
    summary = step_annotations(step)
    entry = summary.get("maps") or {}
    if entry.get("recomputed"):  # format 3: not stored; recomputed, they hash as the stored planes did
        frames = list(recomputed_maps(bundle, CLIP, entry, summary["frames"]["start"]))
        for name in entry["recomputed"]:
            out[f"maps/{name}"] = [planes_sha256([f[name]]) for f in frames]
    return out


def _payloads(bundle: Path) -> list[dict]:
    return [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in (bundle / "chain.jsonl").read_text().splitlines()]
