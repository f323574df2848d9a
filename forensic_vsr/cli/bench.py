"""Benchmarks, calibration and training: `fvsr bench ...`, `fvsr calibrate`, `fvsr train`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forensic_vsr.atomic import atomic_output, atomic_write
from forensic_vsr.cli.common import models_dirs, write_json
from forensic_vsr.errors import UsageError


def _projected(net: Any) -> Callable[[Any], Any]:
    import numpy as np

    from forensic_vsr.models.runner import to_samples
    from forensic_vsr.ops.consistency import Projector

    def run(y: Any) -> Any:
        x_hat = net.predict(y, 255)
        p = Projector(x_hat.shape[0], x_hat.shape[1], net.scale)
        return to_samples(p.project_in_range(x_hat, y.astype(np.float64), 255, 0.25), 255, np.uint8)

    return run


def cmd_bench_sr(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import classical_luma, evaluate, load_images
    from forensic_vsr.models.registry import registry, resolve
    from forensic_vsr.ops.resample import KERNEL_SUPPORT

    extra = models_dirs(args)
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
        write_json(args.json, {"images_dir": str(args.images), "results": [r.to_json() for r in rows]})
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
    from forensic_vsr.uncertainty.head import NAME, LearnedScale, train_head, training_patches

    head_config, head_sha = load_config(Path(args.head_from))
    train_images, _ = tdata.load(head_config["data"], cache, Path(args.head_from).resolve().parent)
    feats, errs = training_patches([im.luma for im in train_images], args.scale, run, args.head_patches, 96, args.head_seed)
    torch.set_num_threads(1)
    head, history = train_head(feats, errs, steps=args.head_steps, seed=args.head_seed)
    name = f"{card.id}.uhead-x{args.scale}.pth"
    path = card.path.parent / name
    with atomic_output(path) as tmp:
        torch.save({k: v.detach().clone().contiguous() for k, v in sorted(head.state_dict().items())}, tmp)
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


def cmd_calibrate(args: argparse.Namespace) -> int:
    """λ for a model and scale from the held-out images of a training config (never a benchmark),
    written into the model card with the files' sha256."""

    from forensic_vsr.models.registry import registry
    from forensic_vsr.training import data as tdata
    from forensic_vsr.training.train import DEFAULT_CACHE, load_config
    from forensic_vsr.uncertainty.calibration import SCALE_FORMULA, calibrate, make_sample
    from forensic_vsr.uncertainty.head import HEAD_FORMULA

    config, config_sha = load_config(Path(args.config))
    cache = Path(args.cache) if args.cache else DEFAULT_CACHE
    _train, held_out = tdata.load(config["data"], cache, Path(args.config).resolve().parent, require_train=False)
    if not held_out:
        raise UsageError(f"{args.config}: the config holds out no images (data.validation) to calibrate on")
    extra = models_dirs(args)
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
    atomic_write(card.path, json.dumps(data, indent=2) + "\n")
    print(json.dumps({"model": args.model, "scale": args.scale, **result}))
    return 0


