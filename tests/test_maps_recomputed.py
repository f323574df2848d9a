"""Format 3 (issue 17 item 1): S, R and the fixed-formula interval are not stored; `fvsr verify`
recomputes them from the master (and the evidence, for R) and checks the signed per-frame
figures; tampering fails a named check; the verifier's numpy arithmetic agrees with the writer's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from forensic_vsr.audit.exact_maps import MapFilters, exact_maps
from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.uncertainty.exact import ExactMaps
from tests.helpers import run_fvsr, step


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path], carphone_distorted: Path) -> Path:
    out = tmp_path_factory.mktemp("fmt3") / "b"
    run_fvsr(
        "enhance", carphone_distorted, "-o", out, "--key", keypair[0], "--model", "lanczos", "--scale", "2",
        "--frames", "0:3", "--mode", "investigative", "--no-report", "-q", check=True,
    )  # fmt: skip
    return out


def _verify(bundle: Path, pub: Path, evidence: Path | None = None) -> tuple[int, dict[str, str]]:
    proc = run_fvsr("verify", bundle, "--pubkey", pub, *(["--evidence", evidence] if evidence else []))
    lines = {}
    for line in proc.stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status == "NOT":
            status, rest = "NOT VERIFIED", rest.removeprefix("VERIFIED")
        lines[rest.strip().split(":", 1)[0]] = status
    return proc.returncode, lines


def test_maps_are_recomputed_not_stored(bundle: Path, keypair: tuple[Path, Path], carphone_distorted: Path) -> None:
    maps = step(bundle)["maps"]
    assert sorted(maps["recomputed"]) == ["contradiction", "interval", "synthesized"]
    assert maps["files"] == {}
    assert sorted(p.name for p in (bundle / "maps").iterdir()) == ["flagged.json"]
    rc, lines = _verify(bundle, keypair[1], carphone_distorted)
    assert rc == 0
    assert lines["maps.synthesized"] == lines["maps.contradiction"] == lines["maps.interval"] == "PASS"
    rc, lines = _verify(bundle, keypair[1])
    assert rc == 0
    assert lines["maps.synthesized"] == "PASS" and lines["maps.contradiction"] == "NOT VERIFIED"


@pytest.mark.parametrize("target", ["output/master.mkv", "maps/flagged.json"])
def test_tampering_fails_a_named_check(
    bundle: Path, keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path, target: str
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    data = bytearray((copy / target).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / target).write_bytes(bytes(data))
    rc, lines = _verify(copy, keypair[1], carphone_distorted)
    assert rc == 1
    assert lines["files.digests"] == "FAIL" and lines["maps.recomputed"] == "FAIL"


def test_verifier_arithmetic_agrees_with_the_writer(bundle: Path, carphone_distorted: Path) -> None:
    filters = MapFilters.from_json(step(bundle)["maps"]["filters"])
    with VideoReader(bundle / "output/master.mkv") as master, VideoReader(carphone_distorted) as evidence:
        x = frame_planes(next(iter(master.frames())).frame)[0]
        y = frame_planes(next(iter(evidence.frames())).frame)[0]
    s0, r0 = ExactMaps(*x.shape, 2).compute(y, x)
    s1, r1 = exact_maps(y, x, filters)
    assert float(np.abs(s0 - s1).max()) < 1e-3 and float(np.abs(r0 - r1).max()) < 1e-3
    assert float(s0.max()) > 1.0  # lanczos puts content in the null space: the comparison is not of zeros


def test_signed_filters_are_checked(bundle: Path) -> None:
    good = step(bundle)["maps"]["filters"]
    for bad in ({**good, "inverse": good["inverse"][:-1]}, {**good, "down": [0.1000000001]}, {**good, "scale": True}, {**good, "up": []}):
        with pytest.raises(ValueError):
            MapFilters.from_json(bad)


def test_examiner_signed_false_figures_fail_the_recomputation(
    bundle: Path, keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path
) -> None:
    """A flagged.json whose S max and R max were lowered, with every digest and signature made
    again with the examiner's own key: only recomputing the maps can tell."""
    import hashlib
    import json

    from tests.test_judgement import resign

    src = tmp_path / "src"
    shutil.copytree(bundle, src)
    flagged = json.loads((src / "maps/flagged.json").read_text())
    flagged["frames"][1]["s_max"] = round(flagged["frames"][1]["s_max"] / 2, 3)
    flagged["frames"][2]["r_max"] = round(flagged["frames"][2]["r_max"] / 2, 4)
    data = json.dumps(flagged).encode()
    (src / "maps/flagged.json").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    def edit(bodies: dict) -> None:  # type: ignore[type-arg]
        entry = next(f for f in bodies["output.write"]["files"] if f["name"] == "maps/flagged.json")
        entry["sha256"], entry["size"] = digest, len(data)
        step_run = bodies["step.run"]
        step_run["predicate"]["runDetails"]["byproducts"][0]["annotations"]["maps"]["flagged"]["sha256"] = digest
        for subject in step_run["subject"]:
            if subject["name"] == "maps/flagged.json":
                subject["digest"]["sha256"] = digest

    forged = resign(src, tmp_path / "forged", keypair, edit)
    rc, lines = _verify(forged, keypair[1], carphone_distorted)
    assert rc == 1
    assert lines["maps.flagged"] == lines["files.digests"] == lines["chain.signatures"] == "PASS"
    assert lines["maps.synthesized"] == "FAIL" and lines["maps.contradiction"] == "FAIL"


def test_what_the_step_record_claims_is_checked(bundle: Path) -> None:
    """Only format 3 may leave maps unstored; signed filters that are not taps, or a flagged.json
    that lists other frames than the step, fail maps.recomputed (the records as signed, edited in memory)."""
    import copy

    from forensic_vsr.audit.maps_check import recomputed_checks
    from forensic_vsr.audit.records import step_annotations
    from tests.helpers import record

    step_run = record(bundle, "step.run")
    recorded = {f["name"]: f for f in record(bundle, "output.write")["files"]}

    def checks(statement: dict, allowed: bool = True) -> list[tuple[str, str]]:  # type: ignore[type-arg]
        return [(c.name, c.status) for c in recomputed_checks(bundle, statement, None, recorded, set(recorded), allowed, None)]

    assert checks(step_run, allowed=False) == [("maps.recomputed", "FAIL")]
    bad_taps = copy.deepcopy(step_run)
    step_annotations(bad_taps)["maps"]["filters"]["inverse"] = [1.5, float("nan"), 1.5]
    assert checks(bad_taps) == [("maps.recomputed", "FAIL")]
    more_frames = copy.deepcopy(step_run)
    step_annotations(more_frames)["frames"]["count"] += 1
    assert checks(more_frames) == [("maps.recomputed", "FAIL")]
    assert checks(step_run) == [("maps.synthesized", "PASS"), ("maps.contradiction", "NOT VERIFIED"), ("maps.interval", "PASS")]
