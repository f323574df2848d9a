"""The examiner's and the auditor's commands: enhance, hash, verify, prove, verify-proof, report,
policy explain, models, keys. Each is a plain call into the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from forensic_vsr.atomic import atomic_output, atomic_write
from forensic_vsr.cli.common import models_dirs
from forensic_vsr.errors import OutputError, UsageError
from forensic_vsr.recipe import FRAMES_HELP, SCALE_HELP, STILL_HELP

if TYPE_CHECKING:
    from forensic_vsr.audit.checks import Check
    from forensic_vsr.recipe import Examiner, Recipe


def cmd_hash(args: argparse.Namespace) -> int:
    from forensic_vsr.media import video_framehashes

    head, lines, reader = video_framehashes(Path(args.file))
    out = sys.stdout
    with reader:
        out.write("\n".join(head) + "\n")
        for frame_hash, _decoded in lines:
            out.write(frame_hash.line() + "\n")
        stats = reader.stats
    if stats.damaged:
        print(f"fvsr: warning: damaged stream: {stats.summary()}", file=sys.stderr)
    return 0


def examiner_from_args(args: argparse.Namespace) -> Examiner:
    """The examiner's key (one passphrase prompt), and the certificate report.pdf is signed
    under: --cert (with --cert-key for a certificate of another key), else KEY.crt beside the
    key (written by `fvsr keys generate`), else one made for the run. Both are checked here,
    before any work."""
    from forensic_vsr.audit.keys import load_signer, read_passphrase
    from forensic_vsr.audit.pdfsign import report_certificate
    from forensic_vsr.recipe import Examiner

    key = args.key or os.environ.get("FVSR_KEY")
    if not key:
        raise UsageError("no signing key: pass --key KEY (create one with `fvsr keys generate --out KEY`) or set FVSR_KEY")
    passphrase = read_passphrase()
    signer = load_signer(Path(key), passphrase, args.examiner)
    beside = Path(f"{key}.crt")
    cert = Path(args.cert) if args.cert else (beside if beside.is_file() else None)
    cert_key = Path(args.cert_key) if args.cert_key else None
    return Examiner(args.examiner, args.case, signer, report_certificate(signer, cert, cert_key, passphrase))


def _recipe(args: argparse.Namespace, frames: tuple[int, int] | None = None) -> Recipe:
    from forensic_vsr.recipe import recipe_from_options

    return recipe_from_options(vars(args), frames)


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from forensic_vsr.dry_run import decision_lines
    from forensic_vsr.recipe import decide_recipe

    model, decision = decide_recipe(_recipe(args))
    print("\n".join(decision_lines(model, decision)))
    return 0 if decision.allowed else 3


def cmd_models_list(args: argparse.Namespace) -> int:
    from forensic_vsr.models.registry import registry

    for card in sorted(registry(models_dirs(args)).values(), key=lambda c: c.id):
        d = card.data
        print(
            f"{card.id:<22} {d['class']:<11} {d['task']:<14} x{',x'.join(map(str, d['scales'])):<10} "
            f"{'builtin' if card.builtin else str(card.path.parent)}"
        )
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:

    from forensic_vsr.models.registry import registry

    cards = registry(models_dirs(args))
    if args.id not in cards:
        raise UsageError(f"no model card {args.id!r}; available: {', '.join(sorted(cards))}")
    card = cards[args.id]
    print(json.dumps({**card.data, "_card": {"path": str(card.path), "sha256": card.sha256}}, indent=2))
    return 0


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default="evidential", choices=["evidential", "investigative", "demonstrative"])
    p.add_argument("--model", help="model card id (see `fvsr models list`); default lanczos")
    p.add_argument(
        "--ops",
        help="operations in order, comma-separated, e.g. deinterlace,deblur,restore,sr: any x1 operation "
        "(deinterlace, deblur, restore = fidelity-restore, stabilise, integrate) and last the main one; "
        "sr stands for --model at --scale. The order is recorded.",
    )
    p.add_argument("--weights", help="a weights file (state dict) you bring; unvetted unless a card names its sha256")
    p.add_argument("--scale", type=int, help=SCALE_HELP)
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument(
        "--tile",
        type=int,
        help="run the network in N x N input tiles (with a receptive-field margin; same output as untiled); "
        "default: tile only frames over a 1 GiB activation budget; 0: never tile",
    )
    p.add_argument("--batch", type=int, help="frames per network pass (default 8 on CUDA, 1 on CPU)")
    p.add_argument(
        "--psf",
        help="--model deblur: motion:LENGTH,ANGLE (px, degrees), defocus:RADIUS (px) or a PSF image; default: estimated blindly",
    )
    p.add_argument(
        "--deinterlace",
        default="fields",
        choices=["fields", "blend"],
        help="--model deinterlace: fields (each field becomes a frame at twice the rate: the forensic choice) or blend (motion-adaptive)",
    )
    p.add_argument(
        "--roi",
        help="X,Y,W,H region of the evidence (pixels) to enhance, with any operation or chain: the outputs, maps and stills "
        "are the region (x the scale), each operation's margin is taken from the evidence around it and recorded; "
        "deblur estimates its PSF on it (default: the whole frame)",
    )
    p.add_argument("--register-roi", help="integrate, stabilise, mfsr: X,Y,W,H region of what does not move, to register frames on")
    p.add_argument(
        "--registration",
        choices=["static", "whole"],
        help="integrate, stabilise, mfsr: register on what does not move, moving content masked (static, default) "
        "or on the whole frame (whole, what earlier releases did)",
    )
    p.add_argument("--policy", help="a policy file of your own (validated against policies/schema.json)")
    p.add_argument(
        "--override-policy", metavar="REASON", help="accept an evidential --policy weaker than the built-in one; the reason is recorded"
    )
    p.add_argument("--models-dir", action="append", help="an extra directory of model cards (repeatable; also FVSR_MODELS_PATH)")
    p.add_argument(
        "--no-maps", action="store_true", help="skip the synthesized-content/contradiction maps (refused where the policy requires them)"
    )
    p.add_argument("--no-report", action="store_true", help="skip report.pdf (refused where the policy requires it)")


def cmd_enhance(args: argparse.Namespace) -> int:
    from forensic_vsr.distributed import ray_options
    from forensic_vsr.pipeline import enhance
    from forensic_vsr.recipe import parse_frames

    recipe = _recipe(args, frames=parse_frames(args.frames))
    ray = ray_options(args.ray, args.ray_workers, args.ray_segment_frames)
    if args.dry_run:
        from forensic_vsr.distributed import plan_lines
        from forensic_vsr.dry_run import dry_run

        allowed = dry_run(Path(args.evidence), recipe)
        for line in plan_lines(Path(args.evidence), recipe, ray) if ray is not None and allowed else []:
            print(line)
        return 0 if allowed else 3
    examiner = examiner_from_args(args)
    bundle = enhance(Path(args.evidence), Path(args.output), recipe, examiner, show_progress=None if not args.quiet else False, ray=ray)
    print(f"bundle written: {bundle}")
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from forensic_vsr.audit.keys import generate, read_passphrase

    signer = generate(Path(args.out), args.name, read_passphrase(confirm=True))
    print(
        f"private key: {args.out} (encrypted, mode 0600)\npublic key:  {args.out}.pub\n"
        f"certificate: {args.out}.crt (self-signed, for report signatures)\nkey id:      {signer.keyid}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from forensic_vsr.audit.checks import guarded
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.verify import read_chain, verify_bundle
    from forensic_vsr.judgement import judgement_checks
    from forensic_vsr.report.checks import report_checks

    key = load_public_key(Path(args.pubkey))
    evidence = Path(args.evidence) if args.evidence else None
    if args.reproduce and evidence is None:
        raise UsageError("--reproduce needs --evidence FILE (the recipe is re-run on it)")
    judgement = judgement_checks([Path(p) for p in args.policy], [Path(d) for d in args.models_dir])
    checks: list[Check] = []

    def show(found: Iterable[Check]) -> None:
        for check in found:  # each line as its check completes: a later crash cannot lose it
            print(check.line(), flush=True)
            checks.append(check)

    show(verify_bundle(Path(args.bundle), key, evidence, extra_checks=[report_checks, judgement]))
    if args.reproduce and all(c.ok for c in checks):
        from forensic_vsr.reproduce import reproduce

        assert evidence is not None
        view, _ = read_chain(Path(args.bundle), key)
        policies, cards = [Path(p) for p in args.policy], [Path(d) for d in args.models_dir]
        show(guarded("reproduce", lambda: reproduce(Path(args.bundle), view, evidence, policies, cards)))
    failed = [c for c in checks if not c.ok]
    incomplete = any(c.status == "INCOMPLETE" for c in checks)
    verdict = "INCOMPLETE" if incomplete else ("FAIL" if failed else "PASS")
    print(f"{verdict}: {verify_summary(checks)}")
    return 0 if not failed else 1


def verify_summary(checks: list[Check]) -> str:
    """The counts line of `fvsr verify`: a NOT VERIFIED check (one the auditor's inputs cannot
    run, e.g. R without --evidence) is counted apart from the passed ones, and is no failure."""
    passed = sum(c.status == "PASS" for c in checks)
    unverified = sum(c.status == "NOT VERIFIED" for c in checks)
    failed = sum(not c.ok for c in checks)
    hint = " (supply --evidence)" if unverified else ""
    return f"{len(checks)} checks: {passed} passed, {unverified} not verified{hint}, {failed} failed"


def cmd_prove(args: argparse.Namespace) -> int:

    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.proof import make_proof

    bundle = Path(args.bundle)
    pubkey = Path(args.pubkey) if args.pubkey else None
    if pubkey is None:
        raise UsageError("--pubkey KEY.pub is required: a proof is only built from a chain that verifies")
    proof = make_proof(bundle, args.frame, load_public_key(pubkey))
    text = json.dumps(proof, indent=2) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        out = Path(args.output)
        if not out.parent.is_dir():
            raise OutputError(f"{out.parent}: output directory does not exist")
        try:
            atomic_write(out, text)
        except OSError as exc:
            raise OutputError(f"{out}: cannot write the proof ({exc.strerror})") from None
        print(f"proof for frame {args.frame} written: {out}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Render a bundle's report again (unsigned) from its verified records, e.g. for a bundle made
    with --no-report or to compare with the signed report.pdf; with a Review section for the
    signed review records (verified with the rest) that `fvsr review` added."""
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.verify import read_chain, verify_bundle
    from forensic_vsr.report.checks import render_report
    from forensic_vsr.report.review_section import reviewed_frames

    bundle, out = Path(args.bundle), Path(args.output)
    key = load_public_key(Path(args.pubkey))
    failed = [c for c in verify_bundle(bundle, key) if not c.ok]
    if failed:
        raise UsageError(f"{bundle} does not verify ({failed[0].name}: {failed[0].reason}); run `fvsr verify` for details")
    view, _ = read_chain(bundle, key)
    if view.first("output.write") is None:
        raise UsageError(f"{bundle} holds a signed refusal and no outputs: there is nothing to report")
    if out.exists():
        raise OutputError(f"{out}: already exists; refusing to overwrite")
    reviews = reviewed_frames(bundle, view, key, Path(args.evidence) if args.evidence else None)
    with atomic_output(out, overwrite=False) as tmp:
        render_report(bundle, view, tmp, reviews)
    shown = f"; {len(reviews[0])} review record(s) in its Review section (evidence: {reviews[1]})" if reviews[0] else ""
    print(f"report written: {out} (unsigned; the signed original is {bundle / 'report.pdf'}){shown}")
    return 0


