"""Red team of what `fvsr verify` takes from a format-3 step record: the examiner signs the
bundle, but a signed field is only the examiner's claim. Each forgery below is re-signed with
the examiner's own key, with a maps/flagged.json made to match it (the figures recomputed with
the verifier's own arithmetic, so maps.synthesized and maps.contradiction cannot tell): only a
check against what the auditor derives or supplies can."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from forensic_vsr.audit.exact_maps import MapFilters, exact_maps
from forensic_vsr.media import VideoReader, frame_planes, plane_geometry
from tests.helpers import record, run_fvsr, step
from tests.test_judgement import failing, resign

Annotations = dict[str, Any]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path], carphone_distorted: Path) -> dict[str, Path]:
    """A whole-frame and a --roi format-3 bundle (lanczos x2, 3 frames, maps recomputed), and one without maps."""
    out = tmp_path_factory.mktemp("fmt3red")
    made = {}
    for name, roi in (("whole", ()), ("region", ("--roi", "40,32,64,48")), ("nomaps", ("--no-maps",))):
        made[name] = out / name
        run_fvsr(
            "enhance", carphone_distorted, "-o", made[name], "--key", keypair[0], "--model", "lanczos", "--scale", "2",
            "--frames", "0:3", "--mode", "investigative", "--no-report", "-q", *roi, check=True,
        )  # fmt: skip
    return made


def _planes(path: Path, count: int, start: int = 0) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return [frame_planes(f.frame)[0] for f in reader.frames() if start <= f.index < start + count]


def _flagged(bundle: Path, evidence: Path, annotations: Annotations) -> bytes:
    """flagged.json with every frame's S and R figures as the (forged) annotations make them."""
    filters = MapFilters.from_json(annotations["maps"]["filters"])
    flagged = json.loads((bundle / "maps/flagged.json").read_text())
    threshold = flagged["threshold_levels"]
    region = annotations.get("region")
    evidence_planes = _planes(evidence, 3, annotations["frames"]["start"])
    for fig, x_hat, y in zip(flagged["frames"], _planes(bundle / "output/master.mkv", 3), evidence_planes, strict=True):
        if region is not None:
            y = y[region["y"] : region["y"] + region["height"], region["x"] : region["x"] + region["width"]]
        s, r = exact_maps(y, x_hat, filters, plane_geometry(annotations["pix_fmt_in"])[0][2])
        fig |= {
            "s_max": round(float(s.max()), 3),
            "s_mean": round(float(s.mean(dtype=np.float64)), 4),
            "r_max": round(float(r.max()), 4),
            "fraction_flagged": round(float(np.count_nonzero(s > threshold)) / s.size, 6),
        }
    return json.dumps(flagged).encode()


def _forge(bundle: Path, tmp_path: Path, keypair: tuple[Path, Path], evidence: Path, edit: Callable[[Annotations], None]) -> Path:
    """`bundle` with its step record edited by `edit`, a flagged.json that matches the edit, every
    digest and signature made again with the examiner's key."""
    src = tmp_path / "src"
    shutil.copytree(bundle, src)
    annotations = copy.deepcopy(step(bundle))
    edit(annotations)
    data = _flagged(bundle, evidence, annotations)
    (src / "maps/flagged.json").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    annotations["maps"]["flagged"]["sha256"] = digest

    def records(bodies: dict[str, Any]) -> None:
        entry = next(f for f in bodies["output.write"]["files"] if f["name"] == "maps/flagged.json")
        entry["sha256"], entry["size"] = digest, len(data)
        step_run = bodies["step.run"]
        step_run["predicate"]["runDetails"]["byproducts"][0]["annotations"] = annotations
        for subject in step_run["subject"]:
            if subject["name"] == "maps/flagged.json":
                subject["digest"]["sha256"] = digest

    return resign(src, tmp_path / "forged", keypair, records)


def _verify(bundle: Path, pub: Path, evidence: Path) -> tuple[int, dict[str, list[str]], str]:
    proc = run_fvsr("verify", bundle, "--pubkey", pub, "--evidence", evidence)
    return proc.returncode, failing(proc), proc.stdout


