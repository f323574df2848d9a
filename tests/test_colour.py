"""Learned models on RGB evidence (issue 16 item 9): PNG (rgb24), BMP (bgr24) and TIFF stills
and rgb24 video, the network and the data-consistency projection on each colour plane."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from forensic_vsr.judgement import colour_consistency_problems
from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.ops.colour import colour_names, component_order
from forensic_vsr.ops.degrade import downscale
from tests.helpers import ffmpeg_framehash, run_fvsr, step


def _decoded(path: Path) -> list[dict[str, np.ndarray]]:
    """Every frame of `path` as {component name: 2-D samples}, in the decoder's own format."""
    with VideoReader(path) as reader:
        order = component_order(reader.info.pix_fmt)
        assert order is not None
        return [{name: p[..., i] for i, name in enumerate(order)} for p in (frame_planes(d.frame)[0] for d in reader.frames())]


@pytest.fixture(scope="module")
def stills(tmp_path_factory: pytest.TempPathFactory, carphone_distorted: Path, ffmpeg: str) -> dict[str, Path]:
    """A real QCIF frame of the carphone clip as PNG (rgb24), BMP (bgr24) and TIFF (rgb24), and
    its first three frames as an rgb24 video (PNG codec in Matroska)."""
    d = tmp_path_factory.mktemp("colour")
    out = {}
    for ext, fmt in (("png", "rgb24"), ("bmp", "bgr24"), ("tif", "rgb24")):
        out[ext] = d / f"evidence.{ext}"
        subprocess.run(
            [
                ffmpeg,
                "-v",
                "error",
                "-i",
                str(carphone_distorted),
                "-vf",
                "select=eq(n\\,20)",
                "-frames:v",
                "1",
                "-pix_fmt",
                fmt,
                str(out[ext]),
            ],
            check=True,
        )
    out["mkv"] = d / "rgb24.mkv"
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(carphone_distorted), "-frames:v", "3", "-pix_fmt", "rgb24", "-c:v", "png", str(out["mkv"])],
        check=True,
    )
    return out


TOLERANCE = 0.5  # the evidential policy's bound on the RMS residual, 8-bit levels


def _check_consistency(evidence: Path, bundle: Path, planes: tuple[str, ...], frames: int) -> None:
    """Independently of the projection's code: shrinking each colour plane of the master with
    the recorded operator gives back that plane of the evidence, within the evidential bound."""
    dc = step(bundle)["data_consistency"]
    assert dc["operator"] == "bicubic-antialiased" and dc["planes"] == list(planes) and "plane" not in dc
    assert all(len(dc["rms_residual_per_plane"][p]) == frames for p in planes)
    assert dc["rms_residual_per_frame"] == [max(dc["rms_residual_per_plane"][p][i] for p in planes) for i in range(frames)]
    inputs, outputs = _decoded(evidence), _decoded(bundle / "output" / "master.mkv")
    assert len(inputs) == len(outputs) == frames
    for i, (y, x) in enumerate(zip(inputs, outputs, strict=True)):
        for name in planes:
            rms = float(np.sqrt(np.mean((downscale(x[name].astype(np.float64), 2) - y[name]) ** 2)))
            assert rms <= TOLERANCE and dc["tolerance"] in (TOLERANCE, None), (name, rms)
            assert abs(rms - dc["rms_residual_per_plane"][name][i]) < 1e-3, (name, rms)


