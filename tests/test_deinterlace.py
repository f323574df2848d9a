"""Deinterlacing: a progressive clip interlaced by ffmpeg's tinterlace comes back field for
field, each field's lines exactly; field order from flags, and from content when the flags are
missing; blend mode keeps one frame per input frame and records what it replaced."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from forensic_vsr.media import VideoReader, frame_planes
from forensic_vsr.ops.deinterlace import bob, comb_score
from tests.helpers import run_fvsr
from tests.helpers import step as step_of


def _planes(path: Path) -> list[list[np.ndarray]]:
    with VideoReader(path) as reader:
        return [frame_planes(f.frame) for f in reader.frames()]


@pytest.fixture(scope="module")
def progressive(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str, carphone: Path) -> Path:
    out = tmp_path_factory.mktemp("di") / "progressive.mkv"
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(carphone), "-frames:v", "12", "-c:v", "ffv1", "-pix_fmt", "yuv420p", str(out)], check=True
    )
    return out


def _interlace(ffmpeg: str, src: Path, out: Path, mode: str, field: str) -> Path:
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(src), "-vf", f"tinterlace={mode},setfield={field}", "-c:v", "ffv1", str(out)], check=True
    )
    return out


def test_bob_keeps_the_fields_lines() -> None:
    x = np.random.default_rng(0).integers(0, 256, (37, 20)).astype(np.float64)
    for parity in (0, 1):
        assert np.array_equal(bob(x, parity)[parity::2], x[parity::2])
    ramp = np.tile(np.arange(40.0)[:, None], (1, 5))
    assert np.allclose(bob(ramp, 0)[4:-4], ramp[4:-4]) and np.allclose(bob(ramp, 1)[4:-4], ramp[4:-4])


@pytest.mark.parametrize(
    ("mode", "field", "order", "source"),
    [("interleave_top", "tff", "top-first", "stream flags"), ("interleave_bottom", "prog", "bottom-first", "content")],
)
def test_fields_mode_reproduces_each_fields_lines_exactly(  # type: ignore[no-untyped-def]
    tmp_path: Path, ffmpeg: str, progressive: Path, keypair, mode: str, field: str, order: str, source: str
) -> None:
    inter = _interlace(ffmpeg, progressive, tmp_path / "inter.mkv", mode, field)
    bundle = tmp_path / "b"
    run_fvsr("enhance", inter, "-o", bundle, "--key", keypair[0], "--model", "deinterlace", "--scale", "1", "-q", check=True)
    src, out = _planes(progressive), _planes(bundle / "output" / "master.mkv")
    assert len(out) == len(src) == 2 * len(_planes(inter))
    first = 0 if order == "top-first" else 1
    for j, (o, p) in enumerate(zip(out, src, strict=True)):
        parity = first if j % 2 == 0 else 1 - first  # output frame j is source frame j's field
        assert np.array_equal(o[0][parity::2], p[0][parity::2]), j
    with VideoReader(bundle / "output" / "master.mkv") as reader:
        times = [float(f.pts * reader.info.time_base) for f in reader.frames()]
    gaps = np.diff(times)
    assert gaps.min() > 0 and gaps.max() < 1.1 * gaps.min()  # fields evenly spaced in time: twice the rate
    step = step_of(bundle)
    d = step["deinterlace"]
    assert d["field_order"] == order and d["field_order_source"].startswith(source) and d["content_field_order"] == order
    progressive_comb = np.mean([comb_score(p[0]) for p in src])
    assert step["frames_per_input"] == 2 and np.mean(d["comb_score_per_frame"]) > progressive_comb + 0.1
    assert run_fvsr("verify", bundle, "--pubkey", keypair[1]).returncode == 0


def test_blend_mode_keeps_one_frame_per_input_frame(tmp_path: Path, ffmpeg: str, progressive: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    inter = _interlace(ffmpeg, progressive, tmp_path / "inter.mkv", "interleave_top", "tff")
    bundle = tmp_path / "b"
    run_fvsr(
        "enhance", inter, "-o", bundle, "--key", keypair[0], "--model", "deinterlace", "--scale", "1",
        "--deinterlace", "blend", "--mode", "investigative", "--no-report", "-q", check=True,
    )  # fmt: skip
    inp, out = _planes(inter), _planes(bundle / "output" / "master.mkv")
    assert len(out) == len(inp)
    for o, i in zip(out, inp, strict=True):
        assert np.array_equal(o[0][0::2], i[0][0::2])  # the first field is never touched
        assert comb_score(o[0]) < comb_score(i[0])
    d = step_of(bundle)["deinterlace"]
    assert len(d["second_field_fraction_replaced_per_frame"]) == len(inp)
    assert all(0 < r < 1 for r in d["second_field_fraction_replaced_per_frame"])
