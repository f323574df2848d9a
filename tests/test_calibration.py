"""The calibrated interval layer: risk control holds on fresh draws, the ranking metrics are
right on cases with known answers, and `fvsr calibrate` / `fvsr bench uncertainty` run end to
end on real files."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from forensic_vsr.benchmark import classical_luma
from forensic_vsr.uncertainty.calibration import Sample, ause_normalized, calibrate, evaluate, make_sample, spearman
from tests.conftest import run_fvsr


def _photo(rng: np.random.Generator, h: int = 96, w: int = 128) -> np.ndarray:
    """A synthetic 'photograph': smooth regions plus edges and texture at random places."""
    base = cv2.GaussianBlur(rng.standard_normal((h, w)) * 90, (0, 0), 6.0) + 128
    edges = (cv2.GaussianBlur(rng.standard_normal((h, w)), (0, 0), 3.0) > 0) * rng.uniform(20, 60)
    texture = cv2.GaussianBlur(rng.standard_normal((h, w)), (0, 0), 0.8) * rng.uniform(0, 25)
    return np.clip(base + edges + texture, 16, 235)


def test_risk_is_controlled_on_fresh_images():
    run = classical_luma("lanczos", 2)
    rng = np.random.default_rng(11)
    cal = [make_sample(_photo(rng), 2, run) for _ in range(12)]
    result = calibrate(cal, 2, alpha=0.1, delta=0.1, tile=8)
    assert result["empirical_risk"] + result["hoeffding_term"] <= 0.1
    fresh = [make_sample(_photo(rng), 2, run) for _ in range(12)]
    got = evaluate(fresh, 2, result["lambda"])
    assert got["coverage"] >= 0.88  # at least 1 - alpha, up to sampling noise
    assert got["spearman_width_abs_error"] > 0.2
    # a smaller lambda covers less: the choice is the smallest that controls the risk
    assert evaluate(fresh, 2, result["lambda"] * 0.5)["coverage"] < got["coverage"]


def test_rank_metrics_on_known_cases():
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 10, 5000)
    assert spearman(e, e**2) == pytest.approx(1.0)
    assert spearman(e, -e) == pytest.approx(-1.0)
    assert abs(spearman(e, rng.uniform(0, 1, 5000))) < 0.05
    assert ause_normalized(e, e) == pytest.approx(0.0, abs=1e-9)  # an oracle ranking
    assert ause_normalized(rng.uniform(0, 1, 5000), e) > 0.2  # a random one is far from it


def _exchangeable(rng: np.random.Generator, n: int, size: int = 132) -> list[Sample]:
    """Images whose errors are u * z with z iid standard normal and u an arbitrary positive,
    spatially varying scale: |error| / u is iid |N(0, 1)|, so the miss rate of [x - lam u, x + lam u]
    is erfc(lam / sqrt 2) exactly, and calibration tiles and fresh tiles are exchangeable."""
    samples = []
    for _ in range(n):
        u = 1 + 16 * np.abs(cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), 4.0))
        zero = np.zeros((size, size))
        samples.append(Sample(truth=zero, output=u * rng.standard_normal((size, size)), scale_u=u, s=zero))
    return samples


def test_risk_control_guarantee_on_exchangeable_data():
    alpha = 0.1
    rng = np.random.default_rng(2024)
    result = calibrate(_exchangeable(rng, 20), 2, alpha=alpha, delta=0.1, tile=16)
    lam, bound = result["lambda"], result["hoeffding_term"]
    assert result["tiles"] == 20 * 8 * 8 and bound == pytest.approx(math.sqrt(math.log(10) / (2 * 1280)), abs=1e-5)
    true_miss = math.erfc(lam / math.sqrt(2))
    assert true_miss <= alpha  # the promise: the expected miss rate is at most alpha
    # and lambda is not wastefully large: the true risk sits at alpha minus the Hoeffding margin
    # (327,680 calibration pixels: sd of the empirical risk 5e-4; the lambda grid step moves it ~2e-3)
    assert abs(true_miss - (alpha - bound)) < 0.004
    fresh = _exchangeable(rng, 20)
    covered = evaluate(fresh, 2, lam)["coverage"]
    assert covered >= 1 - alpha and covered == pytest.approx(1 - true_miss, abs=0.003)
    shrunk = 0.9 * lam  # an interval 10% narrower no longer covers 1 - alpha, as erfc says
    assert math.erfc(shrunk / math.sqrt(2)) > alpha
    assert evaluate(fresh, 2, shrunk)["coverage"] < 1 - alpha
    assert evaluate(fresh, 2, shrunk)["coverage"] == pytest.approx(1 - math.erfc(shrunk / math.sqrt(2)), abs=0.003)


def test_spearman_uses_average_ranks_for_ties():
    # hand-computed: ranks (1.5, 1.5, 1.5, 1.5, 4) against (0, 1, 2, 3, 4) give 5 / sqrt(5 * 10);
    # ordinal ranks would call a flat region perfectly ranked (rho = 1)
    assert spearman(np.array([0.0, 0, 0, 0, 1]), np.arange(5.0)) == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    # ranks (0, 1.5, 1.5, 3) against (0, 2, 1, 3): 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 3, 2, 4])) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    # the order in which tied pixels are listed cannot change rho
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 4, 1000).astype(np.float64), rng.integers(0, 4, 1000).astype(np.float64)
    perm = rng.permutation(1000)
    assert spearman(a[perm], b[perm]) == pytest.approx(spearman(a, b), abs=1e-12)
    assert math.isnan(spearman(np.zeros(10), np.arange(10.0)))  # undefined for a constant input, as scipy's


def test_spearman_equals_scipy_on_heavily_tied_data():
    from scipy.stats import spearmanr  # scipy comes with scikit-image (test extras); not a dependency of ours

    rng = np.random.default_rng(9)
    for n, levels in ((50_000, 6), (20_000, 40), (5_000, 5_000)):
        e = rng.integers(0, levels, n).astype(np.float64)  # |error| in whole levels: many ties
        w = np.where(rng.random(n) < 0.6, 0.0, e + rng.integers(0, 3, n))  # a map that is 0 on flat regions
        assert spearman(w, e) == pytest.approx(spearmanr(w, e).statistic, abs=1e-12)


def test_impossible_risk_level_is_an_error():
    run = classical_luma("bicubic", 2)
    samples = [make_sample(_photo(np.random.default_rng(1), 40, 40), 2, run)]
    with pytest.raises(ValueError, match="controls the risk"):
        calibrate(samples, 2, alpha=0.01, delta=0.01)


def test_too_little_calibration_data_is_one_line(tmp_path: Path):
    (tmp_path / "cal").mkdir()
    y = _photo(np.random.default_rng(2), 40, 40).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "cal" / "0.png"), cv2.merge([y, y, y]))
    config = {"model_id": "c", "task": "sr", "scale": 2, "architecture": {}, "train": {}, "card": {}}
    (tmp_path / "cal.json").write_text(json.dumps({**config, "data": {"sources": [{"dir": "cal"}], "validation": ["*"]}}))
    done = run_fvsr("calibrate", tmp_path / "cal.json", "--model", "lanczos", "--scale", "2", "--alpha", "0.01")
    assert done.returncode == 2 and "controls the risk" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_calibrate_and_bench_cli_end_to_end(tmp_path: Path):
    rng = np.random.default_rng(5)
    (tmp_path / "cal").mkdir()
    (tmp_path / "eval").mkdir()
    for folder, n in (("cal", 6), ("eval", 3)):
        for i in range(n):
            y = _photo(rng, 96, 128).astype(np.uint8)
            cv2.imwrite(str(tmp_path / folder / f"{i}.png"), cv2.merge([y, y, y]))
    # a tiny real model, trained by the real command, so calibration writes into its own card
    config = {
        "model_id": "tiny-sr",
        "task": "sr",
        "scale": 2,
        "architecture": {"name": "fvsr-resnet-sr", "params": {"scale": 2, "channels": 4, "blocks": 1}},
        "data": {"sources": [{"dir": "cal"}], "validation": ["cal:5.png"]},
        "train": {"seed": 1, "steps": 2, "batch": 2, "patch": 12, "lr": 1e-3, "threads": 1, "checkpoint_every": 2},
        "card": {"description": "tiny test model", "degradation": {"operator": "bicubic-antialiased"}},
    }
    (tmp_path / "train.json").write_text(json.dumps(config))
    assert run_fvsr("train", tmp_path / "train.json", "--out", tmp_path / "m", "-q").returncode == 0
    cal_config = {**config, "data": {"sources": [{"dir": "cal"}], "validation": ["*"]}}
    (tmp_path / "cal.json").write_text(json.dumps(cal_config))
    done = run_fvsr("calibrate", tmp_path / "cal.json", "--model", "tiny-sr", "--scale", "2", "--models-dir", tmp_path / "m", "--tile", "8")
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "m" / "tiny-sr.json").read_text())
    entry = card["uncertainty"]["x2"]
    assert entry["lambda"] > 0 and len(entry["calibration_files"]) == 6 and entry["alpha"] == 0.1
    out = tmp_path / "u.json"
    bench = run_fvsr(
        "bench",
        "uncertainty",
        "--images",
        tmp_path / "eval",
        "--scale",
        "2",
        "--model",
        "tiny-sr",
        "--models-dir",
        tmp_path / "m",
        "--json",
        out,
    )
    assert bench.returncode == 0, bench.stderr
    row = json.loads(out.read_text())
    assert set(row) == {
        "model",
        "scale",
        "images",
        "alpha",
        "coverage",
        "mean_width",
        "spearman_width_abs_error",
        "ause_normalized",
        "spearman_S_abs_error",
    }
    # fresh images from the calibration images' generator: covered at 1 - alpha up to the noise of 3 images
    # (the guarantee itself is checked exactly in test_risk_control_guarantee_on_exchangeable_data)
    assert row["images"] == 3 and row["alpha"] == 0.1 and row["coverage"] >= 0.88
    missing = run_fvsr(
        "bench", "uncertainty", "--images", tmp_path / "eval", "--scale", "4", "--model", "tiny-sr", "--models-dir", tmp_path / "m"
    )
    assert missing.returncode != 0 and "fvsr calibrate" in missing.stderr

    # the learned scale head: trained on the frozen model over the *training* config's images,
    # saved beside the card with its sha256, then calibrated like the fixed formula
    done = run_fvsr(
        "calibrate", tmp_path / "cal.json", "--model", "tiny-sr", "--scale", "2", "--models-dir", tmp_path / "m", "--tile", "8",
        "--head-from", tmp_path / "train.json", "--head-patches", "6", "--head-steps", "10",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    entry = json.loads((tmp_path / "m" / "tiny-sr.json").read_text())["uncertainty"]["x2"]
    head = tmp_path / "m" / entry["head"]["file"]
    assert entry["head"]["sha256"] == hashlib.sha256(head.read_bytes()).hexdigest()
    assert entry["scale_formula"].startswith("u = b(") and entry["head"]["training"]["config"]["file"] == "train.json"
    bench = run_fvsr(*_bench_args(tmp_path), "--json", out)
    assert bench.returncode == 0, bench.stderr
    with_head = json.loads(out.read_text())
    assert with_head["coverage"] >= 0.88 and with_head["mean_width"] != row["mean_width"]
    raw = bytearray(head.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a head file that is not the card's
    head.write_bytes(bytes(raw))
    tampered = run_fvsr(*_bench_args(tmp_path))
    assert tampered.returncode != 0 and "is not the pinned" in tampered.stderr and "Traceback" not in tampered.stderr


def _bench_args(tmp_path: Path) -> list[object]:
    return ["bench", "uncertainty", "--images", tmp_path / "eval", "--scale", "2", "--model", "tiny-sr", "--models-dir", tmp_path / "m"]


def test_shipped_cards_carry_calibration():
    from forensic_vsr.models.registry import registry

    cards = registry()
    for model_id, scales in (("lanczos", ("x2", "x4")), ("bicubic", ("x2", "x4")), ("fidelity-sr-x2", ("x2",))):
        for scale in scales:
            entry = cards[model_id].data["uncertainty"][scale]
            assert entry["alpha"] == 0.1 and entry["delta"] == 0.1 and entry["tiles"] > 1000
            assert all(f["file"].startswith("scratch=") for f in entry["calibration_files"])  # never a benchmark


def test_learned_head_in_strips_equals_the_whole_frame():
    """The shipped x2 head, evaluated in strips with context rows (as the pipeline does), gives
    the whole-frame convolution's values, strip seams included."""
    import torch

    from forensic_vsr.models.registry import registry
    from forensic_vsr.uncertainty.exact import ExactMaps
    from forensic_vsr.uncertainty.head import STRIP_ROWS, LearnedScale, features

    card = registry()["fidelity-sr-x2"]
    head = LearnedScale(card.data["uncertainty"]["x2"]["head"], card.path.parent, 2)
    rng = np.random.default_rng(11)
    h, w = 2 * STRIP_ROWS + 30, 96  # three strips, the last one short
    lr = cv2.GaussianBlur(rng.uniform(0, 255, (h // 2, w // 2)), (0, 0), 1.5)
    x_hat = cv2.resize(lr, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    s, _ = ExactMaps(h, w, 2).compute(lr, x_hat)
    with torch.inference_mode():
        whole = head.net(torch.from_numpy(features(x_hat, lr, s, 2))[None])[0, 0].numpy()
    strips = head(x_hat, lr.astype(np.float32), s)
    assert strips.shape == (h, w)
    np.testing.assert_allclose(strips, whole, rtol=0, atol=1e-5)
