"""x1 restoration stages: field-aware deinterlacing (forensic_vsr.ops.deinterlace) and
deconvolution (forensic_vsr.ops.deblur)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from forensic_vsr.errors import UsageError
from forensic_vsr.media import plane_geometry
from forensic_vsr.models.registry import ResolvedModel
from forensic_vsr.ops.colour import COLOURS, component_order, join_components, split_components
from forensic_vsr.ops.stages import Done, Key, Planes, PlaneStage, StageParams


class DeinterlaceStage(PlaneStage):
    """The field order is read from the stream's flags where present and measured from the first
    frames' content; both are recorded. `fields`: two output frames per input frame (pts 2t and
    2t + 1 in half the time base), each holding one field's lines exactly. `blend`: one frame per
    input frame, the second field's lines kept where static and interpolated from the first
    field where they comb."""

    LOOKAHEAD = 8  # frames buffered to measure the field order from content
    BLEND_THRESHOLD = 10.0  # 8-bit levels

    @classmethod
    def margin_for(cls, model: ResolvedModel, params: StageParams) -> int:
        """bob's [-1, 9, 9, -1] reaches two field lines (four frame rows) of the most subsampled plane."""
        return 4 * max(g[1] for g in plane_geometry(params.src_fmt))

    def __init__(self, model: ResolvedModel, params: StageParams) -> None:
        super().__init__(model, params)
        if params.deinterlace not in ("fields", "blend"):
            raise UsageError(f"--deinterlace {params.deinterlace}: use fields or blend")
        self.mode = params.deinterlace
        self.frames_per_input = 2 if self.mode == "fields" else 1
        self.first: int | None = None  # 0: top field first, 1: bottom field first
        self.order: dict[str, Any] = {}
        self.comb: list[float] = []
        self.replaced: list[float] = []

    @property
    def frame_context(self) -> tuple[int, int] | None:
        return None  # the field order is measured on the range's first frames

    def record(self) -> dict[str, Any]:
        return {
            **super().record(),
            "deinterlace": {
                **self.order,
                "mode": self.mode,
                "comb_score_per_frame": [round(c, 4) for c in self.comb],
                **({"second_field_fraction_replaced_per_frame": [round(r, 5) for r in self.replaced]} if self.mode == "blend" else {}),
            },
        }

    def push(self, key: Key, planes: Planes) -> Done:
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
        self.order = {
            "field_order": order,
            "field_order_source": "stream flags" if by_flag else f"content (first {len(self.pending)} frames)",
            "stream_field_order": self.stream_field_order,
            "content_field_order": by_content,
            "content_scores": scores,
            "flags_and_content_disagree": bool(by_flag and by_flag != by_content),
        }

    def flush(self) -> Done:
        from forensic_vsr.ops.deinterlace import blend, bob, comb_score

        if not self.pending:
            return []
        if self.first is None:
            self._decide()
        assert self.first is not None
        pending, self.pending = self.pending, []
        done = []
        vmax = [g[2] for g in self.geometry]

        def q(a: np.ndarray, i: int, like: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(a), 0, vmax[i]).astype(like.dtype)

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


