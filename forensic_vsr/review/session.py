"""What one `fvsr review` session knows of its bundle: the frame table (index, pts, evidence time,
sha256 from output.framehash), the videos it decodes, the evidence (served only once its sha256 is
the recorded one), `verify_bundle` running in a background thread, and the review records.

The bundle is only read, except review/: a record is written whole under a new name (never over
an existing one), signed by the examiner key unlocked at start. The chain is read with the
verifying key, so the records the page relies on are the signed ones."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forensic_vsr import layout
from forensic_vsr.atomic import atomic_output
from forensic_vsr.audit.bundle_format import bundle_format, pem_der, read_manifest
from forensic_vsr.audit.checks import Check
from forensic_vsr.audit.keys import Signer
from forensic_vsr.audit.records import step_annotations
from forensic_vsr.audit.review import (
    REVIEW_DIR,
    REVIEW_MAX_BYTES,
    BundleBinding,
    ReviewError,
    new_review,
    open_review,
    outside_frame,
    review_files,
    review_name,
    sign_review,
)
from forensic_vsr.audit.safe_read import UnsafeFile, bundle_entries, read_in_bundle
from forensic_vsr.audit.verify import read_chain, verify_bundle
from forensic_vsr.errors import UsageError
from forensic_vsr.media import file_sha256
from forensic_vsr.report.review_section import evidence_decoding, read_framehash
from forensic_vsr.review.frames import FrameSource, PngCache, RecomputedMap, map_png, picture_png
from forensic_vsr.review.psf import MIN_ESTIMATE, MIN_REGION, blind_estimate, enhance_command, parse_psf_params, parse_region, preview

MAP_KINDS = ("synthesized", "contradiction", "interval")


@dataclass
class VerifyProgress:
    """`verify_bundle`'s checks as they complete (read by the page while the thread appends)."""

    checks: list[Check] = field(default_factory=list)
    done: bool = False
    error: str | None = None

    @property
    def verified(self) -> bool:
        return self.done and bool(self.checks) and all(c.ok for c in self.checks)


