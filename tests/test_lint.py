"""`make lint` holds in CI too: ruff finds nothing in the package and the tests, and mypy is clean
on the core (the files [tool.mypy] lists in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    proc = _run("ruff", "check", "forensic_vsr", "tests", "bench", "scripts")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean_on_the_core() -> None:
    proc = _run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout
