"""`fvsr` command line. Each subcommand is a plain function call into the library; every
FvsrError becomes one line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from forensic_vsr import __version__
from forensic_vsr.allocator import keep_heap
from forensic_vsr.cli import bench, commands
from forensic_vsr.errors import FvsrError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fvsr", description="Forensic, verifiable video enhancement.")
    parser.add_argument("--version", action="version", version=f"forensic-vsr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_parsers(sub)
    bench.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="fvsr: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    keep_heap()
    try:
        return func(args)
    except FvsrError as exc:
        print(f"fvsr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fvsr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as exc:
        if args.verbose:
            raise
        print(f"fvsr: internal error: {type(exc).__name__}: {exc} (rerun with -v for details, and report it)", file=sys.stderr)
        return 70
