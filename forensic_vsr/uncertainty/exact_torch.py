"""The exact maps S and R (uncertainty.exact) on a torch device, for CUDA runs.

S = |x̂ - A†A x̂| and R = |A†y - A†A x̂| in 8-bit levels, float32, as uncertainty.exact.ExactMaps
computes them, but with A and A† as dense float32 matrix products on the device
(ops.consistency_torch.SeparableOperator) instead of the CPU's short filters. Both are the same
operator to float32 precision; they differ by float32 rounding (about 1e-5 of the largest
sample), so the gray16 maps (quarter-level steps) of a CUDA run can differ from a CPU run's at a
few samples that lie on a step boundary: same-platform deterministic, not bit-equal across
devices (tests/test_gpu_path.py runs this on the CPU device against the numpy path).

`exact_maps_for` picks the implementation by device; on the CPU the numpy path stays."""

from __future__ import annotations

import numpy as np

from forensic_vsr.ops.consistency import OPERATOR
from forensic_vsr.uncertainty.exact import ExactMaps


class TorchExactMaps:
    """ExactMaps.compute on `device`: numpy planes in, numpy float32 maps out."""

    def __init__(self, height: int, width: int, scale: int, device: str, operator: str = OPERATOR) -> None:
        if height % scale or width % scale:
            raise ValueError(f"output {width}x{height} is not a multiple of the scale {scale}")
        if operator != OPERATOR:
            raise ValueError(f"the device maps implement {OPERATOR}, not {operator}")
        import torch  # only here: a CPU run's maps never load torch for this module

        from forensic_vsr.ops.consistency_torch import separable_operator

        self.height, self.width, self.scale, self.device = height, width, scale, torch.device(device)
        self.operator = operator  # what the step record's maps entry names
        self.op = separable_operator(height, width, scale, str(self.device), torch.float32)

    def compute(self, y: np.ndarray, x_hat: np.ndarray, max_value: int = 255) -> tuple[np.ndarray, np.ndarray]:
        """(S, R) in 8-bit levels for input plane `y` and output plane `x_hat` (native samples)."""
        import torch

        unit = 255.0 / max_value
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(x_hat)).to(self.device, torch.float32) * unit
            yt = torch.from_numpy(np.ascontiguousarray(y)).to(self.device, torch.float32) * unit
            p_ax = self.op.pinv(self.op.degrade(x))
            s = (x - p_ax).abs_()
            r = (self.op.pinv(yt) - p_ax).abs_()
            return s.cpu().numpy(), r.cpu().numpy()


def exact_maps_for(height: int, width: int, scale: int, device: str) -> ExactMaps | TorchExactMaps:
    """The exact maps for a run whose stage runs on `device`: numpy (the golden map hashes) on the
    CPU, torch on any other device."""
    if device.split(":")[0] == "cpu":
        return ExactMaps(height, width, scale)
    return TorchExactMaps(height, width, scale, device)