@pytest.mark.parametrize(("ext", "planes"), [("png", ("R", "G", "B")), ("bmp", ("B", "G", "R"))])
def test_fidelity_sr_on_each_colour_plane_of_a_still(
    ext: str, planes: tuple[str, ...], stills, tmp_path: Path, keypair, ffmpeg: str
) -> None:  # type: ignore[no-untyped-def]
    evidence, bundle = stills[ext], tmp_path / "b"
    mode = ["--mode", "evidential"] if ext == "png" else ["--mode", "investigative", "--no-report"]  # the report once
    run_fvsr("enhance", evidence, "-o", bundle, "--key", keypair[0], "--model", "fidelity-sr-x2", *mode, "-q", check=True)
    s = step(bundle)
    assert (s["pix_fmt_in"], s["pix_fmt_out"], s["width_out"], s["height_out"]) == ({"png": "rgb24", "bmp": "bgr24"}[ext], "bgr0", 352, 288)
    assert s["luma"] == "fidelity-sr-x2" and colour_names(s["pix_fmt_in"]) == planes and s["runner"]["planes"] == list(planes)
    _check_consistency(evidence, bundle, planes, 1)
    maps = s["maps"]
    assert maps["plane"] == f"per-pixel maximum over the {', '.join(planes)} planes, each mapped as luma"
    assert {"synthesized", "contradiction"} <= set(maps["files"]) and all((bundle / f["video"]).is_file() for f in maps["files"].values())
    out = [ln for ln in (bundle / "output.framehash").read_text().splitlines() if not ln.startswith("#")]
    assert out == ffmpeg_framehash(ffmpeg, bundle / "output" / "master.mkv")
    proc = run_fvsr("verify", bundle, "--pubkey", keypair[1], "--evidence", evidence)
    assert proc.returncode == 0, proc.stdout
    if ext == "bmp":
        return
    assert step(bundle)["data_consistency"]["tolerance"] == TOLERANCE
    text = subprocess.run(["pdftotext", str(bundle / "report.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    assert f"each colour plane ({', '.join(planes)})" in " ".join(text.split())


def test_rgb24_video_and_a_tiff_restored_per_plane(stills, tmp_path: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    video = tmp_path / "video"
    args = ["--key", keypair[0], "--mode", "investigative", "--no-report", "-q"]
    run_fvsr("enhance", stills["mkv"], "-o", video, "--model", "fidelity-sr-x2", *args, check=True)
    _check_consistency(stills["mkv"], video, ("R", "G", "B"), 3)
    assert len(step(video)["maps"]["files"]["synthesized"]) and run_fvsr("verify", video, "--pubkey", keypair[1]).returncode == 0
    tiff = tmp_path / "tiff"
    run_fvsr("enhance", stills["tif"], "-o", tiff, "--model", "fidelity-restore", *args, check=True)
    s = step(tiff)
    assert s["pix_fmt_in"] == "rgb24" and s["runner"]["planes"] == ["R", "G", "B"]
    assert s["data_consistency"] is None  # its card's degradation is no shrink: nothing to project onto
    restored, evidence = _decoded(tiff / "output" / "master.mkv")[0], _decoded(stills["tif"])[0]
    assert any(not np.array_equal(restored[c], evidence[c]) for c in "RGB")  # the network did change the samples


def test_an_operation_that_cannot_run_per_colour_plane_says_why_in_one_line(stills, tmp_path: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    proc = run_fvsr("enhance", stills["mkv"], "-o", tmp_path / "b", "--key", keypair[0], "--model", "mfsr-x2", "--mode", "investigative")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "rgb24 evidence has no luma plane, and it registers frames on one plane" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_verify_requires_the_projection_on_every_colour_plane_within_the_bound() -> None:
    good = {
        "planes": ["B", "G", "R"],
        "rms_residual_per_frame": [0.2, 0.3],
        "rms_residual_per_plane": {"B": [0.1, 0.3], "G": [0.2, 0.1], "R": [0.2, 0.2]},
    }
    assert colour_consistency_problems(good, ("B", "G", "R"), 0.5) == []
    assert colour_consistency_problems(good, ("R", "G", "B"), 0.5) == [
        "the evidence's colour planes are R, G, B; step.run records a projection on ['B', 'G', 'R']"
    ]
    assert colour_consistency_problems(good, ("B", "G", "R"), 0.25) == [
        "plane B: data-consistency RMS residual 0.3 exceeds the policy's 0.25"
    ]
    missing = {**good, "rms_residual_per_plane": {"B": [0.1, 0.3], "G": [0.2, 0.1]}}
    assert len(colour_consistency_problems(missing, ("B", "G", "R"), 0.5)) == 1
    short = {**good, "rms_residual_per_plane": {**good["rms_residual_per_plane"], "R": [0.2]}}
    assert colour_consistency_problems(short, ("B", "G", "R"), 0.5) == ["plane R: 1 residuals recorded for 2 frames"]
    nan = {**good, "rms_residual_per_plane": {**good["rms_residual_per_plane"], "G": [float("nan"), 0.1]}}
    assert colour_consistency_problems(nan, ("B", "G", "R"), 0.5) == ["plane G: data-consistency RMS residual nan exceeds the policy's 0.5"]
