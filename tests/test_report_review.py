"""`fvsr report` renders the signed review records: a Review section naming who signed, when and
which frame, with the annotations drawn over the evidence | enhanced crop on the report's copy;
the bundle (its enhanced frames, its signed report.pdf) is not changed and still verifies."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forensic_vsr.audit.keys import load_signer
from forensic_vsr.integrity.framehash import parse
from forensic_vsr.media import VideoReader
from forensic_vsr.report.review_section import MARK
from forensic_vsr.report.stills import crop_region
from forensic_vsr.review.session import ReviewSession
from tests.helpers import PASSPHRASE, run_fvsr

BOX = {"type": "box", "x": 100, "y": 60, "w": 60, "h": 40, "text": "number plate"}
ARROW = {"type": "arrow", "x": 40, "y": 200, "x2": 98, "y2": 100, "text": "from here"}


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory, carphone: Path, keypair: tuple[Path, Path]) -> Path:
    """A real x2 bundle (3 frames) with two review records signed as `fvsr review` signs them."""
    bundle = tmp_path_factory.mktemp("reviewed") / "case"
    run_fvsr("enhance", carphone, "-o", bundle, "--key", keypair[0], "--frames", "0:3", "--case", "R-1", "-q", check=True)
    signer = load_signer(keypair[0], PASSPHRASE.encode(), "Test Examiner")
    session = ReviewSession(bundle, signer.public_key, signer, carphone, independent_key=True)
    try:
        session.save_review(1, True, [BOX, ARROW])
        session.save_review(2, False, [])
    finally:
        session.close()
    return bundle


def _digests(bundle: Path) -> dict[str, str]:
    return {str(p.relative_to(bundle)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(bundle.rglob("*")) if p.is_file()}


def test_report_renders_the_review_records(reviewed: Path, carphone: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    before = _digests(reviewed)
    out = tmp_path / "report.pdf"
    done = run_fvsr("report", reviewed, "--pubkey", keypair[1], "-o", out, "--evidence", carphone)
    assert done.returncode == 0, done.stderr
    assert "2 review record(s) in its Review section" in done.stdout and "as recorded: its frames are shown" in done.stdout
    assert _digests(reviewed) == before, "fvsr report changed the bundle"

    text = " ".join(subprocess.run(["pdftotext", "-raw", out, "-"], capture_output=True, text=True, check=True).stdout.split())
    sha1 = list(parse((reviewed / "output.framehash").read_text().splitlines()))[1].sha256
    assert "Review records (added after the run; not part of the signed report.pdf)" in text
    assert "review/0000.json: signed by Test Examiner" in text and "review/0001.json: signed by Test Examiner" in text
    assert "output frame 1 (evidence frame 1), 0.033 s from the start of the evidence" in text
    assert sha1 in text and "marked as a still" in text and "not marked as a still" in text
    assert "1 box x 100 to 159, y 60 to 99 (60 x 40) number plate" in text
    assert "2 arrow from (40, 200) to (98, 100) from here" in text
    assert "No annotations." in text and "Magnified crop (the whole frame)" in text

    # the enhanced panel of review/0000.json, as embedded (lossless PNG): the frame's crop, nearest
    # neighbour, with the box's outline in pure green at its place and nothing else changed
    crop = crop_region((176, 144), 2, {"x": 40, "y": 60, "w": 120, "h": 141}, None)
    with VideoReader(reviewed / "output/master.mkv") as reader:
        frame = next(d for d in reader.frames() if d.index == 1).frame.to_ndarray(format="rgb24")
    z, x0, y0 = crop["zoom"] // 2, crop["x"] * 2, crop["y"] * 2
    plain = np.repeat(np.repeat(frame[y0 : y0 + crop["h"] * 2, x0 : x0 + crop["w"] * 2], z, axis=0), z, axis=1)
    subprocess.run(["pdfimages", "-png", out, tmp_path / "img"], check=True)
    panels = [a for a in (np.asarray(Image.open(p).convert("RGB")) for p in sorted(tmp_path.glob("img-*.png"))) if a.shape == plain.shape]
    enhanced = next(a for a in panels if _close(a, plain))
    top, left = (60 - y0) * z, (100 - x0) * z
    assert (enhanced[top, left : left + 60 * z] == MARK).all(), "the box's top edge is not drawn"
    assert (enhanced[top : top + 40 * z, left] == MARK).all(), "the box's left edge is not drawn"
    assert not (plain[top, left : left + 60 * z] == MARK).all()
    changed = np.any(enhanced != plain, axis=-1)
    assert (enhanced[changed] == MARK).all(axis=-1).mean() > 0.5, "what differs from the frame is not mostly the green drawing"

    assert run_fvsr("verify", reviewed, "--pubkey", keypair[1]).returncode == 0  # report.pdf still renders byte for byte


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """The same picture but for a few drawn pixels."""
    return bool(np.mean(np.any(a != b, axis=-1)) < 0.1)


def test_report_without_the_evidence_says_so(reviewed: Path, carphone_distorted: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "case"
    shutil.copytree(reviewed, copy)
    out = tmp_path / "report.pdf"
    done = run_fvsr("report", copy, "--pubkey", keypair[1], "-o", out, "--evidence", carphone_distorted)
    assert done.returncode == 0, done.stderr
    assert "frames not shown:" in done.stdout and "the recorded evidence" in done.stdout
    text = " ".join(subprocess.run(["pdftotext", "-raw", out, "-"], capture_output=True, text=True, check=True).stdout.split())
    assert "Evidence panel omitted: the evidence frames are not available" in text
    # a review record whose signed frame is not the master's: fvsr report refuses (verify first)
    (copy / "review/0001.json").write_bytes((copy / "review/0000.json").read_bytes())
    bad = run_fvsr("report", copy, "--pubkey", keypair[1], "-o", tmp_path / "bad.pdf")
    assert bad.returncode != 0 and "does not verify (review.0001" in bad.stderr and not (tmp_path / "bad.pdf").exists()
