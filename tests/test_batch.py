"""`fvsr batch JOBS.json` with the real CLI: jobs run with one key unlock, bad jobs fail alone,
a rerun skips what verifies and never overwrites what does not, a killed batch resumes (its
partial bundle removed and the job redone), and refusals are refused, alone."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from forensic_vsr.batch import BatchReport, jobs_schema, read_jobs, results_path
from forensic_vsr.cli import commands
from forensic_vsr.recipe import recipe_from_options
from tests.helpers import CLIPS, PASSPHRASE, record, run_fvsr


def _jobs(folder: Path, doc: dict[str, Any]) -> Path:
    """A JOBS file whose evidence paths are relative to it (clips/ links to the data clips)."""
    clips = folder / "clips"
    if not clips.exists():
        clips.symlink_to(CLIPS)
    path = folder / "lab.json"
    path.write_text(json.dumps(doc))
    return path


def _results(jobs: Path) -> BatchReport:
    return BatchReport.from_json(json.loads(results_path(jobs).read_text()))


def _statuses(jobs: Path) -> list[str]:
    return [r.status for r in _results(jobs).results]


def _partials(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.partial-*"))


def test_jobs_run_bad_ones_fail_alone_and_a_rerun_skips_or_refuses_to_overwrite(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    key, pub = keypair
    jobs = _jobs(
        tmp_path,
        {
            "defaults": {"model": "lanczos", "frames": "0:3", "case": "LAB-7"},
            "jobs": [
                {"evidence": "clips/carphone_pristine.mp4", "output": "a", "case": "C-1"},
                {"evidence": "clips/carphone_distorted.mp4", "output": "b", "name": "distorted"},
                {"evidence": "clips/no-such-clip.mp4", "output": "c"},
            ],
        },
    )
    first = run_fvsr("batch", jobs, "--key", key, "--examiner", "Batch Examiner")
    assert first.returncode == 1, first.stderr
    failures = [ln for ln in first.stderr.splitlines() if "failed" in ln]
    assert len(failures) == 1 and "no-such-clip.mp4" in failures[0], first.stderr
    assert "Traceback" not in first.stderr
    for name, clip in (("a", "carphone_pristine.mp4"), ("b", "carphone_distorted.mp4")):
        run_fvsr("verify", tmp_path / name, "--pubkey", pub, "--evidence", CLIPS / clip, check=True)
    assert not (tmp_path / "c").exists()
    assert record(tmp_path / "a", "evidence.ingest")["case_id"] == "C-1"
    assert record(tmp_path / "b", "evidence.ingest")["case_id"] == "LAB-7"  # the default case
    report = _results(jobs)
    assert report.complete and report.jobs_file == "lab.json" and report.examiner == "Batch Examiner"
    assert [(r.name, r.status, r.frames) for r in report.results] == [("a", "done", 3), ("distorted", "done", 3), ("c", "failed", None)]
    assert "no-such-clip.mp4" in report.results[2].reason
    for column in ("job", "evidence", "status", "frames", "seconds", "bundle", "reason"):
        assert column in first.stdout  # the summary table

    chain_a = (tmp_path / "a" / "chain.jsonl").stat().st_mtime_ns
    again = run_fvsr("batch", jobs, "--key", key, "--examiner", "Batch Examiner")
    assert again.returncode == 1, again.stderr
    assert _statuses(jobs) == ["skipped", "skipped", "failed"]
    assert (tmp_path / "a" / "chain.jsonl").stat().st_mtime_ns == chain_a

    # a bundle that no longer verifies, and a job whose recipe changed: failures, never overwritten
    with open(tmp_path / "a" / "output.framehash", "a") as fh:
        fh.write("# appended\n")
    tampered = (tmp_path / "a" / "output.framehash").read_bytes()
    doc = json.loads(jobs.read_text())
    doc["jobs"][1]["scale"] = 3
    jobs.write_text(json.dumps(doc))
    third = run_fvsr("batch", jobs, "--key", key)
    assert third.returncode == 1
    a, b, _c = _results(jobs).results
    assert (a.status, b.status) == ("failed", "failed")
    assert "does not verify" in a.reason and "not overwritten" in a.reason
    assert "another recipe" in b.reason and "operations" in b.reason
    assert (tmp_path / "a" / "output.framehash").read_bytes() == tampered
    assert record(tmp_path / "b", "policy.decision")["recipe"]["operations"][0]["scale"] == 2


def _start_batch(jobs: Path, key: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "FVSR_KEY_PASSPHRASE": PASSPHRASE}
    cmd = [sys.executable, "-m", "forensic_vsr", "batch", str(jobs), "--key", str(key)]
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_during(proc: subprocess.Popen[str], folder: Path, name: str, signum: int) -> tuple[int, str]:
    """Send `signum` once the job building `name` has written part of its master."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        masters = [p / "output" / "master.mkv" for p in _partials(folder, name)]
        with contextlib.suppress(FileNotFoundError):  # a build directory may go at any moment
            if any(m.stat().st_size > 0 for m in masters if m.is_file()):
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"the batch ended before job {name} got going:\n{proc.communicate()}"
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_a_stopped_batch_resumes_skipping_what_was_done_and_redoing_the_killed_job(
    tmp_path: Path, keypair: tuple[Path, Path], carphone: Path
) -> None:
    key, pub = keypair
    jobs = _jobs(
        tmp_path,
        {
            "defaults": {"model": "lanczos"},
            "jobs": [
                {"evidence": "clips/carphone_pristine.mp4", "output": "first", "frames": "0:3"},
                {"evidence": "clips/carphone_pristine.mp4", "output": "second", "frames": "0:60"},
            ],
        },
    )
    # SIGTERM: the batch stops cleanly; the pipeline removes the running job's partial bundle
    rc, err = _stop_during(_start_batch(jobs, key), tmp_path, "second", signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1].startswith("fvsr: terminated by SIGTERM") and "run the same command again" in err
    assert not _partials(tmp_path, "second") and not (tmp_path / "second").exists(), err
    assert _statuses(jobs) == ["done", "interrupted"] and not _results(jobs).complete, err

    # SIGKILL: nothing can clean up, the partial bundle stays behind
    rc, err = _stop_during(_start_batch(jobs, key), tmp_path, "second", signal.SIGKILL)
    assert rc == -signal.SIGKILL, err
    (left,) = _partials(tmp_path, "second")
    assert _statuses(jobs) == ["skipped", "pending"], err

    resumed = run_fvsr("batch", jobs, "--key", key)
    assert resumed.returncode == 0, resumed.stderr
    first, second = _results(jobs).results
    assert (first.status, second.status, second.frames) == ("skipped", "done", 60)
    assert left.name in second.reason
    assert not _partials(tmp_path, "second")
    run_fvsr("verify", tmp_path / "second", "--pubkey", pub, "--evidence", carphone, check=True)


