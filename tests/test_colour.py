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
        frames = [frame_planes(d.frame) for d in reader.frames()]
    if len(frames[0]) > 1:  # planar (gbrp*): one plane per component
        return [dict(zip(order, planes, strict=True)) for planes in frames]
    return [{name: planes[0][..., i] for i, name in enumerate(order)} for planes in frames]


@pytest.fixture(scope="module")
def stills(tmp_path_factory: pytest.TempPathFactory, carphone_distorted: Path, ffmpeg: str) -> dict[str, Path]:
    """A real QCIF frame of the carphone clip as PNG (rgb24), BMP (bgr24) and TIFF (rgb24), and
    its first two frames as an rgb24 video (PNG codec in Matroska)."""
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
        [ffmpeg, "-v", "error", "-i", str(carphone_distorted), "-frames:v", "2", "-pix_fmt", "rgb24", "-c:v", "png", str(out["mkv"])],
        check=True,
    )
    return out


TOLERANCE = 0.5  # the evidential policy's bound on the RMS residual, 8-bit levels


def _check_consistency(evidence: Path, bundle: Path, planes: tuple[str, ...], frames: int, vmax: int = 255) -> None:
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
            rms = float(np.sqrt(np.mean((downscale(x[name].astype(np.float64), 2) - y[name]) ** 2))) * 255 / vmax  # 8-bit levels
            assert rms <= TOLERANCE and dc["tolerance"] in (TOLERANCE, None), (name, rms)
            assert abs(rms - dc["rms_residual_per_plane"][name][i]) < 1e-3, (name, rms)


@pytest.fixture(scope="module")
def sr_bundles(stills, tmp_path_factory: pytest.TempPathFactory, keypair) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """fidelity-sr-x2 on the PNG (evidential, with its report) and on the BMP (investigative)."""
    out = {}
    for ext, mode in (("png", ["--mode", "evidential"]), ("bmp", ["--mode", "investigative", "--no-report"])):
        out[ext] = tmp_path_factory.mktemp("sr") / ext
        run_fvsr("enhance", stills[ext], "-o", out[ext], "--key", keypair[0], "--model", "fidelity-sr-x2", *mode, "-q", check=True)
    return out


@pytest.mark.parametrize(("ext", "planes"), [("png", ("R", "G", "B")), ("bmp", ("B", "G", "R"))])
def test_fidelity_sr_on_each_colour_plane_of_a_still(ext: str, planes: tuple[str, ...], stills, sr_bundles, keypair, ffmpeg: str) -> None:  # type: ignore[no-untyped-def]
    evidence, bundle = stills[ext], sr_bundles[ext]
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
    _check_consistency(stills["mkv"], video, ("R", "G", "B"), 2)
    assert step(video)["maps"]["files"]["synthesized"]["tree_size"] == 2  # one map frame per output frame
    assert run_fvsr("verify", video, "--pubkey", keypair[1]).returncode == 0
    tiff = tmp_path / "tiff"
    run_fvsr("enhance", stills["tif"], "-o", tiff, "--model", "fidelity-restore", *args, "--no-maps", check=True)
    s = step(tiff)
    assert s["pix_fmt_in"] == "rgb24" and s["runner"]["planes"] == ["R", "G", "B"]
    assert s["data_consistency"] is None  # its card's degradation is no shrink: nothing to project onto
    restored, evidence = _decoded(tiff / "output" / "master.mkv")[0], _decoded(stills["tif"])[0]
    assert any(not np.array_equal(restored[c], evidence[c]) for c in "RGB")  # the network did change the samples


