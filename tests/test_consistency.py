"""Data-consistency projection under A = antialiased bicubic shrink: the identities hold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forensic_vsr.ops.consistency import Projector


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([2, 3, 4]), st.integers(4, 12), st.integers(4, 12), st.integers(0, 2**31))
def test_projection_identities(scale: int, h: int, w: int, seed: int) -> None:
    p = Projector(h * scale, w * scale, scale)
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 255, (h, w))
    x_hat = rng.uniform(0, 255, (h * scale, w * scale))
    np.testing.assert_allclose(p.degrade(p.pinv(y)), y, atol=1e-8)  # A A† y = y
    x = p.project(x_hat, y)
    np.testing.assert_allclose(p.degrade(x), y, atol=1e-8)  # A x = y after projection
    null_part = x_hat - p.pinv(p.degrade(x_hat))  # (I - A†A) x̂ is untouched by the projection
    np.testing.assert_allclose(x - p.pinv(p.degrade(x)), null_part, atol=1e-7)
    np.testing.assert_allclose(p.degrade(null_part), 0, atol=1e-8)


def test_rounded_projection_keeps_a_small_residual() -> None:
    p = Projector(64, 96, 2)
    rng = np.random.default_rng(3)
    y = rng.uniform(20, 230, (32, 48))
    x = np.rint(p.project(rng.uniform(0, 255, (64, 96)), y))
    assert p.rms_residual(x, y) < 0.5
    assert p.rms_residual(np.full((64, 96), 128.0), y) > 10


@pytest.mark.parametrize("operator", ["bicubic-antialiased", "box"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pseudo_inverse_identities(operator, scale):
    """A A† y = y; A x̃ = y after projection; x̂ = (range part) + (null part) with A(null part) = 0."""
    rng = np.random.default_rng(scale)
    h, w = 12 * scale, 20 * scale
    p = Projector(h, w, scale, operator)
    y = rng.uniform(0, 255, (h // scale, w // scale))
    assert np.allclose(p.degrade(p.pinv(y)), y, atol=1e-9)
    x_hat = rng.uniform(0, 255, (h, w))
    assert np.allclose(p.degrade(p.project(x_hat, y)), y, atol=1e-9)
    null = x_hat - p.pinv(p.degrade(x_hat))
    assert np.allclose(p.degrade(null), 0, atol=1e-9)
    # the null-space part is orthogonal to the range of A^T
    assert abs(float(np.sum(null * p.pinv(y)))) < 1e-6 * float(np.sum(np.abs(null)) * np.abs(p.pinv(y)).max())


def test_box_operator_is_the_mean_of_each_block():
    p = Projector(4, 6, 2, "box")
    x = np.arange(24, dtype=np.float64).reshape(4, 6)
    assert np.allclose(p.degrade(x), x.reshape(2, 2, 3, 2).mean(axis=(1, 3)))


def test_exact_maps_match_the_definitions_and_flag_regions():
    from forensic_vsr.ops.degrade import downscale
    from forensic_vsr.uncertainty.exact import ExactMaps, flagged_regions

    rng = np.random.default_rng(3)
    hr = np.clip(rng.normal(128, 40, (48, 64)), 0, 255)
    y = np.clip(np.rint(downscale(hr, 2)), 0, 255)
    p = Projector(48, 64, 2)
    maps = ExactMaps(48, 64, 2)
    # an output that reproduces the input: R is only what rounding leaves; S is the null part
    consistent = p.project(hr, y)
    s, r = maps.compute(y, consistent)
    assert np.allclose(s, np.abs(consistent - p.pinv(p.degrade(consistent))), atol=1e-2)
    assert r.max() < 1e-2
    # an output that contradicts the input in one block shows it in R there, not elsewhere
    bad = consistent.copy()
    bad[10:20, 10:20] += 30
    _, r_bad = maps.compute(y, bad)
    assert r_bad[10:20, 10:20].mean() > 5 * max(r_bad[30:, 40:].mean(), 1e-3)
    # 10-bit samples give the same maps in 8-bit levels
    s10, _ = maps.compute(y * 4, consistent * (1023 / 255), max_value=1023)
    assert np.allclose(s10, s * (1023 / 255) / 4 * (255 * 4 / 1023), atol=1e-2)
    stats = flagged_regions(s, threshold=float(np.percentile(s, 90)))
    assert 0.05 < stats["fraction_flagged"] <= 0.11 and stats["regions"] >= 1
    assert stats["largest_region_px"] == stats["boxes"][0]["area"]


@pytest.mark.parametrize("operator", ["bicubic-antialiased", "box"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_filter_operator_equals_the_dense_matrices(operator, scale):
    """A, Aᵀ and A† as short filters under symmetric extension are the dense operator, edges
    included, to float32 precision (odd low-resolution sizes too)."""
    from forensic_vsr.ops.consistency import FilterOperator, axis_pinv

    rng = np.random.default_rng(scale)
    for lr_h, lr_w in [(41, 43), (57, 90)]:
        h, w = lr_h * scale, lr_w * scale
        assert FilterOperator.fits(h, w, scale, operator)
        f, p = FilterOperator(h, w, scale, operator), Projector(h, w, scale, operator)
        wy, _ = axis_pinv(h, scale, operator)
        wx, _ = axis_pinv(w, scale, operator)
        x = rng.uniform(0, 255, (h, w))
        y = rng.uniform(0, 255, (lr_h, lr_w))
        np.testing.assert_allclose(f.degrade(x.astype(np.float32)), p.degrade(x), atol=2e-4)
        np.testing.assert_allclose(f.adjoint(y.astype(np.float32)), wy.T @ y @ wx, atol=2e-4)
        np.testing.assert_allclose(f.pinv(y.astype(np.float32)), p.pinv(y), atol=5e-4)
        # the identities hold through the filters themselves
        np.testing.assert_allclose(f.degrade(f.pinv(y.astype(np.float32))), y, atol=5e-4)
    assert not FilterOperator.fits(20 * scale, 200 * scale, scale, operator) or operator == "box"


def test_exact_maps_use_the_filters_for_large_frames_and_agree_with_dense():
    from forensic_vsr.uncertainty.exact import ExactMaps

    rng = np.random.default_rng(7)
    y = rng.uniform(0, 255, (48, 50)).astype(np.uint8)
    x = rng.uniform(0, 255, (96, 100)).astype(np.uint8)
    fast = ExactMaps(96, 100, 2)
    assert fast._filters is not None
    p = Projector(96, 100, 2)
    s, r = fast.compute(y, x)
    xf = x.astype(np.float64)
    np.testing.assert_allclose(s, np.abs(xf - p.pinv(p.degrade(xf))), atol=1e-3)
    np.testing.assert_allclose(r, np.abs(p.pinv(y - p.degrade(xf))), atol=1e-3)


def test_flagged_regions_report_frame_coordinates():
    from forensic_vsr.uncertainty.exact import flagged_regions

    s = np.zeros((60, 80), np.float32)
    s[40:45, 50:60] = 20  # 50 px
    s[5:7, 70:73] = 9  # 6 px
    stats = flagged_regions(s, 8.0)
    assert stats["regions"] == 2 and stats["largest_region_px"] == 50
    assert stats["boxes"][0] == {"x": 50, "y": 40, "w": 10, "h": 5, "area": 50}
    assert stats["boxes"][1] == {"x": 70, "y": 5, "w": 3, "h": 2, "area": 6}
    assert stats["fraction_flagged"] == round(56 / 4800, 6)
    empty = flagged_regions(np.zeros((10, 10), np.float32), 8.0)
    assert empty["regions"] == 0 and empty["boxes"] == [] and empty["largest_region_px"] == 0


def test_map_storage_rounds_half_to_even_and_saturates():
    from forensic_vsr.uncertainty.exact import MAP_SCALE, to_gray16

    levels = np.array([[0.0, 0.125, 0.375, 1.0, -3.0, 1e6, 2.5]], np.float32)
    want = np.clip(np.rint(levels.astype(np.float64) * MAP_SCALE), 0, 65535).astype("<u2")
    assert np.array_equal(to_gray16(levels), want)
    assert np.array_equal(to_gray16(levels, 3.0), np.clip(np.rint(levels.astype(np.float64) * 3 * MAP_SCALE), 0, 65535).astype("<u2"))
