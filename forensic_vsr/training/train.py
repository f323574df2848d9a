"""`fvsr train CONFIG`: train a fidelity model reproducibly, resumably, with an L1 loss.

Reproducibility: the network is initialised from `torch.manual_seed(seed)`, and the batch of
step k is drawn from `numpy.random.default_rng([seed, k])`, so a batch depends on nothing but
the seed and the step. Checkpoints hold the weights, the optimiser state and the step; a run
resumed from one continues exactly as an uninterrupted run would. CPU training uses a fixed
thread count (the config's `threads`): the order of floating-point reductions depends on it,
so the same config on the same platform and thread count gives the same weights bit for bit.

Outputs in OUT: `ID.pth` (a tensor state dict), `ID.json` (the model card: architecture,
weights sha256, the training data's packages and per-file sha256, the config and its sha256,
held-out validation), `ID.log.jsonl` (loss and validation over time), `checkpoints/ID.pt`."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from forensic_vsr import __version__
from forensic_vsr.errors import UsageError
from forensic_vsr.media import file_sha256
from forensic_vsr.models.arch import build
from forensic_vsr.progress import progress
from forensic_vsr.training import data as tdata
from forensic_vsr.training.degradations import restore_degrade, sr_degrade

DEFAULT_CACHE = Path("data") / "train"


def load_config(path: Path) -> tuple[dict[str, Any], str]:
    try:
        raw = Path(path).read_bytes()
        config = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable training config ({exc})") from None
    for key in ("model_id", "task", "scale", "architecture", "data", "train", "card"):
        if key not in config:
            raise UsageError(f"{path}: training config lacks {key!r}")
    if config["task"] not in ("sr", "restore"):
        raise UsageError(f"{path}: task must be 'sr' or 'restore'")
    return config, hashlib.sha256(raw).hexdigest()


class Sampler:
    """Draws training pairs (degraded input, clean target) as a pure function of (seed, step)."""

    def __init__(self, images: list[tdata.TrainImage], config: dict[str, Any]) -> None:
        self.images = images
        self.task = config["task"]
        self.scale = int(config["scale"])
        t = config["train"]
        self.patch = int(t["patch"])  # input (low-resolution) patch size
        self.batch = int(t["batch"])
        self.seed = int(t["seed"])
        self.degradation = config.get("degradation", {})
        hr = self.patch * self.scale
        usable = [im for im in images if min(im.luma.shape) >= hr]
        if not usable:
            raise UsageError(f"no training image is at least {hr}x{hr} pixels")
        self.images = usable
        areas = np.array([im.luma.size for im in usable], np.float64)
        self.p = areas / areas.sum()

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        hr_size = self.patch * self.scale
        xs, ys = [], []
        for _ in range(self.batch):
            im = self.images[int(rng.choice(len(self.images), p=self.p))].luma
            top = int(rng.integers(0, im.shape[0] - hr_size + 1))
            left = int(rng.integers(0, im.shape[1] - hr_size + 1))
            hr = im[top : top + hr_size, left : left + hr_size].astype(np.float64)
            hr = np.rot90(hr, int(rng.integers(4)))
            if rng.random() < 0.5:
                hr = hr[:, ::-1]
            hr = np.ascontiguousarray(hr)
            if self.task == "sr":
                x = sr_degrade(hr, self.scale)
            else:
                x, _ = restore_degrade(hr, rng, self.degradation)
            xs.append(x)
            ys.append(hr)
        to_t = lambda a: torch.from_numpy((np.stack(a)[:, None] / 255.0).astype(np.float32))  # noqa: E731
        return to_t(xs), to_t(ys)


def learning_rate(config: dict[str, Any], step: int) -> float:
    t = config["train"]
    lr, floor, steps = float(t["lr"]), float(t.get("lr_min", 0.0)), int(t["steps"])
    warmup = int(t.get("warmup", 0))
    if step < warmup:
        return lr * (step + 1) / warmup
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * min(step, steps) / steps))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def validate(net: torch.nn.Module, images: list[tdata.TrainImage], config: dict[str, Any]) -> dict[str, float] | None:
    """Mean PSNR on held-out images from the training sources (never a benchmark set)."""
    if not images:
        return None
    scale, task = int(config["scale"]), config["task"]
    seed = int(config["train"]["seed"])
    gains, outs = [], []
    net.eval()
    with torch.inference_mode():
        for i, im in enumerate(images):
            h, w = (s - s % scale for s in im.luma.shape)
            hr = im.luma[:h, :w].astype(np.float64)
            if task == "sr":
                from forensic_vsr.ops.resample import upscale_plane

                x = sr_degrade(hr, scale)
                base = upscale_plane(x.astype(np.uint8), kind="bicubic", scale=scale, out_width=w, out_height=h).astype(np.float64)
            else:
                x, _ = restore_degrade(hr, np.random.default_rng([seed, 1 << 40, i]), config.get("degradation", {}))
                base = x
            y = net(torch.from_numpy((x / 255.0).astype(np.float32))[None, None])[0, 0].numpy().astype(np.float64) * 255
            y = np.clip(np.rint(y), 0, 255)
            c = scale
            crop = (slice(c, -c), slice(c, -c))
            outs.append(psnr(y[crop], hr[crop]))
            gains.append(psnr(y[crop], hr[crop]) - psnr(base[crop], hr[crop]))
    net.train()
    return {"psnr_y": round(float(np.mean(outs)), 4), "gain_over_baseline_db": round(float(np.mean(gains)), 4), "images": len(images)}


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def train(
    config_path: Path,
    out_dir: Path,
    cache: Path = DEFAULT_CACHE,
    stop_after: int | None = None,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) the training a config describes. Returns a summary; with `stop_after`,
    stops once that many steps are done (the checkpoint lets a later call go on)."""
    config, config_sha = load_config(config_path)
    t = config["train"]
    steps, every = int(t["steps"]), int(t.get("checkpoint_every", 100))
    threads = int(t.get("threads", 1))
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    model_id = config["model_id"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "checkpoints").mkdir(exist_ok=True)
    ckpt_path = out_dir / "checkpoints" / f"{model_id}.pt"
    log_path = out_dir / f"{model_id}.log.jsonl"

    train_images, val_images = tdata.load(config["data"], cache, Path(config_path).resolve().parent)
    sampler = Sampler(train_images, config)

    torch.manual_seed(int(t["seed"]))
    net = build(config["architecture"])
    gan = config.get("gan")
    disc = disc_opt = gan_loss = None
    if gan is not None:
        from forensic_vsr.training.gan import GanLoss, PatchDiscriminator, load_init

        net.load_state_dict(load_init(config["init"], Path(config_path).resolve().parent), strict=True)
        disc = PatchDiscriminator(int(gan.get("channels", 32)))
        disc_opt = torch.optim.Adam(disc.parameters(), lr=float(gan.get("d_lr", 1e-4)), betas=(0.5, 0.999), eps=1e-8)
        gan_loss = GanLoss(gan)
    optimiser = torch.optim.Adam(net.parameters(), lr=float(t["lr"]), betas=(0.9, 0.999), eps=1e-8)
    step = 0
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state["config_sha256"] != config_sha:
            raise UsageError(
                f"{ckpt_path}: checkpoint belongs to another config (sha256 {state['config_sha256'][:12]}…); move it away to start afresh"
            )
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        if disc is not None and disc_opt is not None:
            disc.load_state_dict(state["disc"])
            disc_opt.load_state_dict(state["disc_optimiser"])
        step = int(state["step"])
    else:
        log_path.unlink(missing_ok=True)
    net.train()
    target = steps if stop_after is None else min(steps, stop_after)
    started = time.perf_counter()
    running = 0.0
    with progress(f"train {model_id}", target - step if target > step else 0, show_progress) as advance, open(log_path, "a") as log:
        while step < target:
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(config, step)
            x, y = sampler.batch_at(step)
            if disc is None:
                loss = F.l1_loss(net(x), y)
            else:
                assert disc_opt is not None and gan_loss is not None
                fake = net(x)
                loss_d = gan_loss.discriminator(disc, y, fake)
                disc_opt.zero_grad(set_to_none=True)
                loss_d.backward()
                disc_opt.step()
                loss, _ = gan_loss.generator(disc, y, fake)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            running += loss.item()
            advance()
            if step % every == 0 or step == target:
                mean = round(running / (every if step % every == 0 else (step % every or every)), 6)
                entry: dict[str, Any] = {"step": step, "l1" if disc is None else "loss": mean}
                running = 0.0
                vevery = int(t.get("validate_every", every))
                if step % vevery == 0 or step == steps:
                    entry["validation"] = validate(net, val_images, config)
                log.write(json.dumps(entry) + "\n")
                log.flush()
                ckpt = {"model": net.state_dict(), "optimiser": optimiser.state_dict(), "step": step, "config_sha256": config_sha}
                if disc is not None and disc_opt is not None:
                    ckpt.update(disc=disc.state_dict(), disc_optimiser=disc_opt.state_dict())
                _atomic_torch_save(ckpt, ckpt_path)
    summary: dict[str, Any] = {"model_id": model_id, "step": step, "steps": steps, "seconds": round(time.perf_counter() - started, 1)}
    if step < steps:
        summary["finished"] = False
        return summary
    weights_path = out_dir / f"{model_id}.pth"
    _atomic_torch_save({k: v.detach().clone().contiguous() for k, v in sorted(net.state_dict().items())}, weights_path)
    weights_sha = file_sha256(weights_path)
    validation = validate(net, val_images, config)
    card = _card(config, config_path, config_sha, weights_path.name, weights_sha, train_images, val_images, validation, threads)
    _atomic_write(out_dir / f"{model_id}.json", json.dumps(card, indent=2) + "\n")
    summary.update(finished=True, weights_sha256=weights_sha, validation=validation)
    return summary


