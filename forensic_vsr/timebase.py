"""Exact timestamp arithmetic, as libavutil does it."""

from __future__ import annotations

from fractions import Fraction


def rescale(value: int, src: Fraction, dst: Fraction) -> int:
    """`av_rescale_q(value, src, dst)` with AV_ROUND_NEAR_INF (halves away from zero), exact."""
    num = value * src.numerator * dst.denominator
    den = src.denominator * dst.numerator
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


def fraction_text(value: Fraction | None) -> str | None:
    return None if value is None else f"{value.numerator}/{value.denominator}"


def parse_fraction(text: str | None) -> Fraction | None:
    return None if text is None else Fraction(text)
