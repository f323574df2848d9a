"""`fvsr review BUNDLE`: the local review page (forensic_vsr.review), served on 127.0.0.1 until
Ctrl-C or SIGTERM; the URL with its access token is the first line on stdout."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import webbrowser
from pathlib import Path

from forensic_vsr.errors import UsageError


def cmd_review(args: argparse.Namespace) -> int:
    import uvicorn

    from forensic_vsr.audit.keys import load_public_key, load_signer, read_passphrase
    from forensic_vsr.judgement import judgement_checks
    from forensic_vsr.report.checks import report_checks
    from forensic_vsr.review.server import create_app, new_token
    from forensic_vsr.review.session import ReviewSession

    bundle = Path(args.bundle)
    if not bundle.is_dir():
        raise UsageError(f"{bundle}: not a bundle directory")
    signer = load_signer(Path(args.key), read_passphrase(), args.examiner) if args.key else None
    pubkey = load_public_key(Path(args.pubkey)) if args.pubkey else None
    key = pubkey or (signer.public_key if signer else None)
    session = ReviewSession(bundle, key, signer, Path(args.evidence) if args.evidence else None, independent_key=key is not None)
    session.start_verify([report_checks, judgement_checks([], [])])

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as exc:
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror}): choose another --port") from None
    sock.listen(128)  # before the URL is printed: a client that is quick to connect waits, it is not refused
    port = sock.getsockname()[1]
    token = new_token()
    url = f"http://127.0.0.1:{port}/?token={token}"
    print(url, flush=True)
    print(f"fvsr review: {bundle} ({'signing as ' + signer.name if signer else 'read-only: no --key'}); Ctrl-C to stop", file=sys.stderr)
    if not args.no_open:
        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(create_app(session, token, port), log_level="warning", access_log=False, lifespan="off"))
    # uvicorn re-raises the signal that stopped it once it has shut down: here that is the end
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        session.close()
        with contextlib.suppress(OSError):
            sock.close()
    print("fvsr review: stopped", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("review", help="a local web page to inspect a bundle frame by frame and sign review records")
    p.add_argument("bundle")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--no-open", action="store_true", help="do not open a browser; just print the URL")
    p.add_argument("--key", help="examiner's private key: unlocked once (FVSR_KEY_PASSPHRASE or prompt) to sign review records")
    p.add_argument("--examiner", default=os.environ.get("FVSR_EXAMINER", os.environ.get("USER", "examiner")))
    p.add_argument("--pubkey", help="the examiner's public key to verify against (default: --key's, else the manifest's own)")
    p.add_argument("--evidence", help="the evidence file (default: the recorded path); shown only if its sha256 is the recorded one")
    p.set_defaults(func=cmd_review)
