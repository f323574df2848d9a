"""Registration on what does not move: a static textured scene (a real photograph) shifted by a
known sub-pixel amount per frame, with a bright textured square covering about a quarter of the
frame moving several pixels per frame. The whole-frame registration is pulled off the static
scene by the square (the defect, measured so that the test can fail); the two-pass static-mask
registration and a --register-roi registration hold it within 0.1 px, in the library and end to
end through `fvsr enhance` (integrate, stabilise, mfsr), with residuals, the region and the
rejections recorded, and stabilise's unregistered frames said on stderr and in the record."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from forensic_vsr.media import VideoWriter, frame_from_planes
from forensic_vsr.ops.mfsr import MfsrParams, super_resolve
from forensic_vsr.ops.registration import Registration, RegistrationRegion, register
from forensic_vsr.ops.temporal import integrate
from tests.helpers import record, run_fvsr, step

W, H = 224, 160
SQUARE = 90  # 90 x 90 of 224 x 160: 23 % of the frame
STEP = (5, 2)  # the square's motion per frame, pixels
ROI = (136, 8, 84, 144)  # right of every position the square takes
N = 7
TOLERANCE = 0.1  # px


def _square_at(k: int) -> tuple[int, int]:
    return 8 + STEP[0] * k, 20 + STEP[1] * k


@pytest.fixture(scope="module")
def scene() -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """N frames: the photograph shifted by shifts[k] (frame 0 unshifted), the square pasted on
    at its position of frame k, Gaussian noise of one level, rounded to 8 bits."""
    rng = np.random.default_rng(7)
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float64)
    photo = cv2.resize(photo, (320, 320), interpolation=cv2.INTER_AREA)[60 : 60 + H, 50 : 50 + W]
    texture = cv2.resize(rng.uniform(0, 1, (18, 18)), (SQUARE, SQUARE), interpolation=cv2.INTER_CUBIC)
    square = np.clip(170 + 70 * texture, 0, 255)
    shifts = [(0.0, 0.0)] + [(float(a), float(b)) for a, b in rng.uniform(-0.5, 0.5, (N - 1, 2))]
    frames = []
    for k, (dx, dy) in enumerate(shifts):
        m = np.array([[1.0, 0, dx], [0, 1.0, dy]])
        f = cv2.warpAffine(photo, m, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        x, y = _square_at(k)
        f[y : y + SQUARE, x : x + SQUARE] = square
        frames.append(np.clip(np.rint(f + rng.normal(0, 1.0, f.shape)), 0, 255).astype(np.uint8))
    return frames, shifts


def _error(matrix: tuple[tuple[float, ...], ...] | list[list[float]] | None, truth: tuple[float, float], ref: tuple[float, float]) -> float:
    """Distance in pixels between the estimated translation (neighbour(M p) = reference(p)) and
    the true one of the static scene."""
    assert matrix is not None
    return float(np.hypot(matrix[0][2] - (truth[0] - ref[0]), matrix[1][2] - (truth[1] - ref[1])))


def _errors(frames: list[np.ndarray], shifts: list[tuple[float, float]], where: RegistrationRegion) -> list[float]:
    regs = [register(frames[0], frames[k], k, 0.5, where=where) for k in range(1, N)]
    return [_error(r.matrix, shifts[k], shifts[0]) for k, r in zip(range(1, N), regs, strict=True)]


def test_whole_frame_registration_is_pulled_off_the_static_scene(scene) -> None:  # type: ignore[no-untyped-def]
    frames, shifts = scene
    assert max(_errors(frames, shifts, RegistrationRegion("whole"))) > 2 * TOLERANCE


@pytest.mark.parametrize("where", [RegistrationRegion("static"), RegistrationRegion("whole", ROI), RegistrationRegion("static", ROI)])
def test_static_scene_registered_within_a_tenth_of_a_pixel(scene, where: RegistrationRegion) -> None:  # type: ignore[no-untyped-def]
    frames, shifts = scene
    errors = _errors(frames, shifts, where)
    assert max(errors) < TOLERANCE, errors


def test_residual_measured_on_the_static_pixels_and_enforced(scene) -> None:  # type: ignore[no-untyped-def]
    frames, _ = scene
    whole = register(frames[0], frames[3], 3, 0.5)
    static = register(frames[0], frames[3], 3, 0.5, where=RegistrationRegion("static"))
    assert whole.residual is not None and static.residual is not None and static.static_fraction is not None
    assert static.residual < 0.25 * whole.residual  # the square's disagreement is out of the residual
    assert 0.3 < static.static_fraction < 0.8  # the square where it was and where it is now are masked
    assert static.registered_on == "static pixels of the whole frame"
    strict = register(frames[0], frames[3], 3, 0.5, where=RegistrationRegion("static", max_residual=0.5 * static.residual))
    assert not strict.ok and strict.reason is not None and strict.reason.startswith("residual")
    assert strict.to_json()["residual_levels"] == round(static.residual, 4)


def test_integrate_and_mfsr_use_the_static_registration(scene) -> None:  # type: ignore[no-untyped-def]
    frames, shifts = scene
    _, stats = integrate(frames, 0, 0.5, 12.0, where=RegistrationRegion("static"))
    _, regs = super_resolve(frames[:3], 0, MfsrParams(scale=2, iterations=2, where=RegistrationRegion("static")))
    for reg in [*stats.registrations, *regs]:
        assert isinstance(reg, Registration) and reg.ok
        assert _error(reg.matrix, shifts[reg.offset], shifts[0]) < TOLERANCE


def _clip(path: Path, frames: list[np.ndarray]) -> Path:
    writer = VideoWriter(path, codec="ffv1", pix_fmt="yuv420p", width=W, height=H, time_base=Fraction(1, 25), rate=Fraction(25), options={})
    chroma = np.full((H // 2, W // 2), 128, np.uint8)
    for i, luma in enumerate(frames):
        writer.write(frame_from_planes([luma, chroma, chroma], "yuv420p", W, H), i)
    writer.close()
    return path


def test_enhance_integrate_records_residuals_and_the_region(tmp_path: Path, scene, keypair) -> None:  # type: ignore[no-untyped-def]
    frames, shifts = scene
    clip = _clip(tmp_path / "static.mkv", frames[:4])
    bundle = tmp_path / "b"
    roi = ",".join(map(str, ROI))
    common = ("--key", keypair[0], "-q", "--no-report", "--mode", "investigative")
    run_fvsr("enhance", clip, "-o", bundle, *common, "--model", "integrate", "--scale", "1", "--register-roi", roi, check=True)
    temporal = step(bundle)["temporal"]
    assert temporal["registration"]["region"] == list(ROI) and temporal["registration"]["strategy"] == "static"
    assert temporal["registration_summary"] == "integrate: every registration passed"
    assert record(bundle, "step.run")["predicate"]["buildDefinition"]["externalParameters"]["register_roi"] == list(ROI)
    first = temporal["per_frame"][0]
    assert first["registered"] == 3
    for reg in first["registrations"]:
        assert reg["registered_on"] == "static pixels of the region" and 0 < reg["residual_levels"] < 4
        assert _error(reg["matrix"], shifts[reg["offset"]], shifts[0]) < TOLERANCE
    again = run_fvsr("verify", bundle, "--pubkey", keypair[1], "--evidence", clip, "--reproduce")  # register_roi read back
    assert again.returncode == 0 and "reproduced bit-exactly" in again.stdout, again.stdout
    bad = run_fvsr("enhance", clip, "-o", tmp_path / "c", *common, "--model", "lanczos", "--scale", "2", "--register-roi", roi)
    assert bad.returncode != 0 and "--register-roi applies to" in bad.stderr
    outside = run_fvsr(
        "enhance", clip, "-o", tmp_path / "d", *common, "--model", "integrate", "--scale", "1", "--register-roi", f"200,0,64,{H}"
    )
    assert outside.returncode != 0 and "--register-roi" in outside.stderr


def test_enhance_stabilise_says_which_frames_it_left_unregistered(tmp_path: Path, scene, keypair) -> None:  # type: ignore[no-untyped-def]
    frames, shifts = scene
    cut = np.random.default_rng(3).integers(0, 256, (H, W), dtype=np.uint8)  # a scene cut: nothing to register to
    clip = _clip(tmp_path / "cut.mkv", [*frames[:3], cut, frames[3]])
    bundle = tmp_path / "b"
    proc = run_fvsr(
        "enhance",
        clip,
        "-o",
        bundle,
        "--key",
        keypair[0],
        "--model",
        "stabilise",
        "--scale",
        "1",
        "-q",
        "--no-report",
        "--mode",
        "investigative",
    )
    assert proc.returncode == 0, proc.stderr
    temporal = step(bundle)["temporal"]
    assert temporal["frames_not_registered"] == [3]
    summary = temporal["registration_summary"]
    assert summary.startswith("stabilise: 1 of 5 frames not registered, passed through unaligned (frames 3;")
    assert summary in proc.stderr
    by_frame = {f["frame"]: f for f in temporal["per_frame"]}
    assert by_frame[3]["ok"] is False and by_frame[3]["reason"]
    for frame, k in ((1, 1), (2, 2), (4, 3)):
        assert _error(by_frame[frame]["matrix"], shifts[k], shifts[0]) < TOLERANCE, (frame, by_frame[frame])
    assert temporal["registration"]["strategy"] == "static" and "moving_mask" in temporal["registration"]
