"""Colour planes of RGB evidence: which components a pixel format stores, in which order, and
which of them a learned model runs on.

RGB formats have no luma plane. A per-frame learned operation runs on each colour component as
if it were a luma plane (the network, then the projection onto that component's own consistent
set), so the data-consistency guarantee holds for every colour plane exactly as it does for
luma; alpha and padding components go through the classical kernel, as chroma does for YUV.
No colour transform is applied: the samples the network sees are the evidence's own."""

from __future__ import annotations

import numpy as np

# Storage order of the components of each RGB format family: within a pixel for packed formats,
# the plane order for planar gbr* (plane 0 is G). X is padding. Longest prefixes first.
_ORDERS = (
    ("gbrap", "GBRA"),
    ("gbrp", "GBR"),
    ("rgba", "RGBA"),
    ("bgra", "BGRA"),
    ("argb", "ARGB"),
    ("abgr", "ABGR"),
    ("rgb0", "RGBX"),
    ("bgr0", "BGRX"),
    ("0rgb", "XRGB"),
    ("0bgr", "XBGR"),
    ("rgb", "RGB"),
    ("bgr", "BGR"),
)
COLOURS = "RGB"


def component_order(pix_fmt: str) -> str | None:
    """The components of an RGB pixel format in storage order (e.g. "BGR" for bgr24, "GBR" for
    gbrp); None for formats with a luma plane (YUV, gray)."""
    return next((order for prefix, order in _ORDERS if pix_fmt.startswith(prefix)), None)


def is_planar(pix_fmt: str) -> bool:
    return pix_fmt.startswith("gbr")


def colour_names(pix_fmt: str) -> tuple[str, ...]:
    """The colour components a learned model runs on, in the source's storage order."""
    return tuple(c for c in component_order(pix_fmt) or "" if c in COLOURS)


def split_components(planes: list[np.ndarray], pix_fmt: str) -> list[np.ndarray]:
    """Every component of an RGB frame as a 2-D array, in storage order (views, no copy)."""
    if is_planar(pix_fmt):
        return list(planes)
    return [planes[0][..., i] for i in range(planes[0].shape[2])]


def join_components(components: list[np.ndarray], pix_fmt: str) -> list[np.ndarray]:
    """The inverse of `split_components`: the frame's planes from its components."""
    if is_planar(pix_fmt):
        return components
    return [np.ascontiguousarray(np.stack(components, axis=-1))]


def colour_stack(planes: list[np.ndarray], pix_fmt: str) -> np.ndarray:
    """The colour components of a frame as one (height, width, colours) array, storage order."""
    order = component_order(pix_fmt) or ""
    comps = split_components(planes, pix_fmt)
    return np.stack([c for c, name in zip(comps, order, strict=True) if name in COLOURS], axis=-1)
