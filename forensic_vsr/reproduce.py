"""`fvsr verify --reproduce`: run the recorded recipe again and compare output frames.

The recipe is read back from the signed step record (`Recipe.from_json`), so every option the
run used (policy file, weights, precision, maps, report, stills, --ops) is used again. Bit-exact
equality is expected on the recorded platform; elsewhere every differing sample is counted and
the largest difference reported, so an auditor sees exactly how far apart they are."""

from __future__ import annotations

import dataclasses
import platform
import tempfile
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from forensic_vsr import layout
from forensic_vsr.audit.keys import Signer
from forensic_vsr.audit.records import external_parameters, internal_parameters
from forensic_vsr.audit.verify import ChainView, Check
from forensic_vsr.errors import FvsrError
from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.pipeline import enhance
from forensic_vsr.policy import policy_file
from forensic_vsr.recipe import Examiner, Recipe


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


def _frame_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]


def auditor_recipe(recipe: Recipe, policy_sha256: str | None, policy_files: list[Path], models_dirs: list[Path]) -> Recipe:
    """The recorded recipe with the examiner's paths replaced by the auditor's copies: the policy
    file with the sha256 the decision records, and the auditor's card directories. Paths on the
    examiner's machine mean nothing here."""
    if recipe.policy is not None:
        mine = next((p for p in policy_files if policy_file(p).sha256 == policy_sha256), None)
        recipe = dataclasses.replace(recipe, policy=mine or recipe.policy)
    return dataclasses.replace(recipe, models_dirs=tuple(models_dirs)) if models_dirs else recipe


def reproduce(bundle: Path, view: ChainView, evidence: Path, policy_files: list[Path] = [], models_dirs: list[Path] = []) -> list[Check]:  # noqa: B006
    """Run the recorded recipe again on `evidence` (with the auditor's policy files and cards) and
    compare the output frames with the bundle's."""
    step = view.first("step.run")
    if step is None:
        return [Check.failed("reproduce", "no step.run record to reproduce")]
    recorded = internal_parameters(step)
    same_platform = recorded.get("platform") == platform.platform() and recorded.get("cpu", {}).get("machine") == platform.machine()
    signer = Signer(Ed25519PrivateKey.generate(), "reproduce")
    decision = view.first("policy.decision") or {}
    policy_sha256 = decision.get("policy", {}).get("sha256")
    recipe = auditor_recipe(Recipe.from_json(external_parameters(step)), policy_sha256, policy_files, models_dirs)
    with tempfile.TemporaryDirectory(prefix="fvsr-reproduce-") as tmp:
        out = Path(tmp) / "bundle"
        try:
            enhance(evidence, out, recipe, Examiner("reproduce", None, signer), show_progress=False)
        except FvsrError as exc:
            return [Check.failed("reproduce", f"the recorded recipe does not run again: {exc}")]
        mine, theirs = _frame_lines(out / layout.OUTPUT_FRAMEHASH), _frame_lines(bundle / layout.OUTPUT_FRAMEHASH)
        if mine == theirs:
            where = "" if same_platform else " (on a different platform than recorded)"
            return [Check.passed("reproduce", f"{len(mine)} output frames reproduced bit-exactly{where}")]
        frames, dframes, dsamples, dmax = sample_differences(out / layout.MASTER, bundle / layout.MASTER)
    where = "on the recorded platform" if same_platform else f"recorded on {recorded.get('platform')}, reproduced on {platform.platform()}"
    return [Check.failed("reproduce", f"{dframes} of {frames} frames differ: {dsamples} samples, max |difference| {dmax} ({where})")]
