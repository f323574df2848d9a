"""The report as a judge reads it (issue 16 item 3 audit, template 8): no raw JSON, units on the
metadata, x1 operations show the change they made (R) with its statistics and x1 limitations,
temporal operations list their failed registrations in the summary, a frame that is two stills is
shown once, and the stills carry the container's wall-clock time where it has one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import record, run_fvsr, step


def _text(pdf: Path) -> str:
    """The report's words, one space between them (pdftotext wraps lines anywhere)."""
    raw = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    return " ".join(raw.split())


@pytest.fixture(scope="module")
def dated_clip(tmp_path_factory: pytest.TempPathFactory, carphone: Path, ffmpeg: str) -> Path:
    """carphone remuxed (same packets) with a QuickTime creation date, as a camera writes it."""
    out = tmp_path_factory.mktemp("dated") / "dated.mp4"
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(carphone), "-c", "copy", "-metadata", "creation_time=2024-03-05T10:20:30Z", str(out)],
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def deblur_bundle(tmp_path_factory: pytest.TempPathFactory, dated_clip: Path, keypair: tuple[Path, Path]) -> Path:
    out = tmp_path_factory.mktemp("judge") / "deblur"
    run_fvsr(
        "enhance", dated_clip, "-o", out, "--key", keypair[0], "--model", "deblur", "--psf", "motion:5,0",
        "--roi", "40,30,96,72", "--frames", "0:4", "--still", "3", "-q", check=True,
    )  # fmt: skip
    return out


def test_x1_stills_show_the_change_made_with_its_statistics(deblur_bundle: Path, dated_clip: Path) -> None:
    """The third panel of a x1 still is R = |enhanced - evidence| (not S, zero at x1): its PNG
    is grey where nothing changed and full red from 16 levels, and the stated statistics are
    those of the master's luma against the evidence's, in the region."""
    from forensic_vsr.media import VideoReader, frame_planes

    stills = [s for s in record(deblur_bundle, "report.generate")["stills"] if "frame" in s]
    still = next(s for s in stills if s["frame"] == 3)
    assert "change" in still["files"] and "overlay" not in still["files"]
    with VideoReader(deblur_bundle / "output/master.mkv") as r:
        out = next(frame_planes(d.frame)[0] for d in r.frames() if d.index == 3).astype(np.float32)
    ev_png = np.asarray(Image.open(deblur_bundle / still["files"]["evidence"]["name"]).convert("RGB"))
    with VideoReader(dated_clip) as r:
        ev = next(frame_planes(d.frame)[0] for d in r.frames() if d.index == 3)[30:102, 40:136].astype(np.float32)
    assert ev.shape == out.shape == ev_png.shape[:2]
    r_map = np.abs(out - ev)
    change = still["change"]
    assert change["max_levels"] == round(float(r_map.max()), 3) > 0
    assert change["mean_levels"] == round(float(r_map.mean()), 3)
    assert change["fraction_over_threshold"] == round(float((r_map > change["threshold_levels"]).mean()), 6)
    png = np.asarray(Image.open(deblur_bundle / still["files"]["change"]["name"]).convert("RGB")).astype(int)
    unchanged = r_map == 0
    assert unchanged.any() and np.all(png[unchanged][:, 0] == png[unchanged][:, 1])  # grey where R = 0
    full = r_map >= 16
    assert full.any() and np.all(png[full] == [255, 0, 0])  # full red from 16 levels
    text = _text(deblur_bundle / "report.pdf")
    assert "change made, R (red)" in text and "Change made R = |enhanced - evidence|" in text and "S overlay" not in text
    assert f"maximum {change['max_levels']:g}" in text
    assert "keeps the frame size (x1)" in text and "Single-image super-resolution cannot recover" not in text
    assert "depends on the point spread function assumed" in text


def test_no_raw_json_and_units_on_the_metadata(deblur_bundle: Path) -> None:
    """Decoder damage, the lossless round trip and the environment are tables of words, the
    metadata's durations carry seconds, the rotation degrees, and no parameter is cut with "..."."""
    text = _text(deblur_bundle / "report.pdf")
    assert '{"' not in text and "null" not in text and "False" not in text
    assert "Decoder damage concealed_errors 0; corrupt_frames 0" in text
    assert "Lossless round trip all_equal yes" in text
    assert "libraries / ffmpeg_libraries / libavcodec" in text and "cpu / logical_cpus" in text
    assert "determinism / cuda / cudnn" not in text  # a CPU run: no rows of CUDA facts it has none of
    assert "QuickTime:Duration 4.004 s" in text and "Rotation 0 deg" in text
    assert "more)" not in text and "... " not in text