def _lower_inverse(a: Annotations) -> None:
    """(AAᵀ)⁻¹'s taps scaled by 0.8: A†A is no longer a projection, S and R come out otherwise."""
    f = a["maps"]["filters"]
    f["inverse"] = [float(np.float32(v * 0.8)) for v in f["inverse"]]


def test_doctored_filter_taps_fail(bundles: dict[str, Path], keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path) -> None:
    """Finding 1: S and R were recomputed with the taps the examiner signs. Other taps, with a
    flagged.json that matches them, recompute alike: maps.filters derives the operator's own."""
    forged = _forge(bundles["whole"], tmp_path, keypair, carphone_distorted, _lower_inverse)
    rc, fails, out = _verify(forged, keypair[1], carphone_distorted)
    assert rc == 1
    assert list(fails) == ["maps.filters"], out
    assert "inverse[" in fails["maps.filters"][0] and "bicubic-antialiased x2" in fails["maps.filters"][0]
    assert "PASS       maps.synthesized" in out and "PASS       maps.contradiction" in out


def test_signed_taps_are_judged_in_memory(bundles: dict[str, Path]) -> None:
    """maps.filters on the signed records edited in memory: the honest taps pass; another
    operator name, a scale other than the recipe's, a tap moved by 1e-4 or one cut off fail;
    float32 rounding of the same derivation (one ulp) passes."""
    from forensic_vsr.audit.records import step_annotations
    from forensic_vsr.judgement import map_filters_check

    honest = record(bundles["whole"], "step.run")

    def status(edit: Callable[[Annotations], None]) -> str:
        statement = copy.deepcopy(honest)
        edit(step_annotations(statement))
        return map_filters_check(statement).status

    def ulp(a: Annotations) -> None:
        inv = a["maps"]["filters"]["inverse"]
        inv[0] = float(np.nextafter(np.float32(inv[0]), np.float32(1)))

    def moved(a: Annotations) -> None:
        a["maps"]["filters"]["down"][0] += 1e-4
        a["maps"]["filters"]["down"][0] = float(np.float32(a["maps"]["filters"]["down"][0]))

    def cut(a: Annotations) -> None:
        a["maps"]["filters"]["inverse"] = a["maps"]["filters"]["inverse"][1:-1]

    def box(a: Annotations) -> None:
        a["maps"]["operator"] = "box"

    def x4(a: Annotations) -> None:
        from forensic_vsr.ops.degrade import axis_filters

        f = axis_filters(4)
        a["maps"]["filters"] = MapFilters(f.scale, f.down, f.down_anchor, f.up, f.inverse).to_json()

    assert status(lambda a: None) == "PASS" and status(ulp) == "PASS"
    assert [status(e) for e in (moved, cut, box, x4)] == ["FAIL"] * 4


def _moved_region(a: Annotations) -> None:
    """The signed --roi region 8 pixels right of the one the recipe (and the policy) names, its crop alike."""
    a["region"]["x"] += 8
    a["region"]["crop"]["x"] += 8


def test_region_other_than_the_recipes_fails(
    bundles: dict[str, Path], keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path
) -> None:
    """Finding 2: R was recomputed from the evidence cut to the region the step record signs.
    A region moved away from the recipe's --roi (R then judged on other evidence pixels), with a
    flagged.json that matches, recomputed alike: region.recorded compares it with the recipe."""
    forged = _forge(bundles["region"], tmp_path, keypair, carphone_distorted, _moved_region)
    rc, fails, out = _verify(forged, keypair[1], carphone_distorted)
    assert rc == 1
    assert list(fails) == ["region.recorded"], out
    assert "[48, 32, 64, 48], the recipe that ran [40, 32, 64, 48]" in fails["region.recorded"][0]
    assert "PASS       maps.contradiction" in out


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r.update(scale=4),
        lambda r: r.update(output={"width": 256, "height": 192}),
        lambda r: r["crop"].update(width=r["crop"]["width"] + 2),
        lambda r: r.update(margin_needed=0),
        lambda r: r["margin_by_operation"].clear(),
        lambda r: r["margin_taken"].update(left=2) or r["crop"].update(x=r["x"] - 2, width=r["crop"]["width"] - 6),
        lambda r: r["margin_taken"].update(top="8"),
        lambda r: r.update(x=10**18),
    ],
    ids=["scale", "output", "crop", "needed", "operations", "short-margin", "string", "huge"],
)
def test_region_record_is_judged_in_memory(bundles: dict[str, Path], edit: Callable[[dict[str, Any]], None]) -> None:
    """region.recorded on the signed record edited in memory: every field that disagrees with the
    recipe or with the rest of the region is one FAIL line (never an exception)."""
    from forensic_vsr.audit.geometry import region_check
    from forensic_vsr.audit.records import step_annotations

    statement = record(bundles["region"], "step.run")
    assert region_check(statement).status == "PASS"
    edit(step_annotations(statement)["region"])
    check = region_check(statement)
    assert check.status == "FAIL" and check.reason


