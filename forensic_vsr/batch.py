"""`fvsr batch`: many enhance jobs, one key unlock, one process, resumable after a kill.

A JOBS file (validated by `batch.schema.json`, shipped beside this module) lists jobs: evidence,
output bundle and recipe options as `fvsr enhance` takes them, over shared `defaults`. Jobs run
in order. Before a job runs, its output decides what happens:

  absent          the job runs (a `.NAME.partial-PID` left by a killed run is removed first;
                  one whose process still runs is never touched: the job fails);
  present         `fvsr verify` of it with the examiner's public key (no --evidence): every check
                  of the chain, manifest, files, frames, maps, report and the re-judged decision,
                  and its recorded evidence sha256 and recipe must be this job's. Then it is
                  skipped (or stays refused: a signed refusal); otherwise the job fails and the
                  bundle is never overwritten.

A job that fails (unreadable evidence, a bad option, a schema violation in its entry) or is
refused by the policy stops nothing else. After each job the results are written atomically to
`JOBS.results.json`, so a killed batch leaves a record of where it got to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema

from forensic_vsr.atomic import atomic_write
from forensic_vsr.audit.chain import utc_now
from forensic_vsr.audit.checks import ChainView
from forensic_vsr.audit.completeness import partial_bundle_name
from forensic_vsr.audit.verify import read_chain, verify_bundle
from forensic_vsr.distributed import ray_options
from forensic_vsr.errors import EvidenceError, FvsrError, OutputError, PolicyDenied, UsageError
from forensic_vsr.judgement import judgement_checks
from forensic_vsr.media import file_sha256
from forensic_vsr.pipeline import enhance
from forensic_vsr.recipe import Examiner, Recipe, decide_recipe, parse_frames, recipe_from_options
from forensic_vsr.report.checks import report_checks
from forensic_vsr.storage import write_error

RESULTS_FORMAT = "forensic-vsr-batch-results/1"
STATUSES = ("done", "skipped", "refused", "failed", "interrupted", "pending")
OK = ("done", "skipped")
_PATH_OPTIONS = ("evidence", "output", "weights", "policy")
_PSF_KINDS = ("motion:", "defocus:")


def jobs_schema() -> dict[str, Any]:
    """The JSON Schema of a JOBS file (package data: forensic_vsr/batch.schema.json)."""
    loaded: dict[str, Any] = json.loads(files("forensic_vsr").joinpath("batch.schema.json").read_text())
    return loaded


@dataclass(frozen=True)
class Job:
    """One entry of a JOBS file, its defaults merged and its paths resolved against the file's folder."""

    index: int  # 1-based position in the file
    name: str
    evidence: Path | None
    output: Path | None
    case: str | None
    options: dict[str, Any]  # recipe options under their argparse names (no_maps, models_dir, ...)
    problem: str | None = None  # why the entry cannot run (schema, duplicate output): the job fails alone

    def recipe(self) -> Recipe:
        return recipe_from_options(self.options, parse_frames(self.options.get("frames")))