class DeblurStage(PlaneStage):
    """Deconvolution of luma with the recipe's PSF, or one estimated blindly from the first frame
    (its region of interest where given) and then held for every frame, so all frames get the
    same, recorded operator. With --roi only that region changes. An estimate of low confidence
    is run as estimated, and flagged: one warning line on stderr and `estimate.low_confidence`.
    RGB evidence: each colour plane is deconvolved with the same PSF and regulariser, estimated on
    G (the component closest to luma; the blur is the optics', the same for every colour)."""

    temporal = True
    BLIND_PSF_SIDE = 41  # the largest kernel a blind estimate gives: a motion blur of estimate_psf's max_length, 40

    @classmethod
    def margin_for(cls, model: ResolvedModel, params: StageParams) -> int:
        """What `wiener` pads a frame by (twice the kernel's side, and 8): the given PSF's, else the
        largest a blind estimate can give."""
        from forensic_vsr.ops.deblur import parse_psf

        side = max(parse_psf(params.psf).kernel.shape) if params.psf else cls.BLIND_PSF_SIDE
        return 2 * side + 8

    def __init__(self, model: ResolvedModel, params: StageParams) -> None:
        super().__init__(model, params)
        from forensic_vsr.ops.deblur import parse_psf

        self.psf = parse_psf(params.psf) if params.psf else None
        self.estimate: dict[str, Any] | None = None
        self.lam: float | None = None
        self.noise: float | None = None
        self.ringing: list[float] = []
        self.forward: list[float] = []

    @property
    def frame_context(self) -> tuple[int, int] | None:
        return None  # the PSF (when blind) and the regulariser are estimated on the range's first frame

    def record(self) -> dict[str, Any]:
        return {
            **super().record(),
            "deblur": {
                "psf": None if self.psf is None else self.psf.to_json(),
                "psf_source": "recipe"
                if self.params.psf
                else "estimated blindly from the cepstrum of the first frame" + (" (its --roi region)" if self.params.region else ""),
                "estimate": self.estimate,
                "roi": list(self.params.roi) if self.params.roi else None,
                "method": "Wiener deconvolution, gradient regulariser",
                "lambda": self.lam,
                "noise_sigma_levels_first_frame": self.noise,
                "ringing_rms_levels_per_frame": [round(r, 4) for r in self.ringing],
                "forward_residual_rms_levels_per_frame": [round(r, 4) for r in self.forward],
                **(
                    {"planes": list(self.colour_planes), "estimated_on_plane": "G", "per_frame_figures": "maximum over the planes"}
                    if self.colour_planes
                    else {}
                ),
                "units": "8-bit levels",
            },
        }

    def _region(self, plane: np.ndarray) -> tuple[slice, slice]:
        """What is deconvolved: the whole input, or (a recipe recorded before --roi was general)
        only its `roi`."""
        if self.params.roi is None:
            return slice(None), slice(None)
        x, y, w, h = self.params.roi
        if x < 0 or y < 0 or w < 16 or h < 16 or x + w > plane.shape[1] or y + h > plane.shape[0]:
            raise UsageError(f"--roi {x},{y},{w},{h}: must lie inside the {plane.shape[1]}x{plane.shape[0]} frame and be at least 16x16")
        return _slices(self.params.roi)

    def flush(self) -> Done:
        pending, self.pending = self.pending, []
        done = []
        for key, planes in pending:
            if not self.colour_planes:
                done.append((key, planes, [self._deconvolve(planes[0])] + [p.copy() for p in planes[1:]]))
                continue
            order = component_order(self.params.src_fmt) or ""
            comps = split_components(planes, self.params.src_fmt)
            out = [c.copy() for c in comps]  # alpha and padding as they are
            n = len(self.ringing)
            for i in sorted((i for i, name in enumerate(order) if name in COLOURS), key=lambda i: order[i] != "G"):
                out[i] = self._deconvolve(comps[i])  # G first: the blind estimate and lambda come from it
            for figures in (self.ringing, self.forward):
                figures[n:] = [max(figures[n:])]
            done.append((key, planes, join_components(out, self.params.src_fmt)))
        return done

    def _deconvolve(self, luma: np.ndarray) -> np.ndarray:
        """One plane deconvolved (the PSF and lambda estimated on the first plane it is given)."""
        from forensic_vsr.ops.deblur import blur, default_lambda, estimate_psf, noise_sigma, ringing, wiener

        vmax = self.geometry[0][2]
        region = self._region(luma)
        y = luma[region].astype(np.float64) * (255.0 / vmax)
        probe = y if self.params.region is None else y[_slices(self.params.region)]  # --roi: estimated on the region
        if self.psf is None:
            est = estimate_psf(probe)
            self.psf, self.estimate = est.psf, est.to_json()
            warning = est.warning()
            if warning:  # also in the record (estimate.warning) and so in the report, beside the PSF
                logging.getLogger(__name__).warning("warning: %s", warning)
        if self.lam is None:
            self.noise = round(noise_sigma(probe), 4)
            self.lam = float(default_lambda(probe))
        x = wiener(y, self.psf, self.lam)
        self.ringing.append(ringing(y, x))
        x8 = np.clip(np.rint(x), 0, 255)
        d = blur(x8, self.psf) - y
        self.forward.append(float(np.sqrt(np.mean(d * d))))
        out_luma = luma.copy()
        out_luma[region] = np.clip(np.rint(x * (vmax / 255.0)), 0, vmax).astype(luma.dtype)
        return out_luma


def _slices(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    x, y, w, h = box
    return slice(y, y + h), slice(x, x + w)
