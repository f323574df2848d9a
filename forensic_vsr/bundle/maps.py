"""The maps/ folder of a bundle: the exact layer (S and R, forensic_vsr.uncertainty.exact) of every
output frame, the calibrated interval where the model's card carries one, any extra maps a stage
produces (count, spread), each stored losslessly as FFV1 gray16le with its framehash, and the
flagged regions of S streamed into maps/flagged.json."""

from __future__ import annotations

import json
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


class MapsWriter:
    """The exact layer for every frame (forensic_vsr.uncertainty.exact): S and R of the first plane
    (luma for YUV and gray; the first component otherwise) stored losslessly as FFV1 gray16le
    under maps/, and the flagged regions of S streamed into maps/flagged.json."""

    NAMES = ("synthesized", "contradiction")

    def __init__(
        self,
        bundle: BundleDir,
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
        from forensic_vsr.uncertainty.exact import DEFAULT_FLAG_THRESHOLD, MAP_SCALE, ExactMaps

        self.bundle = bundle
        # the calibrated layer, where the model's card carries a lambda for this scale
        self.calibration = (model.card.data.get("uncertainty", {}).get(f"x{scale}") if model.card else None) or None
        self.names = self.NAMES + (("interval",) if self.calibration else ()) + extra
        self.head = None
        if self.calibration and "head" in self.calibration and model.card is not None:
            from forensic_vsr.uncertainty.head import LearnedScale

            self.head = LearnedScale(self.calibration["head"], model.card.path.parent, scale)
        self.exact = ExactMaps(out_h, out_w, scale)
        self.vmax = plane_geometry(src_fmt)[0][2]
        self.threshold = float(rules.get("flag_threshold_levels", DEFAULT_FLAG_THRESHOLD))
        self.plane = "luma" if src_fmt.startswith(("yuv", "yuvj", "gray", "nv")) else f"component 0 of {src_fmt}"
        bundle.path(layout.MAPS_DIR).mkdir(exist_ok=True)
        self.writers = {
            name: VideoWriter(
                bundle.path(layout.map_video(name)),
                codec="ffv1",
                pix_fmt="gray16le",
                width=out_w,
                height=out_h,
                time_base=time_base or info.time_base,
                rate=rate or info.guessed_rate,
                options=FFV1_OPTIONS,
                metadata={"FVSR_MAP": name, "FVSR_MAP_SCALE": f"sample = round(8-bit levels * {MAP_SCALE})"},
                sample_aspect_ratio=info.sample_aspect_ratio,
            )
            for name in self.names
        }
        # sha256 and size of every stored map frame, hashed as encoded: FFV1 is lossless, and
        # `fvsr verify` decodes every map frame and checks these hashes
        self.hashes: dict[str, list[tuple[str, int]]] = {name: [] for name in self.names}
        self.encoders = {name: PipelineStage(self._encode, f"map-{name}") for name in self.names}
        self.flagged = open(bundle.path(layout.FLAGGED), "w", encoding="ascii")  # noqa: SIM115
        head = {"measure": "S (synthesized content, 8-bit levels)", "threshold_levels": self.threshold, "connectivity": 8}
        self.flagged.write(json.dumps(head)[:-1] + ', "frames": [\n')
        self.map_scale = MAP_SCALE
        self.count = 0
        self.flagged_frames = 0
        self.max_fraction = 0.0
        self.sum_fraction = 0.0
        self.worst_frame: int | None = None

    def add(self, y: np.ndarray, x_hat: np.ndarray, pts: int, extra: dict[str, np.ndarray] | None = None) -> None:
        from forensic_vsr.uncertainty.exact import flagged_regions, to_gray16

        if y.ndim == 3:
            y, x_hat = y[..., 0], x_hat[..., 0]
        s, r = self.exact.compute(y, x_hat, self.vmax)
        layers = [(s, 1.0), (r, 1.0)]
        if self.calibration:
            from forensic_vsr.uncertainty.calibration import interval_scale

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

    def finish(self) -> dict[str, Any]:
        """Close the files, framehash the map videos and return the step record's `maps` entry."""
        self.flagged.write("\n]}\n")
        self.close()
        files: dict[str, Any] = {}
        for name in self.names:
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
