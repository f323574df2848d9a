"""The CPU speed-ups of issue 17 keep every output bit-identical: the networks and the scale
head with activations in oneDNN's blocked layout give the default path's floats, at 1 and 2
torch threads, on either side of aten's oneDNN threshold; the projection's single residual
measurement is the one a second measurement would give, and its banded products give the dense
products' samples. (Correctness, not timing: the timings are bench/bench_cpu.py's.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.models.blocked import ONEDNN_MIN_ELEMENTS, onednn_convolves
from forensic_vsr.models.registry import registry, resolve
from forensic_vsr.models.runner import PlaneUpscaler, to_samples
from forensic_vsr.ops.consistency import Projector, axis_bands, axis_pinv
from forensic_vsr.uncertainty.exact import ExactMaps
from forensic_vsr.uncertainty.head import STRIP_ROWS, LearnedScale


@pytest.fixture
def threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def luma(carphone: Path) -> np.ndarray:
    """A real frame's luma (176x144: 25344 samples, above the oneDNN threshold)."""
    with VideoReader(carphone) as reader:
        for decoded in reader.frames():
            if decoded.index == 12:
                return frame_planes(decoded.frame)[0].copy()
    raise AssertionError("carphone has fewer than 13 frames")


def _inputs(luma: np.ndarray) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(17)
    side = int(np.sqrt(ONEDNN_MIN_ELEMENTS))  # 143: 20449 samples, just under; 144x143 just over
    shapes = {"under": (1, 1, side, side), "over": (1, 1, side + 1, side), "batch": (2, 1, 40, 50), "frame": (1, 1, 300, 333)}
    out = {name: torch.from_numpy(rng.random(shape, dtype=np.float32)) for name, shape in shapes.items()}
    out["real"] = torch.from_numpy(luma.astype(np.float32) / 255)[None, None]
    return out


