"""Multi-frame SR (mfsr-x2): the banded operator is the card's A, registration recovers known
sub-pixel motion, several frames beat one, failures fall back and are recorded, and the whole
thing runs end to end in evidential mode."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.ops.consistency import Projector
from forensic_vsr.ops.degrade import downscale
from forensic_vsr.ops.mfsr import MfsrParams, register, shrink, super_resolve
from tests.helpers import record, run_fvsr
from tests.helpers import step as step_of


@pytest.fixture(scope="module")
def scene(carphone: Path) -> np.ndarray:
    """A real frame's luma as the high-resolution scene (176x144)."""
    with VideoReader(carphone) as reader:
        for decoded in reader.frames():
            if decoded.index == 60:
                return frame_planes(decoded.frame)[0].astype(np.float64)
    raise AssertionError("carphone is shorter than expected")


SHIFTS = [(0.0, 0.0), (1.0, 0.5), (-0.5, 1.0), (0.5, -1.5), (1.5, 1.5), (-1.0, -0.5), (0.25, 1.25), (-1.25, 0.75)]


def _sequence(scene: np.ndarray, shifts: list[tuple[float, float]], scale: int = 2) -> list[np.ndarray]:
    h, w = scene.shape
    out = []
    for dx, dy in shifts:
        moved = cv2.warpAffine(scene, np.array([[1, 0, dx], [0, 1, dy]]), (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        out.append(np.clip(np.rint(downscale(moved, scale)), 0, 255))
    return out


def _psnr(a: np.ndarray, b: np.ndarray, crop: int = 8) -> float:
    d = (a - b)[crop:-crop, crop:-crop]
    return float(10 * np.log10(255**2 / np.mean(d * d)))


@pytest.mark.parametrize(("scale", "shape"), [(2, (60, 84)), (3, (63, 81)), (4, (64, 80))])
def test_banded_shrink_is_the_cards_operator(scale: int, shape: tuple[int, int]) -> None:
    x = np.random.default_rng(scale).random(shape) * 255
    assert np.abs(shrink(x, scale) - downscale(x, scale)).max() < 1e-9


def test_registration_recovers_known_subpixel_motion(scene: np.ndarray) -> None:
    frames = _sequence(scene, SHIFTS)
    for (dx, dy), frame in zip(SHIFTS[1:], frames[1:], strict=True):
        reg = register(frames[0], frame, 1, 0.9)
        assert reg.ok and reg.matrix is not None
        # the scene moved by (dx, dy) high-resolution pixels: (dx/2, dy/2) low-resolution ones
        assert abs(reg.matrix[0][2] - dx / 2) < 0.1 and abs(reg.matrix[1][2] - dy / 2) < 0.1


def test_eight_frames_beat_one(scene: np.ndarray) -> None:
    frames = _sequence(scene, SHIFTS)
    proj = Projector(*scene.shape, 2)
    params = MfsrParams(scale=2, radius=4, iterations=20)
    multi, regs = super_resolve(frames, 0, params)
    single, _ = super_resolve(frames[:1], 0, params)
    q = lambda a: np.clip(np.rint(a), 0, 255)  # noqa: E731
    bicubic = cv2.resize(frames[0], scene.shape[::-1], interpolation=cv2.INTER_CUBIC)
    p_multi = _psnr(q(proj.project(multi, frames[0])), scene)
    p_single = _psnr(q(proj.project(single, frames[0])), scene)
    assert all(r.ok for r in regs)
    assert p_multi > _psnr(bicubic, scene) + 1.5 and p_multi > p_single + 1.0


def test_unrelated_neighbours_are_left_out(scene: np.ndarray) -> None:
    frames = _sequence(scene, SHIFTS[:3])
    rng = np.random.default_rng(0)
    frames[1] = rng.integers(0, 256, frames[1].shape).astype(np.float64)
    frames[2] = np.flipud(frames[0])
    _, regs = super_resolve(frames, 0, MfsrParams(scale=2))
    assert [r.ok for r in regs] == [False, False] and all(r.reason for r in regs)


def test_mfsr_runs_in_evidential_mode_and_records_registration(tmp_path: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    run_fvsr("enhance", carphone, "-o", bundle, "--key", keypair[0], "--model", "mfsr-x2", "--frames", "0:5", "-q", check=True)
    step = step_of(bundle)
    mf = step["multiframe"]
    assert [f["frame"] for f in mf["per_frame"]] == [0, 1, 2, 3, 4]
    assert [f["neighbours"] for f in mf["per_frame"]] == [2, 3, 4, 3, 2]
    assert mf["frames_single_frame_fallback"] == [] and all(f["registered"] >= 1 for f in mf["per_frame"])
    assert step["data_consistency"]["rms_residual_max"] <= 0.5 and step["luma"] == "mfsr-x2"
    decision = record(bundle, "policy.decision")
    assert decision["allowed"] and {r["rule"]: r["outcome"] for r in decision["rules"]}["data_consistency"] == "pass"
    verify = run_fvsr("verify", bundle, "--pubkey", keypair[1])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads((bundle / "maps" / "flagged.json").read_text())["frames"][0]["frame"] == 0


def test_bench_mfsr_reports_gain_over_bicubic(tmp_path: Path, carphone: Path) -> None:
    with VideoReader(carphone) as reader:
        for decoded in reader.frames():
            if decoded.index in (10, 90):
                cv2.imwrite(str(tmp_path / f"f{decoded.index}.png"), decoded.frame.to_ndarray(format="bgr24"))
            if decoded.index > 90:
                break
    out = tmp_path / "r.json"
    proc = run_fvsr("bench", "mfsr", "--images", tmp_path, "--frames", "6", "--json", out, check=True)
    result = json.loads(out.read_text())
    assert result["model"] == "mfsr-x2" and result["images"] == 2 and result["frames"] == 6
    assert set(result["psnr_y"]) == {"bicubic", "single_frame_ibp", "mfsr", "mfsr_unprojected"}
    assert result["gain_over_bicubic_db"] > 1.0 and "gain over bicubic" in proc.stdout
    bad = run_fvsr("bench", "mfsr", "--images", tmp_path, "--frames", "1")
    assert bad.returncode != 0 and "at least 2 frames" in bad.stderr and "Traceback" not in bad.stderr
