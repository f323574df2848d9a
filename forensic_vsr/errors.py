"""One exception hierarchy. Every message tells the user what went wrong and what to do;
the CLI prints it as one line and exits non-zero."""

from __future__ import annotations


class FvsrError(Exception):
    """Base of every error forensic-vsr raises on purpose."""

    exit_code = 2


class EvidenceError(FvsrError):
    """The evidence file cannot be read as a video (missing, empty, not a video, corrupt)."""


class UnsupportedFormatError(FvsrError):
    """The pixel format or stream layout is readable but not supported by an operation."""


class UsageError(FvsrError):
    """Arguments are inconsistent or out of range (e.g. --frames beyond the last frame)."""


class OutputError(FvsrError):
    """The output location cannot be written, or already exists."""


class IntegrityError(FvsrError):
    """A self-check failed: a lossless round trip did not reproduce the frames, or the
    evidence file changed while it was being processed."""


class KeyUseError(FvsrError):
    """A signing or verification key cannot be used (wrong passphrase, wrong type, unsafe mode)."""


class PolicyDenied(FvsrError):
    """The policy refused the recipe; the decision is still recorded."""

    exit_code = 3


class VerificationFailed(FvsrError):
    """At least one verification check failed."""

    exit_code = 1
