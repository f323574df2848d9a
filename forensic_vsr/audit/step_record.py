"""The run summary of a `step.run` record (the in-toto statement's one byproduct), typed.

Written by the pipeline (`bundle.frames.FramePass`), read by verify, reproduce, the report and
the tests through `StepRecord.from_json(step_annotations(statement))`. `to_json` gives back the
exact recorded dictionary (format 1 had no `devices`, which is then left out again). Operation
records (runner, deblur, deinterlace, temporal, multiframe, per pre-operation) and the maps entry
are free-form JSON objects owned by the stage or writer that makes them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

Json = dict[str, Any]
OPTIONAL = frozenset({"devices", "distributed", "region"})  # left out when empty, so records without them read back the same


@dataclass(frozen=True)
class FrameRange:
    start: int  # first decoded evidence frame processed
    end: int  # one past the last
    count: int  # output frames written (count = (end - start) * frames_per_input)

    def to_json(self) -> Json:
        return {"start": self.start, "end": self.end, "count": self.count}

    @classmethod
    def from_json(cls, data: Json) -> FrameRange:
        return cls(int(data["start"]), int(data["end"]), int(data["count"]))


@dataclass(frozen=True)
class Region:
    """--roi: the region of the evidence frame the outputs are (x, y, width, height in evidence
    pixels; the outputs are width x scale by height x scale), the crop the stages ran on (the
    region and the margin taken from the evidence, clipped at the frame's border) and the
    margin each operation asked for. `box` is the region as (x, y, width, height)."""

    x: int
    y: int
    width: int
    height: int
    scale: int
    crop: Json  # {x, y, width, height}, evidence pixels
    margin_needed: int  # on each side, evidence pixels (the sum of margin_by_operation)
    margin_taken: Json  # {left, top, right, bottom}: less than needed at the frame's border
    margin_by_operation: tuple[Json, ...]  # {op, model, margin}
    output: Json  # {width, height}
    units: str = "evidence pixels"

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x, y, width, height) of the region in evidence pixels."""
        return self.x, self.y, self.width, self.height

    def to_json(self) -> Json:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_json(cls, data: Json) -> Region:
        """The record as written; a missing key, or a box that is not whole numbers, is a ValueError."""
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ValueError(f"step record region: expected the keys {sorted(names)}")
        values = dict(data)
        for key in ("x", "y", "width", "height", "scale", "margin_needed"):
            if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0:
                raise ValueError(f"step record region: {key} must be a whole number >= 0")
        values["margin_by_operation"] = tuple(data["margin_by_operation"])
        return cls(**values)


@dataclass(frozen=True)
class StepRecord:
    frames: FrameRange
    frames_per_input: int
    pix_fmt_in: str
    pix_fmt_out: str
    width_out: int
    height_out: int
    chroma_siting_assumed: str
    luma: str | None  # the model run on luma, if any
    planes_classical: str  # what ran on the other planes
    label: str | None  # the policy's output label
    data_consistency: Json | None
    lossless_round_trip: Json
    runner: Json | None
    multiframe: Json | None
    deblur: Json | None
    deinterlace: Json | None
    temporal: Json | None
    pre_operations: tuple[Json, ...]
    temporal_consistency: Json | None
    maps: Json | None
    devices: tuple[str, ...] = ()  # where the arithmetic ran; () in format-1 records, which did not say
    distributed: Json | None = None  # --ray: the segment plan and every worker's environment; absent otherwise
    region: Region | None = None  # --roi: what the outputs are; absent for the whole frame

    def to_json(self) -> Json:
        out: Json = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in OPTIONAL and not value:
                continue
            out[f.name] = value.to_json() if isinstance(value, (FrameRange, Region)) else list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, data: Json) -> StepRecord:
        """The record as written; an unknown or missing key is refused (ValueError)."""
        names = {f.name for f in fields(cls)}
        unknown, missing = set(data) - names, names - set(data) - OPTIONAL
        if unknown or missing:
            raise ValueError(f"step record: unknown {sorted(unknown)}, missing {sorted(missing)}")
        values = dict(data)
        values["frames"] = FrameRange.from_json(data["frames"])
        values["pre_operations"] = tuple(data["pre_operations"])
        values["devices"] = tuple(data.get("devices", ()))
        values["distributed"] = data.get("distributed")
        values["region"] = Region.from_json(data["region"]) if data.get("region") is not None else None
        return cls(**values)
