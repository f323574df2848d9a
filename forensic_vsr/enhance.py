"""`fvsr enhance`: evidence in, verifiable bundle out.

Read this top to bottom to know what a run does:
1. open the evidence read-only, hash its bytes, read its metadata (exiftool);
2. ingest pass: decode every frame, hash it (input.framehash), measure timing (VFR), count what
   the decoder skipped -> record `evidence.ingest`;
3. enhancement pass: decode again, apply the operation on native planes, hash each output frame,
   encode the FFV1 master and the H.264 preview;
4. decode the master back and require every frame hash to match (lossless round trip) ->
   output.framehash;
5. hash the evidence again (it must be unchanged), record `step.run`, `output.write`,
   `run.complete`, sign a checkpoint into manifest.json, and move the bundle into place.

The bundle is built in a hidden sibling directory and renamed only when complete; an error
removes it, and a killed run leaves only that hidden directory, which `fvsr verify` reports as
INCOMPLETE.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from forensic_vsr import __version__, media
from forensic_vsr.audit.chain import ChainWriter, chain_root, utc_now
from forensic_vsr.audit.keys import Signer
from forensic_vsr.environment import environment_report
from forensic_vsr.errors import EvidenceError, IntegrityError, OutputError, PolicyDenied, UnsupportedFormatError, UsageError
from forensic_vsr.integrity import dsse, merkle
from forensic_vsr.integrity.framehash import FrameHash, TimestampMapper, header, video_framehashes
from forensic_vsr.media import (
    PipelineStage,
    RoundTripCheck,
    VideoReader,
    VideoWriter,
    exiftool_metadata,
    file_sha256,
    frame_from_planes,
    frame_planes,
    plane_geometry,
    planes_sha256,
)
from forensic_vsr.models.registry import ResolvedModel, resolve
from forensic_vsr.ops.consistency import OPERATOR as CONSISTENCY_OPERATOR
from forensic_vsr.ops.consistency import Projector
from forensic_vsr.ops.label import burn_label
from forensic_vsr.ops.resample import KERNEL_SUPPORT, upscale_plane
from forensic_vsr.policy import Decision, RecipeFacts, RuleResult, decide
from forensic_vsr.progress import progress
from forensic_vsr.timebase import fraction_text

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "forensic-vsr-bundle/1"
FFV1_OPTIONS = {"level": "3", "slicecrc": "1", "g": "1"}
PREVIEW_OPTIONS = {"crf": "18", "preset": "ultrafast"}
# FFV1 stores these losslessly; other formats map to the lossless equivalent of the same family.
MASTER_PIX_FMT = {
    "rgb24": "bgr0",
    "bgr24": "bgr0",
    "rgba": "bgra",
    "argb": "bgra",
    "abgr": "bgra",
    "rgb0": "bgr0",
    "0rgb": "bgr0",
    "0bgr": "bgr0",
    "yuvj420p": "yuv420p",
    "yuvj422p": "yuv422p",
    "yuvj444p": "yuv444p",
    "yuvj440p": "yuv440p",
}
FFV1_PIX_FMTS = frozenset(
    [
        "yuv420p",
        "yuva420p",
        "yuva422p",
        "yuv444p",
        "yuva444p",
        "yuv440p",
        "yuv422p",
        "yuv411p",
        "yuv410p",
        "bgr0",
        "bgra",
        "yuv420p16le",
        "yuv422p16le",
        "yuv444p16le",
        "yuv444p9le",
        "yuv422p9le",
        "yuv420p9le",
        "yuv420p10le",
        "yuv422p10le",
        "yuv444p10le",
        "yuv420p12le",
        "yuv422p12le",
        "yuv444p12le",
        "gray16le",
        "gray",
        "gbrp9le",
        "gbrp10le",
        "gbrp12le",
        "gbrp14le",
    ]
)
# Byte order of the packed RGB formats we accept, as indices of R, G, B, A/pad.
_PACKED_ORDER = {
    "rgb24": "RGB",
    "bgr24": "BGR",
    "rgba": "RGBA",
    "argb": "ARGB",
    "abgr": "ABGR",
    "bgra": "BGRA",
    "rgb0": "RGBX",
    "0rgb": "XRGB",
    "0bgr": "XBGR",
    "bgr0": "BGRX",
}


@dataclass(frozen=True)
class Recipe:
    """What the examiner asked for. Recorded verbatim as the step's external parameters."""

    mode: str
    model: str | None
    scale: int
    frames: tuple[int, int] | None = None
    device: str = "cpu"
    accept_decode_errors: bool = False
    weights: Path | None = None
    precision: str = "fp32"
    policy: Path | None = None
    override_policy: str | None = None
    models_dirs: tuple[Path, ...] = ()
    maps: bool = True
    stills: tuple[int, ...] = ()  # extra output frames shown in the report
    report: bool = True
    tile: int | None = None  # network tile size in input samples; None: from the memory budget, 0: never
    batch: int | None = None  # frames per network pass; None: 8 on CUDA, 1 on CPU
    psf: str | None = None  # deblur: "motion:LENGTH,ANGLE", "defocus:RADIUS", a PSF image; None: estimate
    roi: tuple[int, int, int, int] | None = None  # deblur: x, y, width, height of the region to restore
    deinterlace: str = "fields"  # deinterlace: "fields" (each field a frame, 2x rate) or "blend" (motion-adaptive)
    pre_ops: tuple[str, ...] = ()  # model ids of x1 operations run, in order, before `model` (--ops)

    def to_json(self, model: ResolvedModel | None = None) -> dict[str, Any]:
        """The recipe as recorded: `operations` lists every step in the order it runs."""
        ops = []
        for m, scale in [*((pm, 1) for pm in pre_models(self)), (model, self.scale)]:
            op: dict[str, Any] = {"op": _op_name(m) if m else "upscale", "model": m.id if m else self.model, "scale": scale}
            if m is not None and m.weights_sha256:
                op["weights_sha256"] = m.weights_sha256
            ops.append(op)
        return {
            "mode": self.mode,
            "operations": ops,
            "frames": None if self.frames is None else f"{self.frames[0]}:{self.frames[1]}",
            "device": self.device,
            "precision": self.precision,
            "accept_decode_errors": self.accept_decode_errors,
            "policy_file": None if self.policy is None else str(self.policy),
            "maps": self.maps,
            "stills": list(self.stills),
            "report": self.report,
            "tile": self.tile,
            "batch": self.batch,
            **({"psf": self.psf, "roi": list(self.roi) if self.roi else None} if self.psf or self.roi else {}),
            **({"deinterlace": self.deinterlace} if self.deinterlace != "fields" else {}),
        }


@dataclass(frozen=True)
class Examiner:
    name: str
    case_id: str | None
    signer: Signer
    certificate: Path | None = None  # PEM: the examiner's certificate (then its chain); None: self-signed at run time


def parse_frames(text: str | None) -> tuple[int, int] | None:
    """`A:B` is the half-open range of decoded frame indices A..B-1 (either side may be empty)."""
    if text is None:
        return None
    start, sep, end = text.partition(":")
    try:
        a = int(start) if start.strip() else 0
        b = int(end) if end.strip() else -1
    except ValueError:
        raise UsageError(f"--frames {text!r}: expected A:B with integer frame indices, e.g. 0:100") from None
    if not sep or a < 0 or (b != -1 and b <= a):
        raise UsageError(f"--frames {text!r}: expected A:B with 0 <= A < B")
    return a, b


def master_pix_fmt(src: str) -> str:
    fmt = MASTER_PIX_FMT.get(src, src)
    if fmt not in FFV1_PIX_FMTS:
        raise UnsupportedFormatError(f"pixel format {src} cannot be enhanced losslessly yet (FFV1 has no {src})")
    return fmt


