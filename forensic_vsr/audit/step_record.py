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
OPTIONAL = frozenset({"devices", "distributed"})  # left out when empty, so records without them read back the same


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

    def to_json(self) -> Json:
        out: Json = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in OPTIONAL and not value:
                continue
            out[f.name] = value.to_json() if isinstance(value, FrameRange) else list(value) if isinstance(value, tuple) else value
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
        return cls(**values)
