"""Pipeline stages: what happens to each decoded frame between the decoder and the encoders.

Every stage follows one protocol (`Stage`): frames go in with `push(key, planes)` and come out,
in order, from `push` and `flush` as (key, input planes, output planes); `record()` is what the
step record says about the stage. `PlaneStage` runs a network on luma (plane 0 of planar YUV or
gray) or on each colour component of RGB evidence (ops.colour), projected onto the input's
consistent set where asked, and a classical kernel on every other plane (chroma and alpha never
go through a network). Stages that need neighbouring frames derive
from `WindowStage`; `Chain` feeds each stage's outputs to the next."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from forensic_vsr.errors import IntegrityError, UnsupportedFormatError
from forensic_vsr.media import plane_geometry
from forensic_vsr.models.registry import ResolvedModel
from forensic_vsr.models.tasks import LUMA_TASKS, runs_on_luma, task
from forensic_vsr.ops.colour import COLOURS, colour_names, component_order, join_components, split_components
from forensic_vsr.ops.consistency_torch import projector_for
from forensic_vsr.ops.region import RegionPlan
from forensic_vsr.ops.resample import KERNEL_SUPPORT, upscale_plane

Key = Any  # (decoded frame index, pts)
Planes = list[np.ndarray]
Done = list[tuple[Key, Planes, Planes]]

# Every key a main operation's record may hold (None where the stage has nothing to say).
RECORD_KEYS = ("runner", "multiframe", "deblur", "deinterlace", "temporal")


@dataclass(frozen=True)
class StageParams:
    """What a stage is asked to do (from the recipe) and the frames it gets (from the evidence)."""

    scale: int
    src_fmt: str
    siting: str  # chroma siting of the source: "left" (MPEG-2/H.264) or "center" (JPEG)
    in_width: int
    in_height: int
    device: str = "cpu"
    precision: str = "fp32"
    tile: int | None = None
    batch: int | None = None
    psf: str | None = None
    roi: tuple[int, int, int, int] | None = None  # deblur, as recorded before --roi was general: only this region changes
    region: tuple[int, int, int, int] | None = None  # --roi, in the stage's input pixels (the crop's); its input is the crop
    crop: RegionPlan | None = None  # --roi: the plan that cut the stage's input from each evidence frame (Chain does)
    register_roi: tuple[int, int, int, int] | None = None  # temporal operations register on this region only
    registration: str = "static"  # temporal operations: "static" (moving content masked) or "whole"
    deinterlace: str = "fields"
    project: bool = False  # project the network's luma onto the input's consistent set
    keep_maps: bool = True  # False for a step before the main one: its extra maps are not written

    @property
    def out_width(self) -> int:
        return self.in_width * self.scale

    @property
    def out_height(self) -> int:
        return self.in_height * self.scale


class Stage(Protocol):
    model: ResolvedModel
    params: StageParams
    temporal: bool  # E_warp is measured for operations that act over time or per frame without a model
    extra_map_names: tuple[str, ...]
    frames_per_input: int
    stream_field_order: str | None
    field_ticks: int
    residuals: list[float]  # data-consistency RMS residual of each output frame, where projected
    plane_residuals: list[list[float]]  # RGB evidence: per output frame, each colour plane's residual
    colour_planes: tuple[str, ...]  # the colour components the model ran on (RGB evidence), storage order
    per_frame: list[dict[str, Any]]  # what the record says of each frame, in output order ("frame": decoded index)

    @property
    def device(self) -> str: ...
    @property
    def batch(self) -> int: ...
    @property
    def frame_context(self) -> tuple[int, int] | None: ...
    def push(self, key: Key, planes: Planes) -> Done: ...
    def flush(self) -> Done: ...
    def extras(self, key: Key) -> dict[str, np.ndarray] | None: ...
    def record(self) -> dict[str, Any]: ...


class PlaneStage:
    """The per-frame operation: network on luma (projected when `params.project`, each frame's
    RMS residual appended to `residuals`), classical kernel on every other plane. On RGB evidence
    the network runs on each colour component as on a luma plane, each projected onto its own
    consistent set (its residuals in `plane_residuals`, their maximum in `residuals`). The network
    runs `batch` planes at a time (on CUDA), so outputs may lag inputs by up to a batch."""

    # why the operation cannot run on each colour plane of RGB evidence (None: it can)
    colour_refusal: str | None = None
    context = 0  # evidence pixels an operation looks beyond its kernels (registration), on each side, added to margin_for
    temporal = False
    extra_map_names: tuple[str, ...] = ()
    frames_per_input = 1
    stream_field_order: str | None = None
    field_ticks = 1

    def __init__(self, model: ResolvedModel, params: StageParams) -> None:
        self.net = None
        self.model, self.params = model, params
        self.out_w, self.out_h = params.out_width, params.out_height
        self.residuals: list[float] = []
        self.plane_residuals: list[list[float]] = []
        self.per_frame: list[dict[str, Any]] = []
        on_luma = model.neural or task(model) in LUMA_TASKS
        self.colour_planes = colour_names(params.src_fmt) if on_luma else ()
        if self.colour_planes and self.colour_refusal:
            raise UnsupportedFormatError(
                f"{model.id} works on luma; {params.src_fmt} evidence has no luma plane, and {self.colour_refusal} "
                "(use fidelity-sr-x2, fidelity-sr-x4, fidelity-restore, lanczos or bicubic)"
            )
        if model.neural:
            from forensic_vsr.models.runner import PlaneUpscaler

            self.net = PlaneUpscaler(model, params.device, tile=params.tile, batch=params.batch, precision=params.precision)
        self.kernel = "lanczos" if runs_on_luma(model) or params.scale == 1 else model.id
        if self.kernel not in KERNEL_SUPPORT:
            raise UnsupportedFormatError(f"{model.id}: no classical kernel of that name")
        self.projector = projector_for(self.out_h, self.out_w, params.scale, self.device) if params.project else None
        self.geometry = plane_geometry(params.src_fmt)
        self.pending: list[tuple[Key, Planes]] = []

    @classmethod
    def margin_for(cls, model: ResolvedModel, params: StageParams) -> int:
        """The input pixels each output sample sees on each side, in luma (evidence) pixels: the
        classical kernel's reach on the most subsampled plane and the network's receptive radius
        (the data-consistency projection is global: near the crop's border it differs a little)."""
        sub = max(max(g[0], g[1]) for g in plane_geometry(params.src_fmt))
        kernel = "lanczos" if runs_on_luma(model) or model.id not in KERNEL_SUPPORT else model.id
        reach = 0 if params.scale == 1 else (KERNEL_SUPPORT[kernel] + 1) * sub
        if model.neural and model.architecture is not None:
            from forensic_vsr.models.arch import build
            from forensic_vsr.models.runner import receptive_radius

            reach = max(reach, receptive_radius(build(model.architecture)))
        return reach + cls.context

    @property
    def batch(self) -> int:
        return self.net.batch if self.net is not None else 1

    @property
    def device(self) -> str:
        """The device this stage's arithmetic actually runs on."""
        return str(self.net.device) if self.net is not None else "cpu"

    @property
    def frame_context(self) -> tuple[int, int] | None:
        """(frames before, frames after) a frame that its output depends on; None: it depends on
        every earlier frame of the range (an estimate from the first frames, a running reference),
        so the range cannot be split into segments (forensic_vsr.distributed)."""
        return (0, 0)

    def record(self) -> dict[str, Any]:
        if self.net is None:
            return {"runner": None}
        return {
            "runner": {
                "device": str(self.net.device),
                "precision": self.net.precision,
                "batch": self.net.batch,
                "tiling": self.net.tiling(self.params.in_height, self.params.in_width).to_json(),
                "receptive_radius_margin": self.net.margin,
                **({"planes": list(self.colour_planes)} if self.colour_planes else {}),  # RGB: each, storage order
            }
        }

    def extras(self, key: Key) -> dict[str, np.ndarray] | None:
        """Extra per-frame maps (8-bit-level units) for the frame `key`, in extra_map_names order."""
        return None

    def push(self, key: Key, planes: Planes) -> Done:
        self.pending.append((key, planes))
        return self.flush() if len(self.pending) >= self.batch else []

    def flush(self) -> Done:
        """Run every pending frame; returns (key, input planes, output planes) in order."""
        pending, self.pending = self.pending, []
        if not pending:
            return []
        if self.colour_planes and self.net is not None:
            return self.flush_colour(pending)
        lumas = None
        if self.net is not None:
            lumas = self.net.predict_many([planes[0] for _, planes in pending], self.geometry[0][2])
        done = []
        for i, (key, planes) in enumerate(pending):
            out = [
                self.luma(plane, lumas[i]) if lumas is not None and p == 0 else self.classical(plane, self.geometry[p])
                for p, plane in enumerate(planes)
            ]
            done.append((key, planes, out))
        return done

    def flush_colour(self, pending: list[tuple[Key, Planes]]) -> Done:
        """RGB evidence: the network on every colour component of every pending frame, each
        projected as a luma plane would be; alpha and padding through the classical kernel."""
        order = component_order(self.params.src_fmt) or ""
        vmax = self.geometry[0][2]
        frames = [split_components(planes, self.params.src_fmt) for _, planes in pending]
        colour = [c for comps in frames for c, name in zip(comps, order, strict=True) if name in COLOURS]
        x_hats = iter(self.net.predict_many(colour, vmax))  # type: ignore[union-attr]
        done = []
        for (key, planes), comps in zip(pending, frames, strict=True):
            out, residuals = [], []
            for comp, name in zip(comps, order, strict=True):
                if name not in COLOURS:  # alpha or padding
                    out.append(self.classical(np.ascontiguousarray(comp), (1, 1, vmax)))
                    continue
                out.append(self.luma(comp, next(x_hats)))
                if self.projector is not None:
                    residuals.append(self.residuals.pop())
            if self.projector is not None:
                self.plane_residuals.append(residuals)
                self.residuals.append(max(residuals))
            done.append((key, planes, join_components(out, self.params.src_fmt)))
        return done

    def luma(self, plane: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
        """The luma estimate `x_hat` as samples, projected onto the consistent set of `plane`."""
        from forensic_vsr.models.runner import to_samples

        vmax = self.geometry[0][2]
        if x_hat.shape != (self.out_h, self.out_w):
            raise IntegrityError(f"{self.model.id} returned {x_hat.shape[1]}x{x_hat.shape[0]}, expected {self.out_w}x{self.out_h}")
        if self.projector is None:
            return to_samples(x_hat, vmax, plane.dtype)
        y = plane.astype(np.float64)
        target = 0.25 * vmax / 255  # a quarter of an 8-bit level, well inside any sane tolerance
        samples, residual = self.projector.project_to_samples(x_hat, y, vmax, target)
        self.residuals.append(residual * 255 / vmax)  # in 8-bit levels whatever the depth
        return samples.astype(plane.dtype)

    def classical(self, plane: np.ndarray, geometry: tuple[int, int, int]) -> np.ndarray:
        sx, sy, vmax = geometry
        if self.params.scale == 1:
            return plane.copy()  # a x1 restoration leaves chroma as it is
        return upscale_plane(
            plane,
            kind=self.kernel,
            scale=self.params.scale,
            out_width=-(-self.out_w // sx),
            out_height=-(-self.out_h // sy),
            subsampling=(sx, sy),
            siting=self.params.siting,
            max_value=vmax,
        )  # type: ignore[arg-type]


class WindowStage(PlaneStage):
    """An operation whose output frame t needs the input frames within `radius` of t (fewer at
    the ends of the range): outputs lag inputs by `radius` frames and at most 2 * radius + 1
    decoded frames are held."""

    radius = 0
    # registering each colour plane on its own could align R, G and B differently
    colour_refusal = "it registers frames on one plane (per colour plane, R, G and B could be aligned differently)"

    def __init__(self, model: ResolvedModel, params: StageParams) -> None:
        super().__init__(model, params)
        self.window: list[tuple[Key, Planes]] = []
        self.position = 0  # index in `window` of the next frame to reconstruct

    @property
    def frame_context(self) -> tuple[int, int] | None:
        return (self.radius, self.radius)

    def push(self, key: Key, planes: Planes) -> Done:
        self.window.append((key, planes))
        done = []
        while self.position + self.radius < len(self.window):
            done.append(self.reconstruct(self.position))
            self.position += 1
            if self.position > self.radius:  # the oldest frame is no one's neighbour now
                self.window.pop(0)
                self.position -= 1
        return done

    def flush(self) -> Done:
        done = []
        while self.position < len(self.window):
            done.append(self.reconstruct(self.position))
            self.position += 1
        return done

    def neighbourhood(self, pos: int) -> tuple[int, list[np.ndarray]]:
        """(index of frame `pos` among its neighbours, the neighbours' lumas)."""
        lo, hi = max(0, pos - self.radius), min(len(self.window), pos + self.radius + 1)
        return pos - lo, [self.window[i][1][0] for i in range(lo, hi)]

    def reconstruct(self, pos: int) -> tuple[Key, Planes, Planes]:
        raise NotImplementedError


class Chain:
    """Frames through the pre-operations, then the main operation: each stage's outputs are the
    next stage's inputs, in order; flushing flushes every stage in turn. What comes out is
    (key, the main operation's input planes, its output planes). With --roi each evidence frame
    is first cut to the region's crop (`StageParams.crop`); what comes out is crop-sized."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        self.crop = stages[0].params.crop

    def _through(self, i: int, items: list[tuple[Key, Planes]]) -> Done:
        done = [d for key, planes in items for d in self.stages[i].push(key, planes)]
        if i == len(self.stages) - 1:
            return done
        return self._through(i + 1, [(key, out) for key, _inp, out in done])

    def push(self, key: Key, planes: Planes) -> Done:
        return self._through(0, [(key, planes if self.crop is None else self.crop.crop_evidence(planes))])

    def flush(self) -> Done:
        out: Done = []
        for i, stage in enumerate(self.stages):
            flushed = stage.flush()
            if i == len(self.stages) - 1:
                out += flushed
            else:
                out += self._through(i + 1, [(key, o) for key, _inp, o in flushed])
        return out
