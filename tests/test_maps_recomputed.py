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


def _forge(bundle: Path, tmp_path: Path, keypair: tuple[Path, Path], halve: bool = True, region_x: int = 0) -> Path:
    """`bundle` with flagged.json's S max (frame 1) and R max (frame 2) halved, or with the
    signed --roi box moved `region_x` pixels, every digest and signature made again with the
    examiner's own key."""
    import hashlib
    import json

    from tests.test_judgement import resign

    src = tmp_path / "src"
    shutil.copytree(bundle, src)
    flagged = json.loads((src / "maps/flagged.json").read_text())
    if halve:
        flagged["frames"][1]["s_max"] = round(flagged["frames"][1]["s_max"] / 2, 3)
        flagged["frames"][2]["r_max"] = round(flagged["frames"][2]["r_max"] / 2, 4)
    data = json.dumps(flagged).encode()
    (src / "maps/flagged.json").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    def edit(bodies: dict) -> None:  # type: ignore[type-arg]
        entry = next(f for f in bodies["output.write"]["files"] if f["name"] == "maps/flagged.json")
        entry["sha256"], entry["size"] = digest, len(data)
        step_run = bodies["step.run"]
        annotations = step_run["predicate"]["runDetails"]["byproducts"][0]["annotations"]
        annotations["maps"]["flagged"]["sha256"] = digest
        if region_x:
            annotations["region"]["x"] += region_x
        for subject in step_run["subject"]:
            if subject["name"] == "maps/flagged.json":
                subject["digest"]["sha256"] = digest

    return resign(src, tmp_path / "forged", keypair, edit)


def test_examiner_signed_false_figures_fail_the_recomputation(
    bundle: Path, keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path
) -> None:
    """A flagged.json whose S max and R max were lowered, with every digest and signature made
    again with the examiner's own key: only recomputing the maps can tell."""
    rc, lines = _verify(_forge(bundle, tmp_path, keypair), keypair[1], carphone_distorted)
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


@pytest.fixture(scope="module")
def region_bundle(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path], carphone_distorted: Path) -> Path:
    out = tmp_path_factory.mktemp("fmt3roi") / "b"
    run_fvsr(
        "enhance", carphone_distorted, "-o", out, "--key", keypair[0], "--model", "lanczos", "--scale", "2",
        "--frames", "0:3", "--mode", "investigative", "--no-report", "-q", "--roi", "40,32,64,48", check=True,
    )  # fmt: skip
    return out


def test_region_maps_are_recomputed_from_the_evidence_region(
    region_bundle: Path, keypair: tuple[Path, Path], carphone_distorted: Path
) -> None:
    """--roi: S and R are recomputed (not stored) from the 128x96 master and the signed region
    of the evidence; the summary line counts the NOT VERIFIED R apart from the passed checks."""
    maps = step(region_bundle)["maps"]
    assert sorted(maps["recomputed"]) == ["contradiction", "interval", "synthesized"] and maps["files"] == {}
    assert sorted(p.name for p in (region_bundle / "maps").iterdir()) == ["flagged.json"]
    proc = run_fvsr("verify", region_bundle, "--pubkey", keypair[1], "--evidence", carphone_distorted)
    assert proc.returncode == 0, proc.stdout
    assert "(its region 40,32 64x48): R max of every frame" in proc.stdout
    total = len(proc.stdout.splitlines()) - 1
    assert proc.stdout.splitlines()[-1] == f"PASS: {total} checks: {total} passed, 0 not verified, 0 failed"
    proc = run_fvsr("verify", region_bundle, "--pubkey", keypair[1])
    assert proc.returncode == 0
    assert "NOT VERIFIED maps.contradiction" in proc.stdout and "PASS       maps.synthesized" in proc.stdout
    total = len(proc.stdout.splitlines()) - 1
    assert proc.stdout.splitlines()[-1] == f"PASS: {total} checks: {total - 1} passed, 1 not verified (supply --evidence), 0 failed"
    # the recomputed planes (review, golden tests) cut the evidence to the same region
    from forensic_vsr.uncertainty.recompute import recomputed_maps

    box = (40, 32, 64, 48)
    r = [f["contradiction"] for f in recomputed_maps(region_bundle, carphone_distorted, maps, 0, box)]
    assert [p.shape for p in r] == [(96, 128)] * 3 and max(int(p.max()) for p in r) > 0
    from forensic_vsr.review.session import ReviewSession

    session = ReviewSession(region_bundle, None, None, carphone_distorted, False)
    try:  # the review page's R of frame 2 is that plane
        assert np.array_equal(session.sources["contradiction"].frame(2), r[2])
    finally:
        session.close()


@pytest.mark.parametrize("forgery", ["figures", "region"])
def test_region_bundle_forgeries_fail(
    region_bundle: Path, keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path, forgery: str
) -> None:
    """Re-signed by the examiner: lowered figures in flagged.json, or the signed region moved 8
    pixels (R is then computed from other evidence pixels), fail the recomputation; the summary
    counts the failures."""
    forged = _forge(region_bundle, tmp_path, keypair, halve=forgery == "figures", region_x=8 if forgery == "region" else 0)
    proc = run_fvsr("verify", forged, "--pubkey", keypair[1], "--evidence", carphone_distorted)
    assert proc.returncode == 1
    assert "FAIL       maps.contradiction" in proc.stdout and "PASS       chain.signatures" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("FAIL: ") and " 0 failed" not in proc.stdout.splitlines()[-1]


def test_recomputation_in_threads_names_the_forged_frame(
    bundle: Path, keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path
) -> None:
    """verify recomputes frames two at a time on threads and compares them in order: the failure
    names the frame whose figure was forged (S max of frame 1, R max of frame 2)."""
    proc = run_fvsr("verify", _forge(bundle, tmp_path, keypair), "--pubkey", keypair[1], "--evidence", carphone_distorted)
    lines = {ln.split(":", 1)[0].split()[-1]: ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL ")}
    assert "frame 1: S max recomputed" in lines["maps.synthesized"]
    assert "frame 2: R max recomputed" in lines["maps.contradiction"]
