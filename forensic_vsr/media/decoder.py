"""How evidence is decoded, and the record of it.

Several legacy decoders (MPEG-4 part 2, msmpeg4, WMV, MJPEG, ...) pick an IDCT and other DSP
routines per build and per CPU unless `flags=+bitexact` is set: the same file then decodes to
different samples under different FFmpeg builds (measured: 786 of 795 frames of an msmpeg4v3
CCTV clip differ between PyAV's FFmpeg 8 and Debian's ffmpeg 5.1). With `+bitexact` and the IDCT
left to FFmpeg's per-stream choice (`idct=auto`: the XviD IDCT for XviD-made streams, the simple
IDCT otherwise) both give ffmpeg's `-flags +bitexact` framehash, frame for frame.

Decoding runs on one thread: frame threading changes the concealment of damaged streams from
run to run (measured on a damaged MPEG-4 ASP file), and evidence is often damaged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import av

from forensic_vsr.errors import IntegrityError

# FFmpeg's portable `idct` choices (libavcodec/options_table.h); the CPU-specific ones are no
# choice for a record meant to be decoded again elsewhere.
IDCT_NAMES = frozenset({"auto", "int", "simple", "simpleauto", "xvid", "faani"})
_MAX_THREADS = 64


@dataclass(frozen=True)
class DecoderSettings:
    """Decoder options that decide the decoded samples.

    `threads`: 1 decodes on the calling thread; 0 lets FFmpeg choose frame and slice threads
    (what format-1 bundles did; output then depends on the machine for damaged streams)."""

    bitexact: bool = True
    idct: str | None = "auto"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.idct is not None and self.idct not in IDCT_NAMES:
            raise ValueError(f"unknown IDCT {self.idct!r}; FFmpeg offers {', '.join(sorted(IDCT_NAMES))}")
        if not 0 <= self.threads <= _MAX_THREADS:
            raise ValueError(f"decoder threads must be 0..{_MAX_THREADS}, got {self.threads}")

    def options(self) -> dict[str, str]:
        """The AVCodecContext options, spelled as on ffmpeg's command line (`-flags +bitexact`)."""
        options = {}
        if self.bitexact:
            options["flags"] = "+bitexact"
        if self.idct is not None:
            options["idct"] = self.idct
        return options

    def configure(self, codec_context: av.codec.context.CodecContext) -> None:
        """Apply to a decoder that has not been opened yet (PyAV opens it at the first packet)."""
        if codec_context.is_open:
            raise RuntimeError("decoder settings must be applied before the decoder opens")
        codec_context.options = {**codec_context.options, **self.options()}
        codec_context.thread_count = self.threads
        codec_context.thread_type = "SLICE" if self.threads == 1 else "AUTO"

    @classmethod
    def from_record(cls, record: Mapping[str, object] | None) -> DecoderSettings:
        """Settings a recorded `decoder` (see `decoder_record`) was made with; `None` (format-1
        ingest records carry no decoder) gives `LEGACY_DECODE`. Refuses options it does not know
        rather than guessing: the record is signed, but still input."""
        if record is None:
            return LEGACY_DECODE
        options = record.get("options")
        threads = record.get("threads")
        if not isinstance(options, Mapping) or not all(isinstance(v, str) for v in options.values()):
            raise IntegrityError("decoder record: options must be an object of strings")
        if not isinstance(threads, int) or isinstance(threads, bool):
            raise IntegrityError("decoder record: threads must be an integer")
        unknown = sorted(set(options) - {"flags", "idct"})
        if unknown:
            raise IntegrityError(f"decoder record: unknown decoder options {', '.join(unknown)} (known: flags, idct)")
        flags = options.get("flags")
        if flags not in (None, "+bitexact"):
            raise IntegrityError(f"decoder record: flags {flags!r} (only '+bitexact' is known)")
        idct = options.get("idct")
        try:
            return cls(bitexact=flags is not None, idct=idct, threads=threads)  # type: ignore[arg-type]
        except ValueError as exc:
            raise IntegrityError(f"decoder record: {exc}") from None


BITEXACT_DECODE = DecoderSettings()
"""How evidence is decoded from bundle format 2 on."""

LEGACY_DECODE = DecoderSettings(bitexact=False, idct=None, threads=0)
"""How format-1 bundles decoded evidence: FFmpeg's default options, automatic threading."""


@dataclass(frozen=True)
class _OwnFfv1Decode(DecoderSettings):
    """FFV1 with FFmpeg's slice threads; any other codec as BITEXACT_DECODE (one thread)."""

    def configure(self, codec_context: av.codec.context.CodecContext) -> None:
        if codec_context.name != "ffv1":
            BITEXACT_DECODE.configure(codec_context)
            return
        super().configure(codec_context)
        codec_context.thread_type = "SLICE"


OUTPUT_DECODE = _OwnFfv1Decode(threads=0)
"""How a bundle's own lossless, intra-only FFV1 videos (master, maps) are decoded back: with
FFmpeg's slice threads (1.8x faster for a 1536x1152 master on 2 cores). FFV1's slices are
independent (and CRC-checked in ours), so threads change no sample, of an intact stream or of a
damaged one (tests/test_output_decode.py); a file that is not FFV1 (a substituted master)
decodes on one thread. For frame hashes only: the decode statistics (`VideoReader.stats`) miss
what FFmpeg's own threads log."""


def ffmpeg_libraries() -> dict[str, object]:
    """The FFmpeg that decodes here: its release and every library's version."""
    return {
        "ffmpeg": str(av.ffmpeg_version_info),
        "pyav": av.__version__,
        "libraries": {name: ".".join(str(n) for n in version) for name, version in sorted(av.library_versions.items())},
    }


def decoder_record(codec: str, settings: DecoderSettings) -> dict[str, object]:
    """What `evidence.ingest` records as `decoder`: enough to decode the same samples again."""
    return {"codec": codec, "options": settings.options(), "threads": settings.threads, **ffmpeg_libraries()}
