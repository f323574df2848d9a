"""`fvsr train`: reproducible, resumable training on real files (a folder of images the test
writes), the degradations it draws, and the card it writes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from forensic_vsr.models.registry import load_card
from forensic_vsr.training.degradations import restore_degrade, sr_degrade
from tests.conftest import run_fvsr


def _images(folder: Path, n: int = 3, blur: float = 2.0) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        noise = rng.standard_normal((72, 80, 3)) * 60
        img = cv2.GaussianBlur(noise, (0, 0), blur) + 128
        cv2.imwrite(str(folder / f"img{i}.png"), np.clip(img, 0, 255).astype(np.uint8))


def _config(tmp: Path, task: str = "sr", scale: int = 2, steps: int = 4, **train: float) -> Path:
    _images(tmp / "photos", blur=float(train.pop("blur", 2.0)))
    config = {
        "model_id": f"tiny-{task}",
        "task": task,
        "scale": scale,
        "architecture": {"name": "fvsr-resnet-sr", "params": {"scale": scale, "channels": int(train.pop("channels", 4)), "blocks": 1}},
        "data": {"sources": [{"dir": "photos"}], "validation": ["photos:img2.png"]},
        "degradation": {"h264_prob": 0.5},
        "train": {"seed": 3, "steps": steps, "batch": 2, "patch": 12, "lr": 1e-3, "threads": 1, "checkpoint_every": 2, **train},
        "card": {"description": "tiny test model", "degradation": {"operator": "bicubic-antialiased"}},
    }
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_config_gives_same_weights_and_resume_equals_uninterrupted(tmp_path):
    config = _config(tmp_path)
    assert run_fvsr("train", str(config), "--out", str(tmp_path / "a"), "-q").returncode == 0
    assert run_fvsr("train", str(config), "--out", str(tmp_path / "b"), "-q").returncode == 0
    first = _sha(tmp_path / "a" / "tiny-sr.pth")
    assert first == _sha(tmp_path / "b" / "tiny-sr.pth")
    # interrupted after 2 of 4 steps, then resumed by the same command
    stopped = run_fvsr("train", str(config), "--out", str(tmp_path / "c"), "--stop-after", "2", "-q")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["finished"] is False
    assert not (tmp_path / "c" / "tiny-sr.pth").exists()
    assert run_fvsr("train", str(config), "--out", str(tmp_path / "c"), "-q").returncode == 0
    assert _sha(tmp_path / "c" / "tiny-sr.pth") == first
    # training moved the weights away from the bicubic start
    import torch

    state = torch.load(tmp_path / "a" / "tiny-sr.pth", weights_only=True)
    assert float(state["tail.0.weight"].abs().sum()) > 0


def test_card_names_every_file_and_loads_as_a_registry_card(tmp_path):
    config = _config(tmp_path)
    assert run_fvsr("train", str(config), "--out", str(tmp_path / "o"), "-q").returncode == 0
    card = load_card(tmp_path / "o" / "tiny-sr.json")
    assert card.weights_sha256 == _sha(tmp_path / "o" / "tiny-sr.pth")
    data = card.data["training"]["data"]
    files = {f["file"]: f["sha256"] for f in data["train_files"]}
    assert files == {f"photos:img{i}.png": _sha(tmp_path / "photos" / f"img{i}.png") for i in (0, 1)}
    assert [f["file"] for f in data["validation_files"]] == ["photos:img2.png"]
    assert card.data["training"]["config_sha256"] == _sha(config)
    assert card.data["validation"]["held_out_training_sources"]["images"] == 1
    log = [json.loads(line) for line in (tmp_path / "o" / "tiny-sr.log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4]


def test_checkpoint_of_another_config_is_refused(tmp_path):
    config = _config(tmp_path)
    assert run_fvsr("train", str(config), "--out", str(tmp_path / "o"), "--stop-after", "2", "-q").returncode == 0
    changed = json.loads(config.read_text())
    changed["train"]["lr"] = 5e-4
    config.write_text(json.dumps(changed))
    done = run_fvsr("train", str(config), "--out", str(tmp_path / "o"), "-q")
    assert done.returncode != 0 and "another config" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("task", "scale", "batch"), [("sr", 2, 4), ("restore", 1, 8)])
def test_training_lowers_the_loss_and_beats_the_starting_point_on_held_out_data(tmp_path, task, scale, batch):
    """200 fixed-seed steps (restore: H.264 and JPEG degradations) lower the L1 of the network
    on the very batches it was trained on, compared with the network it started from (the
    bicubic upscale or identity), and raise the held-out PSNR gain over the classical baseline."""
    import torch
    import torch.nn.functional as F

    from forensic_vsr.models.arch import build, load_state_dict
    from forensic_vsr.training import data as tdata
    from forensic_vsr.training.train import Sampler, load_config, validate

    config = _config(tmp_path, task, scale, steps=200, batch=batch, lr=2e-3, checkpoint_every=200, channels=8, blur=0.8)
    done = run_fvsr("train", config, "--out", tmp_path / "o", "-q")
    assert done.returncode == 0, done.stderr
    cfg, _ = load_config(config)
    train_images, val_images = tdata.load(cfg["data"], tmp_path / "cache", tmp_path)
    sampler = Sampler(train_images, cfg)
    torch.manual_seed(cfg["train"]["seed"])
    start = build(cfg["architecture"])
    trained = build(cfg["architecture"])
    trained.load_state_dict(load_state_dict(tmp_path / "o" / f"tiny-{task}.pth"))
    batches = [sampler.batch_at(k) for k in range(200)]
    with torch.inference_mode():
        l1_start, l1_trained = (float(np.mean([F.l1_loss(net(x), y).item() for x, y in batches])) for net in (start, trained))
    assert l1_trained < 0.985 * l1_start, (l1_start, l1_trained)
    gain_start = validate(start, val_images, cfg)["gain_over_baseline_db"]  # type: ignore[index]
    gain_trained = validate(trained, val_images, cfg)["gain_over_baseline_db"]  # type: ignore[index]
    assert gain_trained > gain_start + 0.1, (gain_start, gain_trained)


def test_degradations_are_pure_functions_of_the_rng_and_really_degrade():
    clean = cv2.GaussianBlur(np.random.default_rng(1).standard_normal((64, 64)) * 80, (0, 0), 1.5) + 128
    a, pa = restore_degrade(clean, np.random.default_rng([5, 9]), {"h264_prob": 1.0, "noise_prob": 1.0})
    b, pb = restore_degrade(clean, np.random.default_rng([5, 9]), {"h264_prob": 1.0, "noise_prob": 1.0})
    assert np.array_equal(a, b) and pa == pb and "h264_crf" in pa
    assert np.abs(a - clean).mean() > 1.0
    j, pj = restore_degrade(clean, np.random.default_rng(2), {"h264_prob": 0.0})
    assert "jpeg_quality" in pj and j.dtype == np.float64
    lr = sr_degrade(clean, 2)
    assert lr.shape == (32, 32) and np.array_equal(lr, np.rint(lr))


def test_missing_config_is_one_line(tmp_path):
    done = run_fvsr("train", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o"))
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("field", ["model_id", "train"])
def test_incomplete_config_is_refused(tmp_path, field):
    config = _config(tmp_path)
    data = json.loads(config.read_text())
    del data[field]
    config.write_text(json.dumps(data))
    done = run_fvsr("train", str(config), "--out", str(tmp_path / "o"))
    assert done.returncode != 0 and field in done.stderr


def test_adversarial_fine_tuning_starts_from_pinned_weights_and_resumes_exactly(tmp_path):
    """The generative recipe (perceptual-sr-x4): generator from a fidelity model whose sha256 the
    config pins, a discriminator, L1 + feature matching + adversarial; resumable bit for bit."""
    base = _config(tmp_path)
    assert run_fvsr("train", str(base), "--out", str(tmp_path / "base"), "-q").returncode == 0
    init = tmp_path / "base" / "tiny-sr.pth"
    config = json.loads(base.read_text())
    config.update(
        model_id="tiny-gan",
        init={"weights": "base/tiny-sr.pth", "sha256": _sha(init)},
        gan={"channels": 4, "l1_weight": 0.1, "fm_weight": 1.0, "adv_weight": 0.01},
    )
    config["card"]["class"] = "generative"
    gan_config = tmp_path / "gan.json"
    gan_config.write_text(json.dumps(config))
    assert run_fvsr("train", str(gan_config), "--out", str(tmp_path / "g1"), "-q").returncode == 0
    assert run_fvsr("train", str(gan_config), "--out", str(tmp_path / "g2"), "--stop-after", "2", "-q").returncode == 0
    assert run_fvsr("train", str(gan_config), "--out", str(tmp_path / "g2"), "-q").returncode == 0
    weights = _sha(tmp_path / "g1" / "tiny-gan.pth")
    assert weights == _sha(tmp_path / "g2" / "tiny-gan.pth") != _sha(init)
    card = json.loads((tmp_path / "g1" / "tiny-gan.json").read_text())
    assert card["class"] == "generative" and card["training"]["init"]["sha256"] == _sha(init)
    log = [json.loads(line) for line in (tmp_path / "g1" / "tiny-gan.log.jsonl").read_text().splitlines()]
    assert all("loss" in entry for entry in log)
    # a config whose pinned init does not match the file is refused before training
    config["init"]["sha256"] = "0" * 64
    gan_config.write_text(json.dumps(config))
    bad = run_fvsr("train", str(gan_config), "--out", str(tmp_path / "g3"), "-q")
    assert bad.returncode != 0 and "sha256" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "g3" / "tiny-gan.pth").exists()
