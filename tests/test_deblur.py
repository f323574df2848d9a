"""Deblurring: PSFs are what they say, Wiener with the true PSF restores, the blind estimate
finds a known motion blur, and `fvsr bench deblur` writes the documented JSON."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from forensic_vsr.benchmark import psnr
from forensic_vsr.errors import UsageError
from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.ops.deblur import blur, defocus_psf, estimate_psf, motion_psf, noise_sigma, parse_psf, richardson_lucy, ringing, wiener
from tests.helpers import run_fvsr
from tests.helpers import step as step_of


@pytest.fixture(scope="module")
def sharp(carphone: Path) -> np.ndarray:
    """A real luma frame, mirrored to 2x2 (352x288) so the blur has room."""
    with VideoReader(carphone) as reader:
        for decoded in reader.frames():
            if decoded.index == 40:
                y = frame_planes(decoded.frame)[0].astype(np.float64)
                return np.block([[y, y[:, ::-1]], [y[::-1], y[::-1, ::-1]]])
    raise AssertionError("short clip")


def _blurred(x: np.ndarray, psf, seed: int = 0) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.clip(np.rint(blur(x, psf) + np.random.default_rng(seed).normal(0, 1.0, x.shape)), 0, 255)


@pytest.mark.parametrize(("length", "angle"), [(9, 0), (15, 30), (21, 75)])
def test_motion_psf_has_its_length_and_angle(length: int, angle: int) -> None:
    k = motion_psf(length, angle).kernel
    assert abs(k.sum() - 1) < 1e-12
    ys, xs = np.nonzero(k > 0)
    c = k.shape[0] // 2
    w = k[ys, xs]
    dx, dy = xs - c, c - ys  # y up
    # principal axis of the kernel's mass
    cov = np.cov(np.vstack([dx, dy]), aweights=w)
    vals, vecs = np.linalg.eigh(cov)
    found = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])) % 180
    assert min(abs(found - angle), 180 - abs(found - angle)) < 2
    assert abs(np.sqrt(12 * vals[1]) - length) < 1.5  # a uniform segment of length L has variance L^2/12


def test_defocus_psf_is_a_disk() -> None:
    k = defocus_psf(4).kernel
    assert abs(k.sum() - 1) < 1e-12 and k.shape == (11, 11)
    assert np.allclose(k, k.T) and np.allclose(k, k[::-1]) and k[5, 5] == k.max() and k[0, 0] == 0


def test_noise_estimate(sharp: np.ndarray) -> None:
    smooth = cv2.GaussianBlur(sharp, (0, 0), 3.0)  # Immerkaer's estimator reads fine texture as noise too
    for sigma in (1.0, 2.0, 4.0):
        noisy = smooth + np.random.default_rng(3).normal(0, sigma, sharp.shape)
        assert abs(noise_sigma(noisy) - sigma) < 0.15 * sigma


@pytest.mark.parametrize("psf", [motion_psf(15, 30), defocus_psf(3)], ids=["motion", "defocus"])
def test_wiener_with_the_true_psf_restores(sharp: np.ndarray, psf) -> None:  # type: ignore[no-untyped-def]
    y = _blurred(sharp, psf)
    x = np.clip(np.rint(wiener(y, psf)), 0, 255)
    c = (slice(12, -12), slice(12, -12))
    assert psnr(x[c], sharp[c]) > psnr(y[c], sharp[c]) + 3.0


def test_ringing_measures_oscillation_added_in_flat_regions() -> None:
    """A flat input restored as itself rings 0; adding a +-a checkerboard in the flat region rings
    exactly a (the 9x9 local mean of a checkerboard is ~0, so the RMS is the amplitude)."""
    y = np.full((64, 64), 128.0)
    assert ringing(y, y.copy()) == 0.0
    checker = np.indices((64, 64)).sum(axis=0) % 2 * 2.0 - 1.0
    for a in (1.0, 3.0):
        assert abs(ringing(y, y + a * checker) - a) < 0.02 * a


def test_richardson_lucy_with_tv_restores(sharp: np.ndarray) -> None:
    psf = motion_psf(9, 0)
    y = _blurred(sharp, psf)
    x = np.clip(np.rint(richardson_lucy(y, psf, iterations=30)), 0, 255)
    c = (slice(12, -12), slice(12, -12))
    assert psnr(x[c], sharp[c]) > psnr(y[c], sharp[c]) + 1.5


def test_blind_estimate_finds_a_motion_blur(sharp: np.ndarray) -> None:
    est = estimate_psf(_blurred(sharp, motion_psf(15, 30)))
    assert est.psf.kind == "motion"
    assert abs(est.psf.params["length"] - 15) <= 1 and abs(est.psf.params["angle"] - 30) <= 3
    assert est.to_json()["candidates"][0]["kind"] == "motion"
    with pytest.raises(Exception, match="at least 64x64"):
        estimate_psf(sharp[:40, :40])


def test_bench_deblur_json(tmp_path: Path, sharp: np.ndarray) -> None:
    img = np.clip(sharp, 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.merge([img, img, img]))
    out = tmp_path / "r.json"
    run_fvsr("bench", "deblur", "--images", tmp_path, "--json", out, check=True)
    result = json.loads(out.read_text())
    assert len(result["results"]) == 11 and result["images"] == 1
    row = result["results"][0]
    assert {"psf", "blurred_psnr_y", "known_psf_psnr_y", "estimated_psf_psnr_y"} <= set(row)
    assert row["psf"] == {"kind": "motion", "length": 9.0, "angle": 0.0, "size": [11, 11]}
    assert result["mean_gain_known"] > 2.0 and isinstance(result["mean_gain_estimated"], float)


@pytest.fixture(scope="module")
def blurred_clip(tmp_path_factory: pytest.TempPathFactory, carphone: Path) -> Path:
    """carphone with a known 9 px horizontal motion blur on luma (and 1 level of noise), FFV1."""
    from fractions import Fraction

    from forensic_vsr.media import VideoWriter, frame_from_planes

    out = tmp_path_factory.mktemp("blur") / "blurred.mkv"
    psf = motion_psf(9, 0)
    rng = np.random.default_rng(1)
    writer = VideoWriter(
        out, codec="ffv1", pix_fmt="yuv420p", width=176, height=144, time_base=Fraction(1, 25), rate=Fraction(25), options={}
    )
    with VideoReader(carphone) as reader:
        for decoded in reader.frames():
            if decoded.index >= 4:
                break
            y, u, v = frame_planes(decoded.frame)
            yb = np.clip(np.rint(blur(y.astype(np.float64), psf) + rng.normal(0, 1, y.shape)), 0, 255).astype(np.uint8)
            writer.write(frame_from_planes([yb, u, v], "yuv420p", 176, 144), decoded.index)
    writer.close()
    return out


def test_deblur_runs_in_evidential_mode_with_a_blind_estimate(tmp_path: Path, blurred_clip: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import record

    bundle = tmp_path / "b"
    run_fvsr("enhance", blurred_clip, "-o", bundle, "--key", keypair[0], "--model", "deblur", "--scale", "1", "-q", check=True)
    step = step_of(bundle)
    d = step["deblur"]
    assert d["psf"]["kind"] == "motion" and abs(d["psf"]["length"] - 9) <= 1 and d["psf"]["angle"] in (0.0, 1.0, 179.0)
    assert d["psf_source"].startswith("estimated") and d["estimate"]["candidates"]
    assert len(d["ringing_rms_levels_per_frame"]) == len(d["forward_residual_rms_levels_per_frame"]) == 4
    assert 0.5 < d["noise_sigma_levels_first_frame"] < 3
    assert record(bundle, "policy.decision")["recipe"]["operations"][0]["op"] in ("upscale", "deblur")
    assert run_fvsr("verify", bundle, "--pubkey", keypair[1]).returncode == 0
    # a given PSF and a region of interest: the output is the region, deblurred
    roi = tmp_path / "roi"
    run_fvsr(
        "enhance", blurred_clip, "-o", roi, "--key", keypair[0], "--model", "deblur", "--scale", "1",
        "--psf", "motion:9,0", "--roi", "40,30,96,80", "--mode", "investigative", "--no-report", "-q", check=True,
    )  # fmt: skip
    with VideoReader(blurred_clip) as a, VideoReader(roi / "output" / "master.mkv") as b:
        ya = frame_planes(next(iter(a.frames())).frame)[0]
        yb = frame_planes(next(iter(b.frames())).frame)[0]
    assert yb.shape == (80, 96) and (ya[30:110, 40:136] != yb).any()
    region = step_of(roi)["region"]  # the 11x11 kernel of motion:9,0 needs 2 x 11 + 8 pixels around the region
    assert region["margin_needed"] == 30 and region["crop"] == {"x": 10, "y": 0, "width": 156, "height": 140}
    for bad, msg in ((["--psf", "motion:nine"], "--psf"), (["--roi", "1,2,3"], "--roi"), (["--scale", "2"], "--scale 1")):
        proc = run_fvsr("enhance", blurred_clip, "-o", tmp_path / "bad", "--key", keypair[0], "--model", "deblur", "--scale", "1", *bad)
        assert proc.returncode != 0 and msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("spec", ["defocus:0.05", "defocus:0.4", "defocus:nan", "motion:nan,0", "motion:5,inf"])
def test_degenerate_psf_is_one_usage_line(spec: str) -> None:
    """A disk under half a pixel covers no sample (its kernel was 0/0), and NaN/inf parameters
    made NaN kernels: each is refused instead."""
    with pytest.raises(UsageError):
        parse_psf(spec)