def _convert_packed(plane: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Reorder the samples of a packed RGB plane (a lossless permutation, no colour maths)."""
    if src == dst:
        return plane
    src_order, dst_order = _PACKED_ORDER[src], _PACKED_ORDER[dst]
    out = np.zeros((*plane.shape[:2], len(dst_order)), plane.dtype)
    for i, ch in enumerate(dst_order):
        if ch in src_order and ch in "RGBA":
            out[..., i] = plane[..., src_order.index(ch)]
        elif ch == "A":
            out[..., i] = 255
    return out


class _Bundle:
    """The hidden directory a bundle is built in."""

    def __init__(self, target: Path, with_outputs: bool = True) -> None:
        self.target = target
        parent = target.parent
        if target.exists():
            raise OutputError(f"{target}: already exists; refusing to overwrite a bundle")
        if not parent.is_dir():
            raise OutputError(f"{parent}: output directory does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"{parent}: output directory is not writable")
        self.dir = parent / f".{target.name}.partial-{os.getpid()}"
        try:
            self.dir.mkdir()
            for sub in ("output",) if with_outputs else ():
                (self.dir / sub).mkdir()
        except OSError as exc:
            raise OutputError(f"{parent}: cannot create the bundle ({exc.strerror})") from None

    def path(self, name: str) -> Path:
        return self.dir / name

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self) -> None:
        for root, _dirs, files in os.walk(self.dir):
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if self.target.exists():
            raise OutputError(f"{self.target}: appeared while the run was going; the bundle is left at {self.dir}")
        os.rename(self.dir, self.target)
        dfd = os.open(self.target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _timing(pts: list[int], time_base: Fraction, rate: Fraction | None) -> dict[str, Any]:
    """Frame timing summary. VFR: some frame interval differs from the nominal one by more
    than one tick of the stream time base (the rounding a millisecond container adds)."""
    deltas = [b - a for a, b in itertools.pairwise(pts)]
    if not deltas:
        return {"vfr": False, "min_interval": None, "max_interval": None, "nominal_interval": None}
    nominal = (1 / rate) / time_base if rate else Fraction(sorted(deltas)[len(deltas) // 2])
    vfr = any(abs(d - nominal) > 1 for d in deltas) or any(d <= 0 for d in deltas)
    return {
        "vfr": vfr,
        "min_interval": min(deltas),
        "max_interval": max(deltas),
        "nominal_interval": fraction_text(Fraction(nominal)),
        "non_increasing": sum(d <= 0 for d in deltas),
    }


def _ingest(evidence: Path, bundle: _Bundle, show_progress: bool | None, accept_damage: bool) -> tuple[dict[str, Any], list[bytes]]:
    """Decode every evidence frame once: input.framehash, timing, decoder complaints."""
    head, lines, reader = video_framehashes(evidence)
    leaf_hashes: list[bytes] = []
    pts: list[int] = []
    rotation = 0
    interlaced = 0
    with reader, open(bundle.path("input.framehash"), "w", encoding="ascii") as out:
        out.write("\n".join(head) + "\n")
        info = reader.info
        with progress("ingest ", info.header_frame_count or None, show_progress) as advance:
            for frame_hash, decoded in lines:
                if decoded.index == 0:
                    rotation = int(decoded.frame.rotation or 0)
                interlaced += bool(decoded.frame.interlaced_frame)
                pts.append(decoded.pts)
                line = frame_hash.line()
                out.write(line + "\n")
                leaf_hashes.append(merkle.hash_leaf(line.encode()))
                advance()
        damage = reader.stats
        stats = damage.to_json()
    if not pts:
        raise EvidenceError(f"{evidence}: no decodable video frames ({damage.summary()})")
    if damage.damaged:
        first = damage.errors[0] if damage.errors else ""
        if not accept_damage:
            raise EvidenceError(
                f"{evidence}: damaged stream: {damage.summary()} (first: {first}); "
                "rerun with --accept-decode-errors to process what decodes, with the damage recorded"
            )
        log.warning("%s: damaged stream accepted: %s", evidence, damage.summary())
    body = {
        "probe": info.to_json(),
        "frames_decoded": len(pts),
        "pts": pts,
        "timing": _timing(pts, info.time_base, info.guessed_rate),
        "rotation": rotation,
        "interlaced_frames": interlaced,
        "decode": stats,
        "input_framehash": {
            "file": "input.framehash",
            "sha256": file_sha256(bundle.path("input.framehash")),
            "merkle_root": merkle.root_from_leaf_hashes(leaf_hashes).hex(),
            "tree_size": len(leaf_hashes),
        },
    }
    return body, leaf_hashes


def _enhance_frames(
    evidence: Path,
    bundle: _Bundle,
    recipe: Recipe,
    model: ResolvedModel,
    decision: Decision,
    n_frames: int,
    show_progress: bool | None,
) -> tuple[dict[str, Any], list[bytes]]:
    """The enhancement pass: decode, upscale native planes, hash, encode, and decode the master's
    packets back as they are written (lossless round trip). Three stages overlap on threads.
    Returns the step summary and the Merkle leaf hashes of output.framehash."""
    start, end = recipe.frames or (0, n_frames)
    hashes_path = bundle.path(".output-hashes")
    with VideoReader(evidence) as reader, open(hashes_path, "w", encoding="ascii") as hashes:
        info = reader.info
        src_fmt = info.pix_fmt
        dst_fmt = master_pix_fmt(src_fmt)
        out_w, out_h = info.width * recipe.scale, info.height * recipe.scale
        siting = "center" if src_fmt.startswith("yuvj") else "left"
        rate = info.guessed_rate
        label = decision.policy.rules["output_label"]
        mode_tags = {"FVSR_MODE": recipe.mode, "FVSR_TOOL": f"forensic-vsr {__version__}", "FVSR_MODEL": model.id}
        if label:
            mode_tags["FVSR_LABEL"] = label
        consistency = decision.policy.rules["data_consistency"]
        project = _luma_model(model) and recipe_facts(recipe, model).data_consistency_available
        residuals: list[float] = []
        operation = _operation_class(model)(model, recipe, src_fmt, siting, out_w, out_h, project, residuals)
        stages = [_stage(m, recipe, src_fmt, siting, info.width, info.height) for m in pre_models(recipe)]
        for stage in [*stages, operation]:
            stage.stream_field_order = info.field_order
            if rate:  # a frame's duration in input ticks: half a frame in the halved output time base
                stage.field_ticks = max(1, round(1 / (rate * info.time_base)))
        factor = math.prod(stage.frames_per_input for stage in [*stages, operation])
        chain_ops = _Chain(stages, operation)
        out_tb = info.time_base / factor
        rate = rate * factor if rate else rate
        master = VideoWriter(
            bundle.path("output/master.mkv"),
            codec="ffv1",
            pix_fmt=dst_fmt,
            width=out_w,
            height=out_h,
            time_base=out_tb,
            rate=rate,
            options=FFV1_OPTIONS,
            metadata=mode_tags,
            sample_aspect_ratio=info.sample_aspect_ratio,
        )
        pw, ph = out_w - out_w % 2, out_h - out_h % 2
        preview = VideoWriter(
            bundle.path("output/preview.mp4"),
            codec="libx264",
            pix_fmt="yuv420p",
            width=pw,
            height=ph,
            time_base=out_tb,
            rate=rate,
            options=PREVIEW_OPTIONS,
            metadata=mode_tags,
        )
        checks: list[RoundTripCheck] = []
        checker = PipelineStage(lambda packets: checks[0].feed(packets), "round-trip")
        maps = (
            _MapsWriter(
                bundle, out_w, out_h, recipe.scale, info, src_fmt, decision.policy.rules, model, operation.extra_map_names, out_tb, rate
            )
            if recipe.maps
            else None
        )
        vmax = plane_geometry(src_fmt)[0][2]
        warp = None
        if operation.temporal:
            from forensic_vsr.ops.temporal import WarpError

            warp = WarpError("output" if _task(model) == "stabilise" else "input")
        mapper = PipelineStage(maps.add if maps else lambda *_: None, "maps")

        def encode(out_planes: list[np.ndarray], pts: int) -> None:
            sha256 = planes_sha256(out_planes)
            hashes.write(f"{sha256} {sum(p.nbytes for p in out_planes)}\n")
            frame = frame_from_planes(out_planes, dst_fmt, out_w, out_h)
            if not checks:  # FFV1's extradata exists once the encoder has opened
                packets = master.write(frame, pts)
                checks.append(RoundTripCheck("ffv1", master.extradata, out_w, out_h))
            else:
                packets = None
            checks[0].expect(sha256)
            checker.submit(packets if packets is not None else master.write(frame, pts))
            view = frame.reformat(width=pw, height=ph, format="yuv420p")
            preview.write(burn_label(view, label) if label else view, pts)

        encoder = PipelineStage(encode, "encoder")
        written = 0

        def emit(done: list[tuple[Any, list[np.ndarray], list[np.ndarray]]]) -> None:
            nonlocal written
            for (index, pts), planes, out_planes in done:
                map_plane = out_planes[0]  # in the source's component order, like planes[0]
                if src_fmt in _PACKED_ORDER:
                    out_planes = [_convert_packed(out_planes[0], src_fmt, dst_fmt)]
                if residuals and consistency["required"] and residuals[written] > consistency["max_rms_residual"]:
                    raise IntegrityError(
                        f"frame {index}: data-consistency RMS residual {residuals[written]:.3f} exceeds the "
                        f"policy's {consistency['max_rms_residual']}"
                    )
                encoder.submit(out_planes, pts)  # hashed, encoded and checked on the worker threads
                extra = operation.extras((index, pts))  # taken even without maps: nothing piles up
                if maps is not None:
                    mapper.submit(planes[0], map_plane, pts, extra)
                if warp is not None:
                    warp.add(
                        planes[0] if planes[0].ndim == 2 else planes[0][..., 0],
                        map_plane if map_plane.ndim == 2 else map_plane[..., 0],
                        vmax,
                    )
                written += 1
                advance()

        try:
            with progress("enhance", (end - start) * factor, show_progress) as advance:
                for decoded in reader.frames():
                    if decoded.index < start:
                        continue
                    if decoded.index >= end:
                        break
                    emit(chain_ops.push((decoded.index, decoded.pts), frame_planes(decoded.frame)))
                emit(chain_ops.flush())
            encoder.close()
            checker.submit(master.close())
            checker.submit(None)  # flush the decoder
            checker.close()
            mapper.close()
            maps_step = maps.finish() if maps is not None else None
        finally:
            encoder.close()
            checker.close()
            mapper.close()
            if maps is not None:
                maps.close()
            master.close()
            preview.close()
    if written != (end - start) * factor:
        raise IntegrityError(
            f"wrote {written} frames in the enhancement pass, expected {(end - start) * factor}: "
            "the evidence decodes differently on a second read"
        )
    check = checks[0]
    if check.mismatch is not None:
        index, want, got = check.mismatch
        raise IntegrityError(f"lossless round trip failed at output frame {index}: encoded {want[:16]}…, decoded {got[:16]}…")
    if check.checked != written:
        raise IntegrityError(f"lossless round trip failed: {written} frames encoded, {check.checked} decoded back")
    step = {
        "frames": {"start": start, "end": end, "count": written},
        "frames_per_input": factor,
        "pix_fmt_in": src_fmt,
        "pix_fmt_out": dst_fmt,
        "width_out": out_w,
        "height_out": out_h,
        "chroma_siting_assumed": siting,
        "luma": model.id if _luma_model(model) else None,
        "planes_classical": ("copy (x1)" if recipe.scale == 1 else "lanczos") if _luma_model(model) else model.id,
        "label": label,
        "data_consistency": None
        if not project
        else {
            "operator": CONSISTENCY_OPERATOR,
            "plane": "luma",
            "projection": "x + A_pinv(y - A x), separable closed form",
            "units": "8-bit levels",
            "rms_residual_per_frame": [round(r, 6) for r in residuals],
            "rms_residual_max": round(max(residuals, default=0.0), 6),
            "tolerance": consistency["max_rms_residual"] if consistency["required"] else None,
        },
        "lossless_round_trip": {"frames_decoded_back": check.checked, "all_equal": True},
        "runner": operation.runner_record(info.height, info.width),
        "multiframe": operation.multiframe_record(),
        "deblur": operation.deblur_record(),
        "deinterlace": operation.deinterlace_record(),
        "temporal": operation.temporal_record(),
        "pre_operations": [
            {
                "op": _op_name(stage.model),
                "model": stage.model.id,
                "deblur": stage.deblur_record(),
                "deinterlace": stage.deinterlace_record(),
                "temporal": stage.temporal_record(),
                "runner": stage.runner_record(info.height, info.width),
            }
            for stage in stages
        ],
        "temporal_consistency": warp.result() if warp is not None else None,
        "maps": maps_step,
    }
    return step, _output_framehash(bundle)


def _operation_class(model: ResolvedModel) -> type[_FrameOperation]:
    """The frame operation that runs a model, by its card's task (networks and classical
    interpolation: the base class)."""
    return {
        "multiframe-sr": _MultiFrameOperation,
        "deblur": _DeblurOperation,
        "stabilise": _StabiliseOperation,
        "integrate": _IntegrateOperation,
        "deinterlace": _DeinterlaceOperation,
    }.get(_task(model), _FrameOperation)


def _stage(model: ResolvedModel, recipe: Recipe, src_fmt: str, siting: str, width: int, height: int) -> _FrameOperation:
    """A x1 operation run before the main one (--ops)."""
    sub = dataclasses.replace(recipe, model=model.id, scale=1, pre_ops=())
    stage = _operation_class(model)(model, sub, src_fmt, siting, width, height, False, [])
    stage.keep_maps = False
    return stage


class _Chain:
    """Frames through the pre-operations, then the main operation: each stage's outputs are the
    next stage's inputs, in order; flushing flushes every stage in turn. What comes out is
    (key, the main operation's input planes, its output planes)."""

    def __init__(self, stages: list[_FrameOperation], main: _FrameOperation) -> None:
        self.stages = [*stages, main]

    def _through(self, i: int, items: list[tuple[Any, list[np.ndarray]]]) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        stage = self.stages[i]
        done = [d for key, planes in items for d in stage.push(key, planes)]
        if i == len(self.stages) - 1:
            return done
        return self._through(i + 1, [(key, out) for key, _inp, out in done])

    def push(self, key: Any, planes: list[np.ndarray]) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        return self._through(0, [(key, planes)])

    def flush(self) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        out: list[tuple[Any, list[np.ndarray], list[np.ndarray]]] = []
        for i, stage in enumerate(self.stages):
            flushed = stage.flush()
            if i == len(self.stages) - 1:
                out += flushed
            else:
                out += self._through(i + 1, [(key, o) for key, _inp, o in flushed])
        return out


class _MapsWriter:
    """The exact layer for every frame (forensic_vsr.uncertainty): S and R of the first plane
    (luma for YUV and gray; the first component otherwise) stored losslessly as FFV1 gray16le
    under maps/, and the flagged regions of S streamed into maps/flagged.json."""

    NAMES = ("synthesized", "contradiction")

    def __init__(
        self,
        bundle: _Bundle,
        out_w: int,
        out_h: int,
        scale: int,
        info: Any,
        src_fmt: str,
        rules: dict[str, Any],
        model: ResolvedModel,
        extra: tuple[str, ...] = (),
        time_base: Fraction | None = None,
        rate: Fraction | None = None,
    ) -> None:
        from forensic_vsr.uncertainty import DEFAULT_FLAG_THRESHOLD, MAP_SCALE, ExactMaps

        self.bundle = bundle
        # the calibrated layer, where the model's card carries a lambda for this scale
        self.calibration = (model.card.data.get("uncertainty", {}).get(f"x{scale}") if model.card else None) or None
        self.names = self.NAMES + (("interval",) if self.calibration else ()) + extra
        self.head = None
        if self.calibration and "head" in self.calibration and model.card is not None:
            from forensic_vsr.uncertainty_head import LearnedScale

            self.head = LearnedScale(self.calibration["head"], model.card.path.parent, scale)
        self.exact = ExactMaps(out_h, out_w, scale)
        self.vmax = plane_geometry(src_fmt)[0][2]
        self.threshold = float(rules.get("flag_threshold_levels", DEFAULT_FLAG_THRESHOLD))
        self.plane = "luma" if src_fmt.startswith(("yuv", "yuvj", "gray", "nv")) else f"component 0 of {src_fmt}"
        bundle.path("maps").mkdir(exist_ok=True)
        self.writers = {
            name: VideoWriter(
                bundle.path(f"maps/{name}.mkv"),
                codec="ffv1",
                pix_fmt="gray16le",
                width=out_w,
                height=out_h,
                time_base=time_base or info.time_base,
                rate=rate or info.guessed_rate,
                options=FFV1_OPTIONS,
                metadata={"FVSR_MAP": name, "FVSR_MAP_SCALE": f"sample = round(8-bit levels * {MAP_SCALE})"},
            )
            for name in self.names
        }
        # sha256 and size of every stored map frame, hashed as encoded: FFV1 is lossless, and
        # `fvsr verify` decodes every map frame and checks these hashes
        self.hashes: dict[str, list[tuple[str, int]]] = {name: [] for name in self.names}
        self.encoders = {name: PipelineStage(self._encode, f"map-{name}") for name in self.names}
        self.flagged = open(bundle.path("maps/flagged.json"), "w", encoding="ascii")  # noqa: SIM115
        head = {"measure": "S (synthesized content, 8-bit levels)", "threshold_levels": self.threshold, "connectivity": 8}
        self.flagged.write(json.dumps(head)[:-1] + ', "frames": [\n')
        self.map_scale = MAP_SCALE
        self.count = 0
        self.flagged_frames = 0
        self.max_fraction = 0.0
        self.sum_fraction = 0.0
        self.worst_frame: int | None = None

    def add(self, y: np.ndarray, x_hat: np.ndarray, pts: int, extra: dict[str, np.ndarray] | None = None) -> None:
        from forensic_vsr.uncertainty import flagged_regions, to_gray16

        if y.ndim == 3:
            y, x_hat = y[..., 0], x_hat[..., 0]
        s, r = self.exact.compute(y, x_hat, self.vmax)
        layers = [(s, 1.0), (r, 1.0)]
        if self.calibration:
            from forensic_vsr.calibration import interval_scale

            x8 = x_hat.astype(np.float32) * (255.0 / self.vmax)
            u = interval_scale(x8, s) if self.head is None else self.head(x8, y.astype(np.float32) * (255.0 / self.vmax), s)
            layers.append((u, self.calibration["lambda"]))  # half-width lambda * u
        layers += [((extra or {})[name], 1.0) for name in self.names[len(layers) :]]
        for name, (levels, factor) in zip(self.names, layers, strict=True):
            plane = to_gray16(levels, factor)
            self.encoders[name].submit(name, plane, pts)  # hashed and encoded on the map's own thread
        stats = flagged_regions(s, self.threshold)
        stats = {"frame": self.count, "pts": pts, "r_max": round(float(r.max()), 4), **stats}
        self.flagged.write(("" if self.count == 0 else ",\n") + json.dumps(stats, separators=(",", ":")))
        fraction = stats["fraction_flagged"]
        if fraction > self.max_fraction or self.worst_frame is None:
            self.max_fraction, self.worst_frame = fraction, self.count
        self.sum_fraction += fraction
        self.flagged_frames += fraction > 0
        self.count += 1

    def _encode(self, name: str, plane: np.ndarray, pts: int) -> None:
        self.hashes[name].append((media.planes_sha256([plane]), plane.nbytes))
        self.writers[name].write(frame_from_planes([plane], "gray16le", plane.shape[1], plane.shape[0]), pts)

    def close(self) -> None:
        try:
            for stage in self.encoders.values():
                stage.close()
        finally:
            for w in self.writers.values():
                w.close()
            if not self.flagged.closed:
                self.flagged.close()

    def finish(self) -> dict[str, Any]:
        """Close the files, framehash the map videos and return the step record's `maps` entry."""
        self.flagged.write("\n]}\n")
        self.close()
        files: dict[str, Any] = {}
        for name in self.names:
            video = f"maps/{name}.mkv"
            if len(self.hashes[name]) != self.count:
                raise IntegrityError(f"{video}: {len(self.hashes[name])} frames encoded, {self.count} written")
            leaves = _framehash_from_stored(self.bundle.path(video), self.bundle.path(f"maps/{name}.framehash"), self.hashes[name])
            files[name] = {
                "video": video,
                "framehash": f"maps/{name}.framehash",
                "merkle_root": merkle.root_from_leaf_hashes(leaves).hex(),
                "tree_size": len(leaves),
            }
        return {
            "layer": "exact",
            "operator": self.exact.operator,
            "plane": self.plane,
            "definitions": {
                "synthesized": "|(I - A_pinv A) x_hat|",
                "contradiction": "|A_pinv (y - A x_hat)|",
                **({"interval": "calibrated interval half-width lambda * u"} if self.calibration else {}),
                **({"count": "frames that contributed to each pixel (unit: frames, not levels)"} if "count" in self.names else {}),
                **({"spread": "standard deviation of the contributing frames at each pixel"} if "spread" in self.names else {}),
            },
            "calibration": None
            if not self.calibration
            else {
                **{k: v for k, v in self.calibration.items() if k in ("lambda", "alpha", "delta", "tiles", "scale_formula", "method")},
                **({"head_sha256": self.calibration["head"]["sha256"]} if "head" in self.calibration else {}),
            },
            "units": "8-bit levels",
            "storage": f"FFV1 gray16le, sample = round(levels * {self.map_scale}), clipped at 65535",
            "scale": self.map_scale,
            "files": files,
            "flagged": {
                "file": "maps/flagged.json",
                "sha256": file_sha256(self.bundle.path("maps/flagged.json")),
                "threshold_levels": self.threshold,
                "frames_with_flags": self.flagged_frames,
                "max_fraction_flagged": self.max_fraction,
                "mean_fraction_flagged": round(self.sum_fraction / max(self.count, 1), 6),
                "most_flagged_frame": self.worst_frame,
            },
        }


X1_TASKS = ("restore", "deblur", "stabilise", "integrate", "deinterlace")  # operations that keep the frame size
LUMA_TASKS = ("multiframe-sr", "integrate", "deblur", "restore")  # operations defined on a luma plane


def _task(model: ResolvedModel) -> str:
    return model.card.data["task"] if model.card is not None else "sr"


def _luma_model(model: ResolvedModel) -> bool:
    """The model itself runs on luma (a network, or multi-frame reconstruction); every other
    plane goes through a classical kernel."""
    return model.neural or _task(model) == "multiframe-sr"


def _op_name(model: ResolvedModel) -> str:
    return _task(model) if _task(model) in X1_TASKS else "upscale"


OP_ALIASES = {"restore": "fidelity-restore"}


def parse_ops(text: str | None, main_model: str | None) -> tuple[tuple[str, ...], str | None]:
    """--ops A,B,C -> (pre-operation model ids, main model id). `sr` stands for --model; the
    last operation is the main one, every earlier one must keep the frame size (x1)."""
    if not text:
        return (), main_model
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if not tokens:
        raise UsageError("--ops: name at least one operation")
    if "sr" in tokens[:-1]:
        raise UsageError("--ops: sr (the --model upscale) must be the last operation")
    ids = [OP_ALIASES.get(t, t) for t in tokens]
    last = tokens[-1]
    if last != "sr" and main_model is not None:
        raise UsageError(f"--ops ends with {last}, so --model {main_model} would not run; end --ops with sr to use it")
    return tuple(ids[:-1]), (main_model if last == "sr" else ids[-1])


def pre_models(recipe: Recipe) -> list[ResolvedModel]:
    """The x1 operations that run before the main model, resolved (every one must be x1, and a
    deinterlacer, which changes the frame count, must come first)."""
    out = []
    for i, model_id in enumerate(recipe.pre_ops):
        m = resolve(model_id, None, list(recipe.models_dirs))
        if m.card is None or m.card.data["task"] not in X1_TASKS:
            raise UsageError(
                f"--ops: {model_id} changes the frame size; only the last operation may (x1 operations: {', '.join(X1_TASKS)})"
            )
        if m.card.data["task"] == "deinterlace" and i > 0:
            raise UsageError("--ops: deinterlace must come first (every later step needs whole frames)")
        out.append(m)
    return out


class _FrameOperation:
    """The per-frame operation: the network on luma (plane 0 of planar YUV or gray), projected
    onto the input's consistent set when `project` (each frame's RMS residual is appended to
    `residuals`); a classical kernel on every other plane (chroma never goes through a network).

    Frames go in with `push` and come out, in order, from `push` and `flush`: the network runs
    `batch` frames at a time (on CUDA), so outputs may lag inputs by up to a batch."""

    def __init__(
        self,
        model: ResolvedModel,
        recipe: Recipe,
        src_fmt: str,
        siting: str,
        out_w: int,
        out_h: int,
        project: bool,
        residuals: list[float],
    ) -> None:
        self.net = None
        self.model, self.recipe, self.siting = model, recipe, siting
        self.out_w, self.out_h = out_w, out_h
        self.residuals = residuals
        if (model.neural or _task(model) in LUMA_TASKS) and (src_fmt in _PACKED_ORDER or src_fmt.startswith(("gbr", "bgr", "rgb"))):
            raise UnsupportedFormatError(f"{model.id} works on luma; {src_fmt} evidence has no luma plane (use lanczos or bicubic)")
        if model.neural:
            from forensic_vsr.models.runner import PlaneUpscaler

            self.net = PlaneUpscaler(model, recipe.device, tile=recipe.tile, batch=recipe.batch)
        self.kernel = "lanczos" if _luma_model(model) or recipe.scale == 1 else model.id
        if self.kernel not in KERNEL_SUPPORT:
            raise UnsupportedFormatError(f"{model.id}: no classical kernel of that name")
        self.projector = Projector(out_h, out_w, recipe.scale) if project else None
        self.geometry = plane_geometry(src_fmt)
        self.pending: list[tuple[Any, list[np.ndarray]]] = []

    @property
    def batch(self) -> int:
        return self.net.batch if self.net is not None else 1

    def runner_record(self, in_h: int, in_w: int) -> dict[str, Any] | None:
        if self.net is None:
            return None
        return {
            "device": str(self.net.device),
            "batch": self.net.batch,
            "tiling": self.net.tiling(in_h, in_w).to_json(),
            "receptive_radius_margin": self.net.margin,
        }

    temporal = False  # E_warp is measured for operations that act over time or per frame without a model
    extra_map_names: tuple[str, ...] = ()
    frames_per_input = 1
    stream_field_order: str | None = None
    field_ticks = 1
    keep_maps = True  # False for a step before the main one: its extra maps are not written

    def deinterlace_record(self) -> dict[str, Any] | None:
        return None

    def multiframe_record(self) -> dict[str, Any] | None:
        return None

    def deblur_record(self) -> dict[str, Any] | None:
        return None

    def temporal_record(self) -> dict[str, Any] | None:
        return None

    def extras(self, key: Any) -> dict[str, np.ndarray] | None:
        """Extra per-frame maps (8-bit-level units) for the frame `key`, in extra_map_names order."""
        return None

    def push(self, key: Any, planes: list[np.ndarray]) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        self.pending.append((key, planes))
        return self.flush() if len(self.pending) >= self.batch else []

    def flush(self) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        """Run every pending frame; returns (key, input planes, output planes) in order."""
        pending, self.pending = self.pending, []
        if not pending:
            return []
        lumas = None
        if self.net is not None:
            lumas = self.net.predict_many([planes[0] for _, planes in pending], self.geometry[0][2])
        done = []
        for i, (key, planes) in enumerate(pending):
            out = [
                self._luma(plane, lumas[i]) if lumas is not None and p == 0 else self._classical(plane, self.geometry[p])
                for p, plane in enumerate(planes)
            ]
            done.append((key, planes, out))
        return done

    def _luma(self, plane: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
        from forensic_vsr.models.runner import to_samples

        vmax = self.geometry[0][2]
        if x_hat.shape != (self.out_h, self.out_w):
            raise IntegrityError(f"{self.model.id} returned {x_hat.shape[1]}x{x_hat.shape[0]}, expected {self.out_w}x{self.out_h}")
        if self.projector is None:
            return to_samples(x_hat, vmax, plane.dtype)
        y = plane.astype(np.float64)
        target = 0.25 * vmax / 255  # a quarter of an 8-bit level, well inside any sane tolerance
        out = to_samples(self.projector.project_in_range(x_hat, y, vmax, target), vmax, plane.dtype)
        self.residuals.append(self.projector.rms_residual(out, y) * 255 / vmax)  # in 8-bit levels whatever the depth
        return out

    def _classical(self, plane: np.ndarray, geometry: tuple[int, int, int]) -> np.ndarray:
        sx, sy, vmax = geometry
        if self.recipe.scale == 1:
            return plane.copy()  # a x1 restoration leaves chroma as it is
        return upscale_plane(
            plane,
            kind=self.kernel,
            scale=self.recipe.scale,
            out_width=-(-self.out_w // sx),
            out_height=-(-self.out_h // sy),
            subsampling=(sx, sy),
            siting=self.siting,
            max_value=vmax,
        )  # type: ignore[arg-type]


class _WindowOperation(_FrameOperation):
    """An operation whose output frame t needs the input frames within `radius` of t (fewer at
    the ends of the range): outputs lag inputs by `radius` frames and at most 2 * radius + 1
    decoded frames are held."""

    radius = 0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.window: list[tuple[Any, list[np.ndarray]]] = []
        self.position = 0  # index in `window` of the next frame to reconstruct
        self.per_frame: list[dict[str, Any]] = []

    def push(self, key: Any, planes: list[np.ndarray]) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        self.window.append((key, planes))
        done = []
        while self.position + self.radius < len(self.window):
            done.append(self._reconstruct(self.position))
            self.position += 1
            if self.position > self.radius:  # the oldest frame is no one's neighbour now
                self.window.pop(0)
                self.position -= 1
        return done

    def flush(self) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        done = []
        while self.position < len(self.window):
            done.append(self._reconstruct(self.position))
            self.position += 1
        return done

    def _neighbourhood(self, pos: int) -> tuple[int, list[np.ndarray]]:
        lo, hi = max(0, pos - self.radius), min(len(self.window), pos + self.radius + 1)
        return pos - lo, [self.window[i][1][0] for i in range(lo, hi)]

    def _reconstruct(self, pos: int) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
        raise NotImplementedError


class _MultiFrameOperation(_WindowOperation):
    """Multi-frame SR (forensic_vsr.ops.mfsr): every neighbour's registration, and every frame
    that fell back to single-frame back-projection, is recorded."""

    temporal = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from forensic_vsr.ops.mfsr import MfsrParams

        self.params = MfsrParams.from_card((self.model.architecture or {}).get("params", {}), self.recipe.scale)
        self.radius = self.params.radius

    def multiframe_record(self) -> dict[str, Any] | None:
        fallbacks = [f["frame"] for f in self.per_frame if f["fallback"]]
        return {
            "method": "ECC registration (translation or affine) + iterative back-projection + exact projection onto the reference frame",
            "params": dataclasses.asdict(self.params),
            "frames_single_frame_fallback": fallbacks,
            "per_frame": self.per_frame,
        }

    def _reconstruct(self, pos: int) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
        from forensic_vsr.ops.mfsr import super_resolve

        key, planes = self.window[pos]
        ref, lumas = self._neighbourhood(pos)
        x_hat, regs = super_resolve(lumas, ref, self.params, self.geometry[0][2])
        used = sum(reg.ok for reg in regs)
        registrations = [g.to_json() for g in regs]
        self.per_frame.append(
            {"frame": key[0], "neighbours": len(regs), "registered": used, "fallback": used == 0, "registrations": registrations}
        )
        out = [self._luma(planes[0], x_hat)] + [self._classical(p, self.geometry[i]) for i, p in enumerate(planes) if i > 0]
        return key, planes, out


class _StabiliseOperation(_FrameOperation):
    """Every frame registered to the first frame of the range and warped onto it (all planes,
    uncovered area black); per-frame motion, correlation and coverage recorded. A frame whose
    registration fails is passed through unchanged and listed."""

    temporal = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        p = (self.model.architecture or {}).get("params", {})
        self.ecc_threshold = float(p.get("ecc_threshold", 0.9))
        self.motion = str(p.get("motion", "translation"))
        self.reference: np.ndarray | None = None
        self.per_frame: list[dict[str, Any]] = []

    def temporal_record(self) -> dict[str, Any] | None:
        return {
            "operation": "stabilise",
            "reference_frame": self.per_frame[0]["frame"] if self.per_frame else None,
            "motion_model": self.motion,
            "ecc_threshold": self.ecc_threshold,
            "frames_not_registered": [f["frame"] for f in self.per_frame if not f["ok"]],
            "per_frame": self.per_frame,
        }

    def flush(self) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        from forensic_vsr.ops.mfsr import register
        from forensic_vsr.ops.temporal import coverage, warp_plane

        pending, self.pending = self.pending, []
        done = []
        for key, planes in pending:
            luma = planes[0].astype(np.float64)
            if self.reference is None:
                self.reference = luma
                self.per_frame.append({"frame": key[0], "ok": True, "matrix": [[1, 0, 0], [0, 1, 0]], "ecc": 1.0, "coverage": 1.0})
                done.append((key, planes, [p.copy() for p in planes]))
                continue
            reg = register(self.reference, luma, 0, self.ecc_threshold, self.motion)
            entry = reg.to_json()
            entry.pop("offset")
            if not reg.ok or reg.matrix is None:
                self.per_frame.append({"frame": key[0], **entry})
                done.append((key, planes, [p.copy() for p in planes]))
                continue
            out = [warp_plane(p, reg.matrix, self.geometry[i][0], self.geometry[i][1], self.geometry[i][2]) for i, p in enumerate(planes)]
            self.per_frame.append({"frame": key[0], **entry, "coverage": round(coverage(luma.shape, reg.matrix), 5)})
            done.append((key, planes, out))
        return done


class _IntegrateOperation(_WindowOperation):
    """Frame integration (forensic_vsr.ops.temporal.integrate) of luma over the frames within
    `radius`; chroma is the frame's own. The per-pixel count of contributing frames and their
    spread are written as extra maps."""

    temporal = True
    extra_map_names = ("count", "spread")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        p = (self.model.architecture or {}).get("params", {})
        self.radius = int(p.get("radius", 3))
        self.ecc_threshold = float(p.get("ecc_threshold", 0.9))
        self.outlier_levels = float(p.get("outlier_levels", 12.0))
        self.motion = str(p.get("motion", "translation"))
        self.maps_of: dict[Any, dict[str, np.ndarray]] = {}

    def temporal_record(self) -> dict[str, Any] | None:
        return {
            "operation": "integrate",
            "radius": self.radius,
            "motion_model": self.motion,
            "ecc_threshold": self.ecc_threshold,
            "outlier_levels": self.outlier_levels,
            "per_frame": self.per_frame,
        }

    def extras(self, key: Any) -> dict[str, np.ndarray] | None:
        return self.maps_of.pop(key, None)

    def _reconstruct(self, pos: int) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
        from forensic_vsr.ops.temporal import integrate

        key, planes = self.window[pos]
        ref, lumas = self._neighbourhood(pos)
        vmax = self.geometry[0][2]
        levels = vmax / 255.0
        mean, stats = integrate(lumas, ref, self.ecc_threshold, self.outlier_levels * levels, self.motion)
        out_luma = np.clip(np.rint(mean), 0, vmax).astype(planes[0].dtype)
        if self.keep_maps:
            self.maps_of[key] = {"count": stats.count.astype(np.float32), "spread": (stats.spread / levels).astype(np.float32)}
        self.per_frame.append(
            {
                "frame": key[0],
                "neighbours": len(stats.registrations),
                "registered": sum(r.ok for r in stats.registrations),
                "mean_count": round(float(stats.count.mean()), 4),
                "min_count": int(stats.count.min()),
                "mean_spread_levels": round(float(stats.spread.mean() / levels), 4),
                "registrations": [r.to_json() for r in stats.registrations],
            }
        )
        return key, planes, [out_luma] + [p.copy() for p in planes[1:]]


class _DeinterlaceOperation(_FrameOperation):
    """Field-aware deinterlacing (forensic_vsr.ops.deinterlace). The field order is read from the
    stream's flags where present and measured from the first frames' content; both are recorded.
    `fields`: two output frames per input frame (pts 2t and 2t + 1 in half the time base), each
    holding one field's lines exactly. `blend`: one frame per input frame, the second field's
    lines kept where static and interpolated from the first field where they comb."""

    LOOKAHEAD = 8  # frames buffered to measure the field order from content
    BLEND_THRESHOLD = 10.0  # 8-bit levels

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if self.recipe.deinterlace not in ("fields", "blend"):
            raise UsageError(f"--deinterlace {self.recipe.deinterlace}: use fields or blend")
        self.mode = self.recipe.deinterlace
        self.frames_per_input = 2 if self.mode == "fields" else 1
        self.first: int | None = None  # 0: top field first, 1: bottom field first
        self.record: dict[str, Any] = {}
        self.comb: list[float] = []
        self.replaced: list[float] = []

    def deinterlace_record(self) -> dict[str, Any] | None:
        return {
            **self.record,
            "mode": self.mode,
            "comb_score_per_frame": [round(c, 4) for c in self.comb],
            **({"second_field_fraction_replaced_per_frame": [round(r, 5) for r in self.replaced]} if self.mode == "blend" else {}),
        }

    def push(self, key: Any, planes: list[np.ndarray]) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        self.pending.append((key, planes))
        if self.first is None and len(self.pending) < self.LOOKAHEAD:
            return []
        return self.flush()

    def _decide(self) -> None:
        from forensic_vsr.ops.deinterlace import BOTTOM_FIRST_FLAGS, TOP_FIRST_FLAGS, content_field_order

        flag = (self.stream_field_order or "").lower()
        by_flag = "top-first" if flag in TOP_FIRST_FLAGS else "bottom-first" if flag in BOTTOM_FIRST_FLAGS else None
        by_content, scores = content_field_order([planes[0] for _, planes in self.pending])
        order = by_flag or by_content
        self.first = 0 if order == "top-first" else 1
        self.record = {
            "field_order": order,
            "field_order_source": "stream flags" if by_flag else f"content (first {len(self.pending)} frames)",
            "stream_field_order": self.stream_field_order,
            "content_field_order": by_content,
            "content_scores": scores,
            "flags_and_content_disagree": bool(by_flag and by_flag != by_content),
        }

    def flush(self) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        from forensic_vsr.ops.deinterlace import blend, bob, comb_score

        if not self.pending:
            return []
        if self.first is None:
            self._decide()
        assert self.first is not None
        pending, self.pending = self.pending, []
        done = []
        vmax = [g[2] for g in self.geometry]
        q = lambda a, i, like: np.clip(np.rint(a), 0, vmax[i]).astype(like.dtype)  # noqa: E731
        for (index, pts), planes in pending:
            self.comb.append(comb_score(planes[0]))
            if self.mode == "fields":
                for n, parity in enumerate((self.first, 1 - self.first)):
                    out = [q(bob(p, parity), i, p) for i, p in enumerate(planes)]
                    done.append(((index, 2 * pts + n * self.field_ticks), planes, out))
            else:
                outs = []
                for i, p in enumerate(planes):
                    frame, replaced = blend(p, self.first, self.BLEND_THRESHOLD * vmax[i] / 255)
                    if i == 0:
                        self.replaced.append(replaced)
                    outs.append(q(frame, i, p))
                done.append(((index, pts), planes, outs))
        return done


class _DeblurOperation(_FrameOperation):
    """Deconvolution of luma (forensic_vsr.ops.deblur) with the recipe's PSF, or one estimated
    blindly from the first frame (its region of interest where given) and then held for every
    frame, so all frames get the same, recorded operator. With --roi only that region changes."""

    temporal = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from forensic_vsr.ops.deblur import parse_psf

        self.psf = parse_psf(self.recipe.psf) if self.recipe.psf else None
        self.estimate: dict[str, Any] | None = None
        self.lam: float | None = None
        self.noise: float | None = None
        self.ringing: list[float] = []
        self.forward: list[float] = []

    def deblur_record(self) -> dict[str, Any] | None:
        return {
            "psf": None if self.psf is None else self.psf.to_json(),
            "psf_source": "recipe" if self.recipe.psf else "estimated blindly from the cepstrum of the first frame",
            "estimate": self.estimate,
            "roi": list(self.recipe.roi) if self.recipe.roi else None,
            "method": "Wiener deconvolution, gradient regulariser",
            "lambda": self.lam,
            "noise_sigma_levels_first_frame": self.noise,
            "ringing_rms_levels_per_frame": [round(r, 4) for r in self.ringing],
            "forward_residual_rms_levels_per_frame": [round(r, 4) for r in self.forward],
            "units": "8-bit levels",
        }

    def _region(self, plane: np.ndarray) -> tuple[slice, slice]:
        if self.recipe.roi is None:
            return slice(None), slice(None)
        x, y, w, h = self.recipe.roi
        if x < 0 or y < 0 or w < 16 or h < 16 or x + w > plane.shape[1] or y + h > plane.shape[0]:
            raise UsageError(f"--roi {x},{y},{w},{h}: must lie inside the {plane.shape[1]}x{plane.shape[0]} frame and be at least 16x16")
        return slice(y, y + h), slice(x, x + w)

    def flush(self) -> list[tuple[Any, list[np.ndarray], list[np.ndarray]]]:
        from forensic_vsr.ops.deblur import blur, default_lambda, estimate_psf, noise_sigma, ringing, wiener

        pending, self.pending = self.pending, []
        done = []
        vmax = self.geometry[0][2]
        for key, planes in pending:
            luma = planes[0]
            region = self._region(luma)
            y = luma[region].astype(np.float64) * (255.0 / vmax)
            if self.psf is None:
                est = estimate_psf(y)
                self.psf, self.estimate = est.psf, est.to_json()
            if self.lam is None:
                self.noise = round(noise_sigma(y), 4)
                self.lam = float(default_lambda(y))
            x = wiener(y, self.psf, self.lam)
            self.ringing.append(ringing(y, x))
            x8 = np.clip(np.rint(x), 0, 255)
            d = blur(x8, self.psf) - y
            self.forward.append(float(np.sqrt(np.mean(d * d))))
            out_luma = luma.copy()
            out_luma[region] = np.clip(np.rint(x * (vmax / 255.0)), 0, vmax).astype(luma.dtype)
            done.append((key, planes, [out_luma] + [p.copy() for p in planes[1:]]))
        return done


def _framehash_from_stored(video: Path, sidecar: Path, hashes: Iterable[tuple[str, int]]) -> list[bytes]:
    """Write `sidecar` (a framehash file) for an intra-only video we encoded: timestamps read by
    demuxing (no decode), frame hashes and sizes as computed from the planes before encoding,
    frame for frame; returns the Merkle leaf hashes. `fvsr verify` re-derives it by decoding."""
    leaves: list[bytes] = []
    with VideoReader(video) as reader, open(sidecar, "w", encoding="ascii") as out:
        info = reader.info
        mapper = TimestampMapper(info.time_base, info.guessed_rate)
        head = header(
            time_base=mapper.out_tb,
            width=info.width,
            height=info.height,
            sar=info.sample_aspect_ratio,
            software=f"forensic-vsr {__version__}",
        )
        out.write("\n".join(head) + "\n")
        expected = iter(hashes)
        for pts in reader.packet_timestamps():
            stored = next(expected, None)
            if stored is None:
                raise IntegrityError(f"{video.name} holds more frames than were encoded")
            dts, out_pts, duration = mapper.map(pts)
            line = FrameHash(0, dts, out_pts, duration, int(stored[1]), stored[0]).line()
            out.write(line + "\n")
            leaves.append(merkle.hash_leaf(line.encode()))
        if next(expected, None) is not None:
            raise IntegrityError(f"{video.name} holds only {len(leaves)} frames")
    return leaves


def _output_framehash(bundle: _Bundle) -> list[bytes]:
    """output.framehash from the master's stored timestamps and the frame hashes proven by the
    round trip."""
    with open(bundle.path(".output-hashes"), encoding="ascii") as f:
        stored = ((sha, int(size)) for sha, size in (line.split() for line in f))
        leaves = _framehash_from_stored(bundle.path("output/master.mkv"), bundle.path("output.framehash"), stored)
    bundle.path(".output-hashes").unlink()
    return leaves


def _file_entry(bundle: _Bundle, name: str) -> dict[str, Any]:
    path = bundle.path(name)
    return {"name": name, "sha256": file_sha256(path), "size": path.stat().st_size}


def recipe_facts(recipe: Recipe, model: ResolvedModel) -> RecipeFacts:
    card = model.card
    arch_scale = (model.architecture or {}).get("params", {}).get("scale") if model.neural else None
    scales = tuple(card.data["scales"]) if card else ((int(arch_scale),) if arch_scale else None)
    return RecipeFacts(
        mode=recipe.mode,
        operations=(_task(model),) if _task(model) in X1_TASKS else ("upscale",),
        model_id=model.id,
        model_class=model.model_class,
        neural=model.neural,
        weights_verified=model.weights_verified,
        card_scales=scales,
        card_deterministic=card.data["deterministic"] if card else None,
        card_precisions=tuple(card.data["precisions"]) if card else None,
        scale=recipe.scale,
        device=recipe.device,
        precision=recipe.precision,
        maps=recipe.maps,
        report=recipe.report,
        data_consistency_available=bool(
            _luma_model(model) and card is not None and card.data["degradation"]["operator"] == CONSISTENCY_OPERATOR
        ),
    )


def decide_recipe(recipe: Recipe) -> tuple[ResolvedModel, Decision]:
    """Resolve the model and judge the recipe, touching no evidence frame."""
    if not 1 <= recipe.scale <= 8:
        raise UsageError(f"--scale {recipe.scale}: must be an integer from 1 to 8")
    model = resolve(recipe.model, recipe.weights, list(recipe.models_dirs))
    x1 = model.card is not None and model.card.data["task"] in X1_TASKS
    if recipe.scale == 1 and not x1:
        raise UsageError(f"--scale 1: {model.id} is not a restoration model; upscaling needs --scale 2 to 8")
    if x1 and recipe.scale != 1:
        raise UsageError(f"--scale {recipe.scale}: {model.id} works at --scale 1 (it does not change the frame size)")
    pres = pre_models(recipe)
    deblurs = _task(model) == "deblur" or any(_task(m) == "deblur" for m in pres)
    if (recipe.psf or recipe.roi) and not deblurs:
        raise UsageError("--psf and --roi apply to the deblur operation only")
    if deblurs and recipe.psf:
        from forensic_vsr.ops.deblur import parse_psf

        parse_psf(recipe.psf)  # a bad PSF fails here, before any file is written
    decision = decide(recipe_facts(recipe, model), recipe.policy, recipe.override_policy)
    if any(_task(m) == "deinterlace" for m in pres) and _task(model) == "deinterlace":
        raise UsageError("--ops: deinterlace can run once")
    extra: list[RuleResult] = []
    for m in pres:
        sub = decide(recipe_facts(dataclasses.replace(recipe, scale=1, pre_ops=()), m), recipe.policy, recipe.override_policy)
        extra += [RuleResult(f"{m.id}.{r.rule}", r.outcome, r.reason) for r in sub.results if r.rule != "policy_strength"]
    if extra:
        decision = dataclasses.replace(decision, results=tuple(extra) + decision.results)
    return model, decision


def enhance(evidence: Path, target: Path, recipe: Recipe, examiner: Examiner, show_progress: bool | None = None) -> Path:
    """Judge the recipe, then run it on the evidence and write a complete, signed bundle at
    `target`. A refused recipe still leaves a signed bundle holding the decision, and no outputs."""
    evidence = Path(evidence)
    model, decision = decide_recipe(recipe)
    # Open once before creating anything: an unreadable evidence file leaves no trace on disk.
    VideoReader(evidence).close()
    if examiner.certificate is not None:
        from forensic_vsr.audit.pdfsign import load_certificate

        load_certificate(examiner.certificate, examiner.signer)  # a wrong certificate fails before any work
    bundle = _Bundle(Path(target), with_outputs=decision.allowed)
    chain: ChainWriter | None = None
    try:
        started = utc_now()
        sha_before = file_sha256(evidence)
        stat_before = evidence.stat()
        chain = ChainWriter(bundle.path("chain.jsonl"), examiner.signer, examiner.name)
        chain.append(
            "policy.decision",
            {**decision.to_json(recipe.to_json(model), model.to_json()), "evidence": {"name": evidence.name, "sha256": sha_before}},
        )
        if not decision.allowed:
            reasons = [f"{r.rule}: {r.reason}" for r in decision.failures]
            chain.append(
                "run.aborted",
                {"status": "aborted", "reason": "policy refused the recipe: " + "; ".join(reasons), "records": len(chain.digests) + 1},
            )
            _write_manifest(bundle, chain)
            chain.close()
            bundle.commit()
            raise PolicyDenied(
                f"policy {decision.policy.data['id']} ({decision.policy.source}) refused the recipe; "
                f"the signed decision is in {target}:\n" + "\n".join(f"  - {r}" for r in reasons)
            )
        ingest, in_leaves = _ingest(evidence, bundle, show_progress, recipe.accept_decode_errors)
        ingest_body = {
            "case_id": examiner.case_id,
            "evidence": {
                "name": evidence.name,
                "path": str(evidence.resolve()),
                "size": stat_before.st_size,
                "sha256": sha_before,
                "mtime_ns": stat_before.st_mtime_ns,
            },
            **ingest,
            "exiftool": exiftool_metadata(evidence),
        }
        chain.append("evidence.ingest", ingest_body)
        n_frames = ingest["frames_decoded"]
        frames = recipe.frames
        if frames is not None:
            a, b = frames
            b = n_frames if b == -1 else b
            if a >= n_frames or b > n_frames:
                asked = f"{frames[0]}:{'' if frames[1] == -1 else frames[1]}"
                raise UsageError(f"--frames {asked} is outside the evidence's {n_frames} decoded frames (0:{n_frames})")
            recipe = dataclasses.replace(recipe, frames=(a, b))
        step, out_leaves = _enhance_frames(evidence, bundle, recipe, model, decision, n_frames, show_progress)
        n_out = len(out_leaves)
        sha_after = file_sha256(evidence)
        if sha_after != sha_before:
            raise IntegrityError(
                f"{evidence}: the evidence file changed during processing (sha256 {sha_before[:16]}… -> {sha_after[:16]}…)"
            )
        finished = utc_now()
        map_files = (
            [f"maps/{n}.{ext}" for n in step["maps"]["files"] for ext in ("mkv", "framehash")] + ["maps/flagged.json"]
            if recipe.maps
            else []
        )
        outputs = [
            _file_entry(bundle, n) for n in ("output/master.mkv", "output/preview.mp4", "output.framehash", "input.framehash", *map_files)
        ]
        out_root = merkle.root_from_leaf_hashes(out_leaves).hex()
        chain.append("step.run", _statement(recipe, model, ingest_body, step, outputs, out_root, n_out, started, finished))
        chain.append(
            "output.write",
            {
                "files": outputs,
                "evidence_sha256_after": sha_after,
                "evidence_unchanged": True,
                "frame_roots": {"input": ingest["input_framehash"]["merkle_root"], "output": out_root},
                "frame_counts": {"input": len(in_leaves), "output": n_out},
            },
        )
        if recipe.report:
            _write_report(bundle, chain, evidence, examiner, model, recipe, step)
        chain.append("run.complete", {"records": len(chain.digests) + 1, "status": "complete"})
        _write_manifest(bundle, chain)
        chain.close()
        bundle.commit()
    except PolicyDenied:
        raise
    except BaseException:
        if chain is not None:
            chain.close()
        bundle.discard()
        raise
    return Path(target)


def _write_report(
    bundle: _Bundle, chain: ChainWriter, evidence: Path, examiner: Examiner, model: ResolvedModel, recipe: Recipe, step: dict[str, Any]
) -> None:
    """Stills (first, middle, most flagged, requested), then report.pdf rendered from the signed
    records, then the report.generate record naming all of them."""
    from cryptography.hazmat.primitives import serialization

    from forensic_vsr.audit.pdfsign import ReportCertificate, load_certificate, self_signed_certificate, sign_pdf
    from forensic_vsr.report import REPORT_NAME, make_stills, render, report_records

    count, start = step["frames"]["count"], step["frames"]["start"]
    frames = {"first frame": 0, "middle frame": count // 2}
    maps = step.get("maps")
    if maps and maps["flagged"]["most_flagged_frame"] is not None:
        frames["most flagged frame"] = int(maps["flagged"]["most_flagged_frame"])
    for n in recipe.stills:
        if not 0 <= n < count:
            raise UsageError(f"--still {n}: the output has frames 0 to {count - 1}")
        frames[f"requested frame {n}"] = n
    threshold = maps["flagged"]["threshold_levels"] if maps else 8.0
    per_input = int(step.get("frames_per_input", 1))
    map_scale = maps.get("scale") if maps else None
    stills = json.loads(dsse.canonical_json(make_stills(bundle.dir, evidence, frames, start, threshold, per_input, map_scale)))
    refs = list(model.card.data.get("references", [])) if model.card is not None and (_luma_model(model) or recipe.scale == 1) else []
    records = report_records(chain.bodies, examiner.name, chain.signer.keyid, refs)
    head = chain.digests[-1]
    draft = bundle.path(".report-unsigned.pdf")
    render(bundle.dir, records, stills, head, draft)
    unsigned = draft.read_bytes()
    draft.unlink()
    cert = (
        load_certificate(examiner.certificate, examiner.signer)
        if examiner.certificate
        else ReportCertificate([self_signed_certificate(examiner.signer)])
    )
    signed = sign_pdf(unsigned, examiner.signer, cert, f"forensic-vsr {recipe.mode} report, chain head {head}")
    with open(bundle.path(REPORT_NAME), "xb") as fh:
        fh.write(signed)
    body = {
        "file": _file_entry(bundle, REPORT_NAME),
        "unsigned": {"sha256": hashlib.sha256(unsigned).hexdigest(), "size": len(unsigned)},
        "signature": {
            "format": "PAdES baseline (ETSI.CAdES.detached), incremental update",
            "certificate_sha256": hashlib.sha256(cert.signing.public_bytes(serialization.Encoding.DER)).hexdigest(),
            "certificate_subject": cert.signing.subject.rfc4514_string(),
            "self_signed": examiner.certificate is None,
        },
        "stills": stills,
        "chain_head": head,
        "references": refs,
    }
    chain.append("report.generate", body)


def _model_dependencies(model: ResolvedModel) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    if model.card is not None:
        deps.append(
            {
                "name": f"model-card:{model.id}",
                "digest": {"sha256": model.card.sha256},
                "annotations": {
                    "class": model.model_class,
                    "version": model.card.data["version"],
                    "description": model.card.data["description"],
                },
            }
        )
    if model.weights_sha256 is not None:
        deps.append(
            {
                "name": f"model-weights:{model.id}",
                "digest": {"sha256": model.weights_sha256},
                "annotations": {"class": model.model_class, "architecture": model.architecture},
            }
        )
    return deps


def _statement(
    recipe: Recipe,
    model: ResolvedModel,
    ingest: dict[str, Any],
    step: dict[str, Any],
    outputs: list[dict[str, Any]],
    out_root: str,
    n_out: int,
    started: str,
    finished: str,
) -> dict[str, Any]:
    """The step record: an in-toto Statement v1 with an SLSA Provenance v1 predicate."""
    evidence = ingest["evidence"]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            *({"name": o["name"], "digest": {"sha256": o["sha256"]}} for o in outputs if o["name"].startswith(("output/", "maps/"))),
            {"name": "frames:output/master.mkv", "digest": {"rfc9162-sha256": out_root}, "annotations": {"tree_size": n_out}},
            *(
                {
                    "name": f"frames:{m['video']}",
                    "digest": {"rfc9162-sha256": m["merkle_root"]},
                    "annotations": {"tree_size": m["tree_size"]},
                }
                for m in (step.get("maps") or {}).get("files", {}).values()
            ),
        ],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://forensic-vsr.invalid/enhance/v1",
                "externalParameters": recipe.to_json(model),
                "internalParameters": environment_report(recipe.device),
                "resolvedDependencies": [
                    {"name": f"evidence:{evidence['name']}", "digest": {"sha256": evidence["sha256"]}},
                    {"name": f"frames:evidence:{evidence['name']}", "digest": {"rfc9162-sha256": ingest["input_framehash"]["merkle_root"]}},
                    *_model_dependencies(model),
                ],
            },
            "runDetails": {
                "builder": {"id": f"https://forensic-vsr.invalid/fvsr@{__version__}"},
                "metadata": {"startedOn": started, "finishedOn": finished},
                "byproducts": [{"name": "step", "annotations": step}],
            },
        },
    }


def _write_manifest(bundle: _Bundle, chain: ChainWriter) -> None:
    manifest = {
        "format": BUNDLE_FORMAT,
        "tool": "forensic-vsr",
        "tool_version": __version__,
        "public_key": chain.signer.public_pem(),
        "keyid": chain.signer.keyid,
        "chain_root": chain_root(chain.digests),
        "checkpoint": chain.checkpoint(),
    }
    tmp = bundle.path("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, bundle.path("manifest.json"))
