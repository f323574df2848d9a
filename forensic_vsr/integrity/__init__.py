"""Pure integrity primitives: frame hashes in ffmpeg's framehash format, RFC 9162 Merkle trees,
DSSE envelopes. No I/O beyond what callers hand in; no torch, no cv2."""
