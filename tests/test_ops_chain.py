"""--ops: x1 operations chained before the main one in a single signed run, in the recorded
order, each judged by the policy, with the same frames as running the steps one by one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import record, run_fvsr
from tests.helpers import step as step_of


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str, carphone: Path) -> Path:
    out = tmp_path_factory.mktemp("chain") / "interlaced.mkv"
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(carphone), "-frames:v", "8", "-vf", "tinterlace=interleave_top,setfield=tff",
         "-c:v", "ffv1", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )  # fmt: skip
    return out


def _hashes(bundle: Path) -> list[str]:
    return [ln.split(",")[-1].strip() for ln in (bundle / "output.framehash").read_text().splitlines() if not ln.startswith("#")]


def test_chain_equals_the_steps_run_one_by_one(tmp_path: Path, interlaced: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    common = ["--key", keypair[0], "-q", "--no-report", "--mode", "investigative"]
    chained = tmp_path / "chained"
    run_fvsr(
        "enhance", interlaced, "-o", chained, "--ops", "deinterlace,deblur,sr", "--model", "lanczos", "--scale", "2",
        "--psf", "motion:3,0", *common, check=True,
    )  # fmt: skip
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_fvsr("enhance", interlaced, "-o", a, "--model", "deinterlace", "--scale", "1", *common, check=True)
    deblur = ["--model", "deblur", "--scale", "1", "--psf", "motion:3,0"]
    run_fvsr("enhance", a / "output" / "master.mkv", "-o", b, *deblur, *common, check=True)
    run_fvsr("enhance", b / "output" / "master.mkv", "-o", c, "--model", "lanczos", "--scale", "2", *common, check=True)
    assert _hashes(chained) == _hashes(c) and len(_hashes(c)) == 16  # 8 interlaced frames, 16 fields
    decision = record(chained, "policy.decision")
    assert [o["op"] for o in decision["recipe"]["operations"]] == ["deinterlace", "deblur", "upscale"]
    rules = {r["rule"]: r["outcome"] for r in decision["rules"]}
    assert rules["deinterlace.allowed_operations"] == rules["deblur.allowed_model_classes"] == "pass"
    step = step_of(chained)
    assert [p["model"] for p in step["pre_operations"]] == ["deinterlace", "deblur"] and step["frames_per_input"] == 2
    assert step["pre_operations"][1]["deblur"]["psf"]["length"] == 3.0
    deps = [d["name"] for d in record(chained, "step.run")["predicate"]["buildDefinition"]["resolvedDependencies"]]
    assert [d for d in deps if d.startswith("model-card:")] == ["model-card:deinterlace", "model-card:deblur", "model-card:lanczos"]
    again = run_fvsr("verify", chained, "--pubkey", keypair[1], "--evidence", interlaced, "--reproduce")
    assert again.returncode == 0 and "16 output frames reproduced bit-exactly" in again.stdout, again.stdout


def test_a_refused_step_refuses_the_chain(tmp_path: Path, interlaced: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    proc = run_fvsr("enhance", interlaced, "-o", tmp_path / "e", "--key", keypair[0], "--ops", "restore,sr", "-q")
    assert proc.returncode == 3 and "fidelity-restore.data_consistency" in proc.stderr
    assert not (tmp_path / "e" / "output").exists()


@pytest.mark.parametrize(
    ("ops", "extra", "message"),
    [
        ("sr,deblur", [], "must be the last"),
        ("deblur", ["--model", "lanczos"], "would not run"),
        ("fidelity-sr-x2,sr", [], "changes the frame size"),
        ("deblur,deinterlace,sr", [], "deinterlace must come first"),
    ],
)
def test_bad_chains_are_one_line_errors(tmp_path: Path, interlaced: Path, keypair, ops: str, extra: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    proc = run_fvsr("enhance", interlaced, "-o", tmp_path / "x", "--key", keypair[0], "--ops", ops, *extra)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "x").exists()
