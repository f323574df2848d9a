"""`fvsr review`: the real server (a subprocess, as an examiner starts it) on a copy of a real
bundle, driven by a real headless Chromium through Playwright; then `fvsr verify` judges the
signed review record it saved, and a tampered or misbound record fails.

Screenshots go to a temporary folder, or to $FVSR_REVIEW_SCREENSHOTS (docs/ was made that way)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from forensic_vsr.audit.chain import record_digest
from forensic_vsr.audit.keys import load_signer
from forensic_vsr.audit.review import BundleBinding, new_review, sign_review
from forensic_vsr.integrity.framehash import parse
from tests.helpers import PASSPHRASE, run_fvsr

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def _output_lines(bundle: Path) -> list[str]:
    return [fh.sha256 for fh in parse((bundle / "output.framehash").read_text().splitlines())]


@contextlib.contextmanager
def _server(bundle: Path, *args: str | Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`fvsr review BUNDLE --port 0 --no-open ARGS` as a subprocess: (the URL it printed, the process)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "forensic_vsr", "review", str(bundle), "--port", "0", "--no-open", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FVSR_KEY_PASSPHRASE": PASSPHRASE},
    )
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(60)
    if not first or not first[0].startswith("http://127.0.0.1:"):
        proc.kill()
        pytest.fail(f"no URL on stdout's first line: {first!r}\n{proc.stderr.read()}")  # type: ignore[union-attr]
    try:
        yield first[0].strip(), proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def served(tmp_path: Path, carphone_bundle: Path, keypair: tuple[Path, Path]) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    copy = tmp_path / "case"
    shutil.copytree(carphone_bundle, copy)
    with _server(copy, "--key", keypair[0]) as (url, proc):
        yield url, copy, proc


def _status(url: str, host: str | None = None) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path, headers={"Host": host} if host else {})
    status = conn.getresponse().status
    conn.close()
    return status


def _browser(playwright):  # type: ignore[no-untyped-def]
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception as exc:
        print(f"Chromium cannot start ({CHROMIUM}): {exc}")
        pytest.skip(f"Chromium cannot start: {str(exc)[:300]}")


def _opaque_pixels(page, canvas: str) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate(
        """(id) => { const c = document.getElementById(id); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
           let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""",
        canvas,
    )


def test_review_page_signs_a_record_that_verify_checks(
    served: tuple[str, Path, subprocess.Popen[str]], keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    url, bundle, proc = served
    shots = Path(os.environ.get("FVSR_REVIEW_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    base = url.split("?", 1)[0]
    port = urlsplit(url).port
    assert _status(url) == 200
    assert _status(base) == 403, "no token"
    assert _status(base + "?token=wrong") == 403, "wrong token"
    assert _status(base + "api/frame/enhanced/0.png") == 403, "an API call without the token"
    assert _status(url, host=f"evil.example:{port}") == 403, "another host name (DNS rebinding)"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(base + "api/info", timeout=10)
    assert refused.value.code == 403
    sha = _output_lines(bundle)

    with sync_api.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert page.text_content("#frame-sha256") == sha[0]
        page.keyboard.press("ArrowRight")
        page.wait_for_selector("body[data-frame='1']", timeout=15_000)
        assert page.text_content("#frame-sha256") == sha[1]
        assert page.input_value("#frame-index") == "1"
        assert "0.033367 s" in page.text_content("#frame-time")  # pts 1 x 1001/30000 s
        page.locator("main").screenshot(path=str(shots / "review-main.png"))

        page.select_option("#mode", "wipe")
        page.fill("#wipe", "40")
        page.dispatch_event("#wipe", "input")
        assert page.is_visible("#wipe-view") and not page.is_visible("#side-view")
        assert _opaque_pixels(page, "wipe-en") > 0 and _opaque_pixels(page, "wipe-ev") > 0
        page.locator("#wipe-view").screenshot(path=str(shots / "review-wipe.png"))
        page.select_option("#mode", "side")

        page.select_option("#zoom", "16")
        assert "\N{MULTIPLICATION SIGN}16" in page.text_content("#zoom-label")
        page.hover("#annotations", position={"x": 301, "y": 401})  # display scale 2: output pixel (150, 200)
        assert page.text_content("#pointer").startswith("pixel (150, 200)")
        assert _opaque_pixels(page, "magnifier") > 0
        page.locator("aside").screenshot(path=str(shots / "review-magnifier.png"))

        assert _opaque_pixels(page, "ov-canvas") == 0
        page.select_option("#overlay", "synthesized")
        page.wait_for_selector("#legend:not([hidden])", timeout=15_000)
        page.wait_for_function(
            "document.getElementById('ov-canvas').getContext('2d').getImageData(0,0,352,288).data.some((v,i)=>i%4==3&&v>0)"
        )
        assert "grey levels (of 255)" in page.text_content("#legend-text")
        page.hover("#annotations", position={"x": 297, "y": 385})
        assert "S (synthesized) = " in page.text_content("#pointer")
        page.locator("#views").screenshot(path=str(shots / "review-overlay.png"))

        page.select_option("#tool", "text")
        page.fill("#note", "licence plate here")
        page.click("#annotations", position={"x": 201, "y": 101})  # output pixel (100, 50)
        assert "text (100, 50)" in page.text_content("#pending")
        page.click("#save")
        page.wait_for_selector("#save-status:has-text('saved review/0000.json')", timeout=15_000)

        page.reload()
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        listed = page.text_content("#reviews")
        assert "review/0000.json: frame 1" in listed and '"licence plate here"' in listed and "signature verified" in listed
        page.wait_for_selector("body[data-verify='pass']", timeout=90_000)
        checks = page.locator("#checks li").all_text_contents()
        assert len(checks) > 15 and all(c.startswith("PASS ") for c in checks), checks
        assert page.text_content("#frame-verified") == "verified"
        browser.close()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr.read()  # type: ignore[union-attr]

    record = json.loads(base64.b64decode(json.loads((bundle / "review/0000.json").read_text())["payload"]))
    head = record_digest((bundle / "chain.jsonl").read_bytes().splitlines()[-1])
    assert record["bundle"]["chain_head"] == head
    assert record["frame"] == {"index": 1, "pts": 1, "sha256": sha[1]}
    assert record["annotations"] == [{"type": "text", "x": 100, "y": 50, "text": "licence plate here"}]
    assert (bundle / "output.framehash").read_text().count(sha[1]) == 1

    ok = run_fvsr("verify", bundle, "--pubkey", keypair[1])
    assert ok.returncode == 0, ok.stdout
    assert any(line.startswith("PASS") and "review.0000" in line and "as output.framehash" in line for line in ok.stdout.splitlines())

    # the payload changed under an unchanged signature
    original = (bundle / "review/0000.json").read_bytes()
    envelope = json.loads(original)
    record["annotations"][0]["text"] = "something else"
    envelope["payload"] = base64.b64encode(json.dumps(record).encode()).decode()
    (bundle / "review/0000.json").write_text(json.dumps(envelope))
    bad = run_fvsr("verify", bundle, "--pubkey", keypair[1])
    assert bad.returncode == 1
    assert any(line.startswith("FAIL") and "review.0000" in line and "does not verify" in line for line in bad.stdout.splitlines()), (
        bad.stdout
    )

    # validly signed, but bound to another chain head: FAIL; and one numbered with a gap: FAIL
    (bundle / "review/0000.json").write_bytes(original)
    signer = load_signer(keypair[0], PASSPHRASE.encode(), "Test Examiner")
    line = list(parse((bundle / "output.framehash").read_text().splitlines()))[2]
    other = new_review(1, None, BundleBinding("0" * 64, 6), line, 2, False, [], signer)
    (bundle / "review/0001.json").write_bytes(sign_review(other, signer))
    bad = run_fvsr("verify", bundle, "--pubkey", keypair[1])
    assert bad.returncode == 1
    fails = [ln for ln in bad.stdout.splitlines() if ln.startswith("FAIL")]
    assert any("review.0001" in ln and "bound to chain head 0000000000000000" in ln and "prev is None" in ln for ln in fails), bad.stdout
    (bundle / "review/0001.json").rename(bundle / "review/0003.json")
    bad = run_fvsr("verify", bundle, "--pubkey", keypair[1])
    assert any("review/0003.json found where review/0001.json was expected" in ln for ln in bad.stdout.splitlines()), bad.stdout


@pytest.fixture(scope="module")
def deblur_bundle(tmp_path_factory: pytest.TempPathFactory, carphone_distorted: Path, keypair: tuple[Path, Path]) -> Path:
    """A real deblur bundle (given motion PSF) of the first two frames of the distorted carphone."""
    out = tmp_path_factory.mktemp("deblur") / "case"
    run_fvsr(
        "enhance", carphone_distorted, "-o", out, "--key", keypair[0], "--model", "deblur", "--psf", "motion:7,30",
        "--frames", "0:2", "--case", "T-2", "-q", check=True,
    )  # fmt: skip
    return out


def _json(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}") if exc.headers.get_content_type() == "application/json" else {}


def _png_data_url(url: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_psf_preview_restores_as_the_deblur_run_did(deblur_bundle: Path, carphone_distorted: Path, tmp_path: Path) -> None:
    """The PSF panel on a real deblur bundle with --evidence: the preview with the recorded PSF is
    the run's output frame, pixel for pixel; a longer motion gives another picture and its ringing;
    the endpoint wants the token and refuses absurd parameters with one line."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from forensic_vsr.media import VideoReader, frame_from_planes, frame_planes

    shots = Path(os.environ.get("FVSR_REVIEW_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with _server(deblur_bundle, "--evidence", carphone_distorted) as (url, proc):
        base, query = url.split("?", 1)
        api = base + "api/psf/preview/0?kind=motion&length=7&angle=30"
        assert _status(api) == 403, "no token"
        status, recorded = _json(f"{api}&{query}")
        assert status == 200, recorded
        assert recorded["method"] == "Wiener deconvolution, gradient regulariser" and recorded["ringing_rms_levels"] > 0
        assert recorded["region"] == [0, 0, 176, 144] and recorded["psf"]["length"] == 7
        assert "--model deblur --psf motion:7,30 --frames 0:2 --case T-2" in recorded["command"]
        with VideoReader(deblur_bundle / "output/master.mkv") as reader:
            f = next(iter(reader.frames())).frame
            run = frame_from_planes(frame_planes(f), f.format.name, f.width, f.height).to_ndarray(format="rgb24")
        assert np.array_equal(_png_data_url(recorded["images"]["restored"]), run), "the preview is not what the run made"
        assert not np.array_equal(_png_data_url(recorded["images"]["evidence"]), run)
        for bad, says in (
            ("kind=motion&length=100000&angle=0", "motion length 100000 px: must be 1 to 100"),
            ("kind=motion&length=nan&angle=0", "not a finite number"),
            ("kind=defocus&radius=-2", "defocus radius -2 px"),
            ("kind=defocus&radius=0.01", "defocus radius 0.01 px: must be 0.5 to 30"),
            ("kind=spiral", "expected motion or defocus"),
            ("kind=defocus&radius=3&x=170&y=0&w=50&h=50", "not inside the 176x144 evidence frame"),
            ("kind=defocus&radius=3&x=0&y=0&w=4&h=4", "at least 16x16"),
        ):
            status, body = _json(f"{base}api/psf/preview/0?{bad}&{query}")
            assert status == 400 and says in body["error"] and "\n" not in body["error"], (bad, status, body)
        assert _json(f"{base}api/psf/preview/99?kind=defocus&radius=3&{query}")[0] == 400
        assert _json(f"{base}api/psf/estimate/0?{query}")[1]["confidence_measure"].startswith("fraction of 4")

        with sync_api.sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            page.click("#psf summary")
            page.wait_for_selector("body[data-psf]", timeout=30_000)
            assert page.input_value("#psf-length") == "7" and page.input_value("#psf-angle") == "30"  # the recorded PSF
            first = page.get_attribute("#psf-restored", "src")
            assert page.text_content("#psf-ringing") == f"{recorded['ringing_rms_levels']:.3f} levels (of 255)"
            seq = page.get_attribute("body", "data-psf")
            page.fill("#psf-length", "12")
            page.wait_for_function(
                "(seq) => document.body.dataset.psf !== seq && document.getElementById('psf-text').textContent.includes('12 px')", arg=seq
            )
            assert page.get_attribute("#psf-restored", "src") != first
            ringing = page.text_content("#psf-ringing")
            assert ringing.endswith("levels (of 255)") and float(ringing.split()[0]) > 0
            assert "--psf motion:12,30" in page.input_value("#psf-command")
            page.select_option("#tool", "psf")
            page.mouse.move(*_at(page, 40, 30))
            page.mouse.down()
            page.mouse.move(*_at(page, 140, 110))
            page.mouse.up()
            page.wait_for_function("() => document.getElementById('psf-where').textContent.includes('x 40, y 30, 101\u00d781')")
            assert "--roi 40,30,101,81" in page.input_value("#psf-command")
            page.click("#psf-estimate")
            page.wait_for_selector("#psf-estimate-text:has-text('confidence')", timeout=30_000)
            page.wait_for_function(  # the estimate is then previewed
                "() => document.getElementById('psf-status').textContent === 'shown' && document.getElementById('psf-estimate-text')"
                ".textContent.includes(document.getElementById('psf-text').textContent)"
            )
            page.locator("#psf").screenshot(path=str(shots / "review-psf.png"))
            browser.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def _at(page, x: int, y: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Screen coordinates of output pixel (x, y)'s centre on the enhanced frame."""
    box = page.locator("#annotations").bounding_box()
    s = box["width"] / int(page.evaluate("document.getElementById('en-canvas').width"))
    return box["x"] + (x + 0.5) * s, box["y"] + (y + 0.5) * s


def test_psf_preview_needs_the_evidence(deblur_bundle: Path, carphone: Path, keypair: tuple[Path, Path]) -> None:
    """Without the recorded evidence the page says why the preview is unavailable, and the
    endpoint computes nothing."""
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.review.session import ReviewSession

    session = ReviewSession(deblur_bundle, load_public_key(keypair[1]), None, carphone, independent_key=True)
    try:
        assert "evidence" not in session.info()["kinds"] and "the recorded evidence" in session.info()["evidence"]
        with pytest.raises(LookupError, match=r"PSF preview unavailable: evidence not shown: .* has sha256"):
            session.psf("preview", 0, {"kind": "motion", "length": "7", "angle": "30"})
    finally:
        session.close()


def test_psf_preview_refuses_rgb_evidence(tmp_path: Path, carphone: Path) -> None:
    """RGB evidence has no luma plane and the deblur operation refuses it: so does the preview."""
    from PIL import Image

    from forensic_vsr.media import VideoReader
    from forensic_vsr.ops.deblur import motion_psf
    from forensic_vsr.review.psf import preview

    still = tmp_path / "still.png"
    with VideoReader(carphone) as reader:
        Image.fromarray(next(iter(reader.frames())).frame.to_ndarray(format="rgb24")).save(still)
    with VideoReader(still) as reader:
        decoded = next(iter(reader.frames()))
        with pytest.raises(LookupError, match="rgb24 evidence has no luma plane, and the preview restores luma only"):
            preview(decoded, motion_psf(7, 30), None)
