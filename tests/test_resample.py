"""Native-plane resampling: kernels, geometry, chroma registration, and an external cross-check
against Pillow's independent implementation of the same kernels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from forensic_vsr.ops.resample import axis_plan, upscale_plane


@pytest.mark.parametrize(("kind", "pil"), [("bicubic", Image.Resampling.BICUBIC), ("lanczos", Image.Resampling.LANCZOS)])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_pillow_in_the_interior(kind: str, pil: Image.Resampling, scale: int) -> None:
    rng = np.random.default_rng(scale)
    # smooth-ish content so that Pillow's 8-bit intermediate rounding stays within one level
    base = rng.integers(30, 220, (12, 15)).astype(np.uint8)
    img = np.asarray(Image.fromarray(base).resize((60, 48), Image.Resampling.BICUBIC))
    ours = upscale_plane(img, kind=kind, scale=scale, out_width=60 * scale, out_height=48 * scale)
    theirs = np.asarray(Image.fromarray(img).resize((60 * scale, 48 * scale), pil))
    m = 4 * scale  # Pillow renormalises truncated kernels at the borders; we replicate edge samples
    diff = np.abs(ours[m:-m, m:-m].astype(int) - theirs[m:-m, m:-m].astype(int))
    assert diff.max() <= 1, f"max difference {diff.max()}"


def test_phase_weights_are_normalised_and_interpolating() -> None:
    for kind in ("bicubic", "lanczos"):
        plan = axis_plan(kind, 3, 1, "left")
        np.testing.assert_allclose(plan.weights.sum(axis=1), 1.0, rtol=1e-6)
    # x1 "upscaling" is the identity: the kernel interpolates (passes through samples)
    x = np.arange(40, dtype=np.uint8).reshape(5, 8) * 5
    assert np.array_equal(upscale_plane(x, kind="lanczos", scale=1, out_width=8, out_height=5), x)


def test_constant_planes_stay_constant_for_every_format_geometry() -> None:
    for shape, sub in (((50, 89), (2, 2)), ((99, 177), (1, 1)), ((99, 89), (2, 1))):
        plane = np.full(shape, 1000, np.uint16)
        for scale in (2, 3, 4):
            out = upscale_plane(
                plane,
                kind="lanczos",
                scale=scale,
                out_width=-(-shape[1] * scale // 1),
                out_height=shape[0] * scale,
                subsampling=sub,
                max_value=1023,
            )
            assert np.unique(out).tolist() == [1000]


def test_ten_bit_values_are_clipped_to_the_format_range() -> None:
    plane = np.zeros((8, 8), np.uint16)
    plane[:, 4:] = 1023  # a hard edge rings above 1023 with Lanczos
    out = upscale_plane(plane, kind="lanczos", scale=2, out_width=16, out_height=16, max_value=1023)
    assert out.max() == 1023 and out.dtype == np.uint16


def test_left_sited_chroma_stays_registered_with_luma() -> None:
    """A vertical edge at luma column 20 (chroma column 10, left-sited) must land at output luma
    column 40 in both planes after x2."""
    luma = np.zeros((4, 40), np.uint8)
    luma[:, 20:] = 200
    chroma = np.zeros((2, 20), np.uint8)
    chroma[:, 10:] = 200
    y = upscale_plane(luma, kind="bicubic", scale=2, out_width=80, out_height=8).astype(int)
    c = upscale_plane(chroma, kind="bicubic", scale=2, out_width=40, out_height=4, subsampling=(2, 2), siting="left").astype(int)
    # position where each crosses half height, in output luma coordinates
    y_cross = np.interp(100, y[0], np.arange(80))
    c_cross = 2 * np.interp(100, c[0], np.arange(40))  # left siting: chroma j sits at luma 2j
    assert abs(y_cross - 39.5) < 0.6
    assert abs(c_cross - y_cross) < 1.1


def test_packed_rgb_is_resampled_per_component() -> None:
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0] = 255
    out = upscale_plane(rgb, kind="bicubic", scale=2, out_width=12, out_height=12)
    assert out.shape == (12, 12, 3)
    assert (out[..., 0] == 255).all() and (out[..., 1:] == 0).all()


def test_allocator_thresholds_apply_on_glibc():
    """The page-fault fix behind the enhance speed (docs/benchmarks.md) must really take effect."""
    import platform

    from forensic_vsr.allocator import keep_heap

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt thresholds are glibc's")
    assert keep_heap() is True
