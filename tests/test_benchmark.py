"""The degradation operator (MATLAB-style imresize), PSNR/SSIM against scikit-image, and `fvsr bench sr`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from forensic_vsr.benchmark import classical_luma, evaluate, load_images, psnr, rgb_to_y, ssim
from forensic_vsr.ops.degrade import downscale, weights
from tests.conftest import SHARED, run_fvsr

BENCH = SHARED / "benchmarks"


def test_operator_rows_sum_to_one_and_keep_constants() -> None:
    for n, s in ((17, 2), (64, 4), (33, 3)):
        w = weights(n, n // s, 1 / s)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.allclose(downscale(np.full((12, 16), 77.0), 4), 77.0)


def test_downscale_matches_pillow_in_the_interior() -> None:
    """Pillow's antialiased bicubic (a = -0.5, kernel stretched by the factor) is an independent
    implementation of the same operator; borders differ (mirror vs renormalised)."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (96, 128)), (0, 0), 2)
    for s in (2, 4):
        ours = downscale(img, s)
        theirs = np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((128 // s, 96 // s), Image.Resampling.BICUBIC))
        m = 3
        assert np.abs(ours[m:-m, m:-m] - theirs[m:-m, m:-m]).max() < 0.05


PHOTOS = ("camera", "astronaut", "coffee", "chelsea")  # real photographs shipped in scikit-image (odd width included)


def _skimage_ssim(a: np.ndarray, b: np.ndarray, **overrides: object) -> float:
    """scikit-image with the settings of Wang et al. 2004 that ours claims: 11x11 Gaussian window
    (sigma 1.5, truncated at 3.5 sigma = radius 5), K1 0.01, K2 0.03, L 255, population (not
    sample) covariances as in the reference MATLAB code, mean over the 'valid' window positions."""
    from skimage.metrics import structural_similarity

    settings = {"data_range": 255, "gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "K1": 0.01, "K2": 0.03}
    return float(structural_similarity(a, b, **{**settings, **overrides}))


@pytest.mark.parametrize("name", PHOTOS)
def test_psnr_and_ssim_equal_scikit_image_on_real_photographs(name: str) -> None:
    import skimage.data
    from skimage.metrics import peak_signal_noise_ratio

    img = getattr(skimage.data, name)().astype(np.float64)
    truth = np.clip(np.rint(img if img.ndim == 2 else rgb_to_y(img)), 0, 255)
    for scale, kind in ((2, "lanczos"), (4, "bicubic")):
        h, w = (n - n % scale for n in truth.shape)
        hr = truth[:h, :w]
        sr = classical_luma(kind, scale)(np.clip(np.rint(downscale(hr, scale)), 0, 255).astype(np.uint8)).astype(np.float64)
        a, b = sr[scale:-scale, scale:-scale], hr[scale:-scale, scale:-scale]
        theirs = _skimage_ssim(a, b)
        # the two differ only in summation order (float64): agreement to 1e-12 on values ~0.9
        assert ssim(a, b) == pytest.approx(theirs, abs=1e-12)
        assert ssim(b, a) == pytest.approx(theirs, abs=1e-12)
        assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-10)
        # the comparison is sharp enough to see a wrong setting: sample covariance or another window
        assert abs(_skimage_ssim(a, b, use_sample_covariance=True) - theirs) > 1e-4
        assert abs(_skimage_ssim(a, b, sigma=1.0) - theirs) > 1e-4
    assert ssim(truth, truth) == 1.0 and psnr(truth, truth) == float("inf")


def test_bench_protocol_equals_an_independent_reimplementation(tmp_path: Path) -> None:
    """The whole `bench sr` protocol on real PNG files, against the same protocol written with
    scikit-image's MATLAB-compatible rgb2ycbcr and metrics (only the degradation operator, checked
    against Pillow above, and the upscaler under test are ours)."""
    import skimage.data
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio

    for name in PHOTOS[1:]:
        cv2.imwrite(str(tmp_path / f"{name}.png"), getattr(skimage.data, name)()[..., ::-1])
    for scale in (2, 3):
        row = evaluate(load_images(tmp_path), scale, "lanczos", classical_luma("lanczos", scale))
        psnrs, ssims = [], []
        for name in PHOTOS[1:]:
            rgb = getattr(skimage.data, name)()
            h, w = (n - n % scale for n in rgb.shape[:2])
            hr = rgb[:h, :w].astype(np.float64)
            lr = np.clip(np.rint(downscale(hr, scale)), 0, 255)
            assert np.abs(rgb_to_y(hr) - rgb2ycbcr(hr / 255.0)[..., 0]).max() < 1e-12  # the same BT.601 luma
            y_lr = np.clip(np.rint(rgb2ycbcr(lr / 255.0)[..., 0]), 0, 255).astype(np.uint8)
            y_hr = np.clip(np.rint(rgb2ycbcr(hr / 255.0)[..., 0]), 0, 255)
            y_sr = classical_luma("lanczos", scale)(y_lr).astype(np.float64)
            a, b = y_sr[scale:-scale, scale:-scale], y_hr[scale:-scale, scale:-scale]
            psnrs.append(peak_signal_noise_ratio(b, a, data_range=255))
            ssims.append(_skimage_ssim(a, b))
        assert (row.images, row.scale) == (3, scale)
        # not to 1e-12: one pixel of coffee has a luma within 1e-13 of a .5 rounding tie, which the
        # two conversions round to different levels (a 1-level change in one of 240,000 pixels)
        assert row.psnr_y == pytest.approx(float(np.mean(psnrs)), abs=1e-5)
        assert row.ssim_y == pytest.approx(float(np.mean(ssims)), abs=1e-7)


@pytest.mark.skipif(not (BENCH / "CSet5").is_dir(), reason="../shared/benchmarks not present")
def test_published_bicubic_rows_are_reproduced() -> None:
    images = load_images(BENCH / "CSet5")
    assert abs(evaluate(images, 2, "bicubic", classical_luma("bicubic", 2)).psnr_y - 33.66) <= 0.05
    assert abs(evaluate(images, 4, "bicubic", classical_luma("bicubic", 4)).psnr_y - 28.42) <= 0.05


def test_bench_cli_on_any_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(2):
        img = cv2.GaussianBlur(rng.uniform(0, 255, (64, 80, 3)), (0, 0), 1.5).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"img{i}.png"), img)
    out = tmp_path / "r.json"
    proc = run_fvsr("bench", "sr", "--images", tmp_path, "--scale", "2", "--json", out, check=True)
    assert "bicubic" in proc.stdout and "lanczos" in proc.stdout
    rows = json.loads(out.read_text())["results"]
    assert [r["model"] for r in rows] == ["bicubic", "fidelity-sr-x2", "fidelity-sr-x2+projection", "lanczos"]
    assert all(r["images"] == 2 and r["scale"] == 2 for r in rows)
    # the classical rows are the protocol checked against scikit-image above, on these files
    images = load_images(tmp_path)
    for r in rows:
        if r["model"] in ("bicubic", "lanczos"):
            assert r == evaluate(images, 2, r["model"], classical_luma(r["model"], 2)).to_json()
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = run_fvsr("bench", "sr", "--images", empty, "--scale", "2")
    assert bad.returncode != 0 and "no PNG/JPEG" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.skipif(not (BENCH / "CSet5").is_dir(), reason="../shared/benchmarks not present")
@pytest.mark.parametrize(("model_id", "scale", "fsrcnn"), [("fidelity-sr-x2", 2, 37.0), ("fidelity-sr-x4", 4, 30.7)])
def test_shipped_models_meet_their_cards_on_set5(model_id: str, scale: int, fsrcnn: float) -> None:
    """The weights we ship reproduce the Set5 number their card states (and beat FSRCNN's)."""
    from forensic_vsr.models.registry import resolve
    from forensic_vsr.models.runner import PlaneUpscaler

    model = resolve(model_id, None)
    net = PlaneUpscaler(model, "cpu")
    row = evaluate(load_images(BENCH / "CSet5"), scale, model.id, lambda y: net(y, 255))
    stated = model.card.data["validation"]["benchmarks"][f"CSet5_x{scale}"]["psnr_y"]  # type: ignore[union-attr]
    assert abs(row.psnr_y - stated) < 0.01 and row.psnr_y >= fsrcnn
