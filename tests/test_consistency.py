"""Data-consistency projection under A = antialiased bicubic shrink: the identities hold."""

from __future__ import annotations

import numpy as np
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
