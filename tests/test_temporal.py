"""Temporal operations: stabilisation removes synthetic jitter (>= 90 % of the global motion),
frame integration lifts a static scene out of noise with count and spread maps, E_warp is
measured, and both run end to end through the signed pipeline."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from forensic_vsr.media import VideoReader, VideoWriter, frame_from_planes, frame_planes
from forensic_vsr.ops.mfsr import register
from forensic_vsr.ops.temporal import integrate, warp_error
from forensic_vsr.uncertainty.exact import MAP_SCALE
from tests.helpers import run_fvsr
from tests.helpers import step as step_of

N = 8


@pytest.fixture(scope="module")
def scene(carphone: Path) -> list[np.ndarray]:
    with VideoReader(carphone) as reader:
        for decoded in reader.frames():
            if decoded.index == 20:
                return [p.astype(np.float64) for p in frame_planes(decoded.frame)]
    raise AssertionError("short clip")


def _shift(plane: np.ndarray, dx: float, dy: float) -> np.ndarray:
    h, w = plane.shape
    return cv2.warpAffine(plane, np.array([[1.0, 0, dx], [0, 1.0, dy]]), (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _jittered(directory: Path, scene: list[np.ndarray], noise: float, seed: int) -> tuple[Path, list[tuple[float, float]]]:
    """One still scene with random global jitter (up to 3 px) and noise, as a lossless clip."""
    rng = np.random.default_rng(seed)
    jitter = [(0.0, 0.0)] + [tuple(rng.uniform(-3, 3, 2)) for _ in range(N - 1)]
    path = directory / f"jitter-{seed}.mkv"
    w = VideoWriter(path, codec="ffv1", pix_fmt="yuv420p", width=176, height=144, time_base=Fraction(1, 25), rate=Fraction(25), options={})
    for i, (dx, dy) in enumerate(jitter):
        planes = []
        for k, p in enumerate(scene):
            s = 1 if k == 0 else 2
            moved = _shift(p, dx / s, dy / s) + (rng.normal(0, noise, p.shape) if k == 0 else 0)
            planes.append(np.clip(np.rint(moved), 0, 255).astype(np.uint8))
        w.write(frame_from_planes(planes, "yuv420p", 176, 144), i)
    w.close()
    return path, jitter  # type: ignore[return-value]


def _lumas(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return [frame_planes(f.frame)[0] for f in reader.frames()]


def _residual_motion(frames: list[np.ndarray]) -> float:
    """Mean magnitude of each frame's global translation against the first (pixels), measured
    on the central region (stabilised frames have black borders)."""
    ref = frames[0].astype(np.float64)[16:-16, 16:-16]
    total = 0.0
    for f in frames[1:]:
        reg = register(ref, f.astype(np.float64)[16:-16, 16:-16], 1, 0.5)
        assert reg.matrix is not None
        total += float(np.hypot(reg.matrix[0][2], reg.matrix[1][2]))
    return total / (len(frames) - 1)


def test_stabilise_removes_at_least_90_percent_of_the_jitter(tmp_path: Path, scene, keypair) -> None:  # type: ignore[no-untyped-def]
    clip, jitter = _jittered(tmp_path, scene, noise=0.5, seed=1)
    before = _residual_motion(_lumas(clip))
    assert abs(before - np.mean([np.hypot(*j) for j in jitter[1:]])) < 0.3  # the measure sees the jitter
    bundle = tmp_path / "b"
    run_fvsr("enhance", clip, "-o", bundle, "--key", keypair[0], "--model", "stabilise", "--scale", "1", "-q", check=True)
    after = _residual_motion(_lumas(bundle / "output" / "master.mkv"))
    assert after <= 0.1 * before, (before, after)
    step = step_of(bundle)
    t = step["temporal"]
    assert t["operation"] == "stabilise" and t["reference_frame"] == 0 and t["frames_not_registered"] == []
    for entry, (dx, dy) in zip(t["per_frame"][1:], jitter[1:], strict=True):
        assert abs(entry["matrix"][0][2] - dx) < 0.2 and abs(entry["matrix"][1][2] - dy) < 0.2 and entry["coverage"] < 1
    tc = step["temporal_consistency"]
    assert tc["pairs"] == N - 1 and tc["flow_from"] == "output" and tc["output"] < 0.01
    assert run_fvsr("verify", bundle, "--pubkey", keypair[1]).returncode == 0


def test_integration_lifts_a_static_scene_out_of_noise(scene) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    truth = scene[0]
    frames = [np.clip(np.rint(_shift(truth, dx, dy) + rng.normal(0, 6, truth.shape)), 0, 255) for dx, dy in rng.uniform(-2, 2, (7, 2))]
    frames[3] = np.clip(np.rint(truth + rng.normal(0, 6, truth.shape)), 0, 255)  # the reference is unshifted
    mean, stats = integrate(frames, 3, 0.5, 30.0)
    c = (slice(8, -8), slice(8, -8))
    rms = lambda a: float(np.sqrt(np.mean((a[c] - truth[c]) ** 2)))  # noqa: E731
    assert rms(mean) < 0.6 * rms(frames[3])  # 7 frames: noise / sqrt(7) plus resampling error
    assert stats.count[c].min() >= 5 and stats.count.max() == 7 and 3 < float(stats.spread[c].mean()) < 9


def test_integrate_runs_end_to_end_with_count_and_spread_maps(tmp_path: Path, scene, keypair) -> None:  # type: ignore[no-untyped-def]
    clip, _ = _jittered(tmp_path, scene, noise=4.0, seed=3)
    bundle = tmp_path / "b"
    run_fvsr("enhance", clip, "-o", bundle, "--key", keypair[0], "--model", "integrate", "--scale", "1", "-q", check=True)
    step = step_of(bundle)
    assert set(step["maps"]["files"]) == {"synthesized", "contradiction", "count", "spread"}
    per = step["temporal"]["per_frame"]
    assert [p["frame"] for p in per] == list(range(N)) and per[4]["mean_count"] > 5
    count = _lumas(bundle / "maps" / "count.mkv")
    assert len(count) == N and int(count[4].max()) == 7 * MAP_SCALE  # 7 frames, stored at MAP_SCALE per unit
    assert run_fvsr("verify", bundle, "--pubkey", keypair[1]).returncode == 0


def test_warp_error_is_zero_for_identical_frames_and_grows_with_flicker(scene) -> None:  # type: ignore[no-untyped-def]
    y = np.clip(scene[0], 0, 255).astype(np.uint8)
    frames = [y, _shift(y.astype(np.float64), 1, 0).astype(np.uint8), y]
    assert warp_error(frames, frames) < 1e-3
    flicker = [np.clip(f.astype(np.float64) + (10 if i % 2 else -10), 0, 255) for i, f in enumerate(frames)]
    assert warp_error(frames, flicker) > 10 * (warp_error(frames, frames) + 1e-4)
