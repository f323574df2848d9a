"""The degradation operator (MATLAB-style imresize) and `fvsr bench sr`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from forensic_vsr.benchmark import classical_luma, evaluate, load_images
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
    assert all(r["images"] == 2 and r["scale"] == 2 and 20 < r["psnr_y"] < 60 and 0 < r["ssim_y"] <= 1 for r in rows)
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
