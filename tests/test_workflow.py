"""The examiner's workflow (issue 16): the scale follows the operations, blind PSF estimates say
how far they can be trusted, `fvsr enhance --dry-run` shows the plan without a key and without
writing, and the cityCC0 evidence clip decodes bit-exactly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.ops.deblur import LOW_CONFIDENCE, blur, defocus_psf, estimate_psf, motion_psf
from forensic_vsr.recipe import STILL_HELP, recipe_from_options
from tests.helpers import CLIPS, ffmpeg_framehash, record, run_fvsr
from tests.helpers import step as step_of

CITY = CLIPS / "cityCC0.mpg"


def _luma(path: Path, index: int) -> np.ndarray:
    with VideoReader(path) as reader:
        for decoded in reader.frames():
            if decoded.index == index:
                return frame_planes(decoded.frame)[0].astype(np.float64)
    raise AssertionError(f"{path.name} has no frame {index}")


@pytest.fixture(scope="module")
def city() -> np.ndarray:
    """A real night-street frame, 720x405 (MPEG-2)."""
    if not CITY.exists():
        pytest.fail("data/clips/cityCC0.mpg missing: run scripts/fetch_data.py", pytrace=False)
    return _luma(CITY, 60)


def _noisy(x: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.clip(np.rint(x + np.random.default_rng(seed).normal(0, 1.0, x.shape)), 0, 255)


# --- the scale follows the operations -------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "scale"),
    [({"ops": "deblur"}, 1), ({"model": "fidelity-sr-x4"}, 4), ({"model": "fidelity-sr-x2"}, 2), ({}, 2), ({"model": "bicubic"}, 2)],
)
def test_scale_follows_the_main_model(options: dict, scale: int) -> None:
    assert recipe_from_options(options).scale == scale


def test_a_scale_the_model_cannot_do_is_one_line_before_any_bundle(tmp_path: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    for args, words in (
        (["--model", "fidelity-sr-x4", "--scale", "2"], "--scale 2: fidelity-sr-x4 does x4 only; leave --scale out for x4"),
        (["--ops", "deblur", "--scale", "2"], "--scale 2: deblur works at --scale 1"),
        (["--model", "lanczos", "--scale", "8"], "lanczos does x2, x3, x4 only"),
    ):
        out = tmp_path / "refused"
        proc = run_fvsr("enhance", carphone, "-o", out, "--key", keypair[0], "-q", *args)
        assert proc.returncode == 2 and proc.stderr.startswith("fvsr: error: --scale "), proc.stderr
        assert words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert not out.exists() and not list(tmp_path.glob(".*partial*"))
    explained = run_fvsr("policy", "explain", "--model", "fidelity-sr-x4")
    assert explained.returncode == 0 and "max_scale: scale x4" in explained.stdout


def test_still_numbering_is_explained_where_stills_are_named() -> None:
    help_text = run_fvsr("enhance", "--help").stdout
    assert " ".join(STILL_HELP.split())[:60] in " ".join(help_text.split())


# --- honest PSF estimates -------------------------------------------------------------------


@pytest.mark.parametrize(("length", "angle"), [(15, 30), (30, 0), (9, 0)])
def test_a_known_motion_blur_is_found_with_high_confidence(city: np.ndarray, length: int, angle: int) -> None:
    est = estimate_psf(_noisy(blur(city, motion_psf(length, angle))))
    assert est.psf.kind == "motion" and abs(est.psf.params["length"] - length) <= 1
    assert min(abs(est.psf.params["angle"] - angle), 180 - abs(est.psf.params["angle"] - angle)) <= 2
    assert est.confidence is not None and est.confidence >= LOW_CONFIDENCE and not est.low_confidence
    assert est.warning() is None and est.to_json()["low_confidence"] is False


def test_a_defocus_disk_is_found_with_high_confidence(city: np.ndarray) -> None:
    est = estimate_psf(_noisy(blur(city, defocus_psf(4))))
    assert est.psf.kind == "defocus" and abs(est.psf.params["radius"] - 4) <= 1 and not est.low_confidence


def test_what_the_cepstrum_cannot_measure_gets_low_confidence(city: np.ndarray, carphone: Path) -> None:
    """A lens defocus without spectral zeros (Gaussian), an unblurred frame and noise: each gives
    some cepstral peak, and low confidence, a warning and the threshold in the record."""
    cases = {
        "gaussian defocus": _noisy(cv2.GaussianBlur(city, (0, 0), 3)),
        "unblurred frame": _luma(carphone, 40),
        "noise": np.random.default_rng(3).normal(128, 30, (256, 256)).clip(0, 255),
    }
    for name, y in cases.items():
        est = estimate_psf(y)
        assert est.low_confidence and est.confidence is not None and est.confidence < LOW_CONFIDENCE, (name, est.confidence)
        d = est.to_json()
        assert d["low_confidence"] is True and d["confidence_threshold"] == LOW_CONFIDENCE and len(d["tiles"]) == 4
        assert "low confidence" in d["warning"] and "--psf" in d["warning"]


def test_a_low_confidence_run_warns_records_and_reports(tmp_path: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    """Unblurred evidence through a blind deblur (no --scale: it follows the operation): one
    warning line on stderr, the flag in the record, the warning in the report beside the PSF."""
    out = tmp_path / "b"
    proc = run_fvsr("enhance", carphone, "-o", out, "--key", keypair[0], "--ops", "deblur", "--frames", "0:2", "-q", check=True)
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("fvsr: warning: blind PSF estimate")]
    assert len(warnings) == 1 and "low confidence" in warnings[0], proc.stderr
    est = step_of(out)["deblur"]["estimate"]
    assert est["low_confidence"] is True and est["confidence"] < est["confidence_threshold"] == LOW_CONFIDENCE
    assert record(out, "policy.decision")["recipe"]["operations"][-1]["scale"] == 1
    text = subprocess.run(["pdftotext", "-layout", out / "report.pdf", "-"], capture_output=True, text=True, check=True).stdout
    assert "Warning: blind PSF estimate" in " ".join(text.split())
    assert run_fvsr("verify", out, "--pubkey", keypair[1]).returncode == 0


# --- dry run --------------------------------------------------------------------------------


def test_dry_run_shows_the_plan_without_a_key_and_writes_nothing(tmp_path: Path, carphone: Path) -> None:
    out = tmp_path / "case" / "bundle"
    (tmp_path / "case").mkdir()
    proc = run_fvsr(
        "enhance", carphone, "-o", out, "--dry-run", "--ops", "deblur", "--frames", "10:30", "--roi", "8,8,144,128",
        env={"FVSR_KEY": "", "FVSR_KEY_PASSPHRASE": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("PASS") and "max_scale: scale x1" in ln for ln in lines) and "ALLOWED" in lines
    assert "frames 10:30: 20 evidence frames" in proc.stdout and "region --roi 144x128 at 8,8" in proc.stdout
    psf = next(ln for ln in lines if ln.startswith("psf"))
    assert "estimated blindly on frame 10" in psf and "confidence" in psf
    assert "output 144x128 (x1), 20 frames" in proc.stdout  # --roi: the outputs are the region
    assert "expected time: " in proc.stdout and "timed through the whole pass" in proc.stdout  # tests/test_dry_run.py checks it
    assert not out.exists() and list((tmp_path / "case").iterdir()) == []
    refused = run_fvsr("enhance", carphone, "-o", out, "--dry-run", "--model", "perceptual-sr-x4")
    assert refused.returncode == 3 and "FAIL" in refused.stdout and "REFUSED" in refused.stdout and not out.exists()
    assert list((tmp_path / "case").iterdir()) == []


# --- the cityCC0 evidence clip ----------------------------------------------------------------


def test_city_clip_decodes_bit_exactly(ffmpeg: str) -> None:
    if not CITY.exists():
        pytest.fail("data/clips/cityCC0.mpg missing: run scripts/fetch_data.py", pytrace=False)
    ours = run_fvsr("hash", CITY, check=True).stdout.splitlines()
    assert "#dimensions 0: 720x405" in ours
    frames = [ln for ln in ours if not ln.startswith("#")]
    assert len(frames) == 190 and frames == ffmpeg_framehash(ffmpeg, CITY)
