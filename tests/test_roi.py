"""--roi X,Y,W,H: every operation on a region of the evidence, through the real CLI on the QCIF
carphone clip. The outputs, maps and stills are the region (times the scale); the stages run on
the region and the margin they declare (recorded), and the whole evidence frames stay hashed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forensic_vsr.audit.step_record import Region, StepRecord
from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.recipe import Recipe
from tests.helpers import run_fvsr
from tests.helpers import step as step_of

ROI = (40, 32, 64, 48)  # interior of the 176x144 frame, on the 4:2:0 grid
ROI_ARG = ",".join(map(str, ROI))


def _enhance(clip: Path, out: Path, key: Path, *args: str, region: bool = True) -> Path:
    run_fvsr(
        "enhance", clip, "-o", out, "--key", key, "--mode", "investigative", "--no-report", "-q",
        *(("--roi", ROI_ARG) if region else ()), *args, check=True,
    )  # fmt: skip
    return out


def _frames(path: Path) -> list[list[np.ndarray]]:
    with VideoReader(path) as reader:
        return [frame_planes(d.frame) for d in reader.frames()]


def _crop(planes: list[np.ndarray], scale: int) -> list[np.ndarray]:
    x, y, w, h = (v * scale for v in ROI)
    return [p[y // s : (y + h) // s, x // s : (x + w) // s] for p, s in zip(planes, (1, 2, 2), strict=True)]


# (operation arguments, largest difference allowed from the whole-frame output's crop, in levels).
# The kernels and deinterlacing see no further than the margin: bit-exact. The data-consistency
# projection of fidelity-sr-x2 is a global (separable) operator, so near the crop's border it could
# differ: 1 level is allowed (0 measured on this region).
EXACT = {
    "lanczos-x2": (["--model", "lanczos", "--scale", "2", "--frames", "0:2"], 0),
    "deinterlace": (["--model", "deinterlace", "--frames", "0:2"], 0),
    "fidelity-sr-x2": (["--model", "fidelity-sr-x2", "--frames", "0:1"], 1),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_region_output_is_the_crop_of_the_whole_frame_output(name: str, tmp_path: Path, carphone_distorted: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    args, tolerance = EXACT[name]
    whole = _enhance(carphone_distorted, tmp_path / "whole", keypair[0], *args, "--no-maps", region=False)
    part = _enhance(carphone_distorted, tmp_path / "part", keypair[0], *args, "--no-maps")
    region = step_of(part)["region"]
    scale = region["scale"]
    assert (region["x"], region["y"], region["width"], region["height"]) == ROI
    assert (step_of(part)["width_out"], step_of(part)["height_out"]) == (64 * scale, 48 * scale)
    got, want = _frames(part / "output" / "master.mkv"), _frames(whole / "output" / "master.mkv")
    assert len(got) == len(want) > 0
    worst = max(
        int(np.abs(g.astype(int) - c.astype(int)).max())
        for gp, wp in zip(got, want, strict=True)
        for g, c in zip(gp, _crop(wp, scale), strict=True)
    )
    assert worst <= tolerance, f"{name}: region differs from the whole frame's crop by {worst} levels"
    # the evidence is hashed whole either way
    assert (part / "input.framehash").read_text() == (whole / "input.framehash").read_text()


# every operation the issue lists, on a region: verifies, records the region and its margin
OPERATIONS = {
    "deblur": (["--model", "deblur", "--psf", "motion:5,0", "--frames", "0:2"], 1),
    "fidelity-restore": (["--model", "fidelity-restore", "--frames", "0:2"], 1),
    "mfsr-x2": (["--model", "mfsr-x2", "--frames", "0:3"], 2),
    "integrate": (["--model", "integrate", "--frames", "0:3", "--register-roi", "48,40,40,32"], 1),  # inside the crop
    "stabilise": (["--model", "stabilise", "--frames", "0:3"], 1),
    "chain": (["--ops", "deinterlace,deblur,sr", "--model", "lanczos", "--psf", "motion:5,0", "--frames", "0:2"], 2),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_operation_runs_on_a_region_and_verifies(name: str, tmp_path: Path, carphone_distorted: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    args, scale = OPERATIONS[name]
    bundle = _enhance(carphone_distorted, tmp_path / name, keypair[0], *args)
    proc = run_fvsr("verify", bundle, "--pubkey", keypair[1], "--evidence", carphone_distorted)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    step = step_of(bundle)
    region = step["region"]
    assert StepRecord.from_json(step).region.box == ROI  # type: ignore[union-attr]
    assert region["scale"] == scale and region["output"] == {"width": 64 * scale, "height": 48 * scale}
    ops = [m["op"] for m in region["margin_by_operation"]]
    assert len(ops) == 1 + len(step["pre_operations"]) and region["margin_needed"] == sum(
        m["margin"] for m in region["margin_by_operation"]
    )
    crop, taken = region["crop"], region["margin_taken"]
    assert crop["x"] == ROI[0] - taken["left"] and crop["width"] == 64 + taken["left"] + taken["right"]
    assert min(taken.values()) >= min(region["margin_needed"], 32)  # the region is 32 pixels from the nearest border
    if "--register-roi" in args:  # registered on the crop, recorded in evidence pixels as asked
        assert step["temporal"]["registration"]["region"] == [48, 40, 40, 32]
    with VideoReader(bundle / "output" / "master.mkv") as reader:
        assert (reader.info.width, reader.info.height) == (64 * scale, 48 * scale)
    for video in (bundle / "maps").glob("*.mkv"):
        with VideoReader(video) as reader:
            assert (reader.info.width, reader.info.height) == (64 * scale, 48 * scale), video.name


def test_a_region_report_states_the_region_and_shows_it_on_the_whole_frame(tmp_path: Path, carphone_distorted: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from PIL import Image

    bundle = tmp_path / "lanczos"
    run_fvsr(
        "enhance", carphone_distorted, "-o", bundle, "--key", keypair[0], "--model", "lanczos", "--frames", "0:2",
        "--roi", ROI_ARG, "-q", check=True,
    )  # fmt: skip
    assert run_fvsr("verify", bundle, "--pubkey", keypair[1]).returncode == 0
    with Image.open(bundle / "stills" / "000000-evidence.png") as ev, Image.open(bundle / "stills" / "000000-enhanced.png") as enh:
        assert ev.size == (64, 48) and enh.size == (128, 96)
    with Image.open(bundle / "stills" / "000000-overview.png") as ov:
        rgb = np.asarray(ov.convert("RGB"))
    assert rgb.shape == (144, 176, 3)
    x, y, w, h = ROI
    assert (rgb[y - 1, x : x + w] == (255, 255, 0)).all() and (rgb[y : y + h, x + w] == (255, 255, 0)).all()  # the box, outside the region
    text = subprocess.run(["pdftotext", str(bundle / "report.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    assert "Region (--roi)" in text and "evidence pixels x 40 to 103, y 32 to 79 (64 x 48)" in text
    assert "the region (--roi) that every output frame shows is outlined" in " ".join(text.split())
    # the review page shows the evidence cut to the region beside the region's output
    import io

    from forensic_vsr.review.session import ReviewSession

    session = ReviewSession(bundle, None, None, carphone_distorted, False)
    try:
        assert session.info()["region"] == list(ROI)
        with Image.open(io.BytesIO(session.png("evidence", 0))) as ev, Image.open(io.BytesIO(session.png("enhanced", 0))) as enh:
            assert ev.size == (64, 48) and enh.size == (128, 96)
    finally:
        session.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--roi", "150,100,48,48"], "--roi 150,100,48,48: the region must lie inside the 176x144 evidence frame"),
        (["--roi", "40,32,8,48"], "at least 16x16"),
        (["--roi", "41,32,64,48"], "e.g. --roi 40,32,64,48"),
        (["--roi", "40,32"], "expected X,Y,W,H"),
        (["--model", "integrate", "--roi", ROI_ARG, "--register-roi", "0,100,40,40"], "--register-roi 0,100,40,40: must lie inside"),
    ],
)
def test_a_bad_region_is_one_usage_line(args: list[str], message: str, tmp_path: Path, carphone_distorted: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bad"
    proc = run_fvsr("enhance", carphone_distorted, "-o", out, "--key", keypair[0], "--frames", "0:1", "--mode", "investigative", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


def test_the_region_is_recorded_and_an_old_deblur_roi_reads_back_as_recorded() -> None:
    base = {"mode": "evidential", "operations": [{"op": "deblur", "model": "deblur", "scale": 1}], "frames": None}
    new = Recipe.from_json({**base, "region": list(ROI)})
    assert new.region == ROI and new.roi is None and new.to_json()["region"] == list(ROI) and "roi" not in new.to_json()
    # a recipe recorded before --roi was general: deblur restored only the region in the whole frame
    old = Recipe.from_json({**base, "psf": "motion:5,0", "roi": list(ROI)})
    assert old.roi == ROI and old.region is None and old.to_json()["roi"] == list(ROI) and "region" not in old.to_json()


@pytest.mark.parametrize("change", [{"x": -1}, {"width": 1.5}, {"height": True}, {"crop": None, "extra": 1}, {"scale": "2"}])
def test_a_malformed_region_record_is_refused(change: dict[str, object]) -> None:
    good = {
        "x": 40, "y": 32, "width": 64, "height": 48, "units": "evidence pixels", "scale": 2, "output": {"width": 128, "height": 96},
        "margin_needed": 8, "margin_by_operation": [{"op": "upscale", "model": "lanczos", "margin": 8}],
        "margin_taken": {"left": 8, "top": 8, "right": 8, "bottom": 8}, "crop": {"x": 32, "y": 24, "width": 80, "height": 64},
    }  # fmt: skip
    assert Region.from_json(good).to_json() == good
    with pytest.raises(ValueError, match="step record region"):
        Region.from_json({**good, **change})
