"""Network architectures we can load, and detection of an architecture from a state dict.

Weights are always loaded with `torch.load(..., weights_only=True)`: a state dict of tensors,
never arbitrary pickled objects.

spandrel (the field's loader for user-supplied SR weights) cannot be used here yet: its package
import needs torchvision, and PyPI's torchvision does not load beside the CPU build of torch this
project installs. Until then we detect our own architecture family only."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forensic_vsr.errors import UsageError
from forensic_vsr.models.blocked import pack


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ResidualSR(nn.Module):
    """Luma super-resolution: EDSR-baseline-style residual blocks without batch norm, a
    pixel-shuffle tail, and a global skip from a bicubic upscale (the network only learns the
    residual). Input and output: (N, 1, H, W) in [0, 1]."""

    name = "fvsr-resnet-sr"

    def __init__(self, scale: int, channels: int = 32, blocks: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(1, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.tail = nn.Sequential(nn.Conv2d(channels, scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        # start from the bicubic upscale: a zero residual, so training never passes through a
        # network that is worse than interpolation
        nn.init.zeros_(self.tail[0].weight)
        nn.init.zeros_(self.tail[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        h = self.head(x)
        return base + self.tail(self.body(h) + h)


class BlockedResidualSR:
    """`ResidualSR.forward` for CPU inference with the activations in oneDNN's blocked layout
    (forensic_vsr.models.blocked): the same operations in the same order on the same values, so
    the output is bit-identical wherever `onednn_convolves(x, 1)` holds; about twice as fast."""

    def __init__(self, net: ResidualSR) -> None:
        self.scale = net.scale
        self.packed = pack(net)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.packed
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        h = p.head(x.to_mkldnn())
        b = h
        for block in p.body:
            b = block.conv2(torch.relu_(block.conv1(b))).add_(b)  # x + conv2(relu(conv1(x))): addition commutes exactly
        return base + F.pixel_shuffle(p.tail[0](b.add_(h)).to_dense(), self.scale)


def build(architecture: dict[str, Any]) -> nn.Module:
    if architecture.get("name") != ResidualSR.name:
        raise UsageError(f"architecture {architecture.get('name')!r} is not supported")
    p = architecture["params"]
    return ResidualSR(int(p["scale"]), int(p["channels"]), int(p["blocks"]))


def _refusal(exc: Exception) -> str:
    """Why torch refused a file, in its own words, without its advice to load it with
    `weights_only=False` (arbitrary code execution) or its terminal escape codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    _, found, after = text.partition("WeightsUnpickler error:")
    reason = after.split(" was not an allowed global")[0].split("Check the documentation")[0] if found else text
    reason = " ".join(reason.split()) or type(exc).__name__
    return reason if found else f"{type(exc).__name__}: {reason}"


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():
            # torch warns about any pickle protocol other than its own before refusing or
            # reading the file; the refusal (or the tensors) is the answer, the warning is noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(
            f"{path}: not a loadable weights file: only tensor state dicts are accepted, and torch's weights-only loader "
            f"refused it ({_refusal(exc)[:300]})"
        ) from None
    if isinstance(state, dict) and "params" in state and isinstance(state["params"], dict):
        state = state["params"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path}: not a state dict of tensors")
    return state


def load_pinned(path: Path, sha256: str, what: str) -> dict[str, torch.Tensor]:
    """A tensor state dict that must have the sha256 its card or config pins; checked before
    anything is unpickled."""
    from forensic_vsr.errors import IntegrityError
    from forensic_vsr.media import file_sha256

    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read ({exc.strerror})") from None
    if digest != sha256:
        raise IntegrityError(f"{what} {path.name}: sha256 {digest[:16]}… is not the pinned {sha256[:16]}…; refusing to load it")
    return load_state_dict(path)


def detect_architecture(path: Path) -> dict[str, Any]:
    """Infer the architecture and hyper-parameters of a weights file from its tensor shapes."""
    state = load_state_dict(path)
    head, tail = state.get("head.weight"), state.get("tail.0.weight")
    if head is None or tail is None or head.dim() != 4 or tail.dim() != 4:
        raise UsageError(f"{path}: unrecognised architecture (forensic-vsr recognises {ResidualSR.name} state dicts)")
    blocks = len({k.split(".")[1] for k in state if k.startswith("body.")})
    scale = math.isqrt(tail.shape[0])
    if scale * scale != tail.shape[0]:
        raise UsageError(f"{path}: tail has {tail.shape[0]} channels, not a square scale factor")
    return {"name": ResidualSR.name, "params": {"scale": scale, "channels": int(head.shape[0]), "blocks": blocks}}
