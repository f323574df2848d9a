"""Inference on one native plane (luma). Contract: input is an (H, W) uint8/uint16 plane with
values in [0, max_value]; output is (s*H, s*W) of the same dtype, rounded half to even and
clipped. fp32 (fp16/bf16 on CUDA when asked: the weights and activations are cast, the output is
read back as float32), eval mode, `torch.inference_mode`, deterministic algorithms. On the CPU,
planes large enough for oneDNN run with the activations in its blocked layout
(forensic_vsr.models.blocked): the default path's arithmetic, bit for bit, about twice as fast.

Frames larger than the memory budget run in tiles. Each tile is cut with a margin of input
context at least as wide as the network's receptive field, and only its interior is kept, so
every kept output sample sees exactly the input it sees untiled: tiled output equals untiled
output (tested to the bit on the rounded samples). On CUDA, frames of one size run in batches."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from forensic_vsr.errors import IntegrityError, UsageError
from forensic_vsr.models.arch import BlockedResidualSR, ResidualSR, build, load_state_dict
from forensic_vsr.models.blocked import onednn_convolves
from forensic_vsr.models.registry import ResolvedModel

# Bytes of activation memory per input pixel and feature channel while a tile runs: a few live
# fp32 feature maps (input, block output, residual branch, skip) with headroom.
_BYTES_PER_PIXEL_CHANNEL = 4 * 6
DEFAULT_MEMORY_BUDGET_MIB = 1024
BICUBIC_REACH = 2
# Below about this size oneDNN picks another convolution algorithm for the one-channel head,
# whose float sums differ in the last bits; windows at least this big keep tiling exact.
MIN_TILE = 128  # F.interpolate's bicubic kernel reads 2 input samples either side


# cuBLAS picks its reduction split from the workspace it has: a fixed workspace makes its
# results repeatable (NVIDIA's cuBLAS "Results reproducibility"; torch's reproducibility notes)
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def deterministic_cuda() -> None:
    """Determinism settings for CUDA, set before the first CUDA kernel: deterministic algorithms
    (an op without one raises rather than run nondeterministically), cuDNN without autotuning and
    with deterministic kernels only, a fixed cuBLAS workspace, no TF32 (float32 products stay
    float32). Two runs on one GPU model, driver and library stack then give the same bits.
    environment.cuda_facts records what was in force."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def select_device(requested: str) -> torch.device:
    """The torch device for `--device` (auto: CUDA when there is one); a CUDA device gets the
    determinism settings of `deterministic_cuda`."""
    if requested.split(":")[0] not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {requested}: use auto, cpu or cuda")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {requested}: no CUDA device is available")
        deterministic_cuda()
    return torch.device(requested)


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _dtype(precision: str, device: torch.device, model: ResolvedModel) -> torch.dtype:
    """The arithmetic type that will actually run; anything else is refused, never recorded."""
    if precision not in _DTYPES:
        raise UsageError(f"--precision {precision}: use one of {', '.join(_DTYPES)}")
    if precision != "fp32":
        if device.type != "cuda":
            raise UsageError(f"--precision {precision} needs a CUDA device; on {device.type} {model.id} runs in fp32")
        allowed = model.card.data.get("precisions", ["fp32"]) if model.card is not None else ["fp32"]
        if precision not in allowed:
            raise UsageError(f"--precision {precision}: the card of {model.id} allows {', '.join(allowed)}")
    return _DTYPES[precision]


