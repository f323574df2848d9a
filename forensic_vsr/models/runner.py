"""Inference on one native plane (luma). Contract: input is an (H, W) uint8/uint16 plane with
values in [0, max_value]; output is (s*H, s*W) of the same dtype, rounded half to even and
clipped. fp32, eval mode, `torch.inference_mode`, deterministic algorithms."""

from __future__ import annotations

import numpy as np
import torch

from forensic_vsr.errors import IntegrityError, UsageError
from forensic_vsr.models.arch import build, load_state_dict
from forensic_vsr.models.registry import ResolvedModel


def select_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    return torch.device(requested)


class PlaneUpscaler:
    def __init__(self, model: ResolvedModel, device: str) -> None:
        if model.weights_path is None or model.architecture is None:
            raise UsageError(f"{model.id} has no network to run")
        if model.weights_verified is False:
            raise IntegrityError(f"{model.id}: weights do not match the card's sha256; refusing to load them")
        torch.use_deterministic_algorithms(True)
        self.device = select_device(device)
        net = build(model.architecture)
        net.load_state_dict(load_state_dict(model.weights_path), strict=True)
        self.net = net.eval().to(self.device)
        self.scale = int(model.architecture["params"]["scale"])

    def predict(self, plane: np.ndarray, max_value: int) -> np.ndarray:
        """The network's output in sample units (float64), before rounding."""
        x = torch.from_numpy(plane.astype(np.float32) / max_value)[None, None].to(self.device)
        with torch.inference_mode():
            y = self.net(x)[0, 0].float().cpu().numpy()
        return y.astype(np.float64) * max_value

    def __call__(self, plane: np.ndarray, max_value: int) -> np.ndarray:
        return to_samples(self.predict(plane, max_value), max_value, plane.dtype)


def to_samples(x: np.ndarray, max_value: int, dtype: np.dtype) -> np.ndarray:
    y = np.rint(x)
    np.clip(y, 0, max_value, out=y)
    return y.astype(dtype)
