"""The GPU check of issue 17 item 3: one script for a session lent a GPU (made for an H200; about
6-8 minutes there), all figures into one JSON.

    OUT=/path python bench/gpu_check.py                       # on the GPU machine: --device cuda
    OUT=/tmp/gc python bench/gpu_check.py --device cpu --frames small    # dry run anywhere

Steps, each timed and recorded (a failing step is recorded and the next ones still run):
1. the machine: nvidia-smi -L, driver, torch's CUDA runtime and cuDNN;
2. the CUDA test subset: tests/test_gpu_path.py (its CUDA tests run only where CUDA is);
3. a clip made with ffmpeg (bikes.mp4 scaled to 1920x1080; `--frames small`: 320x180);
4. per case (fidelity-sr-x2, fidelity-sr-x4): `fvsr enhance` in evidential mode (maps, report:
   the full audit) while nvidia-smi samples GPU utilisation and memory every 200 ms; the same
   frames again without the report, whose output and map frame hashes must equal the first's
   (same-platform determinism), and one frame alone (steady frames per second from the
   difference); the CUDA facts the statement recorded; `fvsr verify --evidence` of the first
   bundle.
Result: $OUT/gpu_check.json (and each command's stderr tail in it). Exit status 0 only when
every step passed."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "gpu-check-passphrase"
CASES = (("fidelity-sr-x2", 2), ("fidelity-sr-x4", 4))
FULL = {"size": (1920, 1080), "frames": {"fidelity-sr-x2": 24, "fidelity-sr-x4": 8}}
SMALL = {"size": (320, 180), "frames": {"fidelity-sr-x2": 2, "fidelity-sr-x4": 2}}


def sh(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run a command; its status, seconds and the tail of its output."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL, cwd=ROOT)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 124, str(e.stdout or ""), f"timed out after {timeout} s"
    except FileNotFoundError as e:
        rc, out, err = 127, "", str(e)
    return {
        "cmd": " ".join(cmd),
        "rc": rc,
        "seconds": round(time.perf_counter() - t0, 2),
        "stdout_tail": out[-2000:],
        "stderr_tail": err[-2000:],
    }


class GpuSampler:
    """nvidia-smi's utilisation and memory every 200 ms while a run goes (nothing without nvidia-smi)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.proc: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "200"]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                util, mem = (float(v) for v in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((util, mem))

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"samples": 0}
        util = [u for u, _ in self.samples]
        return {
            "samples": len(util),
            "util_mean_pct": round(statistics.fmean(util), 1),
            "util_median_pct": statistics.median(util),
            "util_max_pct": max(util),
            "busy_fraction": round(sum(u >= 50 for u in util) / len(util), 3),
            "memory_max_mib": max(m for _, m in self.samples),
        }


def framehashes(bundle: Path) -> dict[str, list[str]]:
    files = [bundle / "output.framehash", *sorted((bundle / "maps").glob("*.framehash"))]
    return {
        f.name: [ln.rsplit(",", 1)[-1].strip() for ln in f.read_text().splitlines() if ln and not ln.startswith("#")]
        for f in files
        if f.exists()
    }


def statement_env(bundle: Path) -> dict[str, Any]:
    """internalParameters of the bundle's step.run statement (read, not verified: verify does that)."""
    import base64

    for line in (bundle / "chain.jsonl").read_text().splitlines():
        payload = json.loads(base64.b64decode(json.loads(line)["payload"]))
        if payload.get("type") == "step.run":
            return payload["body"]["predicate"]["buildDefinition"]["internalParameters"]  # type: ignore[no-any-return]
    return {}