def receptive_radius(net: nn.Module) -> int:
    """How far (in input samples) an output sample can see: the sum of the convolutions' radii
    (they run in sequence at input resolution), and the bicubic skip's reach."""
    conv = sum((m.kernel_size[0] - 1) // 2 * m.dilation[0] for m in net.modules() if isinstance(m, nn.Conv2d))
    return max(conv, BICUBIC_REACH)


@dataclass(frozen=True)
class Tiling:
    tile: int  # side of a tile's kept input region, in input samples (0: untiled)
    margin: int  # context cut around each tile, in input samples

    def to_json(self) -> dict[str, int]:
        return {"tile": self.tile, "margin": self.margin}


class PlaneUpscaler:
    def __init__(
        self,
        model: ResolvedModel,
        device: str,
        tile: int | None = None,
        memory_budget_mib: int = DEFAULT_MEMORY_BUDGET_MIB,
        batch: int | None = None,
        precision: str = "fp32",
    ) -> None:
        """`tile`: None picks tiles from the memory budget, 0 never tiles, N uses N x N tiles.
        `batch`: frames per forward pass; None means 8 on CUDA and 1 on CPU. `precision`: fp32
        anywhere; fp16 or bf16 only on CUDA and only where the card lists it."""
        if model.weights_path is None or model.architecture is None:
            raise UsageError(f"{model.id} has no network to run")
        if model.weights_verified is False:
            raise IntegrityError(f"{model.id}: weights do not match the card's sha256; refusing to load them")
        if tile is not None and (tile < 0 or 0 < tile < MIN_TILE):
            raise UsageError(f"--tile {tile}: must be 0 (no tiling) or at least {MIN_TILE}")
        torch.use_deterministic_algorithms(True)
        self.device = select_device(device)
        net = build(model.architecture)
        net.load_state_dict(load_state_dict(model.weights_path), strict=True)
        self.precision = precision
        self.dtype = _dtype(precision, self.device, model)
        self.net = net.eval().to(self.device, dtype=self.dtype)
        cpu_fp32 = self.device.type == "cpu" and self.dtype == torch.float32 and torch.backends.mkldnn.is_available()
        self.blocked = BlockedResidualSR(self.net) if cpu_fp32 and isinstance(self.net, ResidualSR) else None
        self.scale = int(model.architecture["params"]["scale"])
        self.channels = int(model.architecture["params"].get("channels", 32))
        self.margin = receptive_radius(net) + 2
        self.tile_request = tile
        self.memory_budget = memory_budget_mib * 2**20
        self.batch = batch if batch is not None else (8 if self.device.type == "cuda" else 1)
        if self.batch < 1:
            raise UsageError(f"--batch {self.batch}: must be at least 1")

    def tiling(self, height: int, width: int) -> Tiling:
        """The tiling used for a plane of this size (recorded in the step)."""
        if self.tile_request == 0:
            return Tiling(0, 0)
        if self.tile_request is not None:
            tile = self.tile_request
        else:
            per_pixel = _BYTES_PER_PIXEL_CHANNEL * max(self.channels, self.scale * self.scale) * self.batch
            if height * width * per_pixel <= self.memory_budget:
                return Tiling(0, 0)
            tile = max(MIN_TILE, math.isqrt(self.memory_budget // per_pixel) - 2 * self.margin)
        if tile >= height and tile >= width:
            return Tiling(0, 0)
        return Tiling(tile, self.margin)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 in [0, 1] -> (N, sH, sW) float32. On the CPU, the blocked-layout
        copy of the network runs wherever it is the default path's arithmetic (its head
        convolution has one input channel)."""
        t = torch.from_numpy(np.ascontiguousarray(x))[:, None].to(self.device, dtype=self.dtype)
        net = self.blocked if self.blocked is not None and onednn_convolves(t, 1) else self.net
        with torch.inference_mode():
            return net(t)[:, 0].float().cpu().numpy()

    def _run(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 -> (N, sH, sW) float32, tiled when the budget requires it."""
        _, h, w = x.shape
        plan = self.tiling(h, w)
        if plan.tile == 0:
            return self._forward(x)
        s, m, t = self.scale, plan.margin, plan.tile
        # Every window has the same shape (the last ones slide back inside the frame): the
        # convolution backend then runs one algorithm for all of them, as for the whole frame.
        win_h, win_w = min(h, t + 2 * m), min(w, t + 2 * m)
        out = np.empty((x.shape[0], h * s, w * s), np.float32)
        for top in range(0, h, t):
            for left in range(0, w, t):
                bottom, right = min(top + t, h), min(left + t, w)
                t0 = min(max(top - m, 0), h - win_h)
                l0 = min(max(left - m, 0), w - win_w)
                y = self._forward(x[:, t0 : t0 + win_h, l0 : l0 + win_w])
                out[:, top * s : bottom * s, left * s : right * s] = y[
                    :, (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s
                ]
        return out

    def predict_many(self, planes: Sequence[np.ndarray], max_value: int) -> list[np.ndarray]:
        """The network's outputs in sample units (float64), before rounding; planes of one size
        run `batch` at a time."""
        out: list[np.ndarray] = []
        for i in range(0, len(planes), self.batch):
            group = planes[i : i + self.batch]
            if len({p.shape for p in group}) != 1:
                out.extend(self.predict(p, max_value) for p in group)
                continue
            x = np.stack([p.astype(np.float32) / max_value for p in group])
            out.extend(y.astype(np.float64) * max_value for y in self._run(x))
        return out

    def predict(self, plane: np.ndarray, max_value: int) -> np.ndarray:
        """The network's output in sample units (float64), before rounding."""
        x = (plane.astype(np.float32) / max_value)[None]
        return self._run(x)[0].astype(np.float64) * max_value

    def __call__(self, plane: np.ndarray, max_value: int) -> np.ndarray:
        return to_samples(self.predict(plane, max_value), max_value, plane.dtype)


def to_samples(x: np.ndarray, max_value: int, dtype: np.dtype) -> np.ndarray:
    y = np.rint(x)
    np.clip(y, 0, max_value, out=y)
    return y.astype(dtype)
