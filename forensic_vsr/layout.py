"""The bundle contract's file names, defined once: the writer (forensic_vsr.bundle) creates
exactly these, and the verifier (forensic_vsr.audit.verify) reads exactly these.

    BUNDLE/manifest.json, chain.jsonl, input.framehash, output.framehash,
           output/master.mkv, output/preview.mp4, maps/NAME.mkv + maps/NAME.framehash,
           maps/flagged.json, stills/*.png, report.pdf,
           attestations/step.run.intoto.jsonl (format 2: the in-toto attestation of step.run)
"""

from __future__ import annotations

MANIFEST = "manifest.json"
CHAIN = "chain.jsonl"
INPUT_FRAMEHASH = "input.framehash"
OUTPUT_FRAMEHASH = "output.framehash"
OUTPUT_DIR = "output"
MASTER = "output/master.mkv"
PREVIEW = "output/preview.mp4"
MAPS_DIR = "maps"
FLAGGED = "maps/flagged.json"
STILLS_DIR = "stills"
REPORT = "report.pdf"
ATTESTATIONS_DIR = "attestations"


def map_video(name: str) -> str:
    return f"{MAPS_DIR}/{name}.mkv"


def map_framehash(name: str) -> str:
    return f"{MAPS_DIR}/{name}.framehash"


def attestation(record_type: str) -> str:
    """The sidecar holding the standard in-toto DSSE envelope of a record (format 2: step.run)."""
    return f"{ATTESTATIONS_DIR}/{record_type}.intoto.jsonl"


def partial_dir_name(bundle_name: str, pid: int) -> str:
    """The hidden sibling a bundle is built in; `fvsr verify` reports such a directory as INCOMPLETE."""
    return f".{bundle_name}.partial-{pid}"