class ReviewSession:
    def __init__(
        self, bundle: Path, key: Ed25519PublicKey | None, signer: Signer | None, evidence: Path | None, independent_key: bool
    ) -> None:
        self.bundle = bundle
        self.signer = signer
        manifest = read_manifest(bundle)
        if key is None:
            der = pem_der(manifest.get("public_key"))
            if der is None:
                raise UsageError(f"{bundle}: the manifest holds no public key; pass --pubkey KEY.pub")
            from cryptography.hazmat.primitives.serialization import load_der_public_key

            loaded = load_der_public_key(der)
            if not isinstance(loaded, Ed25519PublicKey):
                raise UsageError(f"{bundle}: the manifest's public key is not Ed25519; pass --pubkey KEY.pub")
            key = loaded
        if signer is not None and signer.public_key != key:
            raise UsageError("--key is not the key this bundle is verified against (--pubkey, or the manifest's key)")
        self.key = key
        self.independent_key = independent_key
        fmt = bundle_format(manifest)
        self.can_review = fmt is not None and fmt.review_records
        self.view, chain_checks = read_chain(bundle, key)
        if not all(c.ok for c in chain_checks) or any(p is None for p in self.view.payloads):
            raise UsageError(f"{bundle}: the chain does not verify under the key ({'; '.join(c.line() for c in chain_checks if not c.ok)})")
        ingest, step = self.view.first("evidence.ingest"), self.view.first("step.run")
        if ingest is None or step is None:
            raise UsageError(f"{bundle}: no evidence.ingest and step.run records: nothing to review (a refusal?)")
        self.run = step_annotations(step)
        self.recipe = (self.view.first("policy.decision") or {}).get("recipe") or {}
        self.case_id = ingest.get("case_id")
        probe = ingest.get("probe") or {}
        self.evidence_size = (int(probe.get("width") or self.run["width_out"]), int(probe.get("height") or self.run["height_out"]))
        self.maps = (self.run.get("maps") or {}).get("files", {})
        self.map_scale = float((self.run.get("maps") or {}).get("scale", 1))
        self.out_tb, self.output = read_framehash(bundle, layout.OUTPUT_FRAMEHASH)
        self.in_tb, inputs = read_framehash(bundle, layout.INPUT_FRAMEHASH)
        self.first_pts = inputs[0].pts if inputs else 0
        self.size = (int(self.run["width_out"]), int(self.run["height_out"]))
        region = self.run.get("region")  # --roi: the outputs show this region; the evidence is cut to it beside them
        self.region = (int(region["x"]), int(region["y"]), int(region["width"]), int(region["height"])) if region else None
        self.sources: dict[str, FrameSource] = {"enhanced": FrameSource(bundle / layout.MASTER)}
        for kind in MAP_KINDS:
            if kind in self.maps:
                self.sources[kind] = FrameSource(bundle / self.maps[kind]["video"])
        self.evidence_note = self._evidence(ingest, evidence)
        for kind in (self.run.get("maps") or {}).get("recomputed") or ():  # format 3: not stored, recomputed
            if kind != "contradiction" or "evidence" in self.sources:
                master, shown = self.sources["enhanced"], self.sources.get("evidence")
                self.sources[kind] = RecomputedMap(kind, master, shown, self.evidence_frame, self.run["maps"], self.region)  # type: ignore[assignment]
        self.cache = PngCache()
        self.progress = VerifyProgress()
        self._save_lock = threading.Lock()
        self._psf_lock = threading.Lock()

    def _evidence(self, ingest: dict[str, Any], given: Path | None) -> str:
        """Adds the evidence source when the file (--evidence, else the recorded path) has the
        recorded sha256; says what was found either way."""
        recorded = ingest["evidence"]
        path = given or Path(recorded.get("path") or "")
        if not path.is_file():
            return f"evidence not shown: {path} not found (pass --evidence FILE)"
        got = file_sha256(path)
        if got != recorded["sha256"]:
            return f"evidence not shown: {path} has sha256 {got[:16]}…, the recorded evidence {recorded['sha256'][:16]}…"
        self.sources["evidence"] = FrameSource(path, *evidence_decoding(ingest))
        self.evidence_path = path
        return f"evidence {path.name}: sha256 {got[:16]}… as recorded"

    def start_verify(self, extra_checks: list[Any]) -> None:
        evidence = getattr(self, "evidence_path", None)

        def work() -> None:
            try:
                for check in verify_bundle(self.bundle, self.key, evidence, extra_checks):
                    self.progress.checks.append(check)
            except Exception as exc:  # shown on the page: a crash must not look like "still running"
                self.progress.error = f"{type(exc).__name__}: {exc}"
            finally:
                self.progress.done = True

        threading.Thread(target=work, name="fvsr-review-verify", daemon=True).start()

    def evidence_frame(self, n: int) -> int:
        frames = self.run.get("frames") or {}
        return int(frames.get("start", 0)) + n // int(self.run.get("frames_per_input") or 1)

    def frame_info(self, n: int) -> dict[str, Any]:
        line = self.output[n]
        seconds = line.pts * self.out_tb - self.first_pts * self.in_tb
        return {
            "index": n,
            "pts": line.pts,
            "time_base": str(self.out_tb),
            "time_s": float(seconds),
            "time_exact": str(seconds),
            "sha256": line.sha256,
            "evidence_frame": self.evidence_frame(n),
            "verified": self.progress.verified,
        }

    def png(self, kind: str, n: int) -> bytes:
        """Frame n of `kind` (enhanced, evidence, or a map) as PNG; KeyError/IndexError when absent."""
        source = self.sources[kind]
        if not 0 <= n < len(self.output):
            raise IndexError(f"no output frame {n}")
        key = (kind, n)
        png = self.cache.get(key)
        if png is None:
            if kind == "evidence":
                png = picture_png(source.frame(self.evidence_frame(n)), self.region)
            elif kind == "enhanced":
                png = picture_png(source.frame(n))
            else:
                png = map_png(source.frame(n), self.map_scale)
            self.cache.put(key, png)
        return png

    def psf(self, action: str, n: int, params: dict[str, str]) -> dict[str, Any]:
        """The PSF preview (`action` preview) or the blind estimate (estimate) on the evidence frame
        behind output frame n; ValueError (a 400) for bad parameters, LookupError when there is no
        evidence to work on, BlockingIOError while another one is computed."""
        if "evidence" not in self.sources:
            raise LookupError(f"PSF preview unavailable: {self.evidence_note}")
        if action not in ("preview", "estimate"):
            raise ValueError(f"no PSF action {action[:40]!r}: preview or estimate")
        if not 0 <= n < len(self.output):
            raise ValueError(f"no output frame {n}")
        psf = parse_psf_params(params) if action == "preview" else None
        if not self._psf_lock.acquire(blocking=False):
            raise BlockingIOError("busy: one PSF preview at a time; try again when the last one is shown")
        try:
            decoded = self.sources["evidence"].frame(self.evidence_frame(n))
            size = (decoded.frame.width, decoded.frame.height)
            region = parse_region(params, size, MIN_REGION if psf is not None else MIN_ESTIMATE)
            if psf is None:
                result = blind_estimate(decoded, region)
            else:
                result = preview(decoded, psf, region)
                result["command"] = enhance_command(self.evidence_path, self.bundle, psf, region, self.recipe, self.case_id)
        finally:
            self._psf_lock.release()
        where = [region.x, region.y, region.w, region.h] if region else [0, 0, *size]
        return {"frame": n, "evidence_frame": self.evidence_frame(n), "region": where, "whole_frame": region is None, **result}

    def recorded_psf(self) -> dict[str, Any] | None:
        """The PSF the bundle's deblur ran with (main step or an earlier --ops step), if any."""
        for step in [self.run, *(self.run.get("pre_operations") or [])]:
            deblur = step.get("deblur") if isinstance(step, dict) else None
            if deblur and deblur.get("psf"):
                return {"psf": deblur["psf"], "source": deblur.get("psf_source"), "roi": deblur.get("roi")}
        return None

    def reviews(self) -> list[dict[str, Any]]:
        """Every review record present, opened under the verifying key (or the reason it is not)."""
        found = []
        for name in review_files(bundle_entries(self.bundle)):
            try:
                record = open_review(read_in_bundle(self.bundle, name, REVIEW_MAX_BYTES), self.key, name)
                found.append({"file": name, "signed": True, **record.to_json()})
            except (UnsafeFile, ReviewError) as exc:
                found.append({"file": name, "signed": False, "problem": str(exc)})
        return found

    def save_review(self, frame: int, still: bool, annotations: list[Any]) -> dict[str, Any]:
        """Sign and write the next review/NNNN.json; ValueError (shown to the examiner) when refused."""
        if self.signer is None:
            raise PermissionError("read-only: the review server was started without --key")
        if not self.can_review:
            raise ValueError("this bundle's format holds no review records (format 2 and later)")
        if not isinstance(frame, int) or not 0 <= frame < len(self.output):
            raise ValueError(f"no output frame {frame!r}")
        if not isinstance(annotations, list):
            raise ValueError("annotations must be a list")
        with self._save_lock:
            names = review_files(bundle_entries(self.bundle))
            seq = len(names)
            if names and names[-1] != review_name(seq - 1):
                raise ValueError(f"review/ holds {names[-1]} after {seq - 1} others: not numbered in sequence, nothing saved")
            prev = hashlib.sha256(read_in_bundle(self.bundle, names[-1], REVIEW_MAX_BYTES)).hexdigest() if names else None
            try:
                record = new_review(
                    seq, prev, BundleBinding.of(self.view), self.output[frame], frame, bool(still), annotations, self.signer
                )
            except ReviewError as exc:
                raise ValueError(str(exc)) from None
            problems = [p for p in (outside_frame(a, self.size) for a in record.annotations) if p]
            if problems:
                raise ValueError(problems[0])
            (self.bundle / REVIEW_DIR).mkdir(exist_ok=True)
            with atomic_output(self.bundle / review_name(seq), overwrite=False) as tmp:
                tmp.write_bytes(sign_review(record, self.signer))
        return {"file": review_name(seq), "signed": True, **record.to_json()}

    def info(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle.name,
            "frames": len(self.output),
            "width": self.size[0],
            "height": self.size[1],
            "kinds": sorted(self.sources),
            "evidence": self.evidence_note,
            "map_units": "8-bit grey levels (of 255), rounded, capped at 255",
            "can_sign": self.signer is not None and self.can_review,
            "examiner": self.signer.name if self.signer else None,
            "read_only_reason": None
            if self.signer is not None and self.can_review
            else ("started without --key: read-only" if self.signer is None else "this bundle's format holds no review records"),
            "key": "supplied key" if self.independent_key else "the bundle's own key (not obtained independently: pass --pubkey)",
            "chain_head": BundleBinding.of(self.view).chain_head,
            "deblur": self.recorded_psf(),
            "region": list(self.region) if self.region else None,
            "evidence_width": self.evidence_size[0],
            "evidence_height": self.evidence_size[1],
        }

    def close(self) -> None:
        for source in self.sources.values():
            source.close()
