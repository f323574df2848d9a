"""`fvsr` command line. Each subcommand is a plain function call into the library; every
FvsrError becomes one line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forensic_vsr import __version__
from forensic_vsr.allocator import keep_heap
from forensic_vsr.errors import FvsrError, OutputError, UsageError

if TYPE_CHECKING:
    from forensic_vsr.enhance import Recipe


def _cmd_hash(args: argparse.Namespace) -> int:
    from forensic_vsr.integrity.framehash import video_framehashes

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


def _signer(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from forensic_vsr.audit.keys import load_signer, read_passphrase

    key = args.key or os.environ.get("FVSR_KEY")
    if not key:
        raise UsageError("no signing key: pass --key KEY (create one with `fvsr keys generate --out KEY`) or set FVSR_KEY")
    return load_signer(Path(key), read_passphrase(), args.examiner)


def _certificate(args: argparse.Namespace) -> Path | None:
    """--cert, else KEY.crt beside the key (written by `fvsr keys generate`), else None
    (a self-signed certificate is made for the run)."""
    if args.cert:
        return Path(args.cert)
    key = args.key or os.environ.get("FVSR_KEY")
    beside = Path(f"{key}.crt") if key else None
    return beside if beside is not None and beside.is_file() else None


def _recipe(args: argparse.Namespace, frames: tuple[int, int] | None = None) -> Recipe:
    from forensic_vsr.enhance import Recipe, parse_ops

    pre_ops, main = parse_ops(getattr(args, "ops", None), args.model)
    model = main if (main or args.weights) else "lanczos"
    return Recipe(
        mode=args.mode,
        model=model,
        pre_ops=pre_ops,
        scale=args.scale,
        frames=frames,
        device=args.device,
        accept_decode_errors=getattr(args, "accept_decode_errors", False),
        weights=Path(args.weights) if args.weights else None,
        precision=args.precision,
        policy=Path(args.policy) if args.policy else None,
        override_policy=args.override_policy,
        models_dirs=tuple(Path(d) for d in args.models_dir or ()),
        maps=not getattr(args, "no_maps", False),
        stills=tuple(getattr(args, "still", None) or ()),
        report=not getattr(args, "no_report", False),
        tile=getattr(args, "tile", None),
        batch=getattr(args, "batch", None),
        psf=getattr(args, "psf", None),
        roi=_roi(getattr(args, "roi", None)),
        deinterlace=getattr(args, "deinterlace", "fields"),
    )


def _roi(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--roi {text}: expected X,Y,W,H in pixels") from None
    return x, y, w, h


def _write_json(path: str, obj: Any) -> None:
    """A benchmark's --json output, written atomically."""
    import json

    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, out)


def _cmd_policy_explain(args: argparse.Namespace) -> int:
    from forensic_vsr.enhance import decide_recipe

    recipe = _recipe(args)
    model, decision = decide_recipe(recipe)
    policy = decision.policy
    print(f"policy {policy.data['id']} v{policy.data['version']} ({policy.source}) sha256 {policy.sha256}")
    print(f"model  {model.id} [{model.model_class}]" + (f" weights sha256 {model.weights_sha256}" if model.weights_sha256 else ""))
    for r in decision.results:
        print(f"{r.outcome.upper():<15} {r.rule}: {r.reason}")
    print("ALLOWED" if decision.allowed else f"REFUSED: {len(decision.failures)} rule(s) failed")
    return 0 if decision.allowed else 3


def _cmd_models_list(args: argparse.Namespace) -> int:
    from forensic_vsr.models.registry import registry

    for card in sorted(registry([Path(d) for d in args.models_dir or ()]).values(), key=lambda c: c.id):
        d = card.data
        print(
            f"{card.id:<22} {d['class']:<11} {d['task']:<14} x{',x'.join(map(str, d['scales'])):<10} "
            f"{'builtin' if card.builtin else str(card.path.parent)}"
        )
    return 0


def _cmd_models_show(args: argparse.Namespace) -> int:
    import json

    from forensic_vsr.models.registry import registry

    cards = registry([Path(d) for d in args.models_dir or ()])
    if args.id not in cards:
        raise UsageError(f"no model card {args.id!r}; available: {', '.join(sorted(cards))}")
    card = cards[args.id]
    print(json.dumps({**card.data, "_card": {"path": str(card.path), "sha256": card.sha256}}, indent=2))
    return 0


