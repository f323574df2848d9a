"""The calibrated layer: per-pixel intervals [x̂ - λu, x̂ + λu] whose miss rate is controlled.

The scale u is a fixed function of what the pipeline already has at every pixel, the output
x̂ and its exact synthesized-content map S (both in 8-bit levels):

    u = 1 + S + |∇x̂| / 2

(interpolation and learned SR both err most at edges and where the output holds content the
input does not determine). λ is chosen by risk control (Bates et al. 2021, "Distribution-Free,
Risk-Controlling Prediction Sets"; Angelopoulos et al. 2022, "Image-to-Image Regression with
Distribution-Free Uncertainty Quantification"): on n calibration tiles, with L_i(λ) the fraction
of tile i's pixels outside the interval (non-increasing in λ) and the Hoeffding upper bound
R⁺(λ) = mean_i L_i(λ) + sqrt(ln(1/δ) / 2n), take the smallest λ such that R⁺(λ') ≤ alpha for every
λ' ≥ λ. Then, with probability at least 1 - δ over the calibration draw, the expected fraction
of pixels outside their interval on a new tile from the same distribution is at most alpha.

What this does not promise: the guarantee is marginal (an average over tiles), not per pixel or
per image, and holds only for material distributed like the calibration tiles (same
degradation, similar content). Tiles cut from the same photograph are not independent; the card
records how many photographs and tiles were used."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from forensic_vsr.ops.degrade import downscale
from forensic_vsr.uncertainty.exact import ExactMaps

SCALE_FORMULA = "u = 1 + S + |grad x_hat| / 2 (8-bit levels; Sobel gradient)"
LAMBDA_GRID = np.concatenate([np.arange(0.05, 4.0, 0.01), np.arange(4.0, 40.0, 0.1)])


def interval_scale(x_hat: np.ndarray, s: np.ndarray) -> np.ndarray:
    x = x_hat.astype(np.float32)
    # Sobel / 8 is the gradient in levels per sample; the formula takes half its magnitude
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 16, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 16, borderType=cv2.BORDER_REFLECT)
    u = cv2.magnitude(gx, gy)
    u += s
    u += 1.0
    return u


@dataclass(frozen=True)
class Sample:
    """One image: the ground truth, the output and its interval scale (all 8-bit levels)."""

    truth: np.ndarray
    output: np.ndarray
    scale_u: np.ndarray
    s: np.ndarray


ScaleFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (x_hat, y, S) -> u, 8-bit levels


def make_sample(hr_y: np.ndarray, scale: int, luma_sr: Callable[[np.ndarray], np.ndarray], scale_fn: ScaleFn | None = None) -> Sample:
    """Degrade a ground-truth luma image with the SR operator, super-resolve it, and compute S
    and u (the fixed formula, or `scale_fn` such as a learned head)."""
    h, w = (n - n % scale for n in hr_y.shape)
    hr = hr_y[:h, :w].astype(np.float64)
    lr = np.clip(np.rint(downscale(hr, scale)), 0, 255)
    out = luma_sr(lr.astype(np.uint8)).astype(np.float64)
    s, _ = ExactMaps(h, w, scale).compute(lr, out)
    u = interval_scale(out, s) if scale_fn is None else scale_fn(out, lr, s).astype(np.float64)
    return Sample(hr, out, u, s.astype(np.float64))


def tiles(sample: Sample, size: int, border: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(|error|, u) per non-overlapping tile, `border` pixels shaved (the SR protocol's crop)."""
    err = np.abs(sample.output - sample.truth)[border:-border, border:-border]
    u = sample.scale_u[border:-border, border:-border]
    for y in range(0, err.shape[0] - size + 1, size):
        for x in range(0, err.shape[1] - size + 1, size):
            yield err[y : y + size, x : x + size], u[y : y + size, x : x + size]


