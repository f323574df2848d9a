"""The learned models on the CPU (issue 17): where a 768x576 frame's time goes, what each
candidate speed-up gives, and whether it keeps the output bit-identical.

`stages` times each stage of fidelity-sr-x2/x4 on one frame of a 768x576 clip (bikes.mp4 scaled
by ffmpeg) and every variant side by side in one process: the network in torch's default layout,
in channels_last and in oneDNN's blocked layout (models/blocked.py); the scale head likewise and
with several strip heights; the projection with and without the repeated residual; each at 1 and
2 torch threads. Every variant's output is compared with the default path's to the bit.

`enhance` runs `fvsr enhance` end to end on the clip with this tree and with a `--before` tree
(the same command, PYTHONPATH pointing at the other source), at the given torch thread counts
(OMP_NUM_THREADS), and compares output.framehash and every maps/*.framehash between them.

    python bench/bench_cpu.py stages [--repeat 3]
    python bench/bench_cpu.py interleaved [--repeat 3]
    python bench/bench_cpu.py enhance --before /tmp/fvsr-before [--frames 10] [--frames-x4 3] [--repeat 3]

Medians of `--repeat` runs; the load average is printed beside every figure (this machine is
shared). Results: bench/results/cpu-<mode>.json and docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLIP_SIZE = (768, 576)
MODELS = (("fidelity-sr-x2", 2), ("fidelity-sr-x4", 4))


def load() -> float:
    return round(os.getloadavg()[0], 2)


def make_clip(path: Path, frames: int) -> Path:
    """`frames` frames of bikes.mp4 scaled to 768x576 (H.264, yuv420p)."""
    if not path.exists():
        w, h = CLIP_SIZE
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(ROOT / "data" / "clips" / "bikes.mp4"),
             "-vf", f"scale={w}:{h}:flags=bicubic,setsar=1", "-frames:v", str(frames),
             "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(path)],
            check=True,
        )  # fmt: skip
    return path


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, dict[str, float]]:
    """The result of the last call, and the median seconds over `repeat` calls after a warm-up."""
    fn()
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "load": load()}


def stages(repeat: int) -> list[dict[str, Any]]:
    from forensic_vsr.media import VideoReader, frame_planes

    clip = make_clip(Path(tempfile.gettempdir()) / "fvsr-bench-768x576.mp4", 10)
    with VideoReader(clip) as reader:
        planes = next(iter(frame_planes(d.frame) for d in reader.frames()))
    rows: list[dict[str, Any]] = []
    for model_id, scale in MODELS:
        model_stages(model_id, scale, planes[0], planes[1], repeat, rows)
    return rows


def model_stages(model_id: str, scale: int, y: np.ndarray, u: np.ndarray, repeat: int, rows: list[dict[str, Any]]) -> None:
    import torch

    from forensic_vsr.models.registry import resolve
    from forensic_vsr.models.runner import PlaneUpscaler, to_samples
    from forensic_vsr.ops.consistency import Projector
    from forensic_vsr.ops.resample import upscale_plane
    from forensic_vsr.uncertainty import head as head_mod
    from forensic_vsr.uncertainty.exact import ExactMaps, to_gray16

    def row(stage: str, variant: str, threads: int, stats: dict[str, float], identical: bool | None) -> None:
        rows.append({"model": model_id, "stage": stage, "variant": variant, "threads": threads, **stats, "identical": identical})
        print(json.dumps(rows[-1]), flush=True)

    model = resolve(model_id, None)
    net = PlaneUpscaler(model, "cpu", tile=0)
    t = torch.from_numpy(y.astype(np.float32) / 255)[None, None]
    with torch.inference_mode():
        ref = net.net(t)
    variants: dict[str, Callable[[], torch.Tensor]] = {
        "default layout (NCHW)": lambda: net.net(t),
        "channels_last": lambda: net.net.to(memory_format=torch.channels_last)(t.contiguous(memory_format=torch.channels_last)),
        "oneDNN blocked layout": lambda: net.blocked(t),  # type: ignore[misc]
    }
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, fn in variants.items():
            with torch.inference_mode():
                out, stats = timed(fn, repeat)
            net.net.to(memory_format=torch.contiguous_format)
            row("network forward", name, threads, stats, bool(torch.equal(out.contiguous(), ref)))
    torch.set_num_threads(2)
    x_hat = ref[0, 0].numpy().astype(np.float64) * 255
    proj = Projector(576 * scale, 768 * scale, scale)
    yd = y.astype(np.float64)

    def residual_twice() -> np.ndarray:
        out = to_samples(proj.project_in_range(x_hat, yd, 255, 0.25), 255, np.uint8)
        proj.rms_residual(out, yd)  # what PlaneStage.luma measured again before issue 17
        return out

    base, stats = timed(residual_twice, repeat)
    row("projection", "residual measured twice (before)", 2, stats, True)
    out, stats = timed(lambda: proj.project_to_samples(x_hat, yd, 255, 0.25)[0].astype(np.uint8), repeat)
    row("projection", "residual measured once", 2, stats, bool(np.array_equal(out, base)))
    _, stats = timed(lambda: upscale_plane(u, kind="lanczos", scale=scale, out_width=384 * scale, out_height=288 * scale), repeat)
    row("chroma (lanczos, one plane)", "-", 2, stats, None)
    maps = ExactMaps(576 * scale, 768 * scale, scale)
    (s, r), stats = timed(lambda: maps.compute(y, base), repeat)
    row("exact maps S, R", "-", 2, stats, None)
    _, stats = timed(lambda: (to_gray16(s), to_gray16(r)), repeat)
    row("maps to gray16 (S, R)", "-", 2, stats, None)
    cal = model.card.data["uncertainty"][f"x{scale}"]  # type: ignore[union-attr]
    learned = head_mod.LearnedScale(cal["head"], model.card.path.parent, scale)  # type: ignore[union-attr]
    x8, lr = base.astype(np.float32), y.astype(np.float32)
    _, stats = timed(lambda: head_mod.features(x8, lr, s, scale), repeat)
    row("scale head: features", "-", 2, stats, None)
    packed, strip_rows = learned.packed, head_mod.STRIP_ROWS
    learned.packed = None
    want = learned(x8, lr, s)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, layout, rows_per_strip in (("default layout", None, 64), ("oneDNN blocked", packed, 64), ("oneDNN blocked", packed, 128)):
            learned.packed, head_mod.STRIP_ROWS = layout, rows_per_strip
            got, stats = timed(lambda: learned(x8, lr, s), repeat)
            row("scale head: network", f"{name}, {rows_per_strip}-row strips", threads, stats, bool(np.array_equal(got, want)))
    learned.packed, head_mod.STRIP_ROWS = packed, strip_rows
    torch.set_num_threads(2)


def interleaved(repeat: int) -> list[dict[str, Any]]:
    """The network forward, default and blocked layout called alternately (ABAB), so that a
    drift of the machine's load hits both alike."""
    import torch

    from forensic_vsr.media import VideoReader, frame_planes
    from forensic_vsr.models.registry import resolve
    from forensic_vsr.models.runner import PlaneUpscaler

    with VideoReader(make_clip(Path(tempfile.gettempdir()) / "fvsr-bench-768x576.mp4", 10)) as reader:
        y = next(iter(frame_planes(d.frame)[0] for d in reader.frames()))
    t = torch.from_numpy(y.astype(np.float32) / 255)[None, None]
    rows = []
    for model_id, _scale in MODELS:
        net = PlaneUpscaler(resolve(model_id, None), "cpu", tile=0)
        for threads in (2, 1):
            torch.set_num_threads(threads)
            times: dict[str, list[float]] = {"default layout (NCHW)": [], "oneDNN blocked layout": []}
            with torch.inference_mode():
                net.net(t), net.blocked(t)  # type: ignore[misc]
                for _ in range(repeat):
                    for name, fn in zip(times, (net.net, net.blocked), strict=True):
                        t0 = time.perf_counter()
                        fn(t)  # type: ignore[misc]
                        times[name].append(time.perf_counter() - t0)
            for name, ts in times.items():
                median = round(statistics.median(ts), 3)
                rows.append({"model": model_id, "variant": name, "threads": threads, "median_s": median, "load": load()})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _hashes(path: Path) -> list[str]:
    return [line.rsplit(",", 1)[-1].strip() for line in path.read_text().splitlines() if line and not line.startswith("#")]


