"""`fvsr` command line. Each subcommand is a plain function call into the library; every
FvsrError becomes one line on stderr and a non-zero exit code. SIGTERM and SIGHUP unwind like
Ctrl-C (forensic_vsr.signals), and a failed write (disk full, read-only) is an OutputError."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from forensic_vsr import __version__
from forensic_vsr.allocator import keep_heap
from forensic_vsr.cli import batch, bench, commands, review
from forensic_vsr.errors import FvsrError
from forensic_vsr.signals import Terminated, raise_on_termination
from forensic_vsr.storage import nothing_written, write_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fvsr", description="Forensic, verifiable video enhancement.")
    parser.add_argument("--version", action="version", version=f"forensic-vsr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_parsers(sub)
    bench.add_parsers(sub)
    batch.add_parsers(sub)
    review.add_parsers(sub)
    return parser


def _say(line: str) -> None:
    """One line on stderr; a terminal that hung up (SIGHUP) cannot take it, and that must not
    turn into a second error."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def _output_of(args: argparse.Namespace) -> Path | None:
    """The file or bundle the command creates, if it has one (-o/--output, keys --out)."""
    out = getattr(args, "output", None) or getattr(args, "out", None)
    return Path(out) if out and out != "-" else None


def main(argv: Sequence[str] | None = None) -> int:
    raise_on_termination()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="fvsr: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    keep_heap()
    try:
        return func(args)
    except FvsrError as exc:
        _say(f"fvsr: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("fvsr: interrupted")
        return 130
    except Terminated as exc:
        target = _output_of(args)
        _say(f"fvsr: {exc}" + ("; nothing was written" if target is None or nothing_written(target) else ""))
        return exc.exit_code
    except BrokenPipeError:
        return 141
    except Exception as exc:
        failed = write_error(exc, _output_of(args))
        if args.verbose:
            raise
        if failed is not None:
            _say(f"fvsr: error: {failed}")
            return failed.exit_code
        _say(f"fvsr: internal error: {type(exc).__name__}: {exc} (rerun with -v for details, and report it)")
        return 70
