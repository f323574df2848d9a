"""A learned scale for the calibrated intervals: a small head trained on the frozen model.

The head sees, at every output pixel, what the pipeline already has (the output x̂, the bicubic
upscale of the input, the exact synthesized-content map S and |∇x̂|) and predicts the scale b
of a Laplace distribution of the error, trained by minimising the Laplace negative
log-likelihood |x - x̂| / b + log b on photographs from the model's *training* sources (never the
calibration photographs, never a benchmark). The model itself is frozen: the head cannot change
the output, only the width of its intervals. Calibration then scales b by λ exactly as it does
the fixed formula (forensic_vsr.uncertainty.calibration), so the guarantee is the same; a better scale only
makes intervals narrower where the output is reliable and wider where it is not.

The head's weights are a tensor state dict whose sha256 the card records; they are checked
before use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forensic_vsr.errors import UsageError
from forensic_vsr.models.arch import load_pinned
from forensic_vsr.models.blocked import conv_relu, onednn_convolves, pack
from forensic_vsr.ops.degrade import downscale
from forensic_vsr.ops.resample import upscale_plane
from forensic_vsr.uncertainty.exact import ExactMaps

NAME = "fvsr-laplace-scale-head"
FLOOR = 0.25  # smallest scale, in 8-bit levels
STRIP_ROWS = 64  # rows per evaluation strip (bench: 64 was fastest of 16-128 at 1280 columns)
DEVICE_STRIP_ROWS = 1024  # on a GPU strips only bound the activations' memory (16 channels, float32)
HEAD_FORMULA = "u = b(x_hat, bicubic(y), S, |grad x_hat|): learned Laplace scale head on the frozen model (8-bit levels)"


class ScaleHead(nn.Module):
    def __init__(self, channels: int = 16, layers: int = 4) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(4, channels, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 2):
            mods += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        mods.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.body = nn.Sequential(*mods)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, 4, H, W) features -> (N, 1, H, W) Laplace scale in 8-bit levels."""
        return laplace_scale(self.body(feats))


def laplace_scale(z: torch.Tensor) -> torch.Tensor:
    """The head's last convolution's output -> the Laplace scale, at least FLOOR."""
    return F.softplus(z + 1.0) + FLOOR


def features(x_hat: np.ndarray, lr: np.ndarray, s: np.ndarray, scale: int) -> np.ndarray:
    """(4, H, W) float32 from 8-bit-level inputs: x̂/255, bicubic(y)/255, S/16, |∇x̂|/64."""
    h, w = x_hat.shape
    up = upscale_plane(np.clip(np.rint(lr), 0, 255).astype(np.uint8), kind="bicubic", scale=scale, out_width=w, out_height=h)
    x = np.asarray(x_hat, np.float32)
    # each channel's float32 operations written straight into the array the head reads (no
    # stacked copy, fewer temporaries: 0.135 -> 0.066 CPU-s per x4 768x576 frame, the same values)
    f = np.empty((4, h, w), np.float32)
    np.divide(x, 255, out=f[0])
    np.divide(up, 255, out=f[1], dtype=np.float32)
    np.divide(s, 16, out=f[2], dtype=np.float32)
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    gx /= 8
    gy /= 8
    gx *= gx
    gy *= gy
    gx += gy
    np.sqrt(gx, out=gx)
    np.divide(gx, 64, out=f[3])
    return f


class LearnedScale:
    """u(x̂, y, S) from a head file, checked against the sha256 its card entry pins."""

    def __init__(self, entry: dict[str, Any], card_dir: Path, scale: int, device: str = "cpu") -> None:
        """`device`: the torch device the head runs on (the run's; the features are made on the CPU)."""
        state = load_pinned(card_dir / entry["file"], entry["sha256"], "uncertainty head")
        params = entry.get("architecture", {}).get("params", {})
        self.device = torch.device(device)
        self.net = ScaleHead(int(params.get("channels", 16)), int(params.get("layers", 4)))
        self.net.load_state_dict(state, strict=True)
        self.net.eval().to(self.device)
        cpu = self.device.type == "cpu"
        self.packed = pack(self.net.body) if cpu and torch.backends.mkldnn.is_available() else None
        self.strip_rows = STRIP_ROWS if cpu else DEVICE_STRIP_ROWS
        self.scale = scale
        self.radius = int(params.get("layers", 4))  # one sample per 3x3 convolution

    def __call__(self, x_hat: np.ndarray, lr: np.ndarray, s: np.ndarray) -> np.ndarray:
        """The head over the frame in strips of STRIP_ROWS rows, each with `radius` rows of
        context above and below (zero padding only at the frame's own edges, as for the whole
        frame): the same values, 3-5x faster on CPU because a strip's activations stay in cache.
        Strips large enough for oneDNN run with blocked-layout activations (bit-identical)."""
        f = torch.from_numpy(features(x_hat, lr, s, self.scale))[None].to(self.device)
        h = f.shape[2]
        out = np.empty(f.shape[2:], np.float32)
        with torch.inference_mode():
            for top in range(0, h, self.strip_rows):
                bottom = min(top + self.strip_rows, h)
                a, b = max(top - self.radius, 0), min(bottom + self.radius, h)
                out[top:bottom] = self._scale(f[:, :, a:b])[0, 0, top - a : bottom - a].cpu().numpy()
        return out

    def _scale(self, feats: torch.Tensor) -> torch.Tensor:
        if self.packed is None or not onednn_convolves(feats, feats.shape[1]):
            return self.net(feats)
        return laplace_scale(conv_relu(self.packed, feats.to_mkldnn()).to_dense())


def training_patches(
    lumas: list[np.ndarray], scale: int, luma_sr: Callable[[np.ndarray], np.ndarray], count: int, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`count` random (features, |error|) pairs of size x size output pixels: each patch is
    degraded by the card operator, super-resolved by the frozen model (projected, as the
    pipeline stores it), and its S computed exactly."""
    rng = np.random.default_rng(seed)
    usable = [im for im in lumas if min(im.shape) >= size]
    if not usable:
        raise UsageError(f"no training image is at least {size}x{size}")
    maps = ExactMaps(size, size, scale)
    feats, errs = [], []
    for _ in range(count):
        im = usable[int(rng.integers(len(usable)))]
        top, left = int(rng.integers(0, im.shape[0] - size + 1)), int(rng.integers(0, im.shape[1] - size + 1))
        hr = np.clip(np.rint(im[top : top + size, left : left + size].astype(np.float64)), 0, 255)
        lr = np.clip(np.rint(downscale(hr, scale)), 0, 255)
        out = luma_sr(lr.astype(np.uint8)).astype(np.float64)
        s, _ = maps.compute(lr, out)
        feats.append(features(out, lr, s, scale))
        errs.append(np.abs(out - hr).astype(np.float32))
    return np.stack(feats), np.stack(errs)[:, None]


def train_head(
    feats: np.ndarray, errs: np.ndarray, steps: int = 3000, batch: int = 16, lr: float = 2e-3, seed: int = 0, channels: int = 16
) -> tuple[ScaleHead, list[float]]:
    """Minimise the Laplace NLL; deterministic for a seed on one platform and thread count."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    head = ScaleHead(channels)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    f, e = torch.from_numpy(feats), torch.from_numpy(errs)
    history = []
    running = 0.0
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(f), batch))
        b = head(f[idx])
        loss = (e[idx] / b + torch.log(b)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * (step + 1) / steps))
        running += loss.item()
        if (step + 1) % 500 == 0:
            history.append(round(running / 500, 5))
            running = 0.0
    return head.eval(), history