def test_claimed_bit_depth_fails(bundles: dict[str, Path], keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path) -> None:
    """Finding 4: S and R were scaled to 8-bit levels by the bit depth of the pix_fmt_in the step
    record claims. 8-bit evidence and master claimed as 10-bit make S and R a quarter (a
    flagged.json that matches): the formats are read from the decoded master and evidence."""

    def ten_bit(a: Annotations) -> None:
        a["pix_fmt_in"] = a["pix_fmt_out"] = "yuv420p10le"

    forged = _forge(bundles["whole"], tmp_path, keypair, carphone_distorted, ten_bit)
    rc, fails, out = _verify(forged, keypair[1], carphone_distorted)
    assert rc == 1
    assert "maps.recomputed" in fails, out
    assert "yuv420p10le" in fails["maps.recomputed"][0] and "yuv420p" in fails["maps.recomputed"][0]


@pytest.mark.parametrize("names", [["interval"], []])
def test_required_maps_neither_stored_nor_recomputed_fail(bundles: dict[str, Path], names: list[str]) -> None:
    """Finding 3: a policy that requires uncertainty maps was satisfied by flagged.json alone when
    maps.files is empty (format 3) and maps.recomputed leaves S and R out: nothing checkable of
    them is left. policy.requirements names them (the evidential policy on the signed records)."""
    from forensic_vsr.audit.records import step_annotations
    from forensic_vsr.judgement import requirements
    from forensic_vsr.models.registry import registry
    from forensic_vsr.policy import builtin_policy

    b = bundles["whole"]
    statement, decision, written = record(b, "step.run"), record(b, "policy.decision"), record(b, "output.write")

    def problems(st: dict[str, Any]) -> list[str]:
        checks = requirements(builtin_policy("evidential"), decision, st, None, written, registry([]))
        return [c.reason for c in checks if "uncertainty maps" in c.reason]

    assert problems(statement) == []
    maps = step_annotations(statement)["maps"]
    maps["recomputed"] = {n: maps["recomputed"][n] for n in names}
    assert problems(statement) == [
        "policy evidential requires uncertainty maps; step.run neither stores nor recomputes contradiction, synthesized"
    ]


def test_recorded_output_size_is_the_masters(
    bundles: dict[str, Path], keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path
) -> None:
    """Finding 5: step.run's width_out x height_out (the frame review annotations are bounded by)
    was never compared with the master: doubled, re-signed, it PASSed. frames.geometry decodes it."""

    def doubled(a: Annotations) -> None:
        a["width_out"], a["height_out"] = 2 * a["width_out"], 2 * a["height_out"]

    forged = _forge(bundles["whole"], tmp_path, keypair, carphone_distorted, doubled)
    rc, fails, out = _verify(forged, keypair[1], carphone_distorted)
    assert rc == 1
    assert list(fails) == ["frames.geometry", "report_checks", "judgement"], out  # the extras are then not run
    assert "decodes to 352x288 frames, step.run records 704x576" in fails["frames.geometry"][0]


