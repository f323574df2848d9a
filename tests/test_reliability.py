"""Reliability papercuts (issue 15, gap 8), each on the real CLI in a real process: termination
signals, unfinished build directories, full file systems, impossible output sizes, library
warnings on stderr, and argument bounds."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forensic_vsr import layout
from forensic_vsr.audit.completeness import partial_bundle_name, unfinished_run
from forensic_vsr.bundle.limits import check_output_size
from forensic_vsr.errors import UsageError
from forensic_vsr.media.limits import encoder_accepts
from forensic_vsr.recipe import parse_frames
from tests.helpers import PASSPHRASE, run_fvsr


def _start_enhance(evidence: Path, out: Path, key: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "forensic_vsr", "enhance", str(evidence), "-o", str(out), "--key", str(key), "-q", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FVSR_KEY_PASSPHRASE": PASSPHRASE},
    )


def _wait_mid_run(proc: subprocess.Popen[str], out: Path, timeout: float = 120) -> Path:
    """The run's hidden build directory, once its master holds encoded frames (the frame pass,
    with its worker threads, is running)."""
    partial = out.parent / layout.partial_dir_name(out.name, proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        master = partial / layout.MASTER
        if master.exists() and master.stat().st_size > 0:
            return partial
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it could be interrupted: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the run never reached the frame pass")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_termination_signal_unwinds_like_ctrl_c(sig: signal.Signals, carphone: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "case"
    proc = _start_enhance(carphone, out, keypair[0], "--model", "fidelity-sr-x2", "--frames", "0:120")
    _wait_mid_run(proc, out)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)  # worker threads must not hold the exit
    assert proc.returncode == 128 + sig
    assert stderr == f"fvsr: terminated by {sig.name}; nothing was written\n"
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor a .case.partial-PID


def test_ignored_sighup_stays_ignored(carphone: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    """`nohup fvsr enhance ...`: a hangup must not end the run."""
    out = tmp_path / "case"
    proc = subprocess.Popen(
        ["nohup", sys.executable, "-m", "forensic_vsr", "enhance", str(carphone), f"-o{out}", f"--key={keypair[0]}", "--frames=0:30", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FVSR_KEY_PASSPHRASE": PASSPHRASE},
    )
    _wait_mid_run(proc, out)
    proc.send_signal(signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert stdout == f"bundle written: {out}\n" and (out / layout.MANIFEST).is_file()


def test_partial_names_round_trip() -> None:
    assert partial_bundle_name(layout.partial_dir_name("case 7.b", 4242)) == ("case 7.b", 4242)
    for name in ("case", ".case.partial-", ".case.partial-12x", "case.partial-12", ".case.partial-12/"):
        assert partial_bundle_name(name) is None


def _verify(bundle: Path, pubkey: Path) -> subprocess.CompletedProcess[str]:
    return run_fvsr("verify", bundle, "--pubkey", pubkey)


def test_complete_looking_build_directory_is_incomplete(carphone_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    """A run caught between its manifest and the rename leaves a build directory with every file:
    still not a bundle. (Also through a link with a bundle's name.)"""
    partial = tmp_path / layout.partial_dir_name("b", 123)
    shutil.copytree(carphone_bundle, partial)
    checks = list(unfinished_run(partial))
    assert [c.status for c in checks] == ["INCOMPLETE"] and "never renamed into place" in checks[0].reason
    link = tmp_path / "b"
    link.symlink_to(partial.name)
    assert [c.status for c in unfinished_run(link)] == ["INCOMPLETE"]
    assert list(unfinished_run(carphone_bundle)) == []
    for target in (partial, link):
        proc = _verify(target, keypair[1])
        lines = proc.stdout.splitlines()
        assert proc.returncode == 1, proc.stdout
        assert lines[0].startswith("INCOMPLETE bundle.complete: .b.partial-123 is the build directory of run 123")
        assert "did not finish (it was never renamed into place)" in lines[0]
        assert lines[-1].startswith("INCOMPLETE: ") and proc.stderr == ""


def test_killed_run_leaves_an_incomplete_directory(carphone: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "case"
    proc = _start_enhance(carphone, out, keypair[0], "--frames", "0:120")
    partial = _wait_mid_run(proc, out)
    proc.kill()
    proc.communicate(timeout=60)
    assert partial.is_dir() and not out.exists()
    result = _verify(partial, keypair[1])
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("INCOMPLETE bundle.complete: ")
    assert result.stdout.splitlines()[-1].startswith("INCOMPLETE: ")
    assert "Traceback" not in result.stdout + result.stderr and "internal error" not in result.stderr


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """A real tmpfs of a given size (needs root and a kernel that lets us mount)."""
    mounted: list[Path] = []

    def mount(size_bytes: int) -> Path:
        mnt = tmp_path / f"fs{len(mounted)}"
        mnt.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(mnt)], capture_output=True, text=True)
        if done.returncode != 0:
            reason = f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode}); the disk-full test needs one"
            print(reason)
            pytest.skip(reason)
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.97], ids=["early", "middle", "late"])
def test_disk_full_is_one_line_and_leaves_nothing(
    fraction: float, small_fs: Callable[[int], Path], carphone: Path, carphone_bundle: Path, keypair: tuple[Path, Path]
) -> None:
    """The conftest bundle's own recipe on a file system a fraction of its size: the write fails
    in the master (early), the maps or preview (middle) or the report and manifest (late)."""
    size = sum(p.stat().st_size for p in carphone_bundle.rglob("*") if p.is_file())
    mnt = small_fs(max(64 * 1024, int(size * fraction)))
    out = mnt / "case"
    proc = run_fvsr(
        "enhance", carphone, "-o", out, "--key", keypair[0], "--frames", "0:40", "--case", "T-1", "--examiner", "Test Examiner", "-q"
    )
    assert proc.returncode == 2, proc.stderr
    assert re.fullmatch(
        rf"fvsr: error: no space left on {re.escape(str(mnt))} while writing (\S.* of )?{re.escape(str(out))}; nothing was written\n",
        proc.stderr,
    ), proc.stderr
    assert proc.stdout == "" and list(mnt.iterdir()) == []


