"""`fvsr verify --reproduce` re-runs the recipe the signed record holds, with every option the run
used (issue 14: policy file, weights, precision, maps, report, stills), and gets bit-identical
output frames; the auditor supplies their own copies of the policy file and cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forensic_vsr.resources import MODELS, POLICIES
from tests.helpers import record, run_fvsr

CASES = {
    "policy": lambda d: ["--policy", d / "lab-evidential.json"],
    "weights": lambda d: ["--mode", "investigative", "--model", "fidelity-sr-x2", "--weights", d / "x2.pth", "--frames", "0:1"],
    "precision+device": lambda d: ["--precision", "fp32", "--device", "auto"],
    "no-maps+no-report": lambda d: ["--mode", "investigative", "--no-maps", "--no-report"],
    "still": lambda d: ["--still", "1"],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab's own files: a stricter copy of the evidential policy, and a copy of shipped weights."""
    d = tmp_path_factory.mktemp("lab")
    policy = json.loads((POLICIES / "evidential.json").read_text())
    policy["id"] = "lab-evidential"
    policy["rules"]["max_scale"] = min(policy["rules"]["max_scale"], 2)
    (d / "lab-evidential.json").write_text(json.dumps(policy, indent=2))
    shutil.copy(MODELS / "fidelity-sr-x2.pth", d / "x2.pth")
    return d


@pytest.mark.parametrize("case", sorted(CASES))
def test_reproduce_uses_every_recorded_option(case: str, lab: Path, carphone_distorted: Path, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "b"
    extra = [str(a) for a in CASES[case](lab)]
    frames = [] if "--frames" in extra else ["--frames", "0:3"]
    run_fvsr("enhance", carphone_distorted, "-o", out, "--key", keypair[0], "-q", *frames, *extra, check=True)
    recipe = record(out, "step.run")["predicate"]["buildDefinition"]["externalParameters"]
    auditor = ["--policy", lab / "lab-evidential.json"] if case == "policy" else []
    proc = run_fvsr("verify", out, "--pubkey", keypair[1], "--evidence", carphone_distorted, "--reproduce", *auditor)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS       reproduce:" in proc.stdout and "reproduced bit-exactly" in proc.stdout
    if case == "policy":
        assert recipe["policy_file"].endswith("lab-evidential.json")
        without = run_fvsr("verify", out, "--pubkey", keypair[1], "--evidence", carphone_distorted, "--reproduce")
        assert without.returncode == 1 and "FAIL       policy.recorded" in without.stdout
    if case == "weights":
        assert recipe["weights_file"].endswith("x2.pth") and recipe["operations"][-1]["model"] == "fidelity-sr-x2"
    if case == "no-maps+no-report":
        assert recipe["maps"] is False and recipe["report"] is False and not (out / "maps").exists()
    if case == "still":
        assert recipe["stills"] == [1] and any(s["frame"] == 1 for s in record(out, "report.generate")["stills"])
