"""The court report: real PDFs rendered by reportlab, read back with pdftotext, checked by
`fvsr verify` (re-rendered byte for byte from the signed records)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ffmpeg_framehash, run_fvsr

POPPLER = ("pdftotext", "pdftoppm", "pdftohtml", "pdfinfo")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in POPPLER), reason="poppler-utils not installed")
STILL_KINDS = ("evidence", "enhanced", "overlay")  # the order the report lays a still's images out, left to right


def _text(pdf: Path, page: int | None = None) -> str:
    args = ["pdftotext", "-layout"] + (["-f", str(page), "-l", str(page)] if page else []) + [str(pdf), "-"]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def _payloads(bundle: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for line in (bundle / "chain.jsonl").read_text().splitlines():
        payload = json.loads(base64.b64decode(json.loads(line)["payload"]))
        out.setdefault(payload["type"], payload)
    return out


def _bodies(bundle: Path) -> dict[str, dict]:
    return {kind: payload["body"] for kind, payload in _payloads(bundle).items()}


def test_report_states_the_key_facts(carphone_bundle: Path) -> None:
    pdf = carphone_bundle / "report.pdf"
    text = _text(pdf)
    b = _bodies(carphone_bundle)
    ingest, write, decision = b["evidence.ingest"], b["output.write"], b["policy.decision"]
    step = b["step.run"]["predicate"]["runDetails"]["byproducts"][0]["annotations"]
    assert ingest["evidence"]["sha256"] in text
    assert ingest["input_framehash"]["merkle_root"] in text
    assert write["frame_roots"]["output"] in text
    for m in step["maps"]["files"].values():
        assert m["merkle_root"] in text
    for f in write["files"]:
        assert f["sha256"] in text, f["name"]
    assert decision["policy"]["sha256"] in text
    # the run's own values, on the rows that name them (not just somewhere in the boilerplate)
    recipe = b["step.run"]["predicate"]["buildDefinition"]["externalParameters"]
    model = recipe["operations"][-1]["model"]
    examiner = _payloads(carphone_bundle)["evidence.ingest"]["actor"]["name"]
    assert (recipe["mode"], model, examiner, ingest["case_id"]) == ("evidential", "lanczos", "Test Examiner", "T-1")
    assert re.search(rf"^ *Mode +{recipe['mode']} *$", text, re.M)
    assert re.search(rf"^ *Model id / class +{model} / classical *$", text, re.M)
    assert re.search(rf"^ *Examiner +{re.escape(examiner)} *$", text, re.M)
    assert re.search(rf"^ *Case id +{ingest['case_id']} *$", text, re.M)
    for rule in decision["rules"]:
        assert rule["rule"] in text, rule["rule"]
    assert b["report.generate"]["chain_head"] in text
    for heading in ("Evidence", "Policy", "Processing", "Environment", "Results", "Integrity", "How to verify", "Limitations"):
        assert heading in text
    assert "fvsr verify" in text and "framehash" in text
    assert "NOT FOR EVIDENTIAL USE" not in text
    flat = " ".join(text.split())
    cal = step["maps"]["calibration"]
    assert f"w = {cal['lambda']} * u, where u = 1 + S" in flat and "u = u" not in flat  # the interval formula, once
    stills = b["report.generate"]["stills"]
    assert {s["label"] for s in stills} >= {"first frame", "middle frame", "most flagged frame"}
    for s in stills:
        assert s["sha256"] in text  # the frame's hash printed beside its still


def _image_slots(pdf: Path, workdir: Path) -> list[tuple[int, float, float, float, float, float, float]]:
    """Every image the PDF draws, in content order: (page, left, top, width, height, page width,
    page height), in points, as poppler's pdftohtml lays them out."""
    workdir.mkdir()
    copy = workdir / "report.pdf"  # pdftohtml writes the images it extracts beside the PDF
    shutil.copy(pdf, copy)
    subprocess.run(["pdftohtml", "-xml", "-q", "-zoom", "1", str(copy), str(workdir / "layout")], check=True)
    slots = []
    for page in ET.parse(workdir / "layout.xml").getroot().iter("page"):
        pw, ph = float(page.get("width", 0)), float(page.get("height", 0))
        for im in page.iter("image"):
            box = [float(im.get(k, 0)) for k in ("left", "top", "width", "height")]
            slots.append((int(page.get("number", 0)), *box, pw, ph))
    return slots


