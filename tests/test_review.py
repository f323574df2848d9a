"""`fvsr review`: the real server (a subprocess, as an examiner starts it) on a copy of a real
bundle, driven by a real headless Chromium through Playwright; then `fvsr verify` judges the
signed review record it saved, and a tampered or misbound record fails.

Screenshots go to a temporary folder, or to $FVSR_REVIEW_SCREENSHOTS (docs/ was made that way)."""

from __future__ import annotations

import base64
import http.client
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


@pytest.fixture
def served(tmp_path: Path, carphone_bundle: Path, keypair: tuple[Path, Path]) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    copy = tmp_path / "case"
    shutil.copytree(carphone_bundle, copy)
    proc = subprocess.Popen(
        [sys.executable, "-m", "forensic_vsr", "review", str(copy), "--port", "0", "--no-open", "--key", str(keypair[0])],
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
        yield first[0].strip(), copy, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


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
