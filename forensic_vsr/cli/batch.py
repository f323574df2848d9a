"""`fvsr batch JOBS.json`: the jobs of a lab's queue, one key unlock, resumable (forensic_vsr.batch)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from forensic_vsr.cli import commands
from forensic_vsr.signals import Terminated

if TYPE_CHECKING:
    from forensic_vsr.batch import BatchReport

JOBS_HELP = """\
JOBS is a JSON document (schema: forensic_vsr/batch.schema.json, shipped with the package):

  {"defaults": {"mode": "evidential", "model": "lanczos", "scale": 2, "case": "42"},
   "jobs": [{"evidence": "cam1.mp4", "output": "out/cam1", "frames": "100:250"},
            {"evidence": "cam2.mp4", "output": "out/cam2", "model": "deblur", "scale": 1,
             "psf": "motion:15,30", "name": "cam2 deblur"}]}

Options are fvsr enhance's, named as on its command line without the dashes: mode, model, ops,
weights, scale, device, precision, tile, batch, psf, deinterlace, roi ("X,Y,W,H"), policy,
override-policy, models-dir (a list), no-maps, no-report, frames ("A:B"), still (a list),
accept-decode-errors, rate, case. A job's options override the defaults. Relative paths are relative
to the JOBS file's folder. Outputs must differ between jobs.

Jobs run one after another in this process, signed with the one key unlocked at the start.
Before a job runs: a bundle already at its output that verifies (every check of
`fvsr verify OUTPUT --pubkey KEY.pub`, without --evidence) and holds this job's evidence and
recipe is skipped; one that does not is a failure and is never overwritten; a
.OUTPUT.partial-PID left by a killed run is removed and the job run again. So after a kill or a
crash, running the same command again resumes the batch.

A job that fails (missing evidence, a bad option, a broken entry) or is refused by the policy
(its bundle holds the signed refusal) stops nothing else. Progress: one line per job on stderr
(with the progress bars of each run on a terminal); at the end a summary table on stdout. The
results (job, evidence, status, frames, seconds, bundle, reason) are written after every job
to JOBS.results.json beside the JOBS file (lab.json: lab.results.json).

Exit status: 0 when every job is done or skipped; 3 when every other job was refused by the
policy; 1 when a job failed; 2 when the JOBS file itself is unusable (nothing runs); 130 or
128+signal number when interrupted (run it again to resume)."""


def cmd_batch(args: argparse.Namespace) -> int:
    from forensic_vsr.batch import exit_code, read_jobs, results_path, run_batch

    jobs_file = Path(args.jobs)
    jobs = read_jobs(jobs_file)  # a broken JOBS file is refused before the key is unlocked
    examiner = commands.examiner_from_args(args)  # the one unlock, as enhance does it
    bars = not args.quiet and sys.stderr.isatty()
    try:
        report = run_batch(jobs, examiner, jobs_file, show_progress=bars, say=_say)
    except (KeyboardInterrupt, Terminated) as exc:
        how = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        _say(
            f"fvsr: {how}; the running job's partial bundle was removed, the results so far are in "
            f"{results_path(jobs_file)}; run the same command again to resume"
        )
        return 130 if isinstance(exc, KeyboardInterrupt) else exc.exit_code
    _summary(report)
    print(f"results written: {results_path(jobs_file)}")
    return exit_code(report.results)


def _say(line: str) -> None:
    with contextlib.suppress(OSError):  # a terminal that hung up cannot take it
        print(line, file=sys.stderr, flush=True)


def _summary(report: BatchReport) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE, title=f"fvsr batch {report.jobs_file}", title_justify="left")
    for column in ("job", "evidence", "status", "frames", "seconds", "bundle", "reason"):
        table.add_column(column, justify="right" if column in ("frames", "seconds") else "left", overflow="fold")
    for r in report.results:
        frames = "" if r.frames is None else str(r.frames)
        table.add_row(f"{r.index} {r.name}", Path(r.evidence).name, r.status, frames, f"{r.seconds:.1f}", r.output, r.reason)
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    with console.capture() as captured:
        console.print(table)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))  # a log file gets no padding


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "batch",
        help="run the enhance jobs of a JOBS.json file (one key unlock, resumable)",
        description="Run the enhance jobs of a JOBS file, one after another, signed with one key; resumable after a kill.",
        epilog=JOBS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("jobs", help="the JOBS file (JSON; format below)")
    p.add_argument("--key", help="examiner's private key (or FVSR_KEY); passphrase from FVSR_KEY_PASSPHRASE or prompt, asked once")
    p.add_argument("--cert", help="PEM certificate the reports are signed under; default KEY.crt")
    p.add_argument("--cert-key", help="the private key of --cert when it certifies another key than the examiner's (encrypted PEM)")
    p.add_argument("--examiner", default=os.environ.get("FVSR_EXAMINER", os.environ.get("USER", "examiner")))
    p.add_argument("--case", help="case identifier of the jobs that name none")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_batch)
