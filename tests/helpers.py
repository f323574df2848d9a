"""Helpers the tests share (plain functions and constants; the fixtures are in conftest.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from forensic_vsr.audit.records import step_annotations

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "data" / "clips"
SHARED = ROOT.parent / "shared"
PASSPHRASE = "test-passphrase-123"


def make_testsrc(ffmpeg: str, out: Path, frames: int, size: str = "160x120") -> Path:
    """An H.264 clip of ffmpeg's testsrc2 pattern with `frames` frames."""
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=25",
            "-frames:v",
            str(frames),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(out),
        ],
        check=True,
    )
    return out


SYNTH = {
    # name: (ffmpeg output args after the lavfi input, file name)
    "odd_yuv420p": (["-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast"], "odd420.mp4", "177x99"),
    "yuv444p": (["-pix_fmt", "yuv444p", "-c:v", "ffv1"], "y444.mkv", "96x64"),
    "yuv420p10le": (["-pix_fmt", "yuv420p10le", "-c:v", "libx264", "-preset", "ultrafast"], "y10.mp4", "96x64"),
    "gray": (["-pix_fmt", "gray", "-c:v", "ffv1"], "gray.mkv", "97x63"),
    "cinepak_rgb24": (["-c:v", "cinepak"], "cinepak.avi", "96x64"),
    "vfr": (
        [
            "-vf",
            "settb=1/1000,setpts='(N*N*7+N*33)/1000/TB'",
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "1:1000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
        ],
        "vfr.mkv",
        "96x64",
    ),
    "mjpeg": (["-c:v", "mjpeg", "-q:v", "3"], "mjpeg.avi", "96x64"),
}


def make_clip(ffmpeg: str, directory: Path, name: str, frames: int = 12) -> Path:
    args, filename, size = SYNTH[name]
    out = directory / filename
    if not out.exists():
        subprocess.run(
            [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-frames:v", str(frames), *args, str(out)],
            check=True,
        )
    return out


def run_fvsr(
    *args: str | os.PathLike[str], check: bool = False, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, "FVSR_KEY_PASSPHRASE": PASSPHRASE, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "forensic_vsr", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fvsr {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def ffmpeg_framehash(ffmpeg: str, path: Path, bitexact: bool = True) -> list[str]:
    """ffmpeg's own framehash lines (no `#` lines), decoded bit-exact as the contract says
    (`bitexact=False`: ffmpeg's plain decode, to show where the flag matters)."""
    out = subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            *(["-flags", "+bitexact"] if bitexact else []),
            "-noautorotate",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "framehash",
            "-hash",
            "sha256",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [ln for ln in out.splitlines() if not ln.startswith("#")]


def chain_payloads(bundle: Path) -> list[dict[str, Any]]:
    """Every record of a bundle's chain, decoded (no verification: use `fvsr verify` for that)."""
    return [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in (bundle / "chain.jsonl").read_text().splitlines()]


def record(bundle: Path, record_type: str) -> dict[str, Any]:
    """The body of the first record of `record_type`."""
    return next(p["body"] for p in chain_payloads(bundle) if p["type"] == record_type)


def step(bundle: Path) -> dict[str, Any]:
    """The run summary of the bundle's step.run record."""
    return step_annotations(record(bundle, "step.run"))
