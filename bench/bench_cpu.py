"""The learned models on the CPU (issue 17): where a 768x576 frame's time goes, what each
candidate speed-up gives, and whether it keeps the output bit-identical.

`stages` times each stage of fidelity-sr-x2/x4 on one frame of a 768x576 clip (bikes.mp4 scaled
by ffmpeg) and every variant side by side in one process: the network in torch's default layout,
in channels_last and in oneDNN's blocked layout (models/blocked.py); the scale head likewise and
with several strip heights; the projection with dense and with banded float64 products (and
with the repeated residual of before issue 17); each at 1 and 2 torch threads. Every variant's
output is compared with the default path's to the bit.

`enhance` runs `fvsr enhance` end to end on the clip with this tree and with `--before` trees
(the same command, PYTHONPATH pointing at the other source), the trees called in turn (ABAB) so
that a drift of the machine's load hits all alike, each at 1 frame and at N frames: the time per
frame is the difference divided by N - 1 (process start, model load and the first frame's
caches cancel). Output and map frame hashes are compared with the first tree's (the maps both
store: bundle format 3 recomputes S and R instead of storing them).

    python bench/bench_cpu.py stages [--repeat 3]
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/bench_cpu.py stages --cpu-time --tag=-cpu-time
    python bench/bench_cpu.py interleaved [--repeat 3]
    python bench/bench_cpu.py enhance --before /tmp/fvsr-before [--before TREE ...] [--frames 6] [--frames-x4 4] [--repeat 3]

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


# --cpu-time: CPU seconds of this process (run it with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1)
# at one torch thread: the work a variant does, much less sensitive to other jobs than wall time
CLOCK: Callable[[], float] = time.perf_counter
THREADS = (1, 2)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, dict[str, float]]:
    """The result of the last call, and the median seconds over `repeat` calls after a warm-up."""
    fn()
    times, out = [], None
    for _ in range(repeat):
        t0 = CLOCK()
        out = fn()
        times.append(CLOCK() - t0)
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


def dense_projector(height: int, width: int, scale: int) -> Any:
    """The projector with the dense float64 products it had before the banded ones."""
    from forensic_vsr.ops.consistency import Projector, axis_pinv

    class Dense(Projector):
        def degrade(self, x: np.ndarray) -> np.ndarray:
            return axis_pinv(self.height, self.scale)[0] @ x @ axis_pinv(self.width, self.scale)[0].T

        def pinv(self, r: np.ndarray) -> np.ndarray:
            return axis_pinv(self.height, self.scale)[1] @ r @ axis_pinv(self.width, self.scale)[1].T

    return Dense(height, width, scale)


def features_before_round_2(x_hat: np.ndarray, lr: np.ndarray, s: np.ndarray, scale: int) -> np.ndarray:
    """uncertainty.head.features as it was before it wrote its channels in place."""
    import cv2

    from forensic_vsr.ops.resample import upscale_plane

    h, w = x_hat.shape
    up = upscale_plane(np.clip(np.rint(lr), 0, 255).astype(np.uint8), kind="bicubic", scale=scale, out_width=w, out_height=h)
    x = x_hat.astype(np.float32)
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT) / 8
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT) / 8
    grad = np.sqrt(gx * gx + gy * gy)
    return np.stack([x / 255, up.astype(np.float32) / 255, s.astype(np.float32) / 16, grad / 64]).astype(np.float32)


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
    for threads in THREADS:
        torch.set_num_threads(threads)
        for name, fn in variants.items():
            with torch.inference_mode():
                out, stats = timed(fn, repeat)
            net.net.to(memory_format=torch.contiguous_format)
            row("network forward", name, threads, stats, bool(torch.equal(out.contiguous(), ref)))
    torch.set_num_threads(THREADS[-1])
    x_hat = ref[0, 0].numpy().astype(np.float64) * 255
    proj, dense = Projector(576 * scale, 768 * scale, scale), dense_projector(576 * scale, 768 * scale, scale)
    yd = y.astype(np.float64)

    def residual_twice() -> np.ndarray:
        out = to_samples(dense.project_in_range(x_hat, yd, 255, 0.25), 255, np.uint8)
        dense.rms_residual(out, yd)  # what PlaneStage.luma measured again before issue 17
        return out

    base, stats = timed(residual_twice, repeat)
    row("projection", "dense, residual measured twice (before)", THREADS[-1], stats, True)
    (out, want_r), stats = timed(lambda: dense.project_to_samples(x_hat, yd, 255, 0.25), repeat)
    row("projection", "dense, residual measured once", THREADS[-1], stats, bool(np.array_equal(out.astype(np.uint8), base)))
    (out, got_r), stats = timed(lambda: proj.project_to_samples(x_hat, yd, 255, 0.25), repeat)
    same = bool(np.array_equal(out.astype(np.uint8), base)) and round(got_r, 6) == round(want_r, 6)  # as recorded
    row("projection", "banded, residual measured once", THREADS[-1], stats, same)
    _, stats = timed(lambda: upscale_plane(u, kind="lanczos", scale=scale, out_width=384 * scale, out_height=288 * scale), repeat)
    row("chroma (lanczos, one plane)", "-", THREADS[-1], stats, None)
    maps = ExactMaps(576 * scale, 768 * scale, scale)
    (s, r), stats = timed(lambda: maps.compute(y, base), repeat)
    row("exact maps S, R", "-", THREADS[-1], stats, None)
    _, stats = timed(lambda: (to_gray16(s), to_gray16(r)), repeat)
    row("maps to gray16 (S, R)", "-", THREADS[-1], stats, None)
    cal = model.card.data["uncertainty"][f"x{scale}"]  # type: ignore[union-attr]
    learned = head_mod.LearnedScale(cal["head"], model.card.path.parent, scale)  # type: ignore[union-attr]
    x8, lr = base.astype(np.float32), y.astype(np.float32)
    want_f, stats = timed(lambda: features_before_round_2(x8, lr, s, scale), repeat)
    row("scale head: features", "stacked copy (before)", THREADS[-1], stats, True)
    got_f, stats = timed(lambda: head_mod.features(x8, lr, s, scale), repeat)
    row("scale head: features", "written in place", THREADS[-1], stats, bool(np.array_equal(got_f, want_f)))
    packed, strip_rows = learned.packed, learned.strip_rows
    learned.packed = None
    want = learned(x8, lr, s)
    for threads in THREADS:
        torch.set_num_threads(threads)
        for name, layout, rows_per_strip in (("default layout", None, 64), ("oneDNN blocked", packed, 64), ("oneDNN blocked", packed, 128)):
            learned.packed, learned.strip_rows = layout, rows_per_strip
            got, stats = timed(lambda: learned(x8, lr, s), repeat)
            row("scale head: network", f"{name}, {rows_per_strip}-row strips", threads, stats, bool(np.array_equal(got, want)))
    learned.packed, learned.strip_rows = packed, strip_rows
    torch.set_num_threads(THREADS[-1])


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


def _run(tree: Path, clip: Path, key: Path, bundle: Path, model: str, frames: int, extra: list[str], threads: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "FVSR_KEY_PASSPHRASE": "bench-passphrase"}
    if threads != "default":
        env["OMP_NUM_THREADS"] = threads
    cmd = [sys.executable, "-m", "forensic_vsr", "enhance", str(clip), "-o", str(bundle), "--key", str(key),
           "--model", model, "--frames", f"0:{frames}", "--mode", "investigative", "--no-report", "-q", *extra]  # fmt: skip
    start_load = load()
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=env, cwd=tree, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    streams = {"output": _hashes(bundle / "output.framehash")}
    streams |= {f"maps/{p.stem}": _hashes(p) for p in sorted((bundle / "maps").glob("*.framehash"))}
    cpu = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime  # less sensitive to others' load
    return {"wall": wall, "cpu": cpu, "load": start_load, "streams": streams}


def enhance(trees: list[Path], frames: int, frames_x4: int, repeat: int, threads: str, only: list[str]) -> list[dict[str, Any]]:
    """Each case on every tree in turn, `repeat` rounds, each run at 1 and at N frames; the time
    per frame is (median at N - median at 1) / (N - 1). Hashes of the streams two trees both
    write are compared with the first tree's."""
    from forensic_vsr.audit.keys import generate

    work = Path(tempfile.mkdtemp(prefix="fvsr-bench-cpu-"))
    clip = make_clip(work / "clip768.mp4", max(frames, frames_x4))
    key = work / "k.key"
    generate(key, "Bench", b"bench-passphrase")
    cases = {"x2-no-maps": ("fidelity-sr-x2", ["--no-maps"], frames), "x2-maps": ("fidelity-sr-x2", [], frames)}
    cases["x4-maps"] = ("fidelity-sr-x4", [], frames_x4)
    rows = []
    for case in only:
        model, extra, n = cases[case]
        runs: dict[tuple[int, int], list[dict[str, Any]]] = {(t, k): [] for t in range(len(trees)) for k in (1, n)}
        for i in range(repeat):
            for t, tree in enumerate(trees):
                for k in (1, n):
                    runs[t, k].append(_run(tree, clip, key, work / f"{case}-{t}-{k}-{i}", model, k, extra, threads))
                    print(case, tree, k, round(runs[t, k][-1]["wall"], 2), flush=True)
        want = runs[0, n][0]["streams"]
        for t, tree in enumerate(trees):
            med = {(k, m): statistics.median(r[m] for r in runs[t, k]) for k in (1, n) for m in ("wall", "cpu")}
            compared = sorted(set(want) & set(runs[t, n][0]["streams"]))
            rows.append({
                "case": case, "model": model, "maps": not extra, "tree": str(tree), "threads": threads, "frames": n,
                "median_s_1_frame": round(med[1, "wall"], 2), f"median_s_{n}_frames": round(med[n, "wall"], 2),
                "s_per_frame": round((med[n, "wall"] - med[1, "wall"]) / (n - 1), 3),
                "cpu_s_per_frame": round((med[n, "cpu"] - med[1, "cpu"]) / (n - 1), 3),
                "runs_s": {k: [round(r["wall"], 2) for r in runs[t, k]] for k in (1, n)},
                "load_at_start": [r["load"] for k in (1, n) for r in runs[t, k]],
                "streams_compared": compared,
                "hashes_identical": all(r["streams"][s] == want[s] for r in runs[t, n] for s in compared),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["stages", "interleaved", "enhance"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=6, help="frames of the x2 runs (enhance)")
    ap.add_argument("--frames-x4", type=int, default=4, help="frames of the x4 run (enhance)")
    ap.add_argument("--before", type=Path, action="append", default=[], help="source tree to compare with (enhance; repeatable)")
    ap.add_argument("--threads", default="default", help="OMP_NUM_THREADS of every run, or 'default' (enhance)")
    ap.add_argument("--tag", default="", help="suffix of the results file")
    ap.add_argument("--cpu-time", action="store_true", help="stages: CPU seconds at one torch thread instead of wall seconds")
    ap.add_argument("--cases", default="x2-no-maps,x2-maps,x4-maps", help="comma-separated (enhance)")
    args = ap.parse_args()
    if args.cpu_time:
        global CLOCK, THREADS
        CLOCK, THREADS = time.process_time, (1,)
    if args.mode == "stages":
        rows = stages(args.repeat)
    elif args.mode == "interleaved":
        rows = interleaved(args.repeat)
    else:
        if not args.before:
            ap.error("enhance needs --before TREE")
        trees = [b.resolve() for b in args.before] + [ROOT]
        rows = enhance(trees, args.frames, args.frames_x4, args.repeat, args.threads, args.cases.split(","))
    out = ROOT / "bench" / "results" / f"cpu-{args.mode}{args.tag}.json"
    out.parent.mkdir(exist_ok=True)  # ignored by git: absent in a fresh worktree
    out.write_text(json.dumps({"cores": os.cpu_count(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
