"""Output frame hashes of every shipped operation are bit-identical to the recorded ones
(tests/golden/frame_hashes.json, made by tests/golden/make_golden.py before the round-2
refactor): a restructuring of the code must not change one output sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from golden_cases import CASES, run_case

from tests.helpers import PASSPHRASE

GOLDEN = json.loads((Path(__file__).parent / "golden" / "frame_hashes.json").read_text())


def test_every_case_has_a_golden_record() -> None:
    assert sorted(GOLDEN) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_frame_hashes_unchanged(name: str, tmp_path: Path, keypair: tuple[Path, Path], carphone_distorted: Path) -> None:
    got = run_case(name, tmp_path, keypair[0], {"FVSR_KEY_PASSPHRASE": PASSPHRASE})
    want = GOLDEN[name]
    assert sorted(got) == sorted(want), f"{name}: different set of hashed streams"
    for stream, hashes in want.items():
        assert got[stream] == hashes, f"{name}: {stream} frame hashes changed"
