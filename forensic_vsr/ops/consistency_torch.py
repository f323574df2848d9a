"""The data-consistency projection (ops.consistency.Projector) on a torch device, for CUDA runs.

The same float64 arithmetic, POCS loop and early exit as the CPU projector; the products are
dense torch matrix products on the device (a GPU multiplies the whole matrices faster than it
would walk their bands), with torch's rounding (`torch.round`: half to even, as `np.rint`) and
its mean. Summation order differs from the CPU's BLAS, so results agree with the CPU projector
to float64 rounding, not to the bit (tests/test_gpu_path.py runs this on the CPU device against
the numpy path); on one GPU model, driver and library stack, two runs are bit-identical
(deterministic cuBLAS, models.runner.select_device).

`projector_for` picks the implementation by the stage's device. torch is imported only where a
device projector is built or run: a CPU run (lanczos included) never loads it for this module."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from forensic_vsr.ops.consistency import OPERATOR, Projector, axis_pinv

if TYPE_CHECKING:
    import torch


@functools.lru_cache(maxsize=16)
def device_axis_pinv(
    hr_len: int, scale: int, device: str, dtype: torch.dtype, operator: str = OPERATOR
) -> tuple[torch.Tensor, torch.Tensor]:
    """`axis_pinv`'s W and P = Wᵀ(WWᵀ)⁻¹ (computed in float64 on the CPU, as the CPU path does),
    as `dtype` tensors on `device`."""
    import torch

    w, p = axis_pinv(hr_len, scale, operator)
    return torch.from_numpy(w).to(device, dtype), torch.from_numpy(p).to(device, dtype)


class SeparableOperator:
    """A x = Wy x Wxᵀ and A† r = Py r Pxᵀ as dense products of `dtype` tensors on `device`."""

    def __init__(self, height: int, width: int, scale: int, device: str, dtype: torch.dtype, operator: str = OPERATOR) -> None:
        self.wy, self.py = device_axis_pinv(height, scale, device, dtype, operator)
        wx, px = device_axis_pinv(width, scale, device, dtype, operator)
        self.wxt, self.pxt = wx.T, px.T

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        return self.wy @ x @ self.wxt

    def pinv(self, r: torch.Tensor) -> torch.Tensor:
        return self.py @ r @ self.pxt


@functools.lru_cache(maxsize=16)
def separable_operator(height: int, width: int, scale: int, device: str, dtype: torch.dtype) -> SeparableOperator:
    return SeparableOperator(height, width, scale, device, dtype)


class TorchProjector(Projector):
    """Projector whose products run on `device` (float64); takes and returns numpy arrays, as the
    CPU projector does, so a stage calls either the same way."""

    device: str

    def __init__(self, height: int, width: int, scale: int, device: str, operator: str = OPERATOR) -> None:
        super().__init__(height, width, scale, operator)
        object.__setattr__(self, "device", device)

    @property
    def _op(self) -> SeparableOperator:
        import torch

        return separable_operator(self.height, self.width, self.scale, self.device, torch.float64)

    def degrade(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self._op.degrade(x)

    def pinv(self, r: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self._op.pinv(r)

    def project_to_samples(
        self, x_hat: np.ndarray, y: np.ndarray, max_value: int, target: float, iterations: int = 10
    ) -> tuple[np.ndarray, float]:
        """Projector.project_to_samples, its loop run on device tensors."""
        import torch

        xt = torch.from_numpy(np.ascontiguousarray(x_hat, np.float64)).to(self.device)
        yt = torch.from_numpy(np.ascontiguousarray(y, np.float64)).to(self.device)
        rounded, residual = super().project_to_samples(xt, yt, max_value, target, iterations)  # type: ignore[arg-type]
        return rounded.cpu().numpy(), residual  # type: ignore[attr-defined]

    def clip(self, x: torch.Tensor, max_value: int) -> torch.Tensor:  # type: ignore[override]
        return x.clamp(0, max_value)

    def rounded(self, x: torch.Tensor, y: torch.Tensor, max_value: int) -> tuple[torch.Tensor, float]:  # type: ignore[override]
        r = x.round().clamp_(0, max_value)  # half to even, as np.rint
        d = self.degrade(r) - y
        return r, float((d * d).mean().sqrt())


def projector_for(height: int, width: int, scale: int, device: str) -> Projector:
    """The projector of a stage whose network runs on `device` (a torch device name): the numpy
    one on the CPU (its rounded samples are the golden hashes'), the torch one elsewhere."""
    if device.split(":")[0] == "cpu":
        return Projector(height, width, scale)
    return TorchProjector(height, width, scale, device)