def test_report_shows_each_still_as_its_frame(carphone_bundle: Path, carphone: Path, ffmpeg: str, tmp_path: Path) -> None:
    """The stills are the frames they are labelled with (ffmpeg decodes the same pixels and the
    printed frame hash is output.framehash's line), and the rendered page shows each one where
    the report puts it: poppler's render correlates with the right frame's still, better than
    with any other labelled frame's."""
    stills = _bodies(carphone_bundle)["report.generate"]["stills"]
    assert len({s["frame"] for s in stills}) == len(stills) >= 3
    out_hashes = [ln.split(",")[-1].strip() for ln in ffmpeg_framehash(ffmpeg, carphone_bundle / "output" / "master.mkv")]
    sources = {"enhanced": carphone_bundle / "output" / "master.mkv", "evidence": carphone}
    for still in stills:
        assert still["sha256"] == out_hashes[still["frame"]], still["label"]
        for kind, video in sources.items():
            n = still["frame"] if kind == "enhanced" else still["evidence_frame"]
            raw = subprocess.run(
                [ffmpeg, "-v", "error", "-flags", "+bitexact", "-i", str(video), "-vf", f"select=eq(n\\,{n})", "-frames:v", "1",
                 "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
                check=True, capture_output=True,
            ).stdout  # fmt: skip
            png = cv2.imread(str(carphone_bundle / still["files"][kind]["name"]), cv2.IMREAD_COLOR)
            decoded = np.frombuffer(raw, np.uint8).reshape(png.shape)
            # the same swscale conversion on both sides (measured identical); < 0.5 leaves room for a
            # different ffmpeg build's rounding, while neighbouring frames differ by ~7 levels
            assert np.abs(png.astype(float) - decoded).mean() < 0.5, (still["label"], kind)

    # template 6 places per still the three magnified crops (tests/test_report_layout.py checks
    # their pixels) and then the whole frame, reduced: that overview must be the labelled frame's
    placed = [(still, kind) for still in stills for kind in (*STILL_KINDS, "overview") if kind == "overview" or kind in still["files"]]
    slots = _image_slots(carphone_bundle / "report.pdf", tmp_path / "html")
    assert len(slots) == len(placed) == 4 * len(stills)
    dpi = 157
    rendered: dict[int, np.ndarray] = {}
    for (still, kind), (page, left, top, width, height, pw, _ph) in zip(placed, slots, strict=True):
        if kind != "overview":
            continue
        if page not in rendered:
            subprocess.run(["pdftoppm", "-r", str(dpi), "-f", str(page), "-l", str(page), "-png", "-singlefile",
                            str(carphone_bundle / "report.pdf"), str(tmp_path / f"p{page}")], check=True)  # fmt: skip
            rendered[page] = cv2.imread(str(tmp_path / f"p{page}.png"), cv2.IMREAD_COLOR)
        img = rendered[page]
        f = img.shape[1] / pw
        w, h, pad = round(width * f), round(height * f), 8  # pdftohtml rounds to whole points: search a few pixels
        x0, y0 = round(left * f), round(top * f)
        region = img[y0 - pad : y0 + h + pad, x0 - pad : x0 + w + pad]
        score = {}
        for other in stills:
            png = cv2.imread(str(carphone_bundle / other["files"]["enhanced"]["name"]), cv2.IMREAD_COLOR)
            png = cv2.resize(png, (w, h), interpolation=cv2.INTER_AREA if png.shape[1] > w else cv2.INTER_LINEAR)
            score[other["frame"]] = float(cv2.matchTemplate(region, png, cv2.TM_CCOEFF_NORMED).max())
        best = score.pop(still["frame"])
        # the right frame correlates best (the overview carries the yellow crop box: a little lower than a bare frame)
        assert best > 0.9 and best > max(score.values()) + 0.002, (still["label"], kind, best, score)


def test_tampered_report_fails_verify(carphone_bundle: Path, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    shutil.copytree(carphone_bundle, bundle)
    pdf = bundle / "report.pdf"
    data = pdf.read_bytes()
    # change one printed character in the title object (the PDF stays well-formed)
    pdf.write_bytes(data.replace(b"/Title (forensic-vsr report", b"/Title (forensic-vsr rEport", 1))
    assert pdf.read_bytes() != data
    proc = run_fvsr("verify", bundle, "--pubkey", keypair[1])
    assert proc.returncode != 0
    assert any(ln.startswith("FAIL       files.digests: report.pdf") for ln in proc.stdout.splitlines()), proc.stdout
    # verify_bundle runs the report's checks only on a bundle whose files passed; run them here
    # directly: they must catch the edit on their own (re-rendering and the PAdES signature)
    from forensic_vsr.audit.chain import read_chain
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.report.checks import report_checks

    key = load_public_key(keypair[1])
    view, _ = read_chain(bundle, key)
    checks = {c.name: c for c in report_checks(bundle, view, key)}
    assert not checks["report.content"].ok and "altered" in checks["report.content"].reason
    assert not checks["report.signature"].ok and "altered" in checks["report.signature"].reason
    view, _ = read_chain(carphone_bundle, key)
    assert all(c.ok for c in report_checks(carphone_bundle, view, key))  # and pass on the original


def test_report_signature_is_pades_with_the_recorded_certificate(carphone_bundle: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    from cryptography import x509

    from forensic_vsr.audit.pdfsign import certificate_sha256, check_report_signature

    data = (carphone_bundle / "report.pdf").read_bytes()
    assert b"/SubFilter /ETSI.CAdES.detached" in data
    rec = _bodies(carphone_bundle)["report.generate"]
    recorded = rec["signature"]["certificate_sha256"]
    # the certificate the signed chain records is the one `keys generate` wrote beside the key
    assert certificate_sha256(x509.load_pem_x509_certificate(Path(f"{keypair[0]}.crt").read_bytes())) == recorded
    assert rec["signature"]["certificate_subject"] == "CN=Test Examiner"
    ok, reason = check_report_signature(data, certificate_sha256=recorded)
    assert ok, reason
    ok, reason = check_report_signature(data, certificate_sha256="0" * 64)
    assert not ok and "the signed chain records" in reason
    # something appended after signing (a second incremental update) is caught
    ok, reason = check_report_signature(data + b"\n% appended\n", certificate_sha256=recorded)
    assert not ok


def test_lab_certificate_for_another_key_is_refused(tmp_path: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    from forensic_vsr.audit.keys import generate
    from tests.conftest import PASSPHRASE

    generate(tmp_path / "other.key", "Other", PASSPHRASE.encode())
    done = run_fvsr(
        "enhance", carphone, "-o", tmp_path / "b", "--key", keypair[0], "--frames", "0:3", "--cert", tmp_path / "other.key.crt", "-q"
    )
    assert done.returncode != 0 and "not the examiner key" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "b").exists()


def test_swapped_still_fails_verify(carphone_bundle: Path, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    shutil.copytree(carphone_bundle, bundle)
    stills = sorted((bundle / "stills").glob("*-enhanced.png"))
    shutil.copy(stills[-1], stills[0])
    proc = run_fvsr("verify", bundle, "--pubkey", keypair[1])
    assert proc.returncode != 0 and "FAIL       files.digests" in proc.stdout


def test_same_bundle_same_pdf_bytes(tmp_path: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    """reportlab invariant mode: the report depends on the records only, so verify can re-render it."""
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.verify import verify_bundle

    out = tmp_path / "b"
    assert run_fvsr("enhance", carphone, "-o", out, "--key", keypair[0], "--frames", "0:6", "--still", "3", "-q").returncode == 0
    from forensic_vsr.report.checks import report_checks

    checks = {c.name: c for c in verify_bundle(out, load_public_key(keypair[1]), extra_checks=[report_checks])}
    assert checks["report.content"].ok, checks["report.content"].reason
    assert any(s["label"] == "requested frame 3" for s in _bodies(out)["report.generate"]["stills"])


def test_investigative_report_is_labelled_on_every_page(tmp_path: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "b"
    done = run_fvsr("enhance", carphone, "-o", out, "--key", keypair[0], "--frames", "0:4", "--mode", "investigative", "-q")
    assert done.returncode == 0, done.stderr
    pdf = out / "report.pdf"
    n = int(
        next(
            ln.split()[-1]
            for ln in subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout.splitlines()
            if ln.startswith("Pages:")
        )
    )
    assert n >= 4
    for page in range(1, n + 1):
        assert "NOT FOR EVIDENTIAL USE" in _text(pdf, page), page


def test_still_out_of_range_is_one_line(tmp_path: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    done = run_fvsr("enhance", carphone, "-o", tmp_path / "b", "--key", keypair[0], "--frames", "0:4", "--still", "9", "-q")
    assert done.returncode != 0 and "--still 9" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "b").exists()


def test_report_command_rerenders_the_signed_original(carphone_bundle: Path, keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "again.pdf"
    done = run_fvsr("report", carphone_bundle, "--pubkey", keypair[1], "-o", out)
    assert done.returncode == 0, done.stderr
    assert (carphone_bundle / "report.pdf").read_bytes().startswith(out.read_bytes())
    again = run_fvsr("report", carphone_bundle, "--pubkey", keypair[1], "-o", out)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_report_command_for_a_bundle_made_without_one(tmp_path: Path, carphone: Path, keypair) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    done = run_fvsr(
        "enhance", carphone, "-o", bundle, "--key", keypair[0], "--frames", "0:3", "--mode", "investigative", "--no-report", "-q"
    )
    assert done.returncode == 0 and not (bundle / "report.pdf").exists()
    out = tmp_path / "r.pdf"
    assert run_fvsr("report", bundle, "--pubkey", keypair[1], "-o", out).returncode == 0
    text = _text(out)
    assert _bodies(bundle)["evidence.ingest"]["evidence"]["sha256"] in text and "NOT FOR EVIDENTIAL USE" in text
    other = tmp_path / "other.pub"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from forensic_vsr.audit.keys import public_pem

    other.write_text(public_pem(Ed25519PrivateKey.generate().public_key()))
    refused = run_fvsr("report", bundle, "--pubkey", other, "-o", tmp_path / "x.pdf")
    assert refused.returncode != 0 and "does not verify" in refused.stderr and not (tmp_path / "x.pdf").exists()
