"""The enhancement pass: decode the selected frames again, run them through the stages, hash
each output frame, encode the FFV1 master and the H.264 preview, decode the master's packets
back as they are written (lossless round trip), and feed the maps. Encoding, the round trip and
the maps run on worker threads (media.PipelineStage) beside the decode-and-process loop."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from forensic_vsr import __version__, layout
from forensic_vsr.audit.step_record import FrameRange, Region, StepRecord
from forensic_vsr.bundle.maps import FrameMaps, MapLayers, MapSpec, MapsWriter
from forensic_vsr.bundle.master import FFV1_OPTIONS, PACKED_ORDER, PREVIEW_OPTIONS, convert_packed, framehash_from_stored, master_pix_fmt
from forensic_vsr.bundle.writer import BundleDir
from forensic_vsr.errors import IntegrityError
from forensic_vsr.media import (
    Colour,
    DecodedFrame,
    PipelineStage,
    RoundTripCheck,
    StreamInfo,
    VideoReader,
    VideoWriter,
    frame_from_planes,
    frame_planes,
    plane_geometry,
    planes_sha256,
)
from forensic_vsr.models.registry import ResolvedModel
from forensic_vsr.models.tasks import op_name, runs_on_luma, task
from forensic_vsr.ops.colour import colour_stack, component_order
from forensic_vsr.ops.degrade import OPERATOR as CONSISTENCY_OPERATOR
from forensic_vsr.ops.label import burn_label
from forensic_vsr.ops.operations import margin_for, stage_for
from forensic_vsr.ops.region import in_crop, plan_region
from forensic_vsr.ops.stages import RECORD_KEYS, Chain, Done, Key, Planes, Stage, StageParams
from forensic_vsr.policy import Decision
from forensic_vsr.progress import progress
from forensic_vsr.recipe import Recipe, pre_models, recipe_facts

HASHES_SCRATCH = ".output-hashes"  # sha256 and size of each output frame, until output.framehash is written


def stage_params(recipe: Recipe, src_fmt: str, siting: str, width: int, height: int, project: bool) -> StageParams:
    return StageParams(
        scale=recipe.scale,
        src_fmt=src_fmt,
        siting=siting,
        in_width=width,
        in_height=height,
        device=recipe.device,
        precision=recipe.precision,
        tile=recipe.tile,
        batch=recipe.batch,
        psf=recipe.psf,
        roi=recipe.roi,
        register_roi=recipe.register_roi,
        registration=recipe.registration,
        deinterlace=recipe.deinterlace,
        project=project,
    )


def build_stages(recipe: Recipe, model: ResolvedModel, info: StreamInfo) -> tuple[list[Stage], str, bool]:
    """The pre-operations and then the main stage for evidence of `info`, with the chroma siting
    assumed and whether luma is projected: the same here and in every Ray worker."""
    src_fmt = info.pix_fmt
    siting = "center" if src_fmt.startswith("yuvj") else "left"
    project = runs_on_luma(model) and recipe_facts(recipe, model).data_consistency_available
    params = with_region(stage_params(recipe, src_fmt, siting, info.width, info.height, project), recipe, model, info)
    pre_params = _pre_params(params)
    stages = [*(stage_for(m, pre_params) for m in pre_models(recipe)), stage_for(model, params)]
    rate = info.guessed_rate
    for stage in stages:
        stage.stream_field_order = info.field_order
        if rate:  # a frame's duration in input ticks: half a frame in the halved output time base
            stage.field_ticks = max(1, round(1 / (rate * info.time_base)))
    return stages, siting, project


def with_region(params: StageParams, recipe: Recipe, model: ResolvedModel, info: StreamInfo) -> StageParams:
    """--roi: the stages' input is the region's crop (ops.region.plan_region), widened by the
    margin each stage asks for (`margin_for`, from the whole frame's parameters), summed; the plan
    goes in `crop`, the region and --register-roi in the crop's coordinates."""
    if recipe.region is None:
        return params
    margins = tuple(
        {"op": op_name(m), "model": m.id, "margin": margin_for(m, p)}
        for m, p in [*((m, _pre_params(params)) for m in pre_models(recipe)), (model, params)]
    )
    geometry = tuple((sx, sy) for sx, sy, _ in plane_geometry(params.src_fmt))
    plan = plan_region(recipe.region, info.width, info.height, geometry, margins, recipe.scale)
    return dataclasses.replace(
        params,
        in_width=plan.crop[2],
        in_height=plan.crop[3],
        region=plan.in_crop,
        register_roi=in_crop(recipe.register_roi, plan, "--register-roi"),
        crop=plan,
    )


def _pre_params(params: StageParams) -> StageParams:
    return dataclasses.replace(params, scale=1, project=False, keep_maps=False)


def chain_outputs(
    frames: Iterable[DecodedFrame], stages: list[Stage], start: int, end: int, check: Callable[[int, Planes], None] | None = None
) -> Iterator[Done]:
    """Decoded frames [start, end) through the stages, in order (`check` sees each input frame
    first); the last item is the chain's flush."""
    chain = Chain(stages)
    for decoded in frames:
        if decoded.index < start:
            continue
        if decoded.index >= end:
            break
        planes = frame_planes(decoded.frame)
        if check is not None:
            check(decoded.index, planes)
        yield chain.push((decoded.index, decoded.pts), planes)
    yield chain.flush()


class FrameSource(Protocol):
    """Where the pass's finished frames come from: the chain run here (`LocalChain`) or segments
    run elsewhere (forensic_vsr.distributed), which leave the stages' per-frame records
    (residuals, per_frame) as if the stages had run here."""

    def use_maps(self, spec: MapSpec | None) -> None: ...
    def outputs(self, reader: VideoReader, stages: list[Stage], start: int, end: int) -> Iterator[Done]: ...
    def extras(self, key: Key) -> dict[str, np.ndarray] | None: ...
    def frame_maps(self, key: Key) -> FrameMaps | None: ...
    def record(self) -> dict[str, Any] | None: ...


class LocalChain:
    """The stages run in this process, frame after frame (the maps computed by the pass's writer)."""

    def use_maps(self, spec: MapSpec | None) -> None:
        """Nothing to do: the maps are computed here, on the pass's maps thread."""

    def outputs(self, reader: VideoReader, stages: list[Stage], start: int, end: int) -> Iterator[Done]:
        self.main = stages[-1]
        return chain_outputs(reader.frames(), stages, start, end)

    def extras(self, key: Key) -> dict[str, np.ndarray] | None:
        return self.main.extras(key)

    def frame_maps(self, key: Key) -> FrameMaps | None:
        return None

    def record(self) -> dict[str, Any] | None:
        return None  # nothing to add: the step record says what ran here


def cut_region(
    main: Stage, planes: Planes, out_planes: Planes, extra: dict[str, np.ndarray] | None
) -> tuple[Planes, Planes, dict[str, np.ndarray] | None]:
    """--roi: the main stage's input, output and extra maps cut from its crop to the region
    (times the scale); unchanged for a whole-frame run."""
    region = main.params.crop
    if region is None:
        return planes, out_planes, extra
    cut = None if extra is None else {name: region.cut_map(plane) for name, plane in extra.items()}
    return region.cut_input(planes), region.cut_output(out_planes), cut


def map_planes(main: Stage, src_fmt: str, planes: Planes, out_planes: Planes) -> tuple[np.ndarray, np.ndarray]:
    """What the maps are computed on (planes cut to the region): luma; the colour planes a model
    ran on, stacked (each mapped, then combined); else the first component of packed RGB."""
    if main.colour_planes:
        return colour_stack(planes, src_fmt), colour_stack(out_planes, src_fmt)
    if planes[0].ndim == 3:
        return planes[0][..., 0], out_planes[0][..., 0]
    return planes[0], out_planes[0]


def frame_layers(spec: MapSpec, main: Stage, done: Done, extras: list[dict[str, np.ndarray] | None]) -> tuple[FrameMaps, ...]:
    """The map layers of finished frames (with their extra maps), from what FramePass computes
    them from, with the writer's spec: a Ray worker's part of the pass (forensic_vsr.distributed)."""
    layers, out = MapLayers(spec), []
    for (_key, planes, out_planes), extra in zip(done, extras, strict=True):
        planes, out_planes, cut = cut_region(main, planes, out_planes, extra)
        out.append(layers.compute(*map_planes(main, spec.src_fmt, planes, out_planes), cut))
    return tuple(out)


class FramePass:
    """One enhancement pass over frames [start, end) of the evidence into `bundle`; the finished
    frames come from `source` (default: the stages run here)."""

    def __init__(
        self, evidence: Path, bundle: BundleDir, recipe: Recipe, model: ResolvedModel, decision: Decision, source: FrameSource | None = None
    ) -> None:
        self.evidence, self.bundle, self.recipe, self.model = evidence, bundle, recipe, model
        self.source = source or LocalChain()
        self.label = decision.policy.rules["output_label"]
        self.consistency = decision.policy.rules["data_consistency"]
        self.rules = decision.policy.rules
        self.written = 0

    def run(self, start: int, end: int, show_progress: bool | None) -> tuple[StepRecord, list[bytes]]:
        """Returns the step summary and the Merkle leaf hashes of output.framehash."""
        recipe, model = self.recipe, self.model
        with (
            VideoReader(self.evidence, rate=recipe.rate) as reader,
            open(self.bundle.path(HASHES_SCRATCH), "w", encoding="ascii") as self.hashes,
        ):
            info = reader.info
            self.src_fmt = src_fmt = info.pix_fmt
            self.dst_fmt = master_pix_fmt(src_fmt)
            stages, siting, project = build_stages(recipe, model, info)
            *self.pre, self.main = stages
            self.region = self.main.params.crop  # --roi: the stages ran on its crop; the outputs are the region
            width, height = (self.region.region[2], self.region.region[3]) if self.region else (info.width, info.height)
            self.out_w, self.out_h = width * recipe.scale, height * recipe.scale
            rate = info.guessed_rate
            self.factor = math.prod(stage.frames_per_input for stage in stages)
            out_tb = info.time_base / self.factor
            rate = rate * self.factor if rate else rate
            self._open_writers(info, reader.colour, siting, out_tb, rate)
            self.vmax = plane_geometry(src_fmt)[0][2]
            self.warp = None
            if self.main.temporal:
                from forensic_vsr.ops.temporal import WarpError

                self.warp = WarpError("output" if task(model) == "stabilise" else "input")
            try:
                self.source.use_maps(self.maps.spec if self.maps is not None else None)
                with progress("enhance", (end - start) * self.factor, show_progress) as self.advance:
                    for done in self.source.outputs(reader, stages, start, end):
                        self._emit(done)
                self.encoder.close()
                self.checker.submit(self.master.close())
                self.checker.submit(None)  # flush the decoder
                self.checker.close()
                self.mapper.close()
                maps_step = self.maps.finish() if self.maps is not None else None
            finally:
                self._close_writers()
        check = self._check_round_trip(end - start)
        return self._step(start, end, siting, project, check, maps_step), self._output_framehash()

    def _open_writers(self, info: Any, colour: Colour, siting: str, out_tb: Any, rate: Any) -> None:
        """Master, preview and maps carry the evidence's sample aspect ratio, chroma siting and
        colour description (they change no sample; they tell a player how to show them)."""
        mode_tags = {"FVSR_MODE": self.recipe.mode, "FVSR_TOOL": f"forensic-vsr {__version__}", "FVSR_MODEL": self.model.id}
        if self.label:
            mode_tags["FVSR_LABEL"] = self.label
        w, h = self.out_w, self.out_h
        self.master = VideoWriter(
            self.bundle.path(layout.MASTER),
            codec="ffv1",
            pix_fmt=self.dst_fmt,
            width=w,
            height=h,
            time_base=out_tb,
            rate=rate,
            options=FFV1_OPTIONS,
            metadata=mode_tags,
            sample_aspect_ratio=info.sample_aspect_ratio,
            chroma_location=siting if self.src_fmt.startswith("yuv") else None,
            colour=colour,
        )
        self.pw, self.ph = w - w % 2, h - h % 2
        full_range = colour.color_range == 2  # AVCOL_RANGE_JPEG: the yuv420p preview is converted to TV range
        preview_colour = dataclasses.replace(colour, color_range=1) if full_range else colour
        self.preview = VideoWriter(
            self.bundle.path(layout.PREVIEW),
            codec="libx264",
            pix_fmt="yuv420p",
            width=self.pw,
            height=self.ph,
            time_base=out_tb,
            rate=rate,
            options=PREVIEW_OPTIONS,
            metadata=mode_tags,
            sample_aspect_ratio=info.sample_aspect_ratio,
            chroma_location="left",
            colour=preview_colour if self.src_fmt.startswith("yuv") else None,
        )
        self.checks: list[RoundTripCheck] = []
        self.checker = PipelineStage(lambda packets: self.checks[0].feed(packets), "round-trip")
        self.maps = (
            MapsWriter(
                self.bundle,
                MapSpec(
                    w,
                    h,
                    self.recipe.scale,
                    self.src_fmt,
                    self.rules,
                    self.model,
                    self.main.extra_map_names,
                    self.main.colour_planes,
                    # S and R recomputable from the master and the evidence frame (format 3) when
                    # the main operation's input is that frame (or, --roi, the recorded region of
                    # it), one output per input
                    recompute=not self.pre and self.factor == 1,
                    device=self.main.device,
                ),
                info,
                out_tb,
                rate,
            )
            if self.recipe.maps
            else None
        )
        self.mapper = PipelineStage(self.maps.put if self.maps else lambda *_: None, "maps")
        self.encoder = PipelineStage(self._encode, "encoder")

    def _close_writers(self) -> None:
        self.encoder.close()
        self.checker.close()
        self.mapper.close()
        if self.maps is not None:
            self.maps.close()
        self.master.close()
        self.preview.close()

    def _encode(self, out_planes: list[np.ndarray], pts: int) -> None:
        """On the encoder thread: hash, encode the master (its packets go to the round trip) and the preview."""
        sha256 = planes_sha256(out_planes)
        self.hashes.write(f"{sha256} {sum(p.nbytes for p in out_planes)}\n")
        frame = frame_from_planes(out_planes, self.dst_fmt, self.out_w, self.out_h)
        if not self.checks:  # FFV1's extradata exists once the encoder has opened
            packets = self.master.write(frame, pts)
            self.checks.append(RoundTripCheck("ffv1", self.master.extradata, self.out_w, self.out_h))
        else:
            packets = None
        self.checks[0].expect(sha256)
        self.checker.submit(packets if packets is not None else self.master.write(frame, pts))
        view = frame.reformat(width=self.pw, height=self.ph, format="yuv420p")
        self.preview.write(burn_label(view, self.label) if self.label else view, pts)

    def _emit(self, done: Done) -> None:
        """Hand finished frames to the encoder, the maps and the warp-error measure, in order."""
        residuals = self.main.residuals
        for (index, pts), planes, out_planes in done:
            extra = self.source.extras((index, pts))  # taken even without maps: nothing piles up
            planes, out_planes, extra = cut_region(self.main, planes, out_planes, extra)
            map_plane = out_planes[0]  # in the source's component order, like planes[0]
            map_in, map_out = map_planes(self.main, self.src_fmt, planes, out_planes)
            if self.src_fmt in PACKED_ORDER:
                out_planes = [convert_packed(out_planes[0], self.src_fmt, self.dst_fmt)]
            limit = self.consistency["max_rms_residual"]
            if residuals and self.consistency["required"] and residuals[self.written] > limit:
                raise IntegrityError(
                    f"frame {index}: data-consistency RMS residual {residuals[self.written]:.3f} exceeds the policy's {limit}"
                )
            self.encoder.submit(out_planes, pts)  # hashed, encoded and checked on the worker threads
            if self.maps is not None:  # computed here unless the source (a Ray worker) computed them
                self.mapper.submit(pts, self.source.frame_maps((index, pts)), (map_in, map_out, extra))
            if self.warp is not None:
                self.warp.add(
                    planes[0] if planes[0].ndim == 2 else planes[0][..., 0],
                    map_plane if map_plane.ndim == 2 else map_plane[..., 0],
                    self.vmax,
                )
            self.written += 1
            self.advance()

    def _check_round_trip(self, n_in: int) -> RoundTripCheck:
        expected = n_in * self.factor
        if self.written != expected:
            raise IntegrityError(
                f"wrote {self.written} frames in the enhancement pass, expected {expected}: "
                "the evidence decodes differently on a second read"
            )
        check = self.checks[0]
        if check.mismatch is not None:
            index, want, got = check.mismatch
            raise IntegrityError(f"lossless round trip failed at output frame {index}: encoded {want[:16]}…, decoded {got[:16]}…")
        if check.checked != self.written:
            raise IntegrityError(f"lossless round trip failed: {self.written} frames encoded, {check.checked} decoded back")
        return check

    def _step(self, start: int, end: int, siting: str, project: bool, check: RoundTripCheck, maps_step: Any) -> StepRecord:
        recipe, model, residuals = self.recipe, self.model, self.main.residuals
        luma = runs_on_luma(model)
        colours = self.main.colour_planes  # RGB evidence: every colour plane went through the model
        classical = ("copy (x1)" if recipe.scale == 1 else "lanczos") if luma else model.id
        if colours and len(colours) == len(component_order(self.src_fmt) or ""):
            classical = "none (the model ran on every component)"
        main_record = {key: None for key in RECORD_KEYS} | self.main.record()
        return StepRecord(
            frames=FrameRange(start, end, self.written),
            frames_per_input=self.factor,
            pix_fmt_in=self.src_fmt,
            pix_fmt_out=self.dst_fmt,
            width_out=self.out_w,
            height_out=self.out_h,
            chroma_siting_assumed=siting,
            luma=model.id if luma else None,
            planes_classical=classical,
            label=self.label,
            data_consistency=None
            if not project
            else {
                "operator": CONSISTENCY_OPERATOR,
                **(
                    {
                        "planes": list(colours),  # in the evidence's component order
                        "rms_residual_per_plane": {
                            name: [round(frame[i], 6) for frame in self.main.plane_residuals] for i, name in enumerate(colours)
                        },
                    }
                    if colours
                    else {"plane": "luma"}
                ),
                "projection": "x + A_pinv(y - A x), separable closed form",
                "units": "8-bit levels",
                "rms_residual_per_frame": [round(r, 6) for r in residuals],
                "rms_residual_max": round(max(residuals, default=0.0), 6),
                "tolerance": self.consistency["max_rms_residual"] if self.consistency["required"] else None,
            },
            lossless_round_trip={"frames_decoded_back": check.checked, "all_equal": True},
            devices=tuple(sorted({s.device for s in [*self.pre, self.main]})),
            pre_operations=tuple(
                {
                    "op": op_name(stage.model),
                    "model": stage.model.id,
                    **{k: stage.record().get(k) for k in RECORD_KEYS if k != "multiframe"},
                }
                for stage in self.pre
            ),
            temporal_consistency=self.warp.result() if self.warp is not None else None,
            maps=maps_step,
            region=None if self.region is None else Region.from_json(self.region.to_json()),
            distributed=self.source.record(),
            **main_record,
        )

    def _output_framehash(self) -> list[bytes]:
        """output.framehash from the master's stored timestamps and the frame hashes proven by the
        round trip."""
        scratch = self.bundle.path(HASHES_SCRATCH)
        with open(scratch, encoding="ascii") as f:
            stored = ((sha, int(size)) for sha, size in (line.split() for line in f))
            leaves = framehash_from_stored(self.bundle.path(layout.MASTER), self.bundle.path(layout.OUTPUT_FRAMEHASH), stored)
        scratch.unlink()
        return leaves