def test_a_frame_that_is_two_stills_is_shown_once(deblur_bundle: Path) -> None:
    """Nothing is flagged at x1, so the most flagged frame is the first: one still, both labels."""
    text = _text(deblur_bundle / "report.pdf")
    assert text.count("output frame 0 (evidence frame 0)") == 1
    assert "first frame, most flagged frame: output frame 0" in text


def test_stills_carry_the_containers_wall_clock_time(deblur_bundle: Path) -> None:
    """QuickTime's CreateDate plus the still's seconds from the start, stated as the camera's clock."""
    stills = {s["frame"]: s for s in record(deblur_bundle, "report.generate")["stills"] if "frame" in s}
    seconds = stills[3]["time_s"]
    assert 0.09 < seconds < 0.11  # carphone is 29.97 frames per second
    millis = round(seconds * 1000)
    text = _text(deblur_bundle / "report.pdf")
    assert f"wall clock 2024-03-05T10:20:30.{millis:03d} UTC" in text
    assert "wall-clock times from the container's QuickTime:CreateDate" in text


def test_temporal_report_lists_failed_registrations(tmp_path: Path, carphone: Path, keypair: tuple[Path, Path]) -> None:
    """integrate: the summary counts the registrations and the failed ones; Results lists each
    frame's neighbours, count and spread; the x1 and temporal limitations, not SR's."""
    bundle = tmp_path / "int"
    run_fvsr("enhance", carphone, "-o", bundle, "--key", keypair[0], "--model", "integrate", "--frames", "0:5", "-q", check=True)
    temporal = step(bundle)["temporal"]
    links = [r for f in temporal["per_frame"] for r in f["registrations"]]
    failed = [r for r in links if not r["ok"]]
    text = _text(bundle / "report.pdf")
    assert f"The temporal operation made {len(links)} registrations of neighbour frames" in text
    assert (f"{len(failed)} registrations failed" in text) if failed else ("all succeeded" in text)
    assert "Registration of neighbour frames (temporal operation)" in text
    assert "Averaging registered frames lowers noise" in text and "Single-image super-resolution" not in text
    assert "per_frame 1" not in text  # the per-frame records are the table, not a wall of parameters


def test_chain_report_names_every_rule_whole_and_the_deblur_limitation(tmp_path: Path, carphone: Path, keypair: tuple[Path, Path]) -> None:
    """A chain's policy rules are named per operation ("deblur.allowed_model_classes"): the
    column holds the longest name on one line; a deblur before SR adds its limitation to SR's."""
    bundle = tmp_path / "chain"
    run_fvsr(
        "enhance", carphone, "-o", bundle, "--key", keypair[0], "--ops", "deinterlace,deblur,sr", "--model", "lanczos",
        "--psf", "motion:5,0",
        "--frames", "0:2", "-q", check=True,
    )  # fmt: skip
    rules = [r["rule"] for r in record(bundle, "policy.decision")["rules"]]
    text = _text(bundle / "report.pdf")
    longest = max(rules, key=len)
    assert longest.startswith("deinterlace.") and len(longest) >= 33 and longest in text
    assert all(rule in text for rule in rules)
    assert "Single-image super-resolution cannot recover" in text and "depends on the point spread function assumed" in text
    assert "S (red), flagged regions outlined" in text and _past_the_margin(bundle / "report.pdf") == []  # the S caption fits


def _past_the_margin(pdf: Path) -> list[str]:
    """The words of a report that end to the right of its 15 mm right margin."""
    import re

    html = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    right = (210 - 15) * 72 / 25.4 + 1  # points
    ends = [(float(m.group(1)), m.group(2)) for m in re.finditer(r'xMax="([\d.]+)"[^>]*>([^<]*)<', html)]
    assert ends
    return [w for x, w in ends if x > right]


def test_no_word_runs_past_the_right_margin(deblur_bundle: Path) -> None:
    """Nothing is cut off: every word of every page ends inside the 15 mm right margin (the x1
    panel's caption once ran off the page)."""
    assert _past_the_margin(deblur_bundle / "report.pdf") == []
