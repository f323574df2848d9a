"""The CUDA path of issue 17, checked where no GPU is: the torch projection and the torch exact
maps run on the CPU device against the numpy path they replace on CUDA; the determinism settings
and the CUDA facts of the record; `--device cuda` without CUDA. (bench/gpu_check.sh measures
and checks the path on a GPU.)

Tolerances: the projection is float64 on both sides, only the summation order differs (torch's
products vs OpenBLAS's banded ones), so the rounded samples are equal and the residual agrees to
1e-12; the maps are float32 on both sides, dense products vs short filters, so they agree to
2e-3 levels (float32 rounding of sums of up to a few hundred terms of samples up to 255). A CUDA
run is deterministic on its own platform, not bit-equal to a CPU run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from forensic_vsr.environment import cuda_facts, environment_report
from forensic_vsr.errors import UsageError
from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.models.registry import resolve
from forensic_vsr.models.runner import CUBLAS_WORKSPACE_CONFIG, PlaneUpscaler, deterministic_cuda, select_device
from forensic_vsr.ops.consistency import Projector
from forensic_vsr.ops.consistency_torch import TorchProjector, projector_for
from forensic_vsr.uncertainty.exact import ExactMaps
from forensic_vsr.uncertainty.exact_torch import TorchExactMaps, exact_maps_for
from tests.helpers import record, run_fvsr, step


@pytest.fixture(scope="module")
def luma(carphone_distorted: Path) -> np.ndarray:
    with VideoReader(carphone_distorted) as reader:
        return frame_planes(next(iter(reader.frames())).frame)[0].copy()


@pytest.fixture(scope="module", params=[("fidelity-sr-x2", 2), ("fidelity-sr-x4", 4)], ids=["x2", "x4"])
def estimate(request: pytest.FixtureRequest, luma: np.ndarray) -> tuple[int, np.ndarray]:
    model_id, scale = request.param
    return scale, PlaneUpscaler(resolve(model_id, None), "cpu").predict(luma, 255)


def test_torch_projection_equals_the_numpy_one(estimate: tuple[int, np.ndarray], luma: np.ndarray) -> None:
    """The network's real estimate, and overshooting edges that make the POCS loop iterate
    (and run out), give the numpy projector's samples and residual."""
    scale, x_hat = estimate
    y = luma.astype(np.float64)
    h, w = x_hat.shape
    cpu, dev = Projector(h, w, scale), TorchProjector(h, w, scale, "cpu")
    hard = np.where(x_hat > 128, 400.0, -100.0)
    for x, iterations in ((x_hat, 10), (hard, 10), (hard, 1)):
        want, want_r = cpu.project_to_samples(x, y, 255, 0.25, iterations)
        got, got_r = dev.project_to_samples(x, y, 255, 0.25, iterations)
        assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (h, w)
        assert np.array_equal(got, want), f"x{scale}: {np.count_nonzero(got != want)} samples differ"
        assert got_r == pytest.approx(want_r, rel=1e-12, abs=1e-12)


def test_torch_maps_equal_the_numpy_ones(estimate: tuple[int, np.ndarray], luma: np.ndarray) -> None:
    scale, x_hat = estimate
    samples = np.clip(np.rint(x_hat), 0, 255)
    h, w = samples.shape
    for y, x, vmax in ((luma, samples, 255), (luma.astype(np.uint16) * 4, samples * 4, 1020)):
        want_s, want_r = ExactMaps(h, w, scale).compute(y, x, vmax)
        got_s, got_r = TorchExactMaps(h, w, scale, "cpu").compute(y, x, vmax)
        assert got_s.dtype == np.float32 and got_s.shape == want_s.shape
        assert np.abs(got_s - want_s).max() < 2e-3 and np.abs(got_r - want_r).max() < 2e-3
        assert want_s.max() > 8  # the frame has synthesized detail, so the comparison means something


def test_the_cpu_keeps_the_numpy_path() -> None:
    """On the CPU the golden hashes' arithmetic runs; any other device gets the torch classes."""
    assert type(projector_for(64, 64, 2, "cpu")) is Projector
    assert isinstance(projector_for(64, 64, 2, "cuda:0"), TorchProjector)
    assert type(exact_maps_for(64, 64, 2, "cpu")) is ExactMaps
    with pytest.raises(ValueError, match="multiple of the scale"):
        TorchExactMaps(63, 64, 2, "cpu")


