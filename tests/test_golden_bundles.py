"""Bundles written by earlier releases verify with the current code, forever.

tests/golden/formatN.tar.gz holds bundles written by the release that introduced bundle format N
(format 1: main before round 2, 2026-12-01), with the evidence they were made from and the
examiner's public key. Add an archive at every format change; never regenerate an old one."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.helpers import run_fvsr

GOLDEN = Path(__file__).parent / "golden"
ARCHIVES = sorted(GOLDEN.glob("format*.tar.gz"))


def _unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def _bundles(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return sorted({m.name.split("/")[0] for m in tar.getmembers() if "/" in m.name})


CASES = [(a, b) for a in ARCHIVES for b in _bundles(a)]


def test_golden_archives_exist() -> None:
    assert [a.name for a in ARCHIVES][:1] == ["format1.tar.gz"]
    assert CASES


@pytest.mark.parametrize(("archive", "bundle"), CASES, ids=[f"{a.name}:{b}" for a, b in CASES])
def test_golden_bundle_verifies(archive: Path, bundle: str, tmp_path: Path) -> None:
    d = _unpack(archive, tmp_path)
    proc = run_fvsr("verify", d / bundle, "--pubkey", d / "examiner.key.pub", "--evidence", d / "evidence.mp4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("PASS:")
    for record in sorted((d / bundle / "review").glob("*.json")):  # review records made by that release are checked
        assert f"PASS       review.{record.stem}:" in proc.stdout


def test_golden_bundle_tampered_fails(tmp_path: Path) -> None:
    """The archive is not trusted blindly: one flipped byte in a golden master fails."""
    d = _unpack(ARCHIVES[0], tmp_path)
    master = d / "format1-lanczos-x2" / "output" / "master.mkv"
    data = bytearray(master.read_bytes())
    data[len(data) // 2] ^= 0x01
    master.write_bytes(bytes(data))
    proc = run_fvsr("verify", d / "format1-lanczos-x2", "--pubkey", d / "examiner.key.pub")
    assert proc.returncode != 0
    assert "FAIL" in proc.stdout
