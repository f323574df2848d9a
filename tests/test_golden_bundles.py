"""Bundles written by earlier releases verify with the current code, forever.

tests/golden/formatN.tar.gz holds bundles written by the release that introduced bundle format N
(format 1: main before round 2, 2026-12-01), with the evidence they were made from and the
examiner's public key. Add an archive at every format change, and at every report template
change (format3-report9: template 9, streams Flate only); never regenerate an old one."""

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


def test_golden_template9_report_passes_by_its_facts_in_a_later_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A release with another report template cannot render format3-report9's report.pdf again;
    it reads the facts from the Flate-only page streams instead, and they hold."""
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.verify import verify_bundle
    from forensic_vsr.report import render
    from forensic_vsr.report.checks import report_checks

    d = _unpack(GOLDEN / "format3-report9.tar.gz", tmp_path)
    monkeypatch.setattr(render, "TEMPLATE_VERSION", render.TEMPLATE_VERSION + 1)  # a later release: another template,
    monkeypatch.setattr(render, "LIMITATIONS", [*render.LIMITATIONS, "A limitation a later release adds."])  # other bytes
    checks = {
        c.name: c
        for c in verify_bundle(d / "format3-report9-lanczos-x2", load_public_key(d / "examiner.key.pub"), extra_checks=[report_checks])
    }
    assert all(c.ok for c in checks.values()), [c.line() for c in checks.values() if not c.ok]
    assert "/ template 9 /" in checks["report.content"].reason and "facts checked in its text" in checks["report.content"].reason
