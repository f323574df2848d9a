"""The maps/ folder of a bundle: the exact layer (S and R, forensic_vsr.uncertainty.exact) of every
output frame, the calibrated interval where the model's card carries one, any extra maps a stage
produces (count, spread), each stored losslessly as FFV1 gray16le with its framehash, and the
flagged regions of S streamed into maps/flagged.json."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from forensic_vsr import layout
from forensic_vsr.bundle.master import FFV1_OPTIONS, framehash_from_stored
from forensic_vsr.bundle.writer import BundleDir
from forensic_vsr.errors import IntegrityError
from forensic_vsr.integrity import merkle
from forensic_vsr.media import PipelineStage, VideoWriter, file_sha256, frame_from_planes, plane_geometry, planes_sha256
from forensic_vsr.models.registry import ResolvedModel

RECOMPUTED = ("synthesized", "contradiction", "interval")  # the maps a format-3 bundle may leave to recomputation
RECOMPUTED_FROM = {
    "synthesized": "output/master.mkv",
    "contradiction": "output/master.mkv and the evidence",
    "interval": "output/master.mkv",
}


@dataclass(frozen=True)
class MapSpec:
    """What a frame's map layers are computed with: enough to build the same MapLayers here and
    in a Ray worker (forensic_vsr.distributed), so both compute them with the same code."""

    out_w: int
    out_h: int
    scale: int
    src_fmt: str
    rules: dict[str, Any]
    model: ResolvedModel
    extra: tuple[str, ...] = ()
    colour_planes: tuple[str, ...] = ()
    recompute: bool = False
    device: str = "cpu"


@dataclass(frozen=True)
class FrameMaps:
    """One frame's map layers: the gray16 plane of every stored layer, and the flagged-region
    figures of S (with R max) that maps/flagged.json lists for it."""

    planes: dict[str, np.ndarray]
    stats: dict[str, Any]


class MapLayers:
    """The exact layer of one frame (forensic_vsr.uncertainty.exact): S and R of the first plane
    (luma for YUV and gray; the first component otherwise), the calibrated interval where the
    model's card carries one, and the extra maps a stage gives, as gray16 planes; and the flagged
    regions of S. Pure: nothing is written (MapsWriter writes)."""

    NAMES = ("synthesized", "contradiction")

    def __init__(self, spec: MapSpec) -> None:
        from forensic_vsr.uncertainty.exact import DEFAULT_FLAG_THRESHOLD, ExactMaps
        from forensic_vsr.uncertainty.exact_torch import exact_maps_for

        model, scale, src_fmt = spec.model, spec.scale, spec.src_fmt
        # the calibrated layer, where the model's card carries a lambda for this scale
        self.calibration = (model.card.data.get("uncertainty", {}).get(f"x{scale}") if model.card else None) or None
        self.names = self.NAMES + (("interval",) if self.calibration else ()) + spec.extra
        self.head = None
        if self.calibration and "head" in self.calibration and model.card is not None:
            from forensic_vsr.uncertainty.head import LearnedScale

            self.head = LearnedScale(self.calibration["head"], model.card.path.parent, scale, spec.device)
        # on the stage's device (torch on CUDA: uncertainty.exact_torch), except maps a verifier
        # recomputes (format 3), which must be its own CPU arithmetic to the bit
        self.exact = exact_maps_for(spec.out_h, spec.out_w, scale, "cpu" if spec.recompute else spec.device)
        self.vmax = plane_geometry(src_fmt)[0][2]
        self.threshold = float(spec.rules.get("flag_threshold_levels", DEFAULT_FLAG_THRESHOLD))
        self.plane = "luma" if src_fmt.startswith(("yuv", "yuvj", "gray", "nv")) else f"component 0 of {src_fmt}"
        if spec.colour_planes:  # `compute` then gets the colour planes stacked, in this order
            self.plane = f"per-pixel maximum over the {', '.join(spec.colour_planes)} planes, each mapped as luma"
        # format 3: the maps that are exact functions of the master (S, the fixed-formula
        # interval) and of the evidence (R) are recomputed by whoever shows or verifies them
        # (forensic_vsr.audit.exact_maps), not stored; `recompute` says the frames allow it (the
        # main operation's input is the evidence frame itself, or its --roi region, one output
        # frame per input frame)
        planar = src_fmt.startswith(("yuv", "gray"))
        here = spec.recompute and scale > 1 and planar and not spec.colour_planes
        self.filters = self.exact.filters() if here and isinstance(self.exact, ExactMaps) else None
        recomputable = RECOMPUTED if self.head is None else RECOMPUTED[:2]
        self.recomputed = tuple(n for n in self.names if n in recomputable) if self.filters is not None else ()
        self.stored = tuple(n for n in self.names if n not in self.recomputed)

    def compute(self, y: np.ndarray, x_hat: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> FrameMaps:
        from forensic_vsr.uncertainty.exact import flagged_regions, to_gray16

        # y and x_hat: one plane, or (height, width, planes) colour planes: each map is then the
        # per-pixel maximum of that map over the planes (a pixel is flagged if any plane is)
        ys: tuple[np.ndarray, ...] = (y,)
        xs: tuple[np.ndarray, ...] = (x_hat,)
        if y.ndim == 3:
            ys, xs = tuple(y[..., i] for i in range(y.shape[2])), tuple(x_hat[..., i] for i in range(x_hat.shape[2]))
        per_plane = [self.exact.compute(yp, xp, self.vmax) for yp, xp in zip(ys, xs, strict=True)]
        s, r = (functools.reduce(np.maximum, maps) for maps in zip(*per_plane, strict=True))
        layers = [(s, 1.0), (r, 1.0)]
        if self.calibration and "interval" in self.stored:
            from forensic_vsr.uncertainty.calibration import interval_scale

            us = []
            for yp, xp, (sp, _) in zip(ys, xs, per_plane, strict=True):
                x8 = xp.astype(np.float32) * (255.0 / self.vmax)
                us.append(interval_scale(x8, sp) if self.head is None else self.head(x8, yp.astype(np.float32) * (255.0 / self.vmax), sp))
            layers.append((functools.reduce(np.maximum, us), self.calibration["lambda"]))  # half-width lambda * u
        elif self.calibration:
            layers.append((None, 1.0))  # recomputed from the master by whoever shows it
        layers += [((extra or {})[name], 1.0) for name in self.names[len(layers) :]]
        planes = {name: to_gray16(levels, factor) for name, (levels, factor) in zip(self.names, layers, strict=True) if name in self.stored}
        return FrameMaps(planes, {"r_max": round(float(r.max()), 4), **flagged_regions(s, self.threshold)})


class MapsWriter:
    """The layers of every frame (MapLayers, computed here or handed over by a Ray worker)
    stored losslessly as FFV1 gray16le under maps/, and the flagged regions of S streamed into
    maps/flagged.json."""

    def __init__(
        self, bundle: BundleDir, spec: MapSpec, info: Any, time_base: Fraction | None = None, rate: Fraction | None = None
    ) -> None:
        from forensic_vsr.uncertainty.exact import MAP_SCALE

        self.bundle, self.spec = bundle, spec
        self.layers = layers = MapLayers(spec)
        self.calibration, self.names, self.exact, self.plane = layers.calibration, layers.names, layers.exact, layers.plane
        self.threshold, self.filters, self.recomputed, self.stored = layers.threshold, layers.filters, layers.recomputed, layers.stored
        bundle.path(layout.MAPS_DIR).mkdir(exist_ok=True)
        self.writers = {
            name: VideoWriter(
                bundle.path(layout.map_video(name)),
                codec="ffv1",
                pix_fmt="gray16le",
                width=spec.out_w,
                height=spec.out_h,
                time_base=time_base or info.time_base,
                rate=rate or info.guessed_rate,
                options=FFV1_OPTIONS,
                metadata={"FVSR_MAP": name, "FVSR_MAP_SCALE": f"sample = round(8-bit levels * {MAP_SCALE})"},
                sample_aspect_ratio=info.sample_aspect_ratio,
            )
            for name in self.stored
        }
        # sha256 and size of every stored map frame, hashed as encoded: FFV1 is lossless, and
        # `fvsr verify` decodes every map frame and checks these hashes
        self.hashes: dict[str, list[tuple[str, int]]] = {name: [] for name in self.stored}
        self.encoders = {name: PipelineStage(self._encode, f"map-{name}") for name in self.stored}
        self.flagged = open(bundle.path(layout.FLAGGED), "w", encoding="ascii")  # noqa: SIM115
        head = {"measure": "S (synthesized content, 8-bit levels)", "threshold_levels": self.threshold, "connectivity": 8}
        self.flagged.write(json.dumps(head)[:-1] + ', "frames": [\n')
        self.map_scale = MAP_SCALE
        self.count = 0
        self.flagged_frames = 0
        self.max_fraction = 0.0
        self.sum_fraction = 0.0
        self.worst_frame: int | None = None
        self.handed = 0  # frames whose layers came computed (from a Ray worker)

    def add(self, y: np.ndarray, x_hat: np.ndarray, pts: int, extra: dict[str, np.ndarray] | None = None) -> None:
        """Compute one frame's layers here and write them."""
        self.write(self.layers.compute(y, x_hat, extra), pts)

    def put(self, pts: int, ready: FrameMaps | None, inputs: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None]) -> None:
        """Write one frame's layers: `ready` where a worker computed them, else computed here from `inputs`."""
        if ready is None:
            self.add(*inputs[:2], pts, inputs[2])
            return
        if set(ready.planes) != set(self.stored):
            raise IntegrityError(f"frame {self.count}: the worker computed the maps {sorted(ready.planes)}, not {sorted(self.stored)}")
        self.handed += 1
        self.write(ready, pts)

    def write(self, maps: FrameMaps, pts: int) -> None:
        for name in self.stored:
            self.encoders[name].submit(name, maps.planes[name], pts)  # hashed and encoded on the map's own thread
        stats = {"frame": self.count, "pts": pts, **maps.stats}
        self.flagged.write(("" if self.count == 0 else ",\n") + json.dumps(stats, separators=(",", ":")))
        fraction = stats["fraction_flagged"]
        if fraction > self.max_fraction or self.worst_frame is None:
            self.max_fraction, self.worst_frame = fraction, self.count
        self.sum_fraction += fraction
        self.flagged_frames += fraction > 0
        self.count += 1

    def _encode(self, name: str, plane: np.ndarray, pts: int) -> None:
        self.hashes[name].append((planes_sha256([plane]), plane.nbytes))
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

    def _recomputed_entry(self) -> dict[str, Any]:
        """Format 3: which maps are not stored, what each is recomputed from, and the signed
        filter taps (forensic_vsr.audit.exact_maps) the verifier recomputes S and R with."""
        if not self.recomputed or self.filters is None:
            return {}
        return {"recomputed": {n: {"from": RECOMPUTED_FROM[n]} for n in self.recomputed}, "filters": self.filters.to_json()}

    def finish(self) -> dict[str, Any]:
        """Close the files, framehash the map videos and return the step record's `maps` entry."""
        self.flagged.write("\n]}\n")
        self.close()
        files: dict[str, Any] = {}
        for name in self.stored:
            video = layout.map_video(name)
            if len(self.hashes[name]) != self.count:
                raise IntegrityError(f"{video}: {len(self.hashes[name])} frames encoded, {self.count} written")
            leaves = framehash_from_stored(self.bundle.path(video), self.bundle.path(layout.map_framehash(name)), self.hashes[name])
            files[name] = {
                "video": video,
                "framehash": layout.map_framehash(name),
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
            **self._recomputed_entry(),
            "flagged": {
                "file": layout.FLAGGED,
                "sha256": file_sha256(self.bundle.path(layout.FLAGGED)),
                "threshold_levels": self.threshold,
                "frames_with_flags": self.flagged_frames,
                "max_fraction_flagged": self.max_fraction,
                "mean_fraction_flagged": round(self.sum_fraction / max(self.count, 1), 6),
                "most_flagged_frame": self.worst_frame,
            },
        }
