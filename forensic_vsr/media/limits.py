"""Whether this FFmpeg's encoder opens at a frame size: asked of the encoder itself, so the
answer holds for the linked libavcodec, the pixel format and the options, whatever version.

Opening costs milliseconds and encodes nothing. The limits it finds (measured with PyAV's
libavcodec 62): every encoder refuses (width+128) x (height+128) >= 2^31/8 (FFmpeg's
av_image_check_size, about 16,000 x 16,000); libx264 also refuses a side over 16384; FFV1 at
level 3 refuses frames it cannot cut into slices small enough for its coder (about 13,486 x
13,486 for yuv420p, 14,528 x 14,528 for 4:4:4 and RGB, though not every smaller size opens and some larger ones
do: the slice split depends on the exact size)."""

from __future__ import annotations

from fractions import Fraction

import av
import av.error


def encoder_accepts(codec: str, pix_fmt: str, width: int, height: int, options: dict[str, str]) -> bool:
    """True when `codec` opens for `width` x `height` frames of `pix_fmt` with `options`."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = Fraction(1, 25)
    ctx.options = dict(options)
    try:
        ctx.open()  # freed with the object: PyAV's codec contexts have no close
    except (av.error.FFmpegError, ValueError):
        return False
    return True
