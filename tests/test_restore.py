"""x1 restoration models (task `restore`): they run through the same pipeline at --scale 1,
chroma is copied, the maps show exactly what the model changed, and evidential mode refuses
them (the identity operator leaves no consistent set to project onto)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.models.arch import ResidualSR
from forensic_vsr.uncertainty.exact import MAP_SCALE
from tests.helpers import record, run_fvsr
from tests.helpers import step as step_of


@pytest.fixture(scope="module")
def restore_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("restore-models")
    torch.manual_seed(7)
    net = ResidualSR(1, channels=4, blocks=1)
    with torch.no_grad():
        net.tail[0].weight.normal_(0.0, 0.05)  # a residual large enough to change samples
    torch.save(net.state_dict(), d / "r.pth")
    sha = hashlib.sha256((d / "r.pth").read_bytes()).hexdigest()
    card = {
        "id": "tiny-restore",
        "version": "test-1",
        "task": "restore",
        "scales": [1],
        "class": "fidelity",
        "description": "tiny x1 restoration network saved by the test suite",
        "architecture": {"name": ResidualSR.name, "params": {"scale": 1, "channels": 4, "blocks": 1}},
        "weights": {"file": "r.pth", "sha256": sha},
        "deterministic": True,
        "precisions": ["fp32"],
        "degradation": {"operator": "identity-plus-noise"},
        "training": {"loss": "L1"},
        "validation": None,
        "license": "Apache-2.0",
        "references": [],
    }
    (d / "tiny-restore.json").write_text(json.dumps(card))
    return d


def _frames(path: Path) -> list[list[np.ndarray]]:
    with VideoReader(path) as reader:
        return [frame_planes(f.frame) for f in reader.frames()]


def test_restore_runs_at_scale_1_and_maps_show_the_change(tmp_path: Path, carphone_distorted: Path, keypair, restore_models: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    run_fvsr(
        "enhance", carphone_distorted, "-o", bundle, "--key", keypair[0], "--models-dir", restore_models,
        "--model", "tiny-restore", "--scale", "1", "--frames", "0:3", "--mode", "investigative", "-q", check=True,
    )  # fmt: skip
    step = step_of(bundle)
    assert (step["width_out"], step["height_out"]) == (176, 144) and step["planes_classical"] == "copy (x1)"
    assert step["data_consistency"] is None  # nothing to project onto
    decision = record(bundle, "policy.decision")
    assert decision["recipe"]["operations"][0]["scale"] == 1
    out, src = _frames(bundle / "output" / "master.mkv"), _frames(carphone_distorted)[:3]
    changed = 0
    for o, s in zip(out, src, strict=True):
        assert o[0].shape == s[0].shape
        assert all(np.array_equal(a, b) for a, b in zip(o[1:], s[1:], strict=True))  # chroma copied
        changed += int(np.count_nonzero(o[0] != s[0]))
    assert changed > 0
    # A = identity: no synthesized content, and the contradiction map is |y - x_hat|
    s_map, r_map = _frames(bundle / "maps" / "synthesized.mkv"), _frames(bundle / "maps" / "contradiction.mkv")
    assert all(int(f[0].max()) == 0 for f in s_map)
    diff = np.abs(src[0][0].astype(np.float64) - out[0][0].astype(np.float64))
    assert np.array_equal(r_map[0][0].astype(np.float64), np.rint(diff * MAP_SCALE))
    assert run_fvsr("verify", bundle, "--pubkey", keypair[1], "--models-dir", restore_models).returncode == 0


def test_evidential_mode_refuses_restoration(tmp_path: Path, carphone_distorted: Path, keypair, restore_models: Path) -> None:  # type: ignore[no-untyped-def]
    proc = run_fvsr(
        "enhance", carphone_distorted, "-o", tmp_path / "e", "--key", keypair[0], "--models-dir", restore_models,
        "--model", "tiny-restore", "--scale", "1", "--frames", "0:2", "-q",
    )  # fmt: skip
    assert proc.returncode == 3 and "data_consistency" in proc.stderr


def test_shipped_restore_model_improves_the_real_distorted_pair(tmp_path: Path, carphone: Path, carphone_distorted: Path) -> None:
    """fidelity-restore on the real carphone pair (first 12 frames): PSNR-Y goes up, and the
    card states the full-clip number."""
    out = tmp_path / "r.json"
    run_fvsr("bench", "restore", "--distorted", carphone_distorted, "--pristine", carphone, "--limit", "12", "--json", out, check=True)
    result = json.loads(out.read_text())
    assert result["frames"] == 12 and result["gain_db"] > 0.1
    card = json.loads((Path(__file__).resolve().parent.parent / "models" / "fidelity-restore.json").read_text())
    assert card["class"] == "fidelity" and card["validation"]["benchmarks"]["carphone_distorted_to_pristine"]["gain_db"] > 0