def machine(env: dict[str, str]) -> dict[str, Any]:
    probe = (
        "import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
        "'cuda_available': c, 'torch_cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version() if c else None, "
        "'gpu': torch.cuda.get_device_name(0) if c else None, 'cpus': __import__('os').cpu_count()}))"
    )
    p = sh([sys.executable, "-c", probe], env)
    facts: dict[str, Any] = {"nvidia_smi": sh(["nvidia-smi", "-L"])["stdout_tail"].strip() or None}
    try:
        facts |= json.loads(p["stdout_tail"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        facts["probe"] = p
    return facts


def make_clip(path: Path, size: tuple[int, int], frames: int) -> dict[str, Any]:
    w, h = size
    return sh(["ffmpeg", "-v", "error", "-y", "-i", str(ROOT / "data" / "clips" / "bikes.mp4"),
               "-vf", f"scale={w}:{h}:flags=bicubic,setsar=1", "-frames:v", str(frames),
               "-c:v", "libx264", "-crf", "16", "-pix_fmt", "yuv420p", str(path)])  # fmt: skip


def case(model: str, frames: int, device: str, clip: Path, key: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """The full audit (evidential: maps, report), the same frames again without the report
    (investigative: the master's and maps' samples do not depend on the mode) for determinism,
    and one frame, so that (t_N - t_1) / (N - 1) gives the steady time per frame."""
    base = [sys.executable, "-m", "forensic_vsr", "enhance", str(clip), "--key", str(key), "--model", model, "--device", device, "-q"]
    out: dict[str, Any] = {"model": model, "frames": frames}
    runs = (
        ("full_audit", frames, ["--mode", "evidential"]),
        ("again_no_report", frames, ["--mode", "investigative", "--no-report"]),
        ("one_frame_no_report", 1, ["--mode", "investigative", "--no-report"]),
    )
    for name, n, extra in runs:
        with GpuSampler() as gpu:
            run = sh([*base, "--frames", f"0:{n}", "-o", str(work / f"{model}-{name}"), *extra], env)
        run["fps"] = round(n / run["seconds"], 3) if run["rc"] == 0 else None
        run["gpu"] = gpu.summary()
        out[name] = run
    if all(out[name]["rc"] == 0 for name, _, _ in runs):
        full = work / f"{model}-full_audit"
        first, second = framehashes(full), framehashes(work / f"{model}-again_no_report")
        out["streams"] = sorted(first)
        out["deterministic"] = first == second and bool(first)
        steady = (out["again_no_report"]["seconds"] - out["one_frame_no_report"]["seconds"]) / max(frames - 1, 1)
        out["steady_s_per_frame"] = round(steady, 3)
        out["steady_fps"] = round(1 / steady, 3) if steady > 0 else None
        env_record = statement_env(full)
        out["device_recorded"] = env_record.get("device")
        out["determinism_recorded"] = env_record.get("determinism", {})
        out["verify"] = sh(
            [sys.executable, "-m", "forensic_vsr", "verify", str(full), "--pubkey", f"{key}.pub", "--evidence", str(clip)], env
        )
        out["verify"]["stdout_tail"] = out["verify"]["stdout_tail"][-600:]
    out["passed"] = bool(out.get("deterministic")) and out.get("verify", {}).get("rc") == 0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument(
        "--frames", default="full", choices=["full", "small"], help="full: 1080p, 24 frames x2 and 8 x4; small: 320x180, 2 each"
    )
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")), help="result folder (default $OUT)")
    args = ap.parse_args()
    plan = FULL if args.frames == "full" else SMALL
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fvsr-gpu-check-"))
    env = {**os.environ, "FVSR_KEY_PASSPHRASE": PASSPHRASE, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    result: dict[str, Any] = {"device": args.device, "frames": args.frames, "size": plan["size"], "machine": machine(env)}
    result["tests"] = sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu_path.py"], env, timeout=300)
    clip = work / "clip.mp4"
    result["clip"] = make_clip(clip, plan["size"], max(plan["frames"].values()))
    key = work / "examiner.key"
    result["key"] = sh([sys.executable, "-c", f"from forensic_vsr.audit.keys import generate; from pathlib import Path; "
                        f"generate(Path({str(key)!r}), 'GPU check', {PASSPHRASE.encode()!r})"], env)  # fmt: skip
    result["cases"] = [case(m, plan["frames"][m], args.device, clip, key, work, env) for m, _ in CASES]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["passed"] = result["tests"]["rc"] == 0 and all(c["passed"] for c in result["cases"])
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    for c in result["cases"]:
        full, verify = c["full_audit"], c.get("verify", {}).get("rc")
        print(f"{c['model']}: rc {full['rc']}, {full['fps']} fps with start and report, {c.get('steady_fps')} steady, GPU {full['gpu']}")
        print(f"  deterministic {c.get('deterministic')}, verify rc {verify}")
    verdict = "PASSED" if result["passed"] else "FAILED"
    print(f"tests rc {result['tests']['rc']}; {result['seconds']} s; {verdict}; {args.out / 'gpu_check.json'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
