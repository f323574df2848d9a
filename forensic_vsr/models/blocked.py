"""CPU inference with activations kept in oneDNN's blocked memory layout.

torch's default CPU path runs every fp32 3x3 convolution through oneDNN, but hands it plain NCHW
tensors: each convolution reorders its input into oneDNN's channel-blocked layout, reorders its
weights, and reorders its output back (measured on a 768x576 frame: about a third of the
network's time), and each ReLU and residual add then makes one more pass over a plain tensor.
Keeping the activations in the blocked layout between layers (`torch.utils.mkldnn`: weights
reordered once, in-place ReLU and adds) runs the *same* oneDNN convolution primitive on the
same values, so every output is bit-identical to the default path (tests/test_cpu_speed.py).

The default path only uses oneDNN where aten's `ConvParams::use_mkldnn` says so
(aten/src/ATen/native/Convolution.cpp): for a batch of one, groups 1 and a 3x3 kernel, only when
the input has more than 20480 elements; smaller convolutions run aten's own kernel, whose sums
are ordered differently. `onednn_convolves` states that rule, and callers fall back to the
plain network wherever any convolution of a pass would fall below it."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
from torch import nn

with warnings.catch_warnings():
    # its modules are declared with torch.jit.script_method, which torch 2.x deprecates: a
    # warning about how torch wrote them, raised on import, not about what they compute
    warnings.filterwarnings("ignore", message=".*script_method.*", category=DeprecationWarning)
    import torch.utils.mkldnn

# aten's threshold (input elements of a batch-of-one convolution) above which fp32 runs on oneDNN
ONEDNN_MIN_ELEMENTS = 20480


def onednn_convolves(x: torch.Tensor, min_channels: int) -> bool:
    """Whether torch's default path runs every 3x3 convolution of a pass over `x` (N, C, H, W)
    on oneDNN, the narrowest of them having `min_channels` input channels: only then is the
    blocked path the same arithmetic."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    n, _, h, w = x.shape
    return n > 1 or min_channels * h * w > ONEDNN_MIN_ELEMENTS


def pack(module: nn.Module) -> nn.Module:
    """An inference-only copy of `module` whose convolutions hold their weights reordered for
    oneDNN once and take and return blocked-layout tensors (the original is left as it is)."""
    return torch.utils.mkldnn.to_mkldnn(copy.deepcopy(module).eval())  # type: ignore[no-any-return]


def conv_relu(layers: Iterable[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """A packed sequence of convolutions and ReLUs over a blocked tensor, each ReLU in place
    (it rewrites a convolution's fresh output, which nothing else holds)."""
    for layer in layers:
        x = torch.relu_(x) if isinstance(layer, nn.ReLU) else layer(x)
    return x
