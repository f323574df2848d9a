"""`fvsr verify --reproduce`: run the recorded recipe again and compare output frames.

Bit-exact equality is expected on the recorded platform; elsewhere every differing sample is
counted and the largest difference reported, so an auditor sees exactly how far apart they are."""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from forensic_vsr.audit.keys import Signer
from forensic_vsr.audit.verify import ChainView, Check, _fail, _pass
from forensic_vsr.media import VideoReader, frame_planes


def _recipe(step: dict[str, Any]):  # type: ignore[no-untyped-def]
    from forensic_vsr.enhance import Recipe

    params = step["predicate"]["buildDefinition"]["externalParameters"]
    op = params["operations"][-1]  # the main operation; earlier ones are --ops pre-operations
    frames = params.get("frames")
    rng = tuple(int(x) for x in frames.split(":")) if frames else None
    ops = params.get("operations", [])
    return Recipe(
        mode=params["mode"],
        model=op["model"],
        pre_ops=tuple(o["model"] for o in ops[:-1]),
        scale=int(op["scale"]),
        frames=rng,  # type: ignore[arg-type]
        device=params.get("device", "cpu"),
        accept_decode_errors=bool(params.get("accept_decode_errors")),
        tile=params.get("tile"),
        batch=params.get("batch"),
        psf=params.get("psf"),
        deinterlace=params.get("deinterlace", "fields"),
        roi=tuple(params["roi"]) if params.get("roi") else None,  # type: ignore[arg-type]
    )


def sample_differences(a: Path, b: Path) -> tuple[int, int, int, int]:
    """(frames compared, frames differing, samples differing, max |difference|) between two videos."""
    frames = diff_frames = diff_samples = max_diff = 0
    with VideoReader(a) as ra, VideoReader(b) as rb:
        for fa, fb in zip(ra.frames(), rb.frames(), strict=False):
            frames += 1
            changed = False
            for pa, pb in zip(frame_planes(fa.frame), frame_planes(fb.frame), strict=True):
                if pa.shape != pb.shape:
                    return frames, frames, -1, -1
                d = np.abs(pa.astype(np.int32) - pb.astype(np.int32))
                n = int(np.count_nonzero(d))
                if n:
                    changed = True
                    diff_samples += n
                    max_diff = max(max_diff, int(d.max()))
            diff_frames += changed
    return frames, diff_frames, diff_samples, max_diff


def reproduce(bundle: Path, view: ChainView, evidence: Path) -> list[Check]:
    from forensic_vsr.enhance import Examiner, enhance

    step = view.first("step.run")
    if step is None:
        return [_fail("reproduce", "no step.run record to reproduce")]
    recorded = step["predicate"]["buildDefinition"]["internalParameters"]
    same_platform = recorded.get("platform") == platform.platform() and recorded.get("cpu", {}).get("machine") == platform.machine()
    signer = Signer(Ed25519PrivateKey.generate(), "reproduce")
    with tempfile.TemporaryDirectory(prefix="fvsr-reproduce-") as tmp:
        out = Path(tmp) / "bundle"
        enhance(evidence, out, _recipe(step), Examiner("reproduce", None, signer), show_progress=False)
        mine = (out / "output.framehash").read_text().splitlines()
        theirs = (bundle / "output.framehash").read_text().splitlines()
        strip = [ln for ln in mine if not ln.startswith("#")], [ln for ln in theirs if not ln.startswith("#")]
        if strip[0] == strip[1]:
            return [
                _pass(
                    "reproduce",
                    f"{len(strip[0])} output frames reproduced bit-exactly"
                    f"{'' if same_platform else ' (on a different platform than recorded)'}",
                )
            ]
        frames, dframes, dsamples, dmax = sample_differences(out / "output/master.mkv", bundle / "output/master.mkv")
    where = "on the recorded platform" if same_platform else f"recorded on {recorded.get('platform')}, reproduced on {platform.platform()}"
    return [_fail("reproduce", f"{dframes} of {frames} frames differ: {dsamples} samples, max |difference| {dmax} ({where})")]
