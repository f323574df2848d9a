"""What the run ran on: library versions, device, CPU features, determinism settings.

Versions are read from package metadata, never by importing heavy libraries (torch, cv2)."""

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
        },
    }