def enhance(before: Path, frames: int, frames_x4: int, repeat: int, threads: list[str], only: list[str]) -> list[dict[str, Any]]:
    """Each case with the before tree at torch's default threads, then this tree at each of
    `threads`; every run's frame and map hashes are compared with the before tree's."""
    from forensic_vsr.audit.keys import generate

    work = Path(tempfile.mkdtemp(prefix="fvsr-bench-cpu-"))
    clip = make_clip(work / "clip768.mp4", frames)
    generate(work / "k.key", "Bench", b"bench-passphrase")
    cases = {"x2-no-maps": ("fidelity-sr-x2", ["--no-maps"], frames), "x2-maps": ("fidelity-sr-x2", [], frames)}
    cases["x4-maps"] = ("fidelity-sr-x4", [], frames_x4)
    rows = []
    for model, extra, n_frames in (cases[name] for name in only):
        want: dict[str, list[str]] | None = None
        for tree_name, tree, n in [("before", before, "default"), *(("after", ROOT, n) for n in threads)]:
            env = {**os.environ, "PYTHONPATH": str(tree), "FVSR_KEY_PASSPHRASE": "bench-passphrase"}
            if n != "default":
                env["OMP_NUM_THREADS"] = n
            times, cpu, loads, identical = [], [], [], True
            for i in range(repeat):
                bundle = work / f"{model}-{len(extra)}-{n}-{tree_name}-{i}"
                cmd = [sys.executable, "-m", "forensic_vsr", "enhance", str(clip), "-o", str(bundle), "--key", str(work / "k.key"),
                       "--model", model, "--frames", f"0:{n_frames}", "--mode", "investigative", "--no-report", "-q", *extra]  # fmt: skip
                loads.append(load())
                t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(cmd, check=True, env=env, cwd=tree, stdin=subprocess.DEVNULL)
                times.append(time.perf_counter() - t0)
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)  # less sensitive to others' load
                streams = {"output": _hashes(bundle / "output.framehash")}
                streams |= {f"maps/{p.stem}": _hashes(p) for p in sorted((bundle / "maps").glob("*.framehash"))}
                want = want or streams
                identical &= streams == want
            median = statistics.median(times)
            rows.append({
                "model": model, "maps": not extra, "tree": tree_name, "threads": n, "frames": n_frames,
                "median_s": round(median, 2), "s_per_frame": round(median / n_frames, 3), "runs_s": [round(t, 2) for t in times],
                "median_cpu_s": round(statistics.median(cpu), 2), "load_at_start": loads, "hashes_identical_to_before": identical,
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["stages", "interleaved", "enhance"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=10, help="frames of the x2 runs (enhance)")
    ap.add_argument("--frames-x4", type=int, default=3, help="frames of the x4 run (enhance)")
    ap.add_argument("--before", type=Path, help="source tree to compare with (enhance)")
    ap.add_argument("--threads", default="default,1", help="comma-separated OMP_NUM_THREADS values (enhance)")
    ap.add_argument("--tag", default="", help="suffix of the results file")
    ap.add_argument("--cases", default="x2-no-maps,x2-maps,x4-maps", help="comma-separated (enhance)")
    args = ap.parse_args()
    if args.mode == "stages":
        rows = stages(args.repeat)
    elif args.mode == "interleaved":
        rows = interleaved(args.repeat)
    else:
        if args.before is None:
            ap.error("enhance needs --before TREE")
        rows = enhance(args.before.resolve(), args.frames, args.frames_x4, args.repeat, args.threads.split(","), args.cases.split(","))
    out = ROOT / "bench" / "results" / f"cpu-{args.mode}{args.tag}.json"
    out.write_text(json.dumps({"cores": os.cpu_count(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
