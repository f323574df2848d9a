"""The exact layer recomputed by the verifier: S = |(I - A†A) x̂| and R = |A†(y - A x̂)| of one
plane, in 8-bit levels, numpy only (`fvsr verify` imports neither torch nor OpenCV).

A format-3 bundle does not store the maps that are exact functions of its master (S) and its
evidence (R): `fvsr verify` recomputes them here, frame by frame, with the float32 filter taps
the step record signs (`maps.filters`), and checks the per-frame figures `maps/flagged.json`
states (S max and mean, the flagged fraction, R max) against them. This is a second,
independent implementation of the writer's (forensic_vsr.uncertainty.exact, OpenCV filters):
elementwise float32 arithmetic in a fixed tap order, so it gives the same bits on every IEEE
machine, and agrees with the writer's to about 1e-3 levels (OpenCV's SIMD accumulation order is
its own), which is why the check compares figures within a stated tolerance, never hashes.
It costs about twice the writer's arithmetic (131 ms against 71 ms for S and R of a 1536x1152
frame, load 10), which a verifier can afford and the enhancement pass could not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MapFilters:
    """A, Aᵀ and (AAᵀ)⁻¹ of one axis as short float32 filters (the same on both axes), under
    the symmetric extension (edge sample repeated) that MATLAB's imresize uses."""

    scale: int
    down: np.ndarray  # A: out[q] = sum_k down[k] x[s q + k - down_anchor]
    down_anchor: int
    up: tuple[tuple[np.ndarray, int], ...]  # Aᵀ, phase p: out[s q + p] = sum_k taps[k] z[q + k - anchor]
    inverse: np.ndarray  # (WWᵀ)⁻¹: symmetric, odd length, centred

    def to_json(self) -> dict[str, Any]:
        """The taps as the float32 values themselves (a float64 decimal that reads back to the same float32)."""
        return {
            "scale": self.scale,
            "down": [float(v) for v in self.down],
            "down_anchor": self.down_anchor,
            "up": [{"taps": [float(v) for v in taps], "anchor": anchor} for taps, anchor in self.up],
            "inverse": [float(v) for v in self.inverse],
            "extension": "symmetric (edge sample repeated)",
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MapFilters:
        """The signed filters; ValueError for anything that is not a well-formed set of taps."""

        def taps(values: Any, what: str) -> np.ndarray:
            if not isinstance(values, list) or not 0 < len(values) <= 257 or not all(isinstance(v, float) for v in values):
                raise ValueError(f"maps.filters.{what}: expected 1 to 257 numbers")
            arr = np.array(values, np.float64)
            if not np.all(np.isfinite(arr)) or not np.array_equal(arr.astype(np.float32).astype(np.float64), arr):
                raise ValueError(f"maps.filters.{what}: the taps are not finite float32 values")
            return arr.astype(np.float32)

        def anchor(value: Any, n: int, what: str) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
                raise ValueError(f"maps.filters.{what}: anchor {value!r} outside its {n} taps")
            return value

        scale = data.get("scale")
        if not isinstance(scale, int) or isinstance(scale, bool) or not 1 < scale <= 16:
            raise ValueError(f"maps.filters.scale: {scale!r} is not a scale from 2 to 16")
        down = taps(data.get("down"), "down")
        up_in = data.get("up")
        if not isinstance(up_in, list) or len(up_in) != scale or not all(isinstance(u, dict) for u in up_in):
            raise ValueError(f"maps.filters.up: expected one phase per output sample ({scale})")
        up = tuple((t := taps(u.get("taps"), f"up[{p}]"), anchor(u.get("anchor"), t.size, f"up[{p}]")) for p, u in enumerate(up_in))
        inverse = taps(data.get("inverse"), "inverse")
        if inverse.size % 2 == 0:
            raise ValueError("maps.filters.inverse: expected an odd number of taps")
        return cls(scale, down, anchor(data.get("down_anchor"), down.size, "down"), up, inverse)

    def fits(self, height: int, width: int) -> bool:
        """Whether the filters apply to an output of this size (every low-resolution side at
        least the inverse filter's length); smaller frames need the dense operator."""
        return min(height, width) // self.scale >= self.inverse.size and min(height, width) >= self.down.size


def _filter(x: np.ndarray, taps: np.ndarray, anchor: int, axis: int, step: int = 1) -> np.ndarray:
    """out[i] = sum_k taps[k] x[step i + k - anchor] along `axis`, symmetric extension, taps in order."""
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (anchor, taps.size - 1 - anchor)
    xp = np.pad(x, pad, mode="symmetric")
    count = -(-n // step)
    index = [slice(None)] * x.ndim

    def shifted(k: int) -> np.ndarray:
        index[axis] = slice(k, k + step * (count - 1) + 1, step)
        return xp[tuple(index)]

    n_taps = taps.size
    if n_taps % 2 and anchor == n_taps // 2 and np.array_equal(taps, taps[::-1]):
        # a symmetric filter (the inverse of WWᵀ): pairs of samples summed first, half the products
        acc = np.multiply(shifted(anchor), taps[anchor])
        tmp = np.empty_like(acc)
        for k in range(anchor):
            np.add(shifted(k), shifted(n_taps - 1 - k), out=tmp)
            np.multiply(tmp, taps[k], out=tmp)
            np.add(acc, tmp, out=acc)
        return acc
    acc = np.multiply(shifted(0), taps[0])
    tmp = np.empty_like(acc)
    for k in range(1, n_taps):
        np.multiply(shifted(k), taps[k], out=tmp)
        np.add(acc, tmp, out=acc)
    return acc


def degrade(x: np.ndarray, f: MapFilters) -> np.ndarray:
    """A x of an (H, W) float32 plane."""
    x = _filter(x, f.down, f.down_anchor, axis=0, step=f.scale)
    return _filter(x, f.down, f.down_anchor, axis=1, step=f.scale)


def pinv(z: np.ndarray, f: MapFilters) -> np.ndarray:
    """A† z = Aᵀ (AAᵀ)⁻¹ z of an (h, w) float32 plane."""
    r = f.inverse.size // 2
    z = _filter(_filter(z, f.inverse, r, axis=0), f.inverse, r, axis=1)
    for axis in (0, 1):
        phases = [_filter(z, taps, anchor, axis) for taps, anchor in f.up]
        z = np.stack(phases, axis=axis + 1).reshape(*(n * f.scale if a == axis else n for a, n in enumerate(z.shape)))
    return z


def exact_maps(y: np.ndarray, x_hat: np.ndarray, f: MapFilters, max_value: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """(S, R) in 8-bit levels, float32, for the input plane `y` and the output plane `x_hat`
    (native samples, 0..max_value)."""
    unit = np.float32(255.0 / max_value)
    x = np.multiply(x_hat, unit, dtype=np.float32)
    p_ax = pinv(degrade(x, f), f)
    s = np.abs(np.subtract(x, p_ax))
    r = pinv(np.multiply(y, unit, dtype=np.float32), f)
    np.subtract(r, p_ax, out=r)
    np.abs(r, out=r)
    return s, r
