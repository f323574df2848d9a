"""Shared fixtures: real clips (fetched by scripts/fetch_data.py), clips synthesized with the
real ffmpeg binary, and a real encrypted examiner key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import CLIPS, PASSPHRASE, ROOT, SHARED, SYNTH, ffmpeg_framehash, make_clip, make_testsrc, run_fvsr

__all__ = ["CLIPS", "PASSPHRASE", "ROOT", "SHARED", "SYNTH", "ffmpeg_framehash", "make_clip", "make_testsrc", "run_fvsr"]


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


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    return tmp_path_factory.mktemp("synth")


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