def test_encoders_refuse_where_the_limits_say(tmp_path: Path) -> None:
    """The rules bundle.limits names, measured on the linked FFmpeg: if they move, this fails."""
    x264 = {"crf": "18", "preset": "ultrafast"}
    assert encoder_accepts("libx264", "yuv420p", 16384, 16, x264)
    assert not encoder_accepts("libx264", "yuv420p", 16386, 16, x264)  # a side over 16384
    assert encoder_accepts("libx264", "yuv420p", 16384, 16000, x264)  # (w+128)(h+128) < 2^28
    assert not encoder_accepts("libx264", "yuv420p", 16384, 16384, x264)
    assert encoder_accepts("ffv1", "yuv420p", 65536, 16, {"level": "3"})  # FFV1 has no side limit
    assert not encoder_accepts("ffv1", "yuv420p", 16384, 16384, {"level": "3"})
    check_output_size(2048, 2048, 7, "yuv420p")
    with pytest.raises(
        UsageError, match=r"^--scale 8 on 2048x2048 evidence gives 16384x16384 frames, .*the largest --scale for this evidence is 7$"
    ):
        check_output_size(2048, 2048, 8, "yuv420p")
    with pytest.raises(UsageError, match=r"the preview \(libx264\) cannot encode \(libx264 encodes at most 16384 pixels a side\)"):
        check_output_size(10000, 16, 2, "yuv420p")


def test_impossible_output_size_is_refused_before_any_work(ffmpeg: str, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    evidence = tmp_path / "big.mkv"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=4100x4100:rate=25", "-frames:v", "1", "-c:v", "ffv1", str(evidence)],
        check=True,
    )
    out = tmp_path / "out"
    out.mkdir()
    proc = run_fvsr("enhance", evidence, "-o", out / "case", "--key", keypair[0], "--scale", "4", "-q")
    assert proc.returncode == 2
    assert proc.stderr == (
        "fvsr: error: --scale 4 on 4100x4100 evidence gives 16400x16400 frames, which the master (FFV1) cannot encode "
        "(FFmpeg refuses every frame whose (width+128) x (height+128) reaches 2^28 (about 16,000 x 16,000)); "
        "the largest --scale for this evidence is 3\n"
    )
    assert list(out.iterdir()) == []


def test_a_model_run_prints_nothing_on_stderr(carphone: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "case"
    proc = run_fvsr("enhance", carphone, "-o", out, "--key", keypair[0], "--model", "fidelity-sr-x2", "--frames", "0:1", "-q")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"bundle written: {out}\n", "")


class Payload:
    """Not a tensor: a pickle holding one must be refused, not loaded."""


def test_pickle_refusal_is_exactly_one_line(carphone: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    weights = tmp_path / "evil.pkl"
    weights.write_bytes(pickle.dumps(Payload(), protocol=4))  # torch warns about protocol 4 before refusing
    proc = run_fvsr("enhance", carphone, "-o", tmp_path / "case", "--key", keypair[0], "--weights", weights, "--frames", "0:1", "-q")
    assert proc.returncode == 2
    assert proc.stderr == (
        f"fvsr: error: {weights}: not a loadable weights file: only tensor state dicts are accepted, "
        "and torch's weights-only loader refused it (Unsupported operand 149)\n"
    )
    assert "weights_only=False" not in proc.stderr and "\x1b" not in proc.stderr


def test_prove_into_a_missing_directory(carphone_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    target = tmp_path / "missing" / "dir" / "p.json"
    proc = run_fvsr("prove", carphone_bundle, "--frame", "0", "--pubkey", keypair[1], "-o", target)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"fvsr: error: {target.parent}: output directory does not exist\n"
    assert not (tmp_path / "missing").exists()


def _frames_refusal(text: str) -> str:
    with pytest.raises(UsageError) as refused:
        parse_frames(text)
    return str(refused.value)


@pytest.mark.parametrize("text", ["0:-1", "-5:3", "-1:", "7:7", "9:3", "5"])
def test_frames_one_rule_for_both_bounds(text: str, carphone: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    message = _frames_refusal(text)
    assert message.replace(repr(text), "A:B") == _frames_refusal("0:-1").replace(repr("0:-1"), "A:B")
    proc = run_fvsr("enhance", carphone, "-o", tmp_path / "case", "--key", keypair[0], f"--frames={text}", "-q")
    assert proc.returncode == 2 and proc.stderr == f"fvsr: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_frames_open_ends() -> None:
    assert parse_frames(":100") == (0, 100)
    assert parse_frames("5:") == (5, -1)
    assert parse_frames(":") == (0, -1)
    assert parse_frames(None) is None