def test_frame_range_other_than_the_recipes_fails(
    bundles: dict[str, Path], keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path
) -> None:
    """Finding 6: R was recomputed from the evidence frames from the step record's frames.start
    on. The range shifted by one (the master then paired with other evidence frames), with a
    flagged.json that matches, recomputed alike: frames.range compares it with the recipe's --frames."""

    def shifted(a: Annotations) -> None:
        a["frames"]["start"], a["frames"]["end"] = 1, 4

    forged = _forge(bundles["whole"], tmp_path, keypair, carphone_distorted, shifted)
    rc, fails, out = _verify(forged, keypair[1], carphone_distorted)
    assert rc == 1
    assert list(fails) == ["frames.range"], out
    assert "1:4" in fails["frames.range"][0] and "0:3" in fails["frames.range"][0]
    assert "PASS       maps.contradiction" in out


def test_recorded_pixel_format_is_the_evidences(
    bundles: dict[str, Path], keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path
) -> None:
    """Finding 7: which colour planes verify judges (judgement.colour_consistency_problems) follows
    step.run's pix_fmt_in, never compared with the evidence: yuv420p evidence recorded as gbrp
    (or RGB as YUV, skipping the per-plane checks) PASSed with --evidence. evidence.pix_fmt decodes it."""

    def gbrp(bodies: dict[str, Any]) -> None:
        bodies["step.run"]["predicate"]["runDetails"]["byproducts"][0]["annotations"]["pix_fmt_in"] = "gbrp"

    forged = resign(bundles["nomaps"], tmp_path / "forged", keypair, gbrp)
    rc, fails, out = _verify(forged, keypair[1], carphone_distorted)
    assert rc == 1
    assert list(fails) == ["evidence.pix_fmt"], out
    assert "decodes to yuv420p frames, step.run records pix_fmt_in 'gbrp'" in fails["evidence.pix_fmt"][0]
    rc, _, out = _verify(bundles["nomaps"], keypair[1], carphone_distorted)
    assert rc == 0 and "PASS       evidence.pix_fmt" in out


def test_flag_threshold_is_the_policys(bundles: dict[str, Path]) -> None:
    """Finding 8: the flagged fraction verify recomputes is counted above the threshold step.run
    signs (maps.flagged.threshold_levels), never compared with the policy's flag_threshold_levels:
    signed at 1000 levels, nothing is ever flagged, and the recomputation agrees."""
    from forensic_vsr.audit.records import step_annotations
    from forensic_vsr.judgement import requirements
    from forensic_vsr.models.registry import registry
    from forensic_vsr.policy import builtin_policy

    b = bundles["whole"]
    statement, decision, written = record(b, "step.run"), record(b, "policy.decision"), record(b, "output.write")

    def problems(st: dict[str, Any]) -> list[str]:
        checks = requirements(builtin_policy("investigative"), decision, st, None, written, registry([]))
        return [c.reason for c in checks if c.status == "FAIL"]

    assert problems(statement) == []
    step_annotations(statement)["maps"]["flagged"]["threshold_levels"] = 1000.0
    assert problems(statement) == [
        "policy investigative flags S above 8.0 levels; step.run's flagged regions"
        " (and the flagged fraction verify recomputes) are at 1000.0"
    ]


def test_interval_lambda_is_the_cards(
    bundles: dict[str, Path], keypair: tuple[Path, Path], carphone_distorted: Path, tmp_path: Path
) -> None:
    """Finding 9: format 3 stores no interval; whoever shows it computes lambda * u with the lambda
    step.run signs (maps.calibration), which nothing compared with the card: a hundredth of it,
    re-signed, PASSed. maps.calibration takes it from the auditor's card."""

    def narrow(a: Annotations) -> None:
        a["maps"]["calibration"]["lambda"] = round(a["maps"]["calibration"]["lambda"] / 100, 4)

    forged = _forge(bundles["whole"], tmp_path, keypair, carphone_distorted, narrow)
    rc, fails, out = _verify(forged, keypair[1], carphone_distorted)
    assert rc == 1
    assert list(fails) == ["maps.calibration"], out
    assert "{'lambda': 0.0255}" in fails["maps.calibration"][0] and "{'lambda': 2.55}" in fails["maps.calibration"][0]