@pytest.mark.parametrize("model_id", ["fidelity-sr-x2", "fidelity-sr-x4", "fidelity-restore"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_blocked_network_equals_the_default_path(model_id: str, n_threads: int, luma: np.ndarray, threads: None) -> None:
    torch.set_num_threads(n_threads)
    net = PlaneUpscaler(resolve(model_id, None), "cpu", tile=0)
    assert net.blocked is not None
    for name, x in _inputs(luma).items():
        with torch.inference_mode():
            want = net.net(x)
            got = net.blocked(x) if onednn_convolves(x, 1) else want
            via_runner = net._forward(x[:, 0].numpy())
        assert onednn_convolves(x, 1) == (name != "under")
        assert torch.equal(got, want), f"{model_id} {name}: blocked layout differs from the default path"
        assert np.array_equal(via_runner, want[:, 0].numpy()), f"{model_id} {name}: runner output differs"


def test_blocked_network_below_the_threshold_would_differ(luma: np.ndarray) -> None:
    """The threshold is not a formality: under it torch uses its own convolution, whose sums
    the blocked path does not reproduce (so the runner must, and does, fall back)."""
    net = PlaneUpscaler(resolve("fidelity-sr-x2", None), "cpu", tile=0)
    x = torch.from_numpy(np.random.default_rng(3).random((1, 1, 17, 23), dtype=np.float32))
    with torch.inference_mode():
        assert not torch.equal(net.blocked(x), net.net(x))  # type: ignore[misc]
        assert torch.equal(torch.from_numpy(net._forward(x[:, 0].numpy())), net.net(x)[:, 0])


def test_outputs_do_not_depend_on_the_thread_count(luma: np.ndarray, threads: None) -> None:
    frame = np.block([[luma, luma[:, ::-1]], [luma[::-1], luma]])  # 352x288
    outs = []
    for n in (1, 2):
        torch.set_num_threads(n)
        outs.append(PlaneUpscaler(resolve("fidelity-sr-x2", None), "cpu")(frame, 255))
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_blocked_scale_head_equals_the_default_path(n_threads: int, luma: np.ndarray, threads: None) -> None:
    """Strips of the shipped x2 head over a real output, the last strip short, and a frame so
    narrow that its strips fall under the threshold and run the default path."""
    torch.set_num_threads(n_threads)
    card = registry()["fidelity-sr-x2"]
    head = LearnedScale(card.data["uncertainty"]["x2"]["head"], card.path.parent, 2)
    packed = head.packed
    assert packed is not None
    up = PlaneUpscaler(resolve("fidelity-sr-x2", None), "cpu")
    for y in (luma, np.ascontiguousarray(luma[:, :24])):
        x_hat = up(y, 255).astype(np.float32)
        assert x_hat.shape[0] % STRIP_ROWS != 0
        s, _ = ExactMaps(*x_hat.shape, 2).compute(y, x_hat)
        head.packed = packed
        got = head(x_hat, y.astype(np.float32), s)
        head.packed = None
        want = head(x_hat, y.astype(np.float32), s)
        assert np.array_equal(got, want)


def _projection_before_issue_17(p: Projector, x_hat: np.ndarray, y: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
    """What PlaneStage.luma did before: project, loop, then round and measure once more."""
    x = p.project(x_hat, y)
    for _ in range(iterations):
        if p.rms_residual(np.clip(np.rint(x), 0, 255), y) <= 0.25:
            break
        x = p.project(np.clip(x, 0, 255), y)
    out = to_samples(x, 255, np.uint8)
    return out, p.rms_residual(out, y)


def test_projection_measures_the_residual_once(luma: np.ndarray) -> None:
    """The samples and residual are those of the loop that measured the residual twice, also
    when the iterations run out before the target is met."""
    y = luma.astype(np.float64)
    h, w = y.shape
    p = Projector(2 * h, 2 * w, 2)
    x_hat = PlaneUpscaler(resolve("fidelity-sr-x2", None), "cpu").predict(luma, 255)
    hard = np.where(x_hat > 128, 400.0, -100.0)  # overshooting edges: clipping breaks consistency
    residuals = []
    for x, iterations in ((x_hat, 10), (hard, 10), (hard, 1), (hard, 0)):
        samples, residual = p.project_to_samples(x, y, 255, 0.25, iterations)
        want, want_residual = _projection_before_issue_17(p, x, y, iterations)
        assert np.array_equal(samples.astype(np.uint8), want) and residual == want_residual
        residuals.append(residual)
    assert residuals[0] <= 0.25 < residuals[3]  # the loop did stop early once and ran out once


def _dense_projection(h: int, w: int, scale: int) -> Projector:
    """The projector with the dense float64 products it had before the banded ones."""

    class Dense(Projector):
        def degrade(self, x: np.ndarray) -> np.ndarray:
            return axis_pinv(h, scale)[0] @ x @ axis_pinv(w, scale)[0].T

        def pinv(self, r: np.ndarray) -> np.ndarray:
            return axis_pinv(h, scale)[1] @ r @ axis_pinv(w, scale)[1].T

    return Dense(h, w, scale)


@pytest.mark.parametrize("model_id,scale", [("fidelity-sr-x2", 2), ("fidelity-sr-x4", 4)])
def test_banded_projection_equals_the_dense_one(model_id: str, scale: int, luma: np.ndarray) -> None:
    """The banded products give the dense products' rounded samples and recorded residual (6
    decimals, as step.run has it) on a real frame, also when POCS iterates and runs out; at the
    bench's frame size the band is a small part of P, which is where the time goes."""
    y = luma.astype(np.float64)
    h, w = scale * y.shape[0], scale * y.shape[1]
    banded, dense = Projector(h, w, scale), _dense_projection(h, w, scale)
    x_hat = PlaneUpscaler(resolve(model_id, None), "cpu").predict(luma, 255)
    hard = np.where(x_hat > 128, 400.0, -100.0)
    for x, iterations in ((x_hat, 10), (hard, 10), (hard, 1)):
        got, got_r = banded.project_to_samples(x, y, 255, 0.25, iterations)
        want, want_r = dense.project_to_samples(x, y, 255, 0.25, iterations)
        assert np.array_equal(got, want) and round(got_r, 6) == round(want_r, 6)
    for n in (h, w):
        for m, bands in zip(axis_pinv(n, scale), axis_bands(n, scale), strict=True):
            z = np.random.default_rng(n).uniform(-255, 255, (m.shape[1], 7))
            assert np.allclose(bands.left(z), m @ z, rtol=0, atol=1e-10)
            assert np.allclose(bands.right(z.T), z.T @ m.T, rtol=0, atol=1e-10)
    for n in (576 * scale, 768 * scale):  # the bench's 768x576 frame: the band is a fraction of P
        _, p_bands = axis_bands(n, scale)
        assert sum(b.size for *_, b in p_bands.blocks) < 0.35 * p_bands.shape[0] * p_bands.shape[1]