def cmd_bench_mfsr(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import load_images, multiframe_benchmark
    from forensic_vsr.models.registry import registry
    from forensic_vsr.ops.mfsr import MfsrParams

    card = registry(models_dirs(args)).get(args.model)
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
        write_json(args.json, result)
    return 0


def cmd_bench_deblur(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import deblur_benchmark, load_images

    result = deblur_benchmark(load_images(Path(args.images)), noise=args.noise, seed=args.seed)
    print(f"{'psf':<28} {'blurred':>8} {'known':>8} {'estim.':>8}   ({result['images']} images, PSNR-Y dB)")
    for row in result["results"]:  # type: ignore[attr-defined]
        p = row["psf"]
        name = f"motion {p['length']:g}px {p['angle']:g}deg" if p["kind"] == "motion" else f"defocus r={p['radius']:g}px"
        print(f"{name:<28} {row['blurred_psnr_y']:>8.3f} {row['known_psf_psnr_y']:>8.3f} {row['estimated_psf_psnr_y']:>8.3f}")
    print(f"mean gain: known PSF {result['mean_gain_known']:+.3f} dB, estimated PSF {result['mean_gain_estimated']:+.3f} dB")
    if args.json:
        write_json(args.json, result)
    return 0


def cmd_bench_restore(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import restore_benchmark
    from forensic_vsr.models.registry import resolve
    from forensic_vsr.models.runner import PlaneUpscaler

    model = resolve(args.model, None, models_dirs(args))
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
        write_json(args.json, result)
    return 0


def cmd_bench_uncertainty(args: argparse.Namespace) -> int:
    from forensic_vsr.benchmark import load_images, rgb_to_y
    from forensic_vsr.models.registry import registry
    from forensic_vsr.uncertainty.calibration import evaluate, make_sample

    extra = models_dirs(args)
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
        from forensic_vsr.uncertainty.head import LearnedScale

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
        write_json(args.json, row)
    return 0


def cmd_train(args: argparse.Namespace) -> int:

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


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("sr", help="PSNR/SSIM on Y of super-resolution models (papers' protocol)")
    p.add_argument("--images", required=True, help="a folder of ground-truth images (PNG/JPEG/BMP/TIFF)")
    p.add_argument("--scale", type=int, required=True, choices=[2, 3, 4])
    p.add_argument("--model", action="append", help="model id (repeatable); default: every SR card for the scale")
    p.add_argument("--models-dir", action="append")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", help="write the results as JSON")
    p.set_defaults(func=cmd_bench_sr)

    p = bench.add_parser("mfsr", help="multi-frame SR on sequences made by shifting each image by known sub-pixel motions")
    p.add_argument("--images", required=True, help="a folder of images (PNG/JPEG/BMP/TIFF); the central 352x288 of each is used")
    p.add_argument("--scale", type=int, default=2, choices=[2, 3, 4])
    p.add_argument("--model", default="mfsr-x2")
    p.add_argument("--frames", type=int, default=8, help="frames per sequence (default 8)")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise std in 8-bit levels added to each frame (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models-dir", action="append")
    p.add_argument("--json", help="write the result as JSON")
    p.set_defaults(func=cmd_bench_mfsr)

    p = bench.add_parser("deblur", help="Wiener deblurring with the true and the blindly estimated PSF over a fixed PSF set")
    p.add_argument("--images", required=True, help="a folder of sharp images (PNG/JPEG/BMP/TIFF)")
    p.add_argument("--noise", type=float, default=1.0, help="Gaussian noise std in 8-bit levels (default 1, i.e. 1/255)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results as JSON")
    p.set_defaults(func=cmd_bench_deblur)

    p = bench.add_parser("restore", help="PSNR-Y gain of a x1 restoration model on a real distorted/pristine video pair")
    p.add_argument("--distorted", required=True)
    p.add_argument("--pristine", required=True)
    p.add_argument("--model", default="fidelity-restore")
    p.add_argument("--limit", type=int, help="only the first N frames")
    p.add_argument("--models-dir", action="append")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", help="write the result as JSON")
    p.set_defaults(func=cmd_bench_restore)

    p = bench.add_parser("uncertainty", help="coverage and ranking quality of the calibrated intervals and of S")
    p.add_argument("--images", required=True, help="a folder of ground-truth images (PNG/JPEG/BMP/TIFF)")
    p.add_argument("--scale", type=int, required=True, choices=[2, 3, 4])
    p.add_argument("--model", required=True)
    p.add_argument("--models-dir", action="append")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", help="write the result as JSON")
    p.set_defaults(func=cmd_bench_uncertainty)

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
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("train", help="train a fidelity model from a config (resumes from its checkpoint)")
    p.add_argument("config", help="training config, e.g. models/train/fidelity-sr-x2.json")
    p.add_argument("--out", required=True, help="output folder: weights, card, log, checkpoints")
    p.add_argument("--cache", help="where fetched training packages are kept (default data/train)")
    p.add_argument("--stop-after", type=int, help="stop once this many steps are done (resume later with the same command)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
