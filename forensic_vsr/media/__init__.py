"""Evidence I/O through PyAV: read-only probing, streaming decode on native planes (bit-exact,
recorded), and the lossless (FFV1) and viewing (H.264) encoders.

Frames are handed out as *native planes*: one numpy array per plane of the decoder's own pixel
format, without line padding, exactly the bytes ffmpeg's framehash muxer hashes. Nothing here
converts colour or bit depth. This package imports neither torch nor cv2.
"""

from __future__ import annotations

from forensic_vsr.media.decoder import BITEXACT_DECODE, LEGACY_DECODE, OUTPUT_DECODE, DecoderSettings, ffmpeg_libraries
from forensic_vsr.media.files import exiftool_metadata, file_sha256
from forensic_vsr.media.framehash_io import video_framehashes
from forensic_vsr.media.planes import (
    PlaneSpec,
    frame_from_planes,
    frame_planes,
    plane_geometry,
    plane_specs,
    planes_sha256,
    planes_size,
)
from forensic_vsr.media.reader import Colour, DecodedFrame, DecodeStats, StreamInfo, VideoReader
from forensic_vsr.media.stages import PipelineStage
from forensic_vsr.media.writer import CHROMA_LOCATIONS, RoundTripCheck, VideoWriter

__all__ = [
    "BITEXACT_DECODE",
    "CHROMA_LOCATIONS",
    "LEGACY_DECODE",
    "OUTPUT_DECODE",
    "Colour",
    "DecodeStats",
    "DecodedFrame",
    "DecoderSettings",
    "PipelineStage",
    "PlaneSpec",
    "RoundTripCheck",
    "StreamInfo",
    "VideoReader",
    "VideoWriter",
    "exiftool_metadata",
    "ffmpeg_libraries",
    "file_sha256",
    "frame_from_planes",
    "frame_planes",
    "plane_geometry",
    "plane_specs",
    "planes_sha256",
    "planes_size",
    "video_framehashes",
]
