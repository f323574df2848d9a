"""Report template 9 (issue 17 item 1, the report's share of an evidential run): streams are
Flate only (reportlab's pure-Python ASCII85 encoder took most of the rendering time), pictures
go into the PDF from their pixels (no PNG encoded and decoded on the way), the stills are
PNG-encoded in threads, and the report's libraries are imported beside the frame pass. None of it
may change what the report shows or that it renders again to the same bytes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import record

ROOT = Path(__file__).resolve().parent.parent


def test_report_streams_are_flate_only_and_render_again_to_the_signed_bytes(carphone_bundle: Path, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from reportlab import rl_config

    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.verify import read_chain
    from forensic_vsr.report.checks import render_report
    from forensic_vsr.report.render import TEMPLATE_VERSION

    pdf = (carphone_bundle / "report.pdf").read_bytes()
    assert b"/ASCII85Decode" not in pdf and b"/FlateDecode" in pdf
    body = record(carphone_bundle, "report.generate")
    assert body["renderer"]["template"] == TEMPLATE_VERSION == 9
    before = rl_config.useA85
    view, _ = read_chain(carphone_bundle, load_public_key(keypair[1]))
    out = tmp_path / "again.pdf"
    render_report(carphone_bundle, view, out, None)
    assert rl_config.useA85 == before, "the render left reportlab's process-wide setting changed"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == body["unsigned"]["sha256"]
    assert pdf.startswith(out.read_bytes())  # the signature is an incremental update of those bytes


def test_stills_written_in_threads_are_the_frames_hashed_and_lossless(carphone_bundle: Path) -> None:
    """Each still file is the one report.generate names (sha256 and size taken after the threads
    finished), and the enhanced still decodes to the master frame the record names."""
    import av

    stills = [s for s in record(carphone_bundle, "report.generate")["stills"] if "frame" in s]
    assert stills
    with av.open(str(carphone_bundle / "output" / "master.mkv")) as container:
        master = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    for still in stills:
        for entry in still["files"].values():
            data = (carphone_bundle / entry["name"]).read_bytes()
            assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        png = np.asarray(Image.open(carphone_bundle / still["files"]["enhanced"]["name"]).convert("RGB"))
        assert np.array_equal(png, master[still["frame"]]), still["label"]


def test_report_libraries_are_imported_in_the_background() -> None:
    """prefetch_imports loads every module write_report imports, in a thread that ends."""
    code = (
        "import sys\n"
        "from forensic_vsr.bundle.report import REPORT_MODULES, prefetch_imports\n"
        "assert 'pyhanko.sign' not in sys.modules\n"
        "t = prefetch_imports()\n"
        "t.join(120)\n"
        "assert not t.is_alive() and t.daemon\n"
        "print([m for m in REPORT_MODULES if m not in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_full_disk_leaves_no_half_written_still(
    carphone_bundle: Path, carphone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stills are encoded in threads; a disk that fills halfway through one of them raises
    that error, and every still left on disk is whole (written beside, then renamed)."""
    import errno
    import shutil

    from forensic_vsr.report import stills

    bundle = tmp_path / "b"
    shutil.copytree(carphone_bundle, bundle)
    shutil.rmtree(bundle / "stills")
    real = Path.write_bytes
    calls: list[Path] = []

    def filling(self: Path, data: bytes) -> int:
        calls.append(self)
        if len(calls) == 2:  # the second still: half of it reaches the disk
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", filling)
    with pytest.raises(OSError, match="No space left on device"):
        stills.make_stills(bundle, carphone, {"first frame": 0, "middle frame": 20}, 0, 8.0, recompute_scale=2)
    left = sorted((bundle / "stills").iterdir())
    assert len(calls) >= 2 and not [p.name for p in left if p.name.startswith(".")]
    for path in left:  # whatever was written decodes in full
        with Image.open(path) as img:
            img.load()