@dataclass(frozen=True)
class JobResult:
    index: int
    name: str
    evidence: str
    output: str
    status: str  # one of STATUSES
    frames: int | None = None  # output frames of the bundle
    seconds: float = 0.0
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobResult:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class BatchReport:
    """JOBS.results.json: what each job came to. `complete` is False while the batch runs, and
    after a kill or an interruption."""

    jobs_file: str
    jobs_sha256: str
    examiner: str
    keyid: str
    started: str
    updated: str
    complete: bool
    results: tuple[JobResult, ...]

    def to_json(self) -> dict[str, Any]:
        counts = {s: n for s in STATUSES if (n := sum(r.status == s for r in self.results))}
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "results"}
        return {"format": RESULTS_FORMAT, **fields, "counts": counts, "jobs": [r.to_json() for r in self.results]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchReport:
        if data.get("format") != RESULTS_FORMAT:
            raise ValueError(f"not a {RESULTS_FORMAT} document (format {data.get('format')!r})")
        names = [f.name for f in dataclasses.fields(cls) if f.name != "results"]
        return cls(**{n: data[n] for n in names}, results=tuple(JobResult.from_json(j) for j in data["jobs"]))


def results_path(jobs_file: Path) -> Path:
    """JOBS.results.json beside the jobs file (`lab.json` -> `lab.results.json`)."""
    return jobs_file.with_name(f"{jobs_file.stem if jobs_file.suffix == '.json' else jobs_file.name}.results.json")


def exit_code(results: Sequence[JobResult]) -> int:
    """0 when every job is done or skipped; 3 when the others were all refused by the policy; else 1."""
    statuses = {r.status for r in results} - set(OK)
    return 0 if not statuses else (3 if statuses == {"refused"} else 1)


def read_jobs(path: Path) -> list[Job]:
    """The jobs of a JOBS file. A file that is not JSON, or breaks the schema outside a job's
    entry, is one UsageError; a broken entry becomes a job with a `problem`, which fails alone."""
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the jobs file ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a JSON document ({exc}); see `fvsr batch --help` for the format") from None
    per_job: dict[int, list[str]] = {}
    whole: list[str] = []
    for err in sorted(jsonschema.Draft202012Validator(jobs_schema()).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = list(err.absolute_path)
        if len(where) >= 2 and where[0] == "jobs" and isinstance(where[1], int):
            per_job.setdefault(where[1], []).append(f"{'/'.join(map(str, where[2:])) or 'entry'}: {err.message}")
        else:
            whole.append(f"{'/'.join(map(str, where)) or '(root)'}: {err.message}")
    if whole:
        more = f" (and {len(whole) - 1} more)" if len(whole) > 1 else ""
        raise UsageError(f"{path}: {whole[0]}{more}; see `fvsr batch --help` for the format")
    base = path.resolve().parent
    defaults = doc.get("defaults", {})
    jobs: list[Job] = []
    seen: dict[Path, int] = {}
    for i, entry in enumerate(doc["jobs"]):
        job = _job(i + 1, {**defaults, **entry}, base, "; ".join(per_job.get(i, [])) or None)
        if job.output is not None and job.problem is None:
            key = Path(os.path.abspath(job.output))
            if key in seen:
                job = dataclasses.replace(job, problem=f"output {job.output} is also job {seen[key]}'s output")
            seen.setdefault(key, job.index)
        jobs.append(job)
    return jobs


def _job(index: int, entry: dict[str, Any], base: Path, problem: str | None) -> Job:
    def resolved(value: Any) -> Path | None:
        return base / value if isinstance(value, str) and value else None

    options = {key.replace("-", "_"): value for key, value in entry.items() if key not in ("name", "case", *_PATH_OPTIONS)}
    for key in ("weights", "policy"):
        if key in entry:
            options[key] = resolved(entry[key])
    if isinstance(entry.get("models-dir"), list):
        options["models_dir"] = [resolved(d) for d in entry["models-dir"]]
    psf = entry.get("psf")
    if isinstance(psf, str) and not psf.startswith(_PSF_KINDS):
        options["psf"] = str(resolved(psf))
    output = resolved(entry.get("output"))
    name, case = entry.get("name"), entry.get("case")
    if not isinstance(name, str) or not name:
        name = output.name if output else f"job {index}"
    return Job(index, name, resolved(entry.get("evidence")), output, case if isinstance(case, str) else None, options, problem)


Say = Callable[[str], None]


def run_batch(
    jobs: list[Job],
    examiner: Examiner,
    jobs_file: Path,
    show_progress: bool | None = None,
    say: Say = lambda line: None,
) -> BatchReport:
    """Run the jobs in order and return what each came to, writing JOBS.results.json after each.
    An interruption (Ctrl-C, SIGTERM) ends the batch: the running job's partial bundle is removed
    by the pipeline, the results say `interrupted` and `pending`, and the exception goes on."""
    out = results_path(jobs_file)
    digest = hashlib.sha256(jobs_file.read_bytes()).hexdigest()
    started = utc_now()
    results = [_result(job, "pending") for job in jobs]

    def write(complete: bool) -> BatchReport:
        report = BatchReport(jobs_file.name, digest, examiner.name, examiner.signer.keyid, started, utc_now(), complete, tuple(results))
        try:
            atomic_write(out, json.dumps(report.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise OutputError(f"{out}: cannot write the batch results ({exc.strerror})") from None
        return report

    write(False)
    for i, job in enumerate(jobs):
        tag = f"[{job.index}/{len(jobs)}] {job.name}"
        if show_progress is not False:
            say(f"{tag}: {job.evidence} -> {job.output}")
        clock = time.monotonic()
        try:
            status, frames, reason = run_job(job, examiner, show_progress)
        except BaseException:
            results[i] = _result(job, "interrupted", seconds=time.monotonic() - clock, reason="the batch was interrupted")
            write(False)
            raise
        results[i] = _result(job, status, frames, time.monotonic() - clock, reason)
        write(False)
        r = results[i]
        say(
            f"{tag}: {r.status}"
            + (f", {r.frames} frames" if r.frames is not None else "")
            + f", {r.seconds:.1f} s"
            + (f": {r.reason}" if r.reason else "")
        )
    return write(True)


def _result(job: Job, status: str, frames: int | None = None, seconds: float = 0.0, reason: str = "") -> JobResult:
    evidence, output = ("" if p is None else str(p) for p in (job.evidence, job.output))
    return JobResult(job.index, job.name, evidence, output, status, frames, round(seconds, 3), reason)


def run_job(job: Job, examiner: Examiner, show_progress: bool | None = None) -> tuple[str, int | None, str]:
    """(status, output frames, one-line reason) of one job; only an interruption is raised."""
    if job.problem is not None or job.evidence is None or job.output is None:
        return "failed", None, job.problem or "the entry names no evidence or output"
    try:
        recipe = job.recipe()
        removed = _remove_leftovers(job.output)
        if job.output.exists() or job.output.is_symlink():
            return _existing(job, recipe, examiner)
        ray = ray_options(job.options.get("ray"), job.options.get("ray_workers"), job.options.get("ray_segment_frames"))
        enhance(job.evidence, job.output, recipe, dataclasses.replace(examiner, case_id=job.case or examiner.case_id), show_progress, ray)
        view, _ = read_chain(job.output, examiner.signer.public_key)
        note = f"removed {', '.join(removed)} left by an unfinished run" if removed else ""
        return "done", _output_frames(view), note
    except PolicyDenied as exc:
        return "refused", None, _one_line(str(exc))
    except FvsrError as exc:
        return "failed", None, _one_line(str(exc))
    except Exception as exc:  # one job's unforeseen failure must not end the others
        failed = write_error(exc, job.output)
        reason = str(failed) if failed else f"internal error: {type(exc).__name__}: {exc} (rerun it alone with `fvsr -v enhance`)"
        return "failed", None, _one_line(reason)


def _existing(job: Job, recipe: Recipe, examiner: Examiner) -> tuple[str, int | None, str]:
    """An output that is already there: skipped if it verifies and is this job's, else failed."""
    assert job.output is not None and job.evidence is not None
    key = examiner.signer.public_key
    judgement = judgement_checks([recipe.policy] if recipe.policy else [], list(recipe.models_dirs))
    failed = [c for c in verify_bundle(job.output, key, extra_checks=[report_checks, judgement]) if not c.ok]
    keep = "it is not overwritten: move it away to redo the job"
    if failed:
        return "failed", None, f"{job.output} exists and does not verify ({failed[0].name}: {failed[0].reason}); {keep}"
    if not job.evidence.is_file():
        raise EvidenceError(f"{job.evidence}: evidence file not found (its bundle {job.output} exists)")
    view, _ = read_chain(job.output, key)
    decision = view.first("policy.decision") or {}
    if decision.get("evidence", {}).get("sha256") != file_sha256(job.evidence):
        return "failed", None, f"{job.output} exists and holds another evidence file than {job.evidence}; {keep}"
    model, _decision = decide_recipe(recipe)
    recorded, wanted = decision.get("recipe", {}), recipe.to_json(model)
    if recorded != wanted:
        differ = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
        return "failed", None, f"{job.output} exists and was made with another recipe (differs in {', '.join(differ)}); {keep}"
    if view.first("output.write") is None:
        return "refused", None, f"{job.output} holds the signed refusal of an earlier run"
    return "skipped", _output_frames(view), "made by an earlier run: the bundle verifies"


def _remove_leftovers(output: Path) -> list[str]:
    """Remove the build directories (`.NAME.partial-PID`) that killed runs left for `output`.
    One whose process is still running is refused: another run is building that bundle."""
    parent = output.parent
    if not parent.is_dir():
        return []
    removed = []
    for entry in sorted(parent.iterdir()):
        found = partial_bundle_name(entry.name)
        if found is None or found[0] != output.name:
            continue
        pid = found[1]
        if pid != os.getpid() and _running(pid):
            raise OutputError(f"{entry} is being built by process {pid}, which is still running (if it is no fvsr run, remove it by hand)")
        if entry.is_symlink() or not entry.is_dir():
            raise OutputError(f"{entry}: not a build directory; remove it by hand")
        shutil.rmtree(entry)
        removed.append(entry.name)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _output_frames(view: ChainView) -> int | None:
    written = view.first("output.write")
    counts = written.get("frame_counts", {}) if written else {}
    frames = counts.get("output") if isinstance(counts, dict) else None
    return frames if isinstance(frames, int) else None


def _one_line(text: str) -> str:
    return "; ".join(part.strip().removeprefix("- ").rstrip(":") for part in text.splitlines() if part.strip())
