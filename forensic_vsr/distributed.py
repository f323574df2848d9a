"""`fvsr enhance --ray local|ADDRESS`: the frame range split into segments, each run through the
stages by a Ray task, which also computes the frames' map layers (bundle.maps.MapLayers, the
code one process uses); the bundle is still written here, frame after frame, by the unchanged
writer path (bundle.frames.FramePass), so master, preview, maps and every hash are made exactly
as in one process, from the same samples.

A segment gives the outputs of frames [start, end); its task decodes the evidence itself (the
path must be readable where the worker runs; its sha256 is checked against the ingest's): it
seeks to the keyframe at or before its first frame and names frames by the ingest's timestamps
(where the file carries them, they only go forward and nothing was damaged; else, or when a seek
gives other frames or pixels, it decodes from the stream start), and feeds the stages frames
[decode_start, decode_end): the frames before and after that the stages' `frame_context` says an
output depends on (clipped to the range, as a single run is), widened to the stages' batch
grouping. Every decoded frame's sha256 is checked against input.framehash. Outputs of pre-roll
and post-roll frames are dropped, so each frame's output, residual, extra maps and per-frame
record come from exactly one segment. Stages whose output depends on every earlier frame
(stabilise, deblur, deinterlace) are refused with --ray.

The head keeps at most one task per worker CPU and one more in flight (memory does not grow with
the video). A task whose worker dies is retried (`MAX_RETRIES`); when retries run out, or a task
raises, the run fails and the bundle directory is discarded, so nothing half-written remains."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forensic_vsr.bundle.frames import build_stages, chain_outputs, frame_layers
from forensic_vsr.bundle.maps import FrameMaps, MapSpec
from forensic_vsr.environment import environment_report
from forensic_vsr.errors import FvsrError, IntegrityError, UsageError
from forensic_vsr.integrity import framehash
from forensic_vsr.media import DecodedFrame, VideoReader, file_sha256, planes_sha256
from forensic_vsr.models.registry import ResolvedModel
from forensic_vsr.models.tasks import op_name
from forensic_vsr.ops.stages import Done, Key, Planes, Stage
from forensic_vsr.recipe import Recipe, bounded_frames, decide_recipe

RAY_MISSING = "--ray needs the scale extra: pip install 'forensic-vsr[scale]'"
MAX_RETRIES = 2  # a task whose worker process dies is run again this many times
SEGMENT_FRAMES = 16
MAPS_IN_WORKERS = "each frame's layers and flagged figures computed in its segment's worker (bundle.maps.MapLayers), written here"
# What the output samples depend on besides the recipe: a worker must run the versions this process runs.
SAME_LIBRARIES = ("forensic-vsr", "numpy", "torch", "av", "ffmpeg_libraries")
# Fault injection for tests/test_ray.py, read where fvsr runs and sent with each job:
# "SEGMENT:MARKER" makes the first attempt of segment SEGMENT exit its worker process halfway
# through the segment (MARKER, a file path, records that it did); "SEGMENT:" makes every attempt exit.
CRASH_HOOK = "FVSR_RAY_TEST_CRASH"


@dataclass(frozen=True)
class RayOptions:
    """What the examiner asked for: where the cluster is, and how the range is cut."""

    address: str  # "local": a Ray runtime started here on 127.0.0.1; else a cluster to join
    workers: int | None = None  # CPUs of the local runtime (default: this machine's)
    segment_frames: int = SEGMENT_FRAMES


def ray_options(address: str | None, workers: int | None, segment_frames: int | None) -> RayOptions | None:
    """--ray, --ray-workers, --ray-segment-frames (or a batch job's ray options), checked."""
    if address is None:
        if workers is not None or segment_frames is not None:
            raise UsageError("--ray-workers and --ray-segment-frames need --ray local|ADDRESS")
        return None
    for name, value in (("--ray-workers", workers), ("--ray-segment-frames", segment_frames)):
        if value is not None and value < 1:
            raise UsageError(f"{name} {value}: must be at least 1")
    if workers is not None and address != "local":
        raise UsageError("--ray-workers is for --ray local; a cluster has the workers it has")
    return RayOptions(address, workers, segment_frames or SEGMENT_FRAMES)


def import_ray() -> Any:
    """The ray module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


@dataclass(frozen=True)
class Segment:
    start: int  # first frame whose output the segment gives
    end: int  # one past the last
    decode_start: int  # first frame fed to the stages (pre-roll)
    decode_end: int  # one past the last frame fed (post-roll)

    def to_json(self) -> dict[str, int]:
        return {"start": self.start, "end": self.end, "decode_start": self.decode_start, "decode_end": self.decode_end}


@dataclass(frozen=True)
class SegmentPlan:
    segments: tuple[Segment, ...]
    frames_before: int  # frames before a frame that its output depends on, over all stages
    frames_after: int
    batch_alignment: int  # segments start on a multiple of this from the range start: the stages' batch grouping
    segment_frames: int

    def to_json(self) -> dict[str, Any]:
        return {
            "segment_frames": self.segment_frames,
            "frames_before": self.frames_before,
            "frames_after": self.frames_after,
            "batch_alignment": self.batch_alignment,
            "segments": [s.to_json() for s in self.segments],
        }


def plan_segments(stages: list[Stage], start: int, end: int, segment_frames: int) -> SegmentPlan:
    """Cut [start, end) into segments of `segment_frames` (rounded up to the batch grouping).
    A stage's outputs depend on the frames its `frame_context` names, and on nothing else but
    the range's ends (a window is clipped there in a single run too), so feeding each segment
    the context of every stage after it, summed, gives the same outputs for its frames."""
    for stage in stages:
        if stage.frame_context is None:
            raise UsageError(
                f"--ray: {op_name(stage.model)} depends on every earlier frame of the range, so it cannot be split into segments: "
                "run it without --ray"
            )
    contexts = [s.frame_context for s in stages if s.frame_context is not None]
    before, after = sum(c[0] for c in contexts), sum(c[1] for c in contexts)
    align = math.lcm(*(s.batch for s in stages))
    length = -(-segment_frames // align) * align

    def aligned(frame: int, up: bool) -> int:
        steps = (frame - start) / align
        return start + (math.ceil(steps) if up else math.floor(steps)) * align

    segments = tuple(
        Segment(s, min(s + length, end), max(start, aligned(s - before, False)), min(end, aligned(min(s + length, end) + after, True)))
        for s in range(start, end, length)
    )
    return SegmentPlan(segments, before, after, align, length)


def plan_lines(evidence: Path, recipe: Recipe, options: RayOptions) -> list[str]:
    """`fvsr enhance --ray ... --dry-run`: the segment plan a run would make (frames counted from
    packets, as the dry run's other lines; the run counts them in the ingest)."""
    model, _decision = decide_recipe(recipe)
    with VideoReader(evidence, rate=recipe.rate) as reader:
        stages, _siting, _project = build_stages(recipe, model, reader.info)
        n = sum(1 for _ in reader.packet_timestamps())
    start, end = bounded_frames(recipe.frames, n) if recipe.frames else (0, n)
    plan = plan_segments(stages, start, end, options.segment_frames)
    where = "a Ray runtime started here" if options.address == "local" else f"the Ray cluster at {options.address}"
    lines = [
        f"ray: {len(plan.segments)} segments of {plan.segment_frames} frames on {where}; each fed {plan.frames_before} frames before "
        f"and {plan.frames_after} after (the operations' context), segments aligned to batches of {plan.batch_alignment}"
    ]
    shown = plan.segments[:12]
    lines += [f"  segment {i}: frames {s.start}-{s.end - 1}, decodes {s.decode_start}-{s.decode_end - 1}" for i, s in enumerate(shown)]
    if len(plan.segments) > len(shown):
        lines.append(f"  ... and {len(plan.segments) - len(shown)} more")
    return lines


@dataclass(frozen=True)
class SegmentJob:
    index: int
    segment: Segment
    evidence: str
    evidence_sha256: str
    recipe: Recipe
    model: ResolvedModel
    expected: tuple[str, ...]  # input.framehash sha256 of frames decode_start..decode_end-1
    pts: tuple[int, ...] | None  # their file timestamps, to seek to; None: decode from the stream start
    crash: str | None = None  # CRASH_HOOK
    maps: MapSpec | None = None  # the maps' layers are computed in the worker with this (None: no maps)


@dataclass(frozen=True)
class SegmentResult:
    index: int
    done: Done  # (key, the main stage's input planes, its output planes) of frames start..end-1
    extras: tuple[dict[str, np.ndarray] | None, ...]  # (None each where the maps came computed)
    maps: tuple[FrameMaps, ...] | None  # the layers of frames start..end-1 (bundle.maps.MapLayers)
    residuals: tuple[float, ...]
    plane_residuals: tuple[list[float], ...]
    per_frame: tuple[tuple[dict[str, Any], ...], ...]  # per stage, entries of frames start..end-1
    devices: tuple[str, ...]  # per stage
    batches: tuple[int, ...]
    worker: dict[str, Any]
    seconds: float
    cpu_seconds: dict[str, float]  # CPU seconds of the worker process: {"chain": ..., "maps": ...}
    decode: str


@functools.cache
def _evidence_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def run_segment(job: SegmentJob) -> SegmentResult:
    """One segment's frames through the stages, in a Ray worker (or anywhere)."""
    began, cpu = time.monotonic(), time.process_time()
    seg, path = job.segment, Path(job.evidence)
    stat = path.stat()
    sha = _evidence_sha256(str(path), stat.st_size, stat.st_mtime_ns)
    if sha != job.evidence_sha256:
        raise IntegrityError(f"{socket.gethostname()}: {path} has sha256 {sha[:16]}…, the ingest recorded {job.evidence_sha256[:16]}…")

    decode = "from the stream start"
    try:
        outputs, stages = _segment_outputs(job, seek=job.pts is not None)
        if job.pts is not None:
            decode = f"seek to the keyframe at or before pts {job.pts[0]}"
    except SeekMismatch as why:  # the pixels after a seek are not the ingest's: decode as the ingest did
        outputs, stages = _segment_outputs(job, seek=False)
        decode = f"from the stream start (the seek {why})"
    main = stages[-1]
    extras = [main.extras(key) for key, _, _ in outputs]  # taken for every output: nothing piles up
    keep = [i for i, ((index, _pts), _, _) in enumerate(outputs) if seg.start <= index < seg.end]
    if len(keep) != (seg.end - seg.start) * math.prod(s.frames_per_input for s in stages):
        raise IntegrityError(f"segment {job.index}: {len(keep)} outputs for frames {seg.start}-{seg.end - 1}")
    for name in ("residuals", "plane_residuals"):
        if getattr(main, name) and len(getattr(main, name)) != len(outputs):
            raise IntegrityError(f"segment {job.index}: {len(getattr(main, name))} {name} for {len(outputs)} outputs")
    chain_cpu = time.process_time() - cpu
    maps = frame_layers(job.maps, main, [outputs[i] for i in keep], [extras[i] for i in keep]) if job.maps else None
    return SegmentResult(
        index=job.index,
        done=[outputs[i] for i in keep],
        extras=tuple(None if maps else extras[i] for i in keep),
        maps=maps,
        residuals=tuple(main.residuals[i] for i in keep) if main.residuals else (),
        plane_residuals=tuple(main.plane_residuals[i] for i in keep) if main.plane_residuals else (),
        per_frame=tuple(tuple(f for f in s.per_frame if seg.start <= f["frame"] < seg.end) for s in stages),
        devices=tuple(s.device for s in stages),
        batches=tuple(s.batch for s in stages),
        worker=worker_environment(main.device),
        seconds=round(time.monotonic() - began, 3),
        cpu_seconds={"chain": round(chain_cpu, 3), "maps": round(time.process_time() - cpu - chain_cpu, 3)},
        decode=decode,
    )


class SeekMismatch(Exception):
    """A seek gave other frames (timestamps) or other pixels than the ingest decoded."""


def _segment_outputs(job: SegmentJob, seek: bool) -> tuple[list[tuple[Key, Planes, Planes]], list[Stage]]:
    seg, path = job.segment, Path(job.evidence)

    def check(index: int, planes: Planes) -> None:
        if job.crash and index == (seg.start + seg.end) // 2:  # mid-segment: frames already decoded and processed
            _crash(job.index, job.crash)
        got, want = planes_sha256(planes), job.expected[index - seg.decode_start]
        if got != want:
            if seek:
                raise SeekMismatch(f"gave frame {index} other pixels")
            raise IntegrityError(f"{socket.gethostname()}: frame {index} decodes to sha256 {got[:16]}…, input.framehash says {want[:16]}…")

    with VideoReader(path, rate=job.recipe.rate) as reader:
        stages, _siting, _project = build_stages(job.recipe, job.model, reader.info)
        frames = _after_seek(reader, job) if seek else reader.frames()
        return [d for done in chain_outputs(frames, stages, seg.decode_start, seg.decode_end, check) for d in done], stages


def _frames_from(reader: VideoReader, first: int) -> Iterator[DecodedFrame]:
    """Decoded frames from a seek that lands at or before `first`: a container whose index is
    coarse (MPEG program streams) may land after it, so the seek goes back 1, 4, then 16 seconds
    further; if it still lands after `first`, so do these frames (and _after_seek gives up)."""
    for back in (0, 1, 4, 16):
        frames = reader.frames_from(first - round(back / reader.info.time_base))
        head = next(frames, None)
        if head is None:
            return
        if head.file_pts <= first or back == 16:
            yield head
            yield from frames
            return


def _after_seek(reader: VideoReader, job: SegmentJob) -> Iterator[DecodedFrame]:
    """Frames decode_start..decode_end-1 after a seek, named by the ingest's timestamps."""
    seg, pts = job.segment, job.pts or ()
    index = seg.decode_start
    for decoded in _frames_from(reader, pts[0]):
        if decoded.file_pts < pts[0]:
            continue  # the keyframe's and those before the segment's first frame
        if index == seg.decode_end:
            return
        if decoded.file_pts != pts[index - seg.decode_start]:
            raise SeekMismatch(f"gave pts {decoded.file_pts} where frame {index} has {pts[index - seg.decode_start]}")
        yield dataclasses.replace(decoded, index=index)
        index += 1
    if index < seg.decode_end:
        raise SeekMismatch(f"ended before frame {index}")


def seek_timestamps(ingest: dict[str, Any]) -> list[int] | None:
    """The evidence.ingest record's per-frame timestamps, if a worker may seek by them: the file
    carries them (not derived), they only go forward (no backward jump, no duplicate), and the
    decoder reported no damage. None: every segment decodes from the stream start."""
    pts, damage = ingest["pts"], ingest["decode"]
    if "derived" in ingest["timing"] or any(b <= a for a, b in itertools.pairwise(pts)):
        return None
    if damage["corrupt_packets"] or damage["decode_errors"] or damage["corrupt_frames"] or damage["concealed_errors"]:
        return None
    return list(pts)


def worker_environment(device: str) -> dict[str, Any]:
    """Where a segment ran: host, process, Ray node, and the environment report of the step."""
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return {"host": socket.gethostname(), "pid": os.getpid(), "ray_node_id": node, **environment_report(device)}


def _crash(index: int, spec: str) -> None:
    segment, _, marker = spec.partition(":")
    if int(segment) != index or (marker and os.path.exists(marker)):
        return
    if marker:
        Path(marker).write_text(f"worker {os.getpid()} exited in segment {index}\n")
    os._exit(1)


class RaySource:
    """The pass's finished frames from Ray tasks, in frame order (a bundle.frames.FrameSource)."""

    def __init__(
        self,
        options: RayOptions,
        evidence: Path,
        evidence_sha256: str,
        input_framehash: Path,
        ingest: dict[str, Any],
        recipe: Recipe,
        model: ResolvedModel,
    ) -> None:
        self.options, self.evidence, self.evidence_sha256 = options, evidence, evidence_sha256
        self.input_framehash, self.recipe, self.model = input_framehash, recipe, model
        self.pts = seek_timestamps(ingest)
        self._extras: dict[Key, dict[str, np.ndarray] | None] = {}
        self._maps: dict[Key, FrameMaps] = {}
        self._record: dict[str, Any] | None = None
        self.map_spec: MapSpec | None = None

    def use_maps(self, spec: MapSpec | None) -> None:
        """The workers compute the maps' layers (with `spec`, the writer's); this process writes them."""
        self.map_spec = spec

    def frame_maps(self, key: Key) -> FrameMaps | None:
        return self._maps.pop(key, None)

    def extras(self, key: Key) -> dict[str, np.ndarray] | None:
        return self._extras.pop(key, None)

    def record(self) -> dict[str, Any] | None:
        return self._record

    def outputs(self, reader: VideoReader, stages: list[Stage], start: int, end: int) -> Iterator[Done]:
        ray = import_ray()
        plan = plan_segments(stages, start, end, self.options.segment_frames)
        with open(self.input_framehash, encoding="ascii") as f:
            expected = [line.sha256 for line in framehash.parse(f)]
        started_here = not ray.is_initialized()
        if started_here:
            _connect(ray, self.options)
        try:
            task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(run_segment)
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            jobs = deque(
                SegmentJob(
                    i,
                    seg,
                    str(self.evidence.resolve()),
                    self.evidence_sha256,
                    self.recipe,
                    self.model,
                    tuple(expected[seg.decode_start : seg.decode_end]),
                    None if self.pts is None else tuple(self.pts[seg.decode_start : seg.decode_end]),
                    os.environ.get(CRASH_HOOK),
                    self.map_spec,
                )
                for i, seg in enumerate(plan.segments)
            )
            in_flight: deque[tuple[SegmentJob, Any]] = deque()
            ran: list[dict[str, Any]] = []
            workers: dict[tuple[Any, ...], int] = {}
            while jobs or in_flight:
                while jobs and len(in_flight) <= cpus:
                    job = jobs.popleft()
                    in_flight.append((job, task.remote(job)))
                job, ref = in_flight.popleft()
                result = _result(ray, job, ref)
                self.absorb(stages, result)
                key = (result.worker["ray_node_id"], result.worker["host"], result.worker["pid"])
                n = workers.setdefault(key, len(workers))
                ran.append(
                    {**job.segment.to_json(), "worker": n, "seconds": result.seconds, "cpu_seconds": result.cpu_seconds}
                    | {"decode": result.decode, "worker_env": result.worker}
                )
                yield result.done
            self._record = _distributed_record(ray, self.options, plan, ran, cpus) | {"maps": MAPS_IN_WORKERS if self.map_spec else None}
        finally:
            if started_here:
                ray.shutdown()

    def absorb(self, stages: list[Stage], result: SegmentResult) -> None:
        """The segment's per-frame records into the stages here, as if they had run here; what ran
        there must be what would have run here."""
        here = tuple(s.device for s in stages), tuple(s.batch for s in stages)
        mine, theirs = environment_report(stages[-1].device)["libraries"], result.worker["libraries"]
        differ = [f"{name} {theirs.get(name)} (here {mine[name]})" for name in SAME_LIBRARIES if theirs.get(name) != mine[name]]
        if differ:
            raise IntegrityError(f"segment {result.index} ran on {result.worker['host']} with other libraries: {', '.join(differ)}")
        if (result.devices, result.batches) != here:
            raise IntegrityError(
                f"segment {result.index} ran on {result.worker['host']} with devices {list(result.devices)} and batches "
                f"{list(result.batches)}; this machine would run {list(here[0])}, {list(here[1])}: give --device and --batch explicitly"
            )
        main = stages[-1]
        main.residuals.extend(result.residuals)
        main.plane_residuals.extend(result.plane_residuals)
        for stage, entries in zip(stages, result.per_frame, strict=True):
            stage.per_frame.extend(entries)
        self._extras.update((key, extra) for (key, _, _), extra in zip(result.done, result.extras, strict=True))
        got, want = None if result.maps is None else len(result.maps), None if self.map_spec is None else len(result.done)
        if got != want:
            raise IntegrityError(f"segment {result.index}: the worker computed the maps of {got} frames, {want} expected")
        self._maps.update((key, maps) for (key, _, _), maps in zip(result.done, result.maps or (), strict=False))


def _connect(ray: Any, options: RayOptions) -> None:
    if options.address == "local":
        ray.init(
            address="local",
            num_cpus=options.workers or os.cpu_count() or 1,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    else:
        try:
            ray.init(address=options.address, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"--ray {options.address}: cannot join the Ray cluster ({str(exc).splitlines()[0]})") from None


def _result(ray: Any, job: SegmentJob, ref: Any) -> SegmentResult:
    seg = job.segment
    where = f"Ray segment {job.index} (frames {seg.start}-{seg.end - 1})"
    try:
        result: SegmentResult = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, FvsrError):
            raise type(cause)(f"{where}: {cause}") from None
        raise IntegrityError(f"{where} failed: {str(exc).splitlines()[0]}") from None
    except ray.exceptions.RayError as exc:
        raise IntegrityError(
            f"{where}: its worker died and {MAX_RETRIES} retries did not finish it ({type(exc).__name__}); nothing was written"
        ) from None
    return result


def _distributed_record(ray: Any, options: RayOptions, plan: SegmentPlan, ran: list[dict[str, Any]], cpus: int) -> dict[str, Any]:
    """What the step record says of a --ray run: the plan, and what ran where (one environment
    per worker process)."""
    envs: dict[int, dict[str, Any]] = {}
    for entry in ran:
        envs.setdefault(entry["worker"], entry.pop("worker_env"))
    return {
        "ray": ray.__version__,
        "address": options.address,
        "cluster_cpus": cpus,
        "max_retries": MAX_RETRIES,
        "decode": "each segment seeks to the keyframe at or before its first frame where the timestamps allow, else decodes from the "
        "stream start; frames before its pre-roll discarded; every decoded frame's sha256 checked against input.framehash "
        "(a seek that gives other frames or pixels: the segment is decoded again from the start)",
        "plan": {**plan.to_json(), "segments": ran},
        "workers": [envs[n] for n in sorted(envs)],
    }