@pytest.mark.parametrize(("pix_fmt", "planes", "vmax"), [("rgba", ("R", "G", "B"), 255), ("gbrp10le", ("G", "B", "R"), 1023)])
def test_alpha_goes_through_the_kernel_and_planar_rgb_runs_per_plane(
    pix_fmt: str, planes: tuple[str, ...], vmax: int, stills, tmp_path: Path, keypair, ffmpeg: str
) -> None:  # type: ignore[no-untyped-def]
    """RGBA (a PNG with an alpha ramp): the network on R, G, B, alpha through lanczos; gbrp10le
    (planar, 10-bit, FFV1): the network on G, B, R in plane order, the residuals in 8-bit levels."""
    evidence = tmp_path / ("alpha.png" if pix_fmt == "rgba" else "gbrp10.mkv")
    crop = "crop=96:64:40:40"  # small: the point is the plane layout
    vf = (
        ["-vf", f"{crop},format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='128+X/2'"]
        if pix_fmt == "rgba"
        else ["-vf", crop, "-c:v", "ffv1"]
    )
    subprocess.run([ffmpeg, "-v", "error", "-i", str(stills["png"]), *vf, "-pix_fmt", pix_fmt, str(evidence)], check=True)
    bundle = tmp_path / "b"
    args = ["--model", "fidelity-sr-x2", "--mode", "investigative", "--no-report", "--no-maps", "-q"]
    run_fvsr("enhance", evidence, "-o", bundle, "--key", keypair[0], *args, check=True)
    s = step(bundle)
    assert s["pix_fmt_in"] == pix_fmt and s["runner"]["planes"] == list(planes)
    assert s["planes_classical"] == ("lanczos" if pix_fmt == "rgba" else "none (the model ran on every component)")
    _check_consistency(evidence, bundle, planes, 1, vmax)
    if pix_fmt == "rgba":  # the master is bgra: its alpha is the ramp, upscaled with lanczos (no network)
        alpha = _decoded(bundle / "output" / "master.mkv")[0]["A"].astype(int)
        assert alpha.shape == (128, 192) and abs(int(alpha[:, 100].mean()) - (128 + 50 // 2)) <= 1


def test_an_operation_that_cannot_run_per_colour_plane_says_why_in_one_line(stills, tmp_path: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    proc = run_fvsr("enhance", stills["mkv"], "-o", tmp_path / "b", "--key", keypair[0], "--model", "mfsr-x2", "--mode", "investigative")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "rgb24 evidence has no luma plane, and it registers frames on one plane" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_verify_requires_the_network_and_the_projection_on_every_colour_plane_within_the_bound() -> None:
    good = {
        "planes": ["B", "G", "R"],
        "rms_residual_per_frame": [0.2, 0.3],
        "rms_residual_per_plane": {"B": [0.1, 0.3], "G": [0.2, 0.1], "R": [0.2, 0.2]},
    }
    runner, bgr = {"device": "cpu", "planes": ["B", "G", "R"]}, ("B", "G", "R")
    assert colour_consistency_problems(good, runner, bgr, 0.5) == []
    assert colour_consistency_problems(good, {"device": "cpu"}, bgr, 0.5) == [
        "the evidence's colour planes are B, G, R; the runner records the network on None"
    ]
    assert colour_consistency_problems(good, {**runner, "planes": ["R", "G", "B"]}, ("R", "G", "B"), 0.5) == [
        "the evidence's colour planes are R, G, B; step.run records a projection on ['B', 'G', 'R']"
    ]
    assert colour_consistency_problems(good, runner, bgr, 0.25) == ["plane B: data-consistency RMS residual 0.3 exceeds the policy's 0.25"]
    missing = {**good, "rms_residual_per_plane": {"B": [0.1, 0.3], "G": [0.2, 0.1]}}
    assert len(colour_consistency_problems(missing, runner, bgr, 0.5)) == 1
    short = {**good, "rms_residual_per_plane": {**good["rms_residual_per_plane"], "R": [0.2]}}
    assert colour_consistency_problems(short, runner, bgr, 0.5) == ["plane R: 1 residuals recorded for 2 frames"]
    nan = {**good, "rms_residual_per_plane": {**good["rms_residual_per_plane"], "G": [float("nan"), 0.1]}}
    assert colour_consistency_problems(nan, runner, bgr, 0.5) == ["plane G: data-consistency RMS residual nan exceeds the policy's 0.5"]
    text = {**good, "rms_residual_per_plane": {**good["rms_residual_per_plane"], "B": "0.1"}}
    assert colour_consistency_problems(text, "not a dict", bgr, 0.5) == [
        "the evidence's colour planes are B, G, R; the runner records the network on None"
    ]
    assert colour_consistency_problems(text, runner, bgr, 0.5) == ["plane B: the recorded residuals are not a list of numbers"]


def _gray_plane(ffmpeg: str, still: Path, plane: str, out: Path) -> Path:
    """One colour plane of `still` as gray evidence (ffmpeg's extractplanes: the samples as they are)."""
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(still), "-vf", f"extractplanes={plane.lower()}", "-pix_fmt", "gray", str(out)], check=True
    )
    return out


@pytest.mark.parametrize(("model", "plane"), [("deblur", "G"), ("fidelity-sr-x2", "R")])
def test_each_colour_plane_gets_exactly_what_that_plane_would_get_as_luma(
    model: str, plane: str, stills, sr_bundles, tmp_path: Path, keypair, ffmpeg: str
) -> None:  # type: ignore[no-untyped-def]
    """The BMP through `model`, and one of its planes alone as gray evidence: that plane of the
    output is the same, sample for sample (deblur: G, on which the blind PSF is estimated)."""
    args = ["--key", keypair[0], "--model", model, "--mode", "investigative", "--no-report", "--no-maps", "-q"]
    rgb = sr_bundles["bmp"] if model == "fidelity-sr-x2" else tmp_path / "rgb"
    if model == "deblur":
        run_fvsr("enhance", stills["bmp"], "-o", rgb, *args, check=True)
        rec = step(rgb)["deblur"]
        assert rec["planes"] == ["B", "G", "R"] and rec["estimated_on_plane"] == "G"
        assert len(rec["ringing_rms_levels_per_frame"]) == len(rec["forward_residual_rms_levels_per_frame"]) == 1
    gray = _gray_plane(ffmpeg, stills["bmp"], plane, tmp_path / "plane.png")
    run_fvsr("enhance", gray, "-o", tmp_path / "gray", *args, check=True)
    with VideoReader(tmp_path / "gray" / "output" / "master.mkv") as reader:
        alone = frame_planes(next(iter(reader.frames())).frame)[0]
    together, evidence = _decoded(rgb / "output" / "master.mkv")[0], _decoded(stills["bmp"])[0]
    assert np.array_equal(together[plane], alone) and not np.array_equal(together[plane], evidence[plane])
    if model == "deblur":
        assert step(rgb)["deblur"]["psf"] == step(tmp_path / "gray")["deblur"]["psf"]