def calibrate(samples: list[Sample], scale: int, alpha: float = 0.1, delta: float = 0.1, tile: int = 32) -> dict[str, float]:
    """λ by risk control over tiles; returns λ and the numbers behind it."""
    ratios = [np.sort((e / u).ravel()) for e, u in (t for s in samples for t in tiles(s, tile, scale))]
    n = len(ratios)
    if n == 0:
        raise ValueError("no calibration tiles: images too small")
    bound = math.sqrt(math.log(1 / delta) / (2 * n))
    chosen = None
    for lam in LAMBDA_GRID[::-1]:  # from large to small: stop at the first λ whose bound fails
        risk = float(np.mean([1 - np.searchsorted(r, lam, side="right") / r.size for r in ratios]))
        if risk + bound > alpha:
            break
        chosen = (float(lam), risk)
    if chosen is None:
        raise ValueError(f"no lambda on the grid controls the risk at alpha={alpha} with n={n} tiles (bound {bound:.3f})")
    lam, risk = chosen
    return {
        "lambda": round(lam, 4),
        "alpha": alpha,
        "delta": delta,
        "tiles": n,
        "tile_size": tile,
        "empirical_risk": round(risk, 5),
        "hoeffding_term": round(bound, 5),
    }


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """0-based ranks of a 1-D array, tied values sharing the mean of the ranks they span
    (the "average" method of the Spearman coefficient). Ordinal ranks would order a tie
    arbitrarily, and flat regions (thousands of equal errors or S = 0) would then count as
    agreement."""
    order = np.argsort(a, kind="stable")
    ordered = a[order]
    starts_group = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    first = np.flatnonzero(starts_group)
    last = np.concatenate([first[1:], [a.size]]) - 1
    ranks = np.empty(a.size, np.float64)
    ranks[order] = ((first + last) / 2)[np.cumsum(starts_group) - 1]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation with average ranks for ties; NaN if either input is constant."""
    ra, rb = _average_ranks(a.ravel()), _average_ranks(b.ravel())
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator else math.nan


def ause_normalized(uncertainty: np.ndarray, abs_error: np.ndarray, steps: int = 50) -> float:
    """Area between the sparsification curve (drop the most uncertain pixels first) and the
    oracle's (drop the largest errors first), each curve the mean |error| of the remaining pixels
    divided by the mean |error| of all pixels; 0 is perfect ranking."""
    u, e = uncertainty.ravel(), abs_error.ravel()
    by_u = e[np.argsort(-u, kind="stable")]
    by_e = np.sort(e)[::-1]
    total = e.mean() or 1.0
    fractions = np.linspace(0, 0.99, steps)
    cut = (fractions * e.size).astype(int)
    csum_u = np.concatenate([[0], np.cumsum(by_u[::-1])])[::-1]  # sums of the tail from index k
    csum_e = np.concatenate([[0], np.cumsum(by_e[::-1])])[::-1]
    curve_u = csum_u[cut] / (e.size - cut) / total
    curve_e = csum_e[cut] / (e.size - cut) / total
    return float(np.trapezoid(curve_u - curve_e, fractions))


def evaluate(samples: list[Sample], scale: int, lam: float) -> dict[str, float]:
    errs, us, ss = [], [], []
    for smp in samples:
        c = (slice(scale, -scale), slice(scale, -scale))
        errs.append(np.abs(smp.output - smp.truth)[c].ravel())
        us.append(smp.scale_u[c].ravel())
        ss.append(smp.s[c].ravel())
    e, u, s = np.concatenate(errs), np.concatenate(us), np.concatenate(ss)
    width = 2 * lam * u
    return {
        "coverage": round(float(np.mean(e <= lam * u)), 4),
        "mean_width": round(float(width.mean()), 4),
        "spearman_width_abs_error": round(spearman(width, e), 4),
        "ause_normalized": round(ause_normalized(width, e), 4),
        "spearman_S_abs_error": round(spearman(s, e), 4),
    }