def _projected(net: Any) -> Callable[[Any], Any]:
    import numpy as np

    from forensic_vsr.models.runner import to_samples
    from forensic_vsr.ops.consistency import Projector

    def run(y: Any) -> Any:
        x_hat = net.predict(y, 255)
        p = Projector(x_hat.shape[0], x_hat.shape[1], net.scale)
        return to_samples(p.project_in_range(x_hat, y.astype(np.float64), 255, 0.25), 255, np.uint8)

    return run


def _cmd_bench_sr(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import classical_luma, evaluate, load_images
    from forensic_vsr.models.registry import registry, resolve
    from forensic_vsr.ops.resample import KERNEL_SUPPORT

    extra = [Path(d) for d in args.models_dir or ()]
    cards = registry(extra)
    wanted = list(
        dict.fromkeys(
            ["bicubic", *(args.model or [c.id for c in cards.values() if c.data["task"] == "sr" and args.scale in c.data["scales"]])]
        )
    )
    images = load_images(Path(args.images))
    rows = []
    for model_id in wanted:
        if model_id in KERNEL_SUPPORT:
            run = classical_luma(model_id, args.scale)
        else:
            from forensic_vsr.models.runner import PlaneUpscaler

            model = resolve(model_id, None, extra)
            net = PlaneUpscaler(model, args.device)
            run = lambda y, net=net: net(y, 255)  # noqa: E731
            if model.card is not None and model.card.data["degradation"]["operator"] == "bicubic-antialiased":
                rows.append(evaluate(images, args.scale, model_id, run))
                # what evidential mode stores: the output projected onto the input's consistent set
                model_id, run = f"{model_id}+projection", _projected(net)
        rows.append(evaluate(images, args.scale, model_id, run))
    print(f"{'model':<24} {'scale':>5} {'images':>6} {'PSNR-Y':>8} {'SSIM-Y':>7}")
    for r in rows:
        print(f"{r.model:<24} {'x' + str(r.scale):>5} {r.images:>6} {r.psnr_y:>8.3f} {r.ssim_y:>7.4f}")
    if args.json:
        _write_json(args.json, {"images_dir": str(args.images), "results": [r.to_json() for r in rows]})
    return 0


def _luma_sr(model_id: str, scale: int, extra: list[Path], device: str = "cpu") -> Callable[[Any], Any]:
    from forensic_vsr.benchmark import classical_luma
    from forensic_vsr.models.registry import resolve
    from forensic_vsr.ops.resample import KERNEL_SUPPORT

    if model_id in KERNEL_SUPPORT:
        return classical_luma(model_id, scale)
    from forensic_vsr.models.runner import PlaneUpscaler

    model = resolve(model_id, None, extra)
    if model.architecture and int(model.architecture["params"]["scale"]) != scale:
        raise UsageError(f"{model_id} is a x{model.architecture['params']['scale']} model, not x{scale}")
    return _projected(PlaneUpscaler(model, device))


def _train_head(args: argparse.Namespace, card: Any, run: Callable[[Any], Any], cache: Path) -> tuple[dict[str, Any], Any]:
    """Train the Laplace scale head on the frozen model, over the *training* images of
    --head-from (never the calibration set), save it beside the card, and return its card
    entry and the scale function it gives."""
    import torch

    from forensic_vsr.media import file_sha256
    from forensic_vsr.training import data as tdata
    from forensic_vsr.training.train import load_config
    from forensic_vsr.uncertainty_head import NAME, LearnedScale, train_head, training_patches

    head_config, head_sha = load_config(Path(args.head_from))
    train_images, _ = tdata.load(head_config["data"], cache, Path(args.head_from).resolve().parent)
    feats, errs = training_patches([im.luma for im in train_images], args.scale, run, args.head_patches, 96, args.head_seed)
    torch.set_num_threads(1)
    head, history = train_head(feats, errs, steps=args.head_steps, seed=args.head_seed)
    name = f"{card.id}.uhead-x{args.scale}.pth"
    path = card.path.parent / name
    tmp = path.with_name(f".{name}.partial")
    torch.save({k: v.detach().clone().contiguous() for k, v in sorted(head.state_dict().items())}, tmp)
    os.replace(tmp, path)
    entry = {
        "file": name,
        "sha256": file_sha256(path),
        "architecture": {"name": NAME, "params": {"channels": 16, "layers": 4}},
        "training": {
            "loss": "Laplace negative log-likelihood |x - x_hat| / b + log b, model frozen",
            "config": {"file": Path(args.head_from).name, "sha256": head_sha, "images": "its training images (not data.validation)"},
            "patches": args.head_patches,
            "patch_size": 96,
            "steps": args.head_steps,
            "seed": args.head_seed,
            "loss_every_500_steps": history,
        },
    }
    return entry, LearnedScale(entry, card.path.parent, args.scale)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    """λ for a model and scale from the held-out images of a training config (never a benchmark),
    written into the model card with the files' sha256."""
    import json

    from forensic_vsr.calibration import SCALE_FORMULA, calibrate, make_sample
    from forensic_vsr.models.registry import registry
    from forensic_vsr.training import data as tdata
    from forensic_vsr.training.train import DEFAULT_CACHE, load_config
    from forensic_vsr.uncertainty_head import HEAD_FORMULA

    config, config_sha = load_config(Path(args.config))
    cache = Path(args.cache) if args.cache else DEFAULT_CACHE
    _train, held_out = tdata.load(config["data"], cache, Path(args.config).resolve().parent, require_train=False)
    if not held_out:
        raise UsageError(f"{args.config}: the config holds out no images (data.validation) to calibrate on")
    extra = [Path(d) for d in args.models_dir or ()]
    card = registry(extra).get(args.model)
    if card is None:
        raise UsageError(f"--model {args.model}: no such model card")
    run = _luma_sr(args.model, args.scale, extra)
    head_entry = None
    scale_fn = None
    if args.head_from:
        head_entry, scale_fn = _train_head(args, card, run, cache)
    samples = [make_sample(im.luma, args.scale, run, scale_fn) for im in held_out]
    try:
        result = calibrate(samples, args.scale, alpha=args.alpha, delta=args.delta, tile=args.tile)
    except ValueError as exc:
        raise UsageError(f"{exc}; use more or larger calibration images, a smaller --tile, or a larger --alpha") from None
    entry = {
        **result,
        "scale_formula": SCALE_FORMULA if head_entry is None else HEAD_FORMULA,
        "method": "risk-controlling prediction set, Hoeffding bound (Bates et al. 2021; Angelopoulos et al. 2022)",
        "calibration_config": {"file": Path(args.config).name, "sha256": config_sha},
        "calibration_files": tdata.manifest(held_out),
        "output": "data-consistency projected" if card.weights_path else "classical interpolation",
        **({"head": head_entry} if head_entry else {}),
    }
    data = json.loads(card.path.read_text())
    data.setdefault("uncertainty", {})[f"x{args.scale}"] = entry
    tmp = card.path.with_name(card.path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, card.path)
    print(json.dumps({"model": args.model, "scale": args.scale, **result}))
    return 0


def _cmd_bench_mfsr(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import load_images, multiframe_benchmark
    from forensic_vsr.models.registry import registry
    from forensic_vsr.ops.mfsr import MfsrParams

    card = registry([Path(d) for d in args.models_dir or ()]).get(args.model)
    if card is None or card.data["task"] != "multiframe-sr":
        raise UsageError(f"--model {args.model}: no multi-frame SR card of that id")
    if args.scale not in card.data["scales"]:
        raise UsageError(f"--scale {args.scale}: {args.model} supports x{', x'.join(map(str, card.data['scales']))}")
    if args.frames < 2:
        raise UsageError(f"--frames {args.frames}: a sequence needs at least 2 frames")
    params = MfsrParams.from_card(card.data["architecture"]["params"], args.scale)
    result = {"model": args.model, **multiframe_benchmark(load_images(Path(args.images)), params, args.frames, args.noise, args.seed)}
    print(f"{'method':<18} {'PSNR-Y':>8}   ({result['images']} images, {args.frames} frames, x{args.scale}, noise {args.noise})")
    for name, value in result["psnr_y"].items():  # type: ignore[union-attr]
        print(f"{name:<18} {value:>8.3f}")
    print(f"gain over bicubic: {result['gain_over_bicubic_db']:+.3f} dB; neighbours registered {result['neighbours_registered']}")
    if args.json:
        _write_json(args.json, result)
    return 0


def _cmd_bench_deblur(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import deblur_benchmark, load_images

    result = deblur_benchmark(load_images(Path(args.images)), noise=args.noise, seed=args.seed)
    print(f"{'psf':<28} {'blurred':>8} {'known':>8} {'estim.':>8}   ({result['images']} images, PSNR-Y dB)")
    for row in result["results"]:  # type: ignore[attr-defined]
        p = row["psf"]
        name = f"motion {p['length']:g}px {p['angle']:g}deg" if p["kind"] == "motion" else f"defocus r={p['radius']:g}px"
        print(f"{name:<28} {row['blurred_psnr_y']:>8.3f} {row['known_psf_psnr_y']:>8.3f} {row['estimated_psf_psnr_y']:>8.3f}")
    print(f"mean gain: known PSF {result['mean_gain_known']:+.3f} dB, estimated PSF {result['mean_gain_estimated']:+.3f} dB")
    if args.json:
        _write_json(args.json, result)
    return 0


def _cmd_bench_restore(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import restore_benchmark
    from forensic_vsr.models.registry import resolve
    from forensic_vsr.models.runner import PlaneUpscaler

    model = resolve(args.model, None, [Path(d) for d in args.models_dir or ()])
    if model.card is None or model.card.data["task"] != "restore":
        raise UsageError(f"--model {args.model}: not a restoration model")
    for path in (args.distorted, args.pristine):
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
    net = PlaneUpscaler(model, args.device)
    result = {"model": args.model, **restore_benchmark(Path(args.distorted), Path(args.pristine), lambda y: net(y, 255), args.limit)}
    print(
        f"{args.model}: {result['frames']} frames, PSNR-Y distorted {result['psnr_y_distorted']:.3f} dB, "
        f"restored {result['psnr_y_restored']:.3f} dB, gain {result['gain_db']:+.3f} dB"
    )
    if args.json:
        _write_json(args.json, result)
    return 0


def _cmd_bench_uncertainty(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import load_images, rgb_to_y
    from forensic_vsr.calibration import evaluate, make_sample
    from forensic_vsr.models.registry import registry

    extra = [Path(d) for d in args.models_dir or ()]
    card = registry(extra).get(args.model)
    if card is None:
        raise UsageError(f"--model {args.model}: no such model card")
    cal = card.data.get("uncertainty", {}).get(f"x{args.scale}")
    if cal is None:
        raise UsageError(f"{args.model} has no calibrated intervals for x{args.scale}: run `fvsr calibrate` first")
    run = _luma_sr(args.model, args.scale, extra, args.device)
    images = load_images(Path(args.images))
    scale_fn = None
    if "head" in cal:
        from forensic_vsr.uncertainty_head import LearnedScale

        scale_fn = LearnedScale(cal["head"], card.path.parent, args.scale)
    samples = [make_sample(rgb_to_y(img), args.scale, run, scale_fn) for _name, img in images]
    row = {
        "model": args.model,
        "scale": args.scale,
        "images": len(images),
        "alpha": cal["alpha"],
        **evaluate(samples, args.scale, cal["lambda"]),
    }
    print(
        f"{'model':<20} {'scale':>5} {'imgs':>4} {'alpha':>5} {'cover':>6} {'width':>7} {'rho(w,|e|)':>10} {'AUSE':>6} {'rho(S,|e|)':>10}"
    )
    print(
        f"{row['model']:<20} {'x' + str(args.scale):>5} {row['images']:>4} {row['alpha']:>5} {row['coverage']:>6.3f} "
        f"{row['mean_width']:>7.2f} {row['spearman_width_abs_error']:>10.3f} {row['ause_normalized']:>6.3f} "
        f"{row['spearman_S_abs_error']:>10.3f}"
    )
    if args.json:
        _write_json(args.json, row)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import json

    from forensic_vsr.training.train import DEFAULT_CACHE, train

    summary = train(
        Path(args.config),
        Path(args.out),
        cache=Path(args.cache) if args.cache else DEFAULT_CACHE,
        stop_after=args.stop_after,
        show_progress=False if args.quiet else None,
    )
    print(json.dumps(summary))
    return 0


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default="evidential", choices=["evidential", "investigative", "demonstrative"])
    p.add_argument("--model", help="model card id (see `fvsr models list`); default lanczos")
    p.add_argument(
        "--ops",
        help="operations in order, comma-separated, e.g. deinterlace,deblur,restore,sr: any x1 operation "
        "(deinterlace, deblur, restore = fidelity-restore, stabilise, integrate) and last the main one; "
        "sr stands for --model at --scale. The order is recorded.",
    )
    p.add_argument("--weights", help="a weights file (state dict) you bring; unvetted unless a card names its sha256")
    p.add_argument("--scale", type=int, default=2, help="integer scale factor (1 for a restoration model such as fidelity-restore)")
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
    p.add_argument("--roi", help="--model deblur: X,Y,W,H region to estimate the PSF on and restore (default: the whole frame)")
    p.add_argument("--policy", help="a policy file of your own (validated against policies/schema.json)")
    p.add_argument(
        "--override-policy", metavar="REASON", help="accept an evidential --policy weaker than the built-in one; the reason is recorded"
    )
    p.add_argument("--models-dir", action="append", help="an extra directory of model cards (repeatable; also FVSR_MODELS_PATH)")
    p.add_argument(
        "--no-maps", action="store_true", help="skip the synthesized-content/contradiction maps (refused where the policy requires them)"
    )
    p.add_argument("--no-report", action="store_true", help="skip report.pdf (refused where the policy requires it)")


def _cmd_enhance(args: argparse.Namespace) -> int:
    from forensic_vsr.enhance import Examiner, enhance, parse_frames

    signer = _signer(args)
    recipe = _recipe(args, frames=parse_frames(args.frames))
    bundle = enhance(
        Path(args.evidence),
        Path(args.output),
        recipe,
        Examiner(args.examiner, args.case, signer, _certificate(args)),
        show_progress=None if not args.quiet else False,
    )
    print(f"bundle written: {bundle}")
    return 0


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    from forensic_vsr.audit.keys import generate, read_passphrase

    signer = generate(Path(args.out), args.name, read_passphrase(confirm=True))
    print(
        f"private key: {args.out} (encrypted, mode 0600)\npublic key:  {args.out}.pub\n"
        f"certificate: {args.out}.crt (self-signed, for report signatures)\nkey id:      {signer.keyid}"
    )
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.verify import read_chain, verify_bundle
    from forensic_vsr.report import report_checks

    key = load_public_key(Path(args.pubkey))
    evidence = Path(args.evidence) if args.evidence else None
    if args.reproduce and evidence is None:
        raise UsageError("--reproduce needs --evidence FILE (the recipe is re-run on it)")
    checks = list(verify_bundle(Path(args.bundle), key, evidence, extra_checks=[report_checks]))
    if args.reproduce and all(c.ok for c in checks):
        from forensic_vsr.audit.reproduce import reproduce

        view, _ = read_chain(Path(args.bundle), key)
        checks += reproduce(Path(args.bundle), view, evidence)  # type: ignore[arg-type]
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    incomplete = any(c.status == "INCOMPLETE" for c in checks)
    verdict = "INCOMPLETE" if incomplete else ("FAIL" if failed else "PASS")
    print(f"{verdict}: {len(checks) - len(failed)} of {len(checks)} checks passed")
    return 0 if not failed else 1


def _cmd_prove(args: argparse.Namespace) -> int:
    import json

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
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
        print(f"proof for frame {args.frame} written: {out}", file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    """Render a bundle's report again (unsigned) from its verified records, e.g. for a bundle made
    with --no-report or to compare with the signed report.pdf."""
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.verify import read_chain, verify_bundle
    from forensic_vsr.report import render_report

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
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        render_report(bundle, view, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"report written: {out} (unsigned; the signed original is {bundle / 'report.pdf'})")
    return 0


def _cmd_verify_proof(args: argparse.Namespace) -> int:
    import json

    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.proof import verify_proof

    key = load_public_key(Path(args.pubkey))
    try:
        proof = json.loads(Path(args.proof).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{args.proof}: not a readable proof file ({exc})") from None
    checks = verify_proof(proof, key)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{'FAIL' if failed else 'PASS'}: {len(checks) - len(failed)} of {len(checks)} checks passed")
    return 0 if not failed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fvsr", description="Forensic, verifiable video enhancement.")
    parser.add_argument("--version", action="version", version=f"forensic-vsr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enhance", help="enhance an evidence video into a signed bundle")
    p.add_argument("evidence", help="evidence video (opened read-only)")
    p.add_argument("-o", "--output", required=True, help="bundle directory to create (must not exist)")
    _add_recipe_args(p)
    p.add_argument("--frames", help="A:B, the half-open range of decoded frames to process")
    p.add_argument("--still", type=int, action="append", help="also show this output frame in the report (repeatable)")
    p.add_argument("--cert", help="PEM certificate (then chain) for the examiner key, to sign report.pdf; default KEY.crt")
    p.add_argument("--key", help="examiner's private key (or FVSR_KEY); passphrase from FVSR_KEY_PASSPHRASE or prompt")
    p.add_argument("--case", help="case identifier")
    p.add_argument("--examiner", default=os.environ.get("FVSR_EXAMINER", os.environ.get("USER", "examiner")))
    p.add_argument(
        "--accept-decode-errors",
        action="store_true",
        help="process a damaged stream (the damage is counted and recorded) instead of refusing it",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_enhance)

    p = sub.add_parser("hash", help="print ffmpeg-compatible framehash (sha256) of a video")
    p.add_argument("file")
    p.set_defaults(func=_cmd_hash)

    p = sub.add_parser("verify", help="verify a bundle offline against the examiner's public key")
    p.add_argument("bundle")
    p.add_argument("--pubkey", required=True, help="examiner public key (PEM) obtained independently of the bundle")
    p.add_argument("--evidence", help="the evidence file: check its sha256 and frame hashes")
    p.add_argument("--reproduce", action="store_true", help="re-run the recorded recipe and compare output frames")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("prove", help="write a self-contained inclusion proof for one output frame")
    p.add_argument("bundle")
    p.add_argument("--frame", type=int, required=True)
    p.add_argument("--pubkey", help="examiner public key; the chain must verify before a proof is made")
    p.add_argument("-o", "--output", help="proof file (default: stdout)")
    p.set_defaults(func=_cmd_prove)

    p = sub.add_parser("report", help="render a bundle's report again (unsigned) from its verified records")
    p.add_argument("bundle")
    p.add_argument("--pubkey", required=True, help="the examiner's public key")
    p.add_argument("-o", "--output", required=True, help="PDF to write")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("verify-proof", help="verify a frame proof against the examiner's public key")
    p.add_argument("proof")
    p.add_argument("--pubkey", required=True)
    p.set_defaults(func=_cmd_verify_proof)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("sr", help="PSNR/SSIM on Y of super-resolution models (papers' protocol)")
    p.add_argument("--images", required=True, help="a folder of ground-truth images (PNG/JPEG/BMP/TIFF)")
    p.add_argument("--scale", type=int, required=True, choices=[2, 3, 4])
    p.add_argument("--model", action="append", help="model id (repeatable); default: every SR card for the scale")
    p.add_argument("--models-dir", action="append")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", help="write the results as JSON")
    p.set_defaults(func=_cmd_bench_sr)

    p = bench.add_parser("mfsr", help="multi-frame SR on sequences made by shifting each image by known sub-pixel motions")
    p.add_argument("--images", required=True, help="a folder of images (PNG/JPEG/BMP/TIFF); the central 352x288 of each is used")
    p.add_argument("--scale", type=int, default=2, choices=[2, 3, 4])
    p.add_argument("--model", default="mfsr-x2")
    p.add_argument("--frames", type=int, default=8, help="frames per sequence (default 8)")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise std in 8-bit levels added to each frame (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models-dir", action="append")
    p.add_argument("--json", help="write the result as JSON")
    p.set_defaults(func=_cmd_bench_mfsr)

    p = bench.add_parser("deblur", help="Wiener deblurring with the true and the blindly estimated PSF over a fixed PSF set")
    p.add_argument("--images", required=True, help="a folder of sharp images (PNG/JPEG/BMP/TIFF)")
    p.add_argument("--noise", type=float, default=1.0, help="Gaussian noise std in 8-bit levels (default 1, i.e. 1/255)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results as JSON")
    p.set_defaults(func=_cmd_bench_deblur)

    p = bench.add_parser("restore", help="PSNR-Y gain of a x1 restoration model on a real distorted/pristine video pair")
    p.add_argument("--distorted", required=True)
    p.add_argument("--pristine", required=True)
    p.add_argument("--model", default="fidelity-restore")
    p.add_argument("--limit", type=int, help="only the first N frames")
    p.add_argument("--models-dir", action="append")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", help="write the result as JSON")
    p.set_defaults(func=_cmd_bench_restore)

    p = bench.add_parser("uncertainty", help="coverage and ranking quality of the calibrated intervals and of S")
    p.add_argument("--images", required=True, help="a folder of ground-truth images (PNG/JPEG/BMP/TIFF)")
    p.add_argument("--scale", type=int, required=True, choices=[2, 3, 4])
    p.add_argument("--model", required=True)
    p.add_argument("--models-dir", action="append")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", help="write the result as JSON")
    p.set_defaults(func=_cmd_bench_uncertainty)

    p = sub.add_parser("calibrate", help="calibrate a model's intervals on a training config's held-out images")
    p.add_argument("config", help="training config whose data.validation images are the calibration set")
    p.add_argument("--model", required=True)
    p.add_argument("--scale", type=int, required=True, choices=[2, 3, 4])
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--delta", type=float, default=0.1)
    p.add_argument("--tile", type=int, default=32, help="calibration unit: square tiles of this size (default 32)")
    p.add_argument("--models-dir", action="append", help="an extra directory of model cards (the card found is updated in place)")
    p.add_argument("--cache", help="where fetched training packages are kept (default data/train)")
    p.add_argument(
        "--head-from",
        metavar="TRAIN_CONFIG",
        help="first train a learned Laplace scale head on the frozen model over this training config's training images, "
        "saved beside the card, and calibrate its scale (default: the fixed formula)",
    )
    p.add_argument("--head-patches", type=int, default=384, help="96x96 training patches for the head (default 384)")
    p.add_argument("--head-steps", type=int, default=3000, help="head training steps (default 3000)")
    p.add_argument("--head-seed", type=int, default=1)
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("train", help="train a fidelity model from a config (resumes from its checkpoint)")
    p.add_argument("config", help="training config, e.g. models/train/fidelity-sr-x2.json")
    p.add_argument("--out", required=True, help="output folder: weights, card, log, checkpoints")
    p.add_argument("--cache", help="where fetched training packages are kept (default data/train)")
    p.add_argument("--stop-after", type=int, help="stop once this many steps are done (resume later with the same command)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    pol = sub.add_parser("policy", help="policies").add_subparsers(dest="policy_command", required=True)
    p = pol.add_parser("explain", help="print the policy decision for a recipe without running it")
    _add_recipe_args(p)
    p.set_defaults(func=_cmd_policy_explain)

    models = sub.add_parser("models", help="model registry").add_subparsers(dest="models_command", required=True)
    p = models.add_parser("list", help="list model cards")
    p.add_argument("--models-dir", action="append")
    p.set_defaults(func=_cmd_models_list)
    p = models.add_parser("show", help="print one model card")
    p.add_argument("id")
    p.add_argument("--models-dir", action="append")
    p.set_defaults(func=_cmd_models_show)

    keys = sub.add_parser("keys", help="examiner keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("generate", help="create an encrypted Ed25519 key pair")
    p.add_argument("--out", required=True, help="private key path; the public key goes to PATH.pub")
    p.add_argument("--name", default=os.environ.get("USER", "examiner"), help="examiner name")
    p.set_defaults(func=_cmd_keys_generate)
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
