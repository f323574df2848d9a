"""`fvsr enhance --ray`: a real Ray cluster on this machine (a head with 2 worker CPUs, started
here and stopped by its process id), the range cut into segments, and a bundle whose frames,
Merkle roots, master packets and maps are those of a run in one process. A worker that dies
mid-segment is retried; one that dies every time fails the run and leaves no bundle."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest

from forensic_vsr.bundle.frames import build_stages
from forensic_vsr.bundle.maps import MapSpec
from forensic_vsr.distributed import CRASH_HOOK, MAPS_IN_WORKERS, RAY_MISSING, RayOptions, RaySource, SegmentResult, seek_timestamps
from forensic_vsr.environment import environment_report
from forensic_vsr.errors import IntegrityError
from forensic_vsr.media import VideoReader
from forensic_vsr.recipe import decide_recipe, recipe_from_options
from tests.helpers import record, run_fvsr, step

try:
    import ray  # noqa: F401
except ImportError as exc:  # the scale extra: scripts/setup.sh installs it
    pytest.skip(f"ray is not installed ({exc}): pip install 'forensic-vsr[scale]'", allow_module_level=True)

FRAMES = "0:12"
SEGMENT = "4"  # 12 frames: 3 segments
# recipe -> (its options, frames per segment); each makes 3 segments. The learned model runs on
# 6 frames, in segments of 2: on a 2-core CPU it is the slow one. integrate runs on an --roi
# region (the workers crop as this process would) and writes its count/spread maps.
RECIPES = {
    "lanczos": (("--model", "lanczos"), 4),
    "fidelity-sr-x2": (("--model", "fidelity-sr-x2", "--frames", "0:6"), 2),
    "integrate": (("--model", "integrate", "--roi", "40,32,64,48"), 4),  # with its extra maps, on a region
}


QUIET = ("--include-dashboard=false", "--disable-usage-stats")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """`ray start --head --block` on 127.0.0.1 with 2 CPUs, its own temp dir and a fresh token;
    stopped by signalling that process (which stops what it started), never `ray stop`."""
    tmp = tempfile.mkdtemp(prefix="fvsr-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    # only Ray's own variables go to the clients: a copy of os.environ would carry whatever
    # FVSR_KEY_PASSPHRASE the calling shell exports (make exports the demo's) over the tests' one
    ray_env = {"RAY_TMPDIR": tmp, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **ray_env}
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2", *QUIET],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or head.poll() is not None:
                    pytest.fail("the Ray head did not start", pytrace=False)
                time.sleep(0.2)
        yield f"127.0.0.1:{port}", ray_env
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, carphone_distorted: Path, keypair: tuple[Path, Path]) -> Callable[[str], Path]:
    """The bundle of a recipe run in one process (made once per module)."""
    made: dict[str, Path] = {}

    def bundle(name: str) -> Path:
        if name not in made:
            made[name] = tmp_path_factory.mktemp("single") / name
            _enhance(carphone_distorted, made[name], keypair[0], *RECIPES[name][0]).check_returncode()
        return made[name]

    return bundle


def _enhance(evidence: Path, out: Path, key: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_fvsr("enhance", evidence, "-o", out, "--key", key, "--frames", FRAMES, "-q", *extra, env=env)


def _packets(path: Path) -> list[tuple[int | None, int | None, bool, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, p.dts, p.is_keyframe, bytes(p)) for p in c.demux(c.streams.video[0]) if p.size]


def _assert_same_bundle(single: Path, distributed: Path) -> None:
    """Every frame hash, Merkle root and map of the two bundles agree, and the master and map
    videos are the same bytes (muxed bit-exactly) holding the same packets."""
    for name in ("input.framehash", "output.framehash", *(p.name for p in (single / "maps").glob("*.framehash")), "flagged.json"):
        path = single / name if (single / name).exists() else single / "maps" / name
        assert path.read_bytes() == (distributed / path.relative_to(single)).read_bytes(), name
    for video in [single / "output" / "master.mkv", *(single / "maps").glob("*.mkv")]:
        assert _packets(video) == _packets(distributed / video.relative_to(single)), video.name
        assert video.read_bytes() == (distributed / video.relative_to(single)).read_bytes(), video.name
    assert record(single, "output.write")["frame_roots"] == record(distributed, "output.write")["frame_roots"]
    one, many = step(single), step(distributed)
    plan = many.pop("distributed")
    assert one == many  # the step record says the same of every frame, residual and registration
    assert len(plan["plan"]["segments"]) >= 3 and plan["workers"]
    assert {w["device"] for w in plan["workers"]} == {"cpu"} and all(w["pid"] and w["host"] for w in plan["workers"])
    # the maps' layers were computed in the workers (the same MapLayers code), only written here
    assert plan["maps"] == MAPS_IN_WORKERS and all(s["cpu_seconds"]["maps"] > 0 for s in plan["plan"]["segments"])


@pytest.mark.parametrize("name", list(RECIPES))
def test_ray_bundle_is_the_single_process_bundle(
    name: str,
    cluster: tuple[str, dict[str, str]],
    single: Callable[[str], Path],
    carphone_distorted: Path,
    keypair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    address, env = cluster
    out = tmp_path / "ray"
    options, segment = RECIPES[name]
    proc = _enhance(carphone_distorted, out, keypair[0], *options, "--ray", address, "--ray-segment-frames", str(segment), env=env)
    assert proc.returncode == 0, proc.stderr
    _assert_same_bundle(single(name), out)
    plan = step(out)["distributed"]["plan"]
    before = 3 if name == "integrate" else 0  # integrate's radius: each segment's pre-roll
    starts = (0, segment, 2 * segment)
    assert [(s["start"], s["end"], s["decode_start"]) for s in plan["segments"]] == [(s, s + segment, max(0, s - before)) for s in starts]
    # carphone's timestamps only go forward: every segment seeks (to its one keyframe, frame 0) by its first frame's pts
    pts = record(out, "evidence.ingest")["pts"]
    assert [s["decode"] for s in plan["segments"]] == [
        f"seek to the keyframe at or before pts {pts[s['decode_start']]}" for s in plan["segments"]
    ]
    if name == "lanczos":  # the segment plan is no part of what the outputs depend on
        proc = run_fvsr("verify", out, "--pubkey", keypair[1], "--evidence", carphone_distorted, "--reproduce")
        assert proc.returncode == 0, proc.stdout
        assert "12 output frames reproduced bit-exactly" in proc.stdout


def test_a_worker_killed_mid_segment_is_retried(
    single: Callable[[str], Path], carphone_distorted: Path, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    """--ray local (a runtime started by fvsr on this machine, 2 workers): segment 1's first
    attempt kills its worker process; Ray runs it again and the bundle is the same."""
    marker, out = tmp_path / "crashed", tmp_path / "ray"
    ray_local = ("--ray", "local", "--ray-workers", "2", "--ray-segment-frames", SEGMENT)
    proc = _enhance(carphone_distorted, out, keypair[0], *RECIPES["lanczos"][0], *ray_local, env={CRASH_HOOK: f"1:{marker}"})
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text().startswith("worker ")  # the first attempt did die
    _assert_same_bundle(single("lanczos"), out)


def test_a_worker_that_always_dies_fails_the_run_cleanly(
    cluster: tuple[str, dict[str, str]], carphone_distorted: Path, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    address, env = cluster
    out = tmp_path / "ray"
    proc = _enhance(carphone_distorted, out, keypair[0], "--ray", address, "--ray-segment-frames", SEGMENT, env={**env, CRASH_HOOK: "2:"})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "Ray segment 2 (frames 8-11): its worker died" in proc.stderr.strip().splitlines()[-1]
    assert not out.exists() and not list(tmp_path.glob(".ray.partial-*"))  # nothing half-written


def test_ray_refuses_operations_that_need_every_earlier_frame(carphone_distorted: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    proc = _enhance(carphone_distorted, tmp_path / "out", keypair[0], "--model", "stabilise", "--ray", "local")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "fvsr: error: --ray: stabilise depends on every earlier frame of the range, so it cannot be split into segments: "
        "run it without --ray"
    )
    assert not (tmp_path / "out").exists()


def test_without_ray_the_flag_says_how_to_install_it(carphone_distorted: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    """An interpreter on which `import ray` fails (a `ray` package that raises ImportError first
    on the path): one line, exit 2, nothing written."""
    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    path = os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])
    proc = _enhance(carphone_distorted, tmp_path / "out", keypair[0], "--ray", "local", env={"PYTHONPATH": path})
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"fvsr: error: {RAY_MISSING}"
    assert not (tmp_path / "out").exists()


def test_a_batch_job_runs_on_ray(
    cluster: tuple[str, dict[str, str]], carphone_distorted: Path, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    address, env = cluster
    jobs = tmp_path / "jobs.json"
    job = {"evidence": str(carphone_distorted), "output": "out", "frames": "0:4", "ray": address, "ray-segment-frames": 2}
    jobs.write_text(json.dumps({"jobs": [job]}))
    proc = run_fvsr("batch", jobs, "--key", keypair[0], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = step(tmp_path / "out")["distributed"]["plan"]
    assert [(s["start"], s["end"]) for s in plan["segments"]] == [(0, 2), (2, 4)]


def test_dry_run_shows_the_segment_plan(carphone_distorted: Path, tmp_path: Path) -> None:
    dry = ("--dry-run", "--model", "integrate", "--frames", "0:20", "--ray", "local", "--ray-segment-frames", "8")
    proc = run_fvsr("enhance", carphone_distorted, "-o", tmp_path / "out", *dry)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-3:] == [
        "  segment 0: frames 0-7, decodes 0-10",
        "  segment 1: frames 8-15, decodes 5-18",
        "  segment 2: frames 16-19, decodes 13-19",
    ]
    assert not (tmp_path / "out").exists()


def test_a_worker_with_other_libraries_or_devices_is_refused(carphone_distorted: Path) -> None:
    """What a segment's worker ran must be what would run here: another numpy (or device) fails
    the run with one line, before any of its frames is written."""
    recipe = recipe_from_options({})
    model, _ = decide_recipe(recipe)
    with VideoReader(carphone_distorted) as reader:
        stages, _, _ = build_stages(recipe, model, reader.info)
    env = environment_report("cpu")
    worker = {"host": "elsewhere", "pid": 1, "ray_node_id": None, **env}
    ok = SegmentResult(0, [], (), None, (), (), ((),), ("cpu",), (1,), worker, 0.0, {"chain": 0.0, "maps": 0.0}, "from the stream start")
    ingest = {"pts": [0], "timing": {}, "decode": {"corrupt_packets": 0, "decode_errors": 0, "corrupt_frames": 0, "concealed_errors": 0}}
    source = RaySource(RayOptions("local"), carphone_distorted, "0" * 64, carphone_distorted, ingest, recipe, model)
    source.absorb(stages, ok)
    other_numpy = {**worker, "libraries": {**env["libraries"], "numpy": "0.0.1"}}
    with pytest.raises(IntegrityError, match=r"segment 0 ran on elsewhere with other libraries: numpy 0\.0\.1 \(here "):
        source.absorb(stages, dataclasses.replace(ok, worker=other_numpy))
    with pytest.raises(IntegrityError, match=r"devices \['cuda:0'\].*give --device and --batch explicitly"):
        source.absorb(stages, dataclasses.replace(ok, devices=("cuda:0",)))
    source.use_maps(MapSpec(352, 288, 2, "yuv420p", {}, model))  # the workers were to compute the maps
    with pytest.raises(IntegrityError, match=r"segment 0: the worker computed the maps of None frames, 0 expected"):
        source.absorb(stages, ok)


def test_workers_seek_only_by_timestamps_that_only_go_forward(single: Callable[[str], Path]) -> None:
    ingest = record(single("lanczos"), "evidence.ingest")
    assert seek_timestamps(ingest) == ingest["pts"]
    jump = [*ingest["pts"][:5], ingest["pts"][2], *ingest["pts"][6:]]  # a spliced export: back, then on
    assert seek_timestamps({**ingest, "pts": jump}) is None
    assert seek_timestamps({**ingest, "timing": {**ingest["timing"], "derived": {"from": "--rate 25"}}}) is None
    assert seek_timestamps({**ingest, "decode": {**ingest["decode"], "concealed_errors": 1}}) is None