def test_refusals_are_refused_alone_and_stay_refused(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    key, pub = keypair
    jobs = _jobs(
        tmp_path,
        {
            "defaults": {"mode": "evidential", "frames": "0:3"},
            "jobs": [{"evidence": "clips/carphone_pristine.mp4", "output": "gan", "model": "perceptual-sr-x4", "scale": 4}],
        },
    )
    for _run in range(2):  # the rerun finds the signed refusal and leaves it
        proc = run_fvsr("batch", jobs, "--key", key)
        assert proc.returncode == 3, proc.stderr
        (result,) = _results(jobs).results
        assert result.status == "refused" and result.frames is None
        assert "perceptual-sr-x4" in result.reason or "refusal" in result.reason
    assert record(tmp_path / "gan", "policy.decision")["allowed"] is False
    run_fvsr("verify", tmp_path / "gan", "--pubkey", pub, check=True)

    # a build directory whose process still runs (this one) is another run's: never touched
    live = tmp_path / f".busy.partial-{os.getpid()}"
    live.mkdir()
    doc = json.loads(jobs.read_text())
    doc["jobs"].append({"evidence": "clips/carphone_pristine.mp4", "output": "busy", "scale": "two"})
    doc["jobs"].append({"evidence": "clips/carphone_pristine.mp4", "output": "busy"})
    doc["jobs"].append({"evidence": "clips/carphone_pristine.mp4", "output": "backwards", "frames": "5:2"})
    jobs.write_text(json.dumps(doc))
    proc = run_fvsr("batch", jobs, "--key", key)
    assert proc.returncode == 1
    refused, broken, busy, backwards = _results(jobs).results
    assert (refused.status, broken.status, busy.status, backwards.status) == ("refused", "failed", "failed", "failed")
    assert "scale" in broken.reason and "integer" in broken.reason
    assert "--frames '5:2'" in backwards.reason and not (tmp_path / "backwards").exists()
    assert "still running" in busy.reason and live.is_dir() and not (tmp_path / "busy").exists()


def test_a_broken_jobs_file_is_one_line_before_the_key_is_asked(tmp_path: Path) -> None:
    for text in ("{not json", json.dumps({"jobs": []}), json.dumps({"jobs": [{"evidence": "x", "output": "y"}], "extra": 1})):
        jobs = tmp_path / "jobs.json"
        jobs.write_text(text)
        proc = run_fvsr("batch", jobs, env={"FVSR_KEY_PASSPHRASE": ""})  # no --key: the file is judged first
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"fvsr: error: {jobs}:"), line
        assert not results_path(jobs).exists()


def test_the_jobs_format_is_enhances_options_read_the_same_way(tmp_path: Path) -> None:
    sub = argparse.ArgumentParser().add_subparsers()
    commands.add_parsers(sub)
    enhance = sub.choices["enhance"].parse_args(["ev.mp4", "-o", "out"])
    not_recipe = {"evidence", "output", "key", "cert", "cert_key", "examiner", "quiet", "dry_run", "func"}
    options = jobs_schema()["$defs"]["options"]["properties"]
    assert {k.replace("-", "_") for k in options} == set(vars(enhance)) - not_recipe
    actions = {a.dest: a for a in sub.choices["enhance"]._actions}
    for name, prop in options.items():
        choices = actions[name.replace("-", "_")].choices
        assert (list(choices) if choices else None) == prop.get("enum"), name
    # a job with no options is `fvsr enhance` with none
    assert recipe_from_options({}) == recipe_from_options(vars(enhance))
    jobs = tmp_path / "q.json"
    jobs.write_text(json.dumps({"defaults": {"weights": "w.pth", "models-dir": ["cards"]}, "jobs": [{"evidence": "e.mp4", "output": "o"}]}))
    (job,) = read_jobs(jobs)
    resolved = (job.evidence, job.output, job.options["weights"], job.options["models_dir"])
    assert resolved == (tmp_path / "e.mp4", tmp_path / "o", tmp_path / "w.pth", [tmp_path / "cards"])
    help_text = run_fvsr("batch", "--help", check=True).stdout
    assert '"jobs"' in help_text and "JOBS.results.json" in help_text and "Exit status" in help_text