def cmd_verify_proof(args: argparse.Namespace) -> int:
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.proof import verify_proof_file

    key = load_public_key(Path(args.pubkey))
    checks = verify_proof_file(Path(args.proof), key)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{'FAIL' if failed else 'PASS'}: {len(checks) - len(failed)} of {len(checks)} checks passed")
    return 0 if not failed else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("enhance", help="enhance an evidence video into a signed bundle")
    p.add_argument("evidence", help="evidence video (opened read-only)")
    p.add_argument("-o", "--output", required=True, help="bundle directory to create (must not exist)")
    add_recipe_args(p)
    p.add_argument("--frames", help=FRAMES_HELP)
    p.add_argument(
        "--still", type=int, action="append", metavar="N", help=f"also show output frame N in the report (repeatable). {STILL_HELP}"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the decision (every rule), the frame range and region, the PSF a deblur would use, the output size and "
        "the expected time, measured on the first selected frame; needs no key and writes nothing",
    )
    p.add_argument(
        "--cert", help="PEM certificate (then its chain) report.pdf is signed under; default KEY.crt (made by `fvsr keys generate`)"
    )
    p.add_argument("--cert-key", help="the private key of --cert when it certifies another key than the examiner's (encrypted PEM)")
    p.add_argument(
        "--key", help="examiner's private key (or FVSR_KEY); passphrase from FVSR_KEY_PASSPHRASE or prompt; not needed with --dry-run"
    )
    p.add_argument(
        "--ray",
        metavar="local|ADDRESS",
        help="run the operations as Ray tasks over segments of the frame range: on a Ray runtime started here on 127.0.0.1 "
        "(local) or on the cluster at ADDRESS; the bundle is bit-identical to one made without --ray (needs the scale extra)",
    )
    p.add_argument("--ray-workers", type=int, metavar="N", help="--ray local: worker processes (default: one per CPU)")
    p.add_argument(
        "--ray-segment-frames", type=int, metavar="N", help="--ray: frames per segment (default 16; the stages' pre-roll is added)"
    )
    p.add_argument("--case", help="case identifier")
    p.add_argument("--examiner", default=os.environ.get("FVSR_EXAMINER", os.environ.get("USER", "examiner")))
    p.add_argument(
        "--accept-decode-errors",
        action="store_true",
        help="process a damaged stream (the damage is counted and recorded) instead of refusing it",
    )
    p.add_argument("--rate", help="frames per second (25, 30000/1001) of evidence without timestamps (raw .h264/.265); default: declared")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_enhance)

    p = sub.add_parser("hash", help="print ffmpeg-compatible framehash (sha256) of a video")
    p.add_argument("file")
    p.set_defaults(func=cmd_hash)

    p = sub.add_parser("verify", help="verify a bundle offline against the examiner's public key")
    p.add_argument("bundle")
    p.add_argument("--pubkey", required=True, help="examiner public key (PEM) obtained independently of the bundle")
    p.add_argument("--evidence", help="the evidence file: check its sha256 and frame hashes")
    p.add_argument("--reproduce", action="store_true", help="re-run the recorded recipe and compare output frames")
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FILE",
        help="a policy file the run may have used (repeatable); the shipped policies are always known",
    )
    p.add_argument(
        "--models-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory of model cards the run may have used (repeatable); the shipped cards are always known",
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("prove", help="write a self-contained inclusion proof for one output frame")
    p.add_argument("bundle")
    p.add_argument("--frame", type=int, required=True)
    p.add_argument("--pubkey", help="examiner public key; the chain must verify before a proof is made")
    p.add_argument("-o", "--output", help="proof file (default: stdout)")
    p.set_defaults(func=cmd_prove)

    p = sub.add_parser("report", help="render a bundle's report again (unsigned) from its verified records")
    p.add_argument("bundle")
    p.add_argument("--pubkey", required=True, help="the examiner's public key")
    p.add_argument("-o", "--output", required=True, help="PDF to write")
    p.add_argument(
        "--evidence",
        help="the evidence file, for the review records' evidence crops "
        "(default: the recorded path; used only if its sha256 is the recorded one)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("verify-proof", help="verify a frame proof against the examiner's public key")
    p.add_argument("proof")
    p.add_argument("--pubkey", required=True)
    p.set_defaults(func=cmd_verify_proof)

    pol = sub.add_parser("policy", help="policies").add_subparsers(dest="policy_command", required=True)
    p = pol.add_parser("explain", help="print the policy decision for a recipe without running it")
    add_recipe_args(p)
    p.set_defaults(func=cmd_policy_explain)

    models = sub.add_parser("models", help="model registry").add_subparsers(dest="models_command", required=True)
    p = models.add_parser("list", help="list model cards")
    p.add_argument("--models-dir", action="append")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("show", help="print one model card")
    p.add_argument("id")
    p.add_argument("--models-dir", action="append")
    p.set_defaults(func=cmd_models_show)

    keys = sub.add_parser("keys", help="examiner keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("generate", help="create an encrypted Ed25519 examiner key and its P-256 report certificate")
    p.add_argument("--out", required=True, help="private key path; the public key goes to PATH.pub")
    p.add_argument("--name", default=os.environ.get("USER", "examiner"), help="examiner name")
    p.set_defaults(func=cmd_keys_generate)
