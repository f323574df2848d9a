"""Training images: fetched from Debian packages (`apt-get download` + `dpkg-deb -x`) or read
from a local folder, every package and every file pinned or listed by SHA-256.

Images are converted to BT.601 luma (the plane our models see) and shrunk by the config's
`predownscale` (area filter) before use: the sources are JPEG, and shrinking removes most of
their compression artefacts, so the network learns to restore detail, not to copy blocking."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from forensic_vsr.errors import UsageError
from forensic_vsr.media import file_sha256

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class TrainImage:
    name: str  # package/path or dir/file
    sha256: str
    luma: np.ndarray  # float32 (H, W), BT.601 studio range [16, 235] in 0..255 units


def fetch_deb(source: dict[str, Any], cache: Path) -> Path:
    """Download `package=version` once into `cache`, check the .deb's SHA-256, unpack it.
    Returns the unpacked root."""
    package, version, want = source["debian"], source["version"], source["deb_sha256"]
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / f"{package}_{version}"
    stamp = root / ".fvsr-unpacked"
    if stamp.is_file() and stamp.read_text() == want:
        return root
    debs = sorted(cache.glob(f"{package}_*.deb"))
    deb = next((d for d in debs if file_sha256(d) == want), None)
    if deb is None:
        if shutil.which("apt-get") is None:
            raise UsageError(f"{package}: apt-get is needed to fetch training data")
        done = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=cache, capture_output=True, text=True)
        if done.returncode != 0:
            raise UsageError(f"apt-get download {package}={version} failed: {done.stderr.strip().splitlines()[-1:]}")
        deb = next((d for d in sorted(cache.glob(f"{package}_*.deb")) if file_sha256(d) == want), None)
        if deb is None:
            raise UsageError(f"{package}={version}: downloaded .deb does not match the pinned sha256 {want}")
    if root.exists():
        shutil.rmtree(root)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    stamp.write_text(want)
    return root


def _files(source: dict[str, Any], cache: Path, base: Path) -> list[tuple[str, Path]]:
    if "debian" in source:
        root = fetch_deb(source, cache)
        label = f"{source['debian']}={source['version']}"
    elif "dir" in source:
        root = (base / source["dir"]).resolve()
        if not root.is_dir():
            raise UsageError(f"training data folder {root} does not exist")
        label = root.name
    else:
        raise UsageError(f"training data source needs 'debian' or 'dir': {source}")
    patterns = source.get("files", ["*"])
    exclude = source.get("exclude", [])
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, pat) for pat in patterns) and not any(fnmatch.fnmatch(rel, pat) for pat in exclude):
            found.append((f"{label}:{rel}", path))
    if not found:
        raise UsageError(f"training data source {label}: no image matches {patterns}")
    return found


def to_luma(bgr: np.ndarray) -> np.ndarray:
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def load(data: dict[str, Any], cache: Path, base: Path, require_train: bool = True) -> tuple[list[TrainImage], list[TrainImage]]:
    """(training images, held-out validation images) as the config's `data` section names them."""
    factor = int(data.get("predownscale", 1))
    held_out = set(data.get("validation", []))
    train, val = [], []
    for source in data["sources"]:
        for name, path in _files(source, cache, base):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise UsageError(f"{path}: not a readable image")
            if factor > 1:
                h, w = bgr.shape[:2]
                bgr = cv2.resize(bgr, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
            image = TrainImage(name, file_sha256(path), to_luma(bgr).astype(np.float32))
            (val if any(fnmatch.fnmatch(name, pat) for pat in held_out) else train).append(image)
    if require_train and not train:
        raise UsageError("no training images left after holding out the validation set")
    return train, val


def manifest(images: list[TrainImage]) -> list[dict[str, Any]]:
    return [{"file": im.name, "sha256": im.sha256, "luma_shape": list(im.luma.shape)} for im in images]