def test_deterministic_cuda_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cuda.matmul.allow_tf32)
    try:
        deterministic_cuda()
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cuda.matmul.allow_tf32 = before


def test_cuda_facts_are_null_off_cuda() -> None:
    facts = cuda_facts("cpu")
    assert facts and all(v is None for v in facts.values())
    if not torch.cuda.is_available():  # a chain that ran on both devices asks torch about the CUDA one
        with pytest.raises((AssertionError, RuntimeError)):
            cuda_facts("cpu,cuda:0")
    assert set(facts) >= {"torch_cuda", "cudnn", "gpu", "driver", "deterministic_algorithms", "cublas_workspace_config"}
    assert environment_report("cpu")["determinism"]["cuda"] == facts


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_line_and_exit_2(tmp_path: Path, keypair: tuple[Path, Path], carphone_distorted: Path) -> None:
    with pytest.raises(UsageError, match="no CUDA device"):
        select_device("cuda")
    proc = run_fvsr("enhance", carphone_distorted, "-o", tmp_path / "b", "--key", keypair[0], "--model", "fidelity-sr-x2",
                    "--frames", "0:1", "--device", "cuda", "--no-report", "--mode", "investigative")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "no CUDA device" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_cpu_run_records_cuda_fields_as_null(tmp_path: Path, keypair: tuple[Path, Path], carphone_distorted: Path) -> None:
    """A real learned run on the CPU: the statement's environment has the CUDA facts, all null,
    and the runner record says where it ran."""
    out = tmp_path / "b"
    run_fvsr("enhance", carphone_distorted, "-o", out, "--key", keypair[0], "--model", "fidelity-sr-x2", "--frames", "0:1",
             "--device", "cpu", "--no-report", "--no-maps", "--mode", "investigative", "-q", check=True)  # fmt: skip
    statement = record(out, "step.run")
    env = statement["predicate"]["buildDefinition"]["internalParameters"]
    assert env["device"] == "cpu"
    assert env["determinism"]["cuda"] == cuda_facts("cpu")
    assert "cpu" in json.dumps(step(out))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu_check.py runs these on one)")


@cuda
def test_cuda_path_agrees_with_the_cpu_and_repeats_to_the_bit(estimate: tuple[int, np.ndarray], luma: np.ndarray) -> None:
    """On CUDA: the network, the projection and the maps give the same bits twice; the
    projection's samples equal the CPU's but for float64 rounding ties, the maps agree to 2e-3."""
    scale, x_hat = estimate
    model_id = f"fidelity-sr-x{scale}"
    net = PlaneUpscaler(resolve(model_id, None), "cuda")
    first, again = net.predict(luma, 255), net.predict(luma, 255)
    assert np.array_equal(first, again)
    assert np.abs(first - x_hat).max() < 1e-2  # float32 network, another convolution algorithm
    y = luma.astype(np.float64)
    h, w = x_hat.shape
    dev = TorchProjector(h, w, scale, "cuda")
    got, got_r = dev.project_to_samples(x_hat, y, 255, 0.25)
    assert np.array_equal(got, dev.project_to_samples(x_hat, y, 255, 0.25)[0])
    want, want_r = Projector(h, w, scale).project_to_samples(x_hat, y, 255, 0.25)
    assert np.count_nonzero(got != want) <= got.size * 1e-5 and np.abs(got - want).max() <= 1
    assert got_r == pytest.approx(want_r, rel=1e-9)
    maps = TorchExactMaps(h, w, scale, "cuda")
    s, r = maps.compute(luma, want)
    s2, r2 = maps.compute(luma, want)
    assert np.array_equal(s, s2) and np.array_equal(r, r2)
    want_s, want_r_map = ExactMaps(h, w, scale).compute(luma, want)
    assert np.abs(s - want_s).max() < 2e-3 and np.abs(r - want_r_map).max() < 2e-3


@cuda
def test_cuda_facts_on_cuda() -> None:
    select_device("cuda")
    facts = cuda_facts("cuda:0")
    assert facts["torch_cuda"] and facts["cudnn"] and facts["gpu"]
    assert facts["deterministic_algorithms"] is True and facts["cudnn_deterministic"] is True and facts["cudnn_benchmark"] is False
    assert facts["cublas_workspace_config"] == CUBLAS_WORKSPACE_CONFIG and facts["tf32_matmul"] is False