def _card(
    config: dict[str, Any],
    config_path: Path,
    config_sha: str,
    weights_file: str,
    weights_sha: str,
    train_images: list[tdata.TrainImage],
    val_images: list[tdata.TrainImage],
    validation: dict[str, float] | None,
    threads: int,
) -> dict[str, Any]:
    template = config["card"]
    packages = [
        {"debian": s["debian"], "version": s["version"], "deb_sha256": s["deb_sha256"]} for s in config["data"]["sources"] if "debian" in s
    ]
    return {
        "id": config["model_id"],
        "version": template.get("version", "1"),
        "task": config["task"],
        "scales": [int(config["scale"])],
        "class": template.get("class", "fidelity"),
        "description": template["description"],
        "architecture": {**config["architecture"], "why": template.get("why", "")},
        "weights": {"file": weights_file, "sha256": weights_sha},
        "deterministic": True,
        "precisions": ["fp32"],
        "degradation": template["degradation"],
        "training": {
            "tool": f"forensic-vsr {__version__} (fvsr train)",
            "config": Path(config_path).name,
            "config_sha256": config_sha,
            "loss": template.get("loss", "L1"),
            **({"init": config["init"]} if "init" in config else {}),
            "seed": int(config["train"]["seed"]),
            "steps": int(config["train"]["steps"]),
            "batch": int(config["train"]["batch"]),
            "patch": int(config["train"]["patch"]),
            "platform": {
                "machine": platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "threads": threads,
            },
            "reproducibility": (
                "Batches are a pure function of (seed, step) and initialisation of the seed; rerunning this config with the "
                "same thread count on the same platform reproduces the weights bit for bit (tested in tests/test_training.py). "
                "Another CPU or thread count changes floating-point reduction order and hence the low bits of the weights."
            ),
            "data": {
                "packages": packages,
                "predownscale": int(config["data"].get("predownscale", 1)),
                "train_files": tdata.manifest(train_images),
                "validation_files": tdata.manifest(val_images),
            },
        },
        "validation": {"held_out_training_sources": validation, **template.get("validation", {})},
        "license": template.get("license", "Apache-2.0"),
        "references": template.get("references", []),
    }
