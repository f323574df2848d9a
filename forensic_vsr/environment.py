"""What the run ran on: library versions, device, CPU features, determinism settings.

Versions are read from package metadata, never by importing heavy libraries (torch, cv2); only a
CUDA run's facts (cuDNN, GPU) are asked of torch, which that run has loaded already."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "f16c", "asimd", "sve")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_features() -> dict[str, Any]:
    flags: set[str] = set()
    model = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("flags", "Features"):
                    flags.update(value.split())
                elif key == "model name" and not model:
                    model = value.strip()
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "model": model,
        "flags": sorted(f for f in _CPU_FLAGS if f in flags),
        "logical_cpus": os.cpu_count(),
    }


def _nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version, from /proc (no subprocess, no NVML)."""
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8", errors="replace") as fh:
            words = fh.readline().split()
    except OSError:
        return None
    return next((w for w in words if w[:1].isdigit() and "." in w), None)


def cuda_facts(device: str) -> dict[str, Any]:
    """What a CUDA run ran on and under which determinism settings (models.runner.
    deterministic_cuda sets them): CUDA runtime torch was built with, cuDNN, GPU, driver. Every
    field is present on any device and null where it does not apply, so a CPU run's record has
    the same shape. torch is only consulted for a CUDA device, which has loaded it already."""
    facts: dict[str, Any] = dict.fromkeys(
        ("torch_cuda", "cudnn", "gpu", "gpu_capability", "driver", "deterministic_algorithms",
         "cudnn_deterministic", "cudnn_benchmark", "cublas_workspace_config", "tf32_matmul", "tf32_cudnn"),
    )  # fmt: skip
    cuda = next((d for d in device.split(",") if d.startswith("cuda")), None)  # "cpu,cuda:0": a chain on both
    if cuda is None:
        return facts
    import torch

    index = torch.device(cuda).index or 0
    facts.update(
        torch_cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(),
        gpu=torch.cuda.get_device_name(index),
        gpu_capability=".".join(map(str, torch.cuda.get_device_capability(index))),
        driver=_nvidia_driver(),
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
        cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        cublas_workspace_config=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
        tf32_cudnn=bool(torch.backends.cudnn.allow_tf32),
    )
    return facts


def environment_report(device: str) -> dict[str, Any]:
    import av
    import numpy as np

    ffmpeg = {name: ".".join(map(str, ver)) for name, ver in av.library_versions.items()}
    return {
        "device": device,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "libraries": {
            "forensic-vsr": _version("forensic-vsr"),
            "numpy": np.__version__,
            "av": av.__version__,
            "ffmpeg_libraries": ffmpeg,
            "torch": _version("torch"),
            "opencv-python-headless": _version("opencv-python-headless"),
            "cryptography": _version("cryptography"),
        },
        "cpu": cpu_features(),
        "determinism": {
            "arithmetic": "float32 numpy, fixed evaluation order, round half to even",
            "threads": "decoder/encoder threads do not change decoded or encoded samples (FFV1 is lossless)",
            "cuda": cuda_facts(device),
        },
    }
