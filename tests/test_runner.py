"""The inference runner: tiled inference gives the untiled output, batches give the single-frame
output, and `fvsr enhance --tile/--batch` writes the same frames as a plain run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.models.registry import resolve
from forensic_vsr.models.runner import PlaneUpscaler, receptive_radius
from tests.helpers import run_fvsr
from tests.helpers import step as step_of


@pytest.fixture(scope="module")
def luma(carphone: Path) -> np.ndarray:
    """A real frame's luma (176x144), mirrored to 3x3 so tiles cut through real texture."""
    with VideoReader(carphone) as reader:
        for decoded in reader.frames():
            if decoded.index == 30:
                y = frame_planes(decoded.frame)[0]
                break
    return np.block([[y, y[:, ::-1], y], [y[::-1], y[::-1, ::-1], y[::-1]], [y, y[:, ::-1], y]])[:300, :333].copy()


@pytest.fixture(scope="module")
def x2() -> PlaneUpscaler:
    return PlaneUpscaler(resolve("fidelity-sr-x2", None), "cpu", tile=0)


def _with_tile(tile: int, margin: int | None = None) -> PlaneUpscaler:
    net = PlaneUpscaler(resolve("fidelity-sr-x2", None), "cpu", tile=tile)
    if margin is not None:
        net.margin = margin
    return net


def test_margin_covers_the_receptive_field(x2: PlaneUpscaler) -> None:
    # head + 6 blocks x 2 + tail convolutions of radius 1: 14 samples, plus 2 of safety
    assert receptive_radius(x2.net) == 14 and x2.margin == 16


@pytest.mark.parametrize("tile", [128, 150, 250])
def test_tiled_equals_untiled_to_the_bit_with_the_reference_convolution(luma: np.ndarray, tile: int) -> None:
    """With oneDNN off, convolutions sum in a fixed order whatever the tile's shape, so the float
    outputs must be identical: this pins the tiling geometry (margin, crops, borders) exactly."""
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=None):
        whole = _with_tile(0).predict(luma, 255)
        tiled = _with_tile(tile).predict(luma, 255)
    assert tiled.shape == whole.shape == (600, 666)
    assert np.array_equal(tiled, whole)


def test_too_small_a_margin_shows_seams(luma: np.ndarray) -> None:
    """The test above can fail: cut tiles without enough context and the output changes."""
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=None):
        whole = _with_tile(0).predict(luma, 255)
        seamed = _with_tile(128, margin=4).predict(luma, 255)
    assert np.abs(seamed - whole).max() > 0.5


def test_tiled_equals_untiled_after_rounding(luma: np.ndarray, x2: PlaneUpscaler) -> None:
    """With the default (oneDNN) backend too: windows are never smaller than 160 samples, so
    oneDNN runs the same algorithm on every window as on the whole frame."""
    whole = x2.predict(luma, 255)
    for tile in (128, 200):
        tiled = _with_tile(tile)
        assert np.array_equal(tiled.predict(luma, 255), whole)
        assert np.array_equal(tiled(luma, 255), x2(luma, 255))


def test_memory_budget_picks_tiles(luma: np.ndarray) -> None:
    small = PlaneUpscaler(resolve("fidelity-sr-x2", None), "cpu", memory_budget_mib=2)
    plan = small.tiling(*luma.shape)
    assert plan.tile > 0 and plan.margin == 16
    assert PlaneUpscaler(resolve("fidelity-sr-x2", None), "cpu").tiling(*luma.shape).tile == 0  # 1 GiB: untiled


def test_batches_equal_single_frames(luma: np.ndarray, x2: PlaneUpscaler) -> None:
    frames = [luma, np.ascontiguousarray(luma[::-1]), np.ascontiguousarray(luma[:, ::-1])]
    batched = PlaneUpscaler(resolve("fidelity-sr-x2", None), "cpu", tile=0, batch=3).predict_many(frames, 255)
    for frame, out in zip(frames, batched, strict=True):
        assert np.array_equal(out, x2.predict(frame, 255))


def test_enhance_with_tiles_and_batches_writes_the_same_frames(tmp_path: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    outputs = {}
    for name, extra in (("plain", []), ("tiled", ["--tile", "128", "--batch", "3"])):
        bundle = tmp_path / name
        run_fvsr(
            "enhance", carphone, "-o", bundle, "--key", keypair[0], "--model", "fidelity-sr-x2",
            "--frames", "0:4", "--no-report", "--no-maps", "--mode", "investigative", "-q", *extra, check=True,
        )  # fmt: skip
        outputs[name] = (bundle / "output.framehash").read_text().splitlines()[-4:]
        step = step_of(bundle)
        if name == "tiled":
            assert step["runner"]["tiling"] == {"tile": 128, "margin": 16} and step["runner"]["batch"] == 3
    assert outputs["plain"] == outputs["tiled"]
    bad = run_fvsr("enhance", carphone, "-o", tmp_path / "bad", "--key", keypair[0], "--model", "fidelity-sr-x2", "--tile", "50")
    assert bad.returncode != 0 and "--tile" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
