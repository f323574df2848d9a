"""Shared fixtures: real clips (fetched by scripts/fetch_data.py), clips synthesized with the
real ffmpeg binary, and a real encrypted examiner key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "data" / "clips"
SHARED = ROOT.parent / "shared"
PASSPHRASE = "test-passphrase-123"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} not found: run `make test` (scripts/setup.sh installs it)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return _require("ffmpeg")


def _clip(name: str) -> Path:
    path = CLIPS / name
    if not path.exists():
        pytest.fail("data/clips missing: run `make test` (scripts/fetch_data.py fetches the clips)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def carphone() -> Path:
    return _clip("carphone_pristine.mp4")


@pytest.fixture(scope="session")
def carphone_distorted() -> Path:
    return _clip("carphone_distorted.mp4")


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


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    return tmp_path_factory.mktemp("synth")


def make_clip(ffmpeg: str, directory: Path, name: str, frames: int = 12) -> Path:
    args, filename, size = SYNTH[name]
    out = directory / filename
    if not out.exists():
        subprocess.run(
            [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-frames:v", str(frames), *args, str(out)],
            check=True,
        )
    return out


@pytest.fixture(scope="session")
def synth(ffmpeg: str, synth_dir: Path):  # type: ignore[no-untyped-def]
    return lambda name: make_clip(ffmpeg, synth_dir, name)


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FVSR_KEY_PASSPHRASE", PASSPHRASE)


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from forensic_vsr.audit.keys import generate

    d = tmp_path_factory.mktemp("keys")
    generate(d / "examiner.key", "Test Examiner", PASSPHRASE.encode())
    return d / "examiner.key", d / "examiner.key.pub"


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


def ffmpeg_framehash(ffmpeg: str, path: Path) -> list[str]:
    """ffmpeg's own framehash lines (no `#` lines), decoded bit-exact as the contract says."""
    out = subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-flags",
            "+bitexact",
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


@pytest.fixture(scope="session")
def carphone_bundle(tmp_path_factory: pytest.TempPathFactory, carphone: Path, keypair: tuple[Path, Path]) -> Path:
    """One complete bundle of the real clip (first 40 frames, lanczos x2), shared read-only."""
    out = tmp_path_factory.mktemp("bundle") / "case"
    run_fvsr(
        "enhance",
        carphone,
        "-o",
        out,
        "--key",
        keypair[0],
        "--frames",
        "0:40",
        "--case",
        "T-1",
        "--examiner",
        "Test Examiner",
        "-q",
        check=True,
    )
    return out
