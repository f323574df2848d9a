"""`fvsr enhance --dry-run`'s expected time is measured through the whole enhancement pass (and
ingest, report, signing), so a real run lands near it: checked on a small case within a factor
of two either way (the printed range is 0.7x to 1.5x; the wider bound leaves room for a loaded
machine, whose load can change between the dry run and the run)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.helpers import run_fvsr

UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def test_the_expected_time_is_within_a_factor_of_two_of_the_run(tmp_path: Path, carphone_distorted: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    args = ["--model", "fidelity-sr-x2", "--frames", "0:12", "--mode", "investigative"]
    dry = run_fvsr("enhance", carphone_distorted, "-o", tmp_path / "b", "--dry-run", *args, check=True)
    found = re.search(r"expected time: ([\d.]+) (s|min|h) \(likely ([\d.]+) (s|min|h) to ([\d.]+) (s|min|h)\)", dry.stdout)
    assert found, dry.stdout
    expected = float(found.group(1)) * UNITS[found.group(2)]
    assert "timed through the whole pass" in dry.stdout and not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == []
    t0 = time.perf_counter()
    run_fvsr("enhance", carphone_distorted, "-o", tmp_path / "b", "--key", keypair[0], "-q", *args, check=True)
    real = time.perf_counter() - t0
    assert 0.5 <= real / expected <= 2.0, f"the run took {real:.1f} s, the dry run expected {expected:.1f} s\n{dry.stdout}"
