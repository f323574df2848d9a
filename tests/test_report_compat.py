"""Upgrades do not break old bundles (issue 15 gap 5): a report made by another renderer (another
template, reportlab or tool version, or a format-1 bundle, which recorded none) is checked by its
signed digests, its signature and the facts printed in its text, not failed for its age; an
altered text fails on either path."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_fvsr

GOLDEN = Path(__file__).parent / "golden" / "format1.tar.gz"
EXAMINER = "Zoë O'Brien (lab 2)"


def _report_generate(bundle: Path) -> dict[str, Any]:
    for line in (bundle / "chain.jsonl").read_text().splitlines():
        payload = json.loads(base64.b64decode(json.loads(line)["payload"]))
        if payload["type"] == "report.generate":
            body: dict[str, Any] = payload["body"]
            return body
    raise AssertionError("no report.generate")


def _content_line(stdout: str) -> str:
    return next(ln for ln in stdout.splitlines() if " report.content: " in ln)


def _pdftotext(pdf: bytes, page: int) -> str:
    done = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), "-", "-"], input=pdf, capture_output=True, check=True)
    return " ".join(done.stdout.decode().split())


def _view(bundle: Path, pub: Path) -> tuple[Any, Any]:
    from forensic_vsr.audit.chain import read_chain
    from forensic_vsr.audit.keys import load_public_key

    key = load_public_key(pub)
    view, _ = read_chain(bundle, key)
    return view, key


def _facts(bundle: Path, pub: Path) -> list[Any]:
    """The facts verify looks for, from the verified records."""
    from forensic_vsr.report.checks import report_inputs
    from forensic_vsr.report.facts import report_facts

    _, records, head = report_inputs(_view(bundle, pub)[0])
    return report_facts(records, head)


def _with_page_text(pdf: bytes, page: int, edit: Any) -> bytes:
    """`pdf` with an incremental update that replaces page `page`'s content stream by
    `edit(decoded content)`, Flate-compressed: what a reader then shows on that page."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    w = IncrementalPdfFileWriter(io.BytesIO(pdf))
    kids = w.root["/Pages"]["/Kids"]
    target = kids[page - 1].get_object()
    content = edit(target["/Contents"].data)
    stream = generic.StreamObject({generic.NameObject("/Filter"): generic.NameObject("/FlateDecode")}, encoded_data=zlib.compress(content))
    target[generic.NameObject("/Contents")] = w.add_object(stream)
    w.update_container(target)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def investigative(tmp_path_factory: pytest.TempPathFactory, carphone: Path, keypair: tuple[Path, Path]) -> Path:
    """An investigative bundle (banner on every page) by an examiner whose name needs escaping."""
    out = tmp_path_factory.mktemp("inv") / "b"
    run_fvsr(
        "enhance",
        carphone,
        "-o",
        out,
        "--key",
        keypair[0],
        "--frames",
        "0:4",
        "--mode",
        "investigative",
        "--examiner",
        EXAMINER,
        "-q",
        check=True,
    )
    return out


def test_format1_report_is_checked_by_its_facts(tmp_path: Path) -> None:
    """The golden format-1 report was rendered by template 1 (its cross-check line lacks
    -flags +bitexact): the bytes differ now, and the facts path passes it."""
    with tarfile.open(GOLDEN) as tar:
        tar.extractall(tmp_path, filter="data")
    bundle = tmp_path / "format1-lanczos-x2"
    proc = run_fvsr("verify", bundle, "--pubkey", tmp_path / "examiner.key.pub", "--evidence", tmp_path / "evidence.mp4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = _content_line(proc.stdout)
    assert line.startswith("PASS") and "rendered by an earlier release (no renderer recorded)" in line, line
    assert "signed digest, signature and 7 facts checked in its text" in line, line
    assert "-flags +bitexact" not in _pdftotext((bundle / "report.pdf").read_bytes(), 5)


def test_new_report_records_its_renderer_and_renders_byte_for_byte(carphone_bundle: Path, keypair: tuple[Path, Path]) -> None:
    import reportlab

    from forensic_vsr import __version__
    from forensic_vsr.report import render
    from forensic_vsr.report.facts import Renderer, running_renderer

    recorded = _report_generate(carphone_bundle)["renderer"]
    assert recorded == {"tool": "forensic-vsr", "version": __version__, "template": render.TEMPLATE_VERSION, "reportlab": reportlab.Version}
    assert Renderer.from_json(recorded) == running_renderer()
    assert Renderer.from_json(None) is None and Renderer.from_json({**recorded, "template": "2"}) is None
    proc = run_fvsr("verify", carphone_bundle, "--pubkey", keypair[1])
    assert proc.returncode == 0, proc.stdout
    assert _content_line(proc.stdout).startswith("PASS       report.content: report.pdf renders again byte for byte")
    # the cross-check command the report prints is the README's, bit-exact flags included
    text = " ".join(" ".join(p.split()) for p in _pdftotext_pages((carphone_bundle / "report.pdf").read_bytes()))
    assert "ffmpeg -v error -flags +bitexact -noautorotate -i BUNDLE/output/master.mkv -map 0:v:0 -fps_mode passthrough" in text


def _upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the next release does: change what the report prints and bump the template."""
    from forensic_vsr.report import render

    monkeypatch.setattr(render, "TEMPLATE_VERSION", render.TEMPLATE_VERSION + 1)
    monkeypatch.setattr(render, "LIMITATIONS", [*render.LIMITATIONS, "A limitation the next release adds."])


def test_report_of_the_previous_template_passes_by_its_facts(
    investigative: Path, keypair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from forensic_vsr.audit.keys import load_public_key
    from forensic_vsr.audit.verify import verify_bundle
    from forensic_vsr.report.checks import report_checks

    template = _report_generate(investigative)["renderer"]["template"]
    _upgrade(monkeypatch)
    checks = {c.name: c for c in verify_bundle(investigative, load_public_key(keypair[1]), extra_checks=[report_checks])}
    assert all(c.ok for c in checks.values()), [c.line() for c in checks.values() if not c.ok]
    reason = checks["report.content"].reason
    assert f"rendered by forensic-vsr 0.1.0 / template {template} / reportlab" in reason, reason
    assert reason.endswith("signed digest, signature and 8 facts checked in its text"), reason


def test_altered_report_fails_on_the_facts_path(
    investigative: Path, keypair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After an upgrade an altered report still fails report.content (its digest is not the
    signed one), on its own, without files.digests."""
    from forensic_vsr.report.checks import report_checks

    bundle = tmp_path / "b"
    shutil.copytree(investigative, bundle)
    pdf = bundle / "report.pdf"
    evidence = _facts(investigative, keypair[1])[0].text
    pdf.write_bytes(_with_page_text(pdf.read_bytes(), 1, lambda c: c.replace(evidence.encode(), evidence[:-1].encode() + b"0")))
    _upgrade(monkeypatch)
    view, key = _view(bundle, keypair[1])
    checks = {c.name: c for c in report_checks(bundle, view, key)}
    assert not checks["report.content"].ok and "not the signed" in checks["report.content"].reason, checks["report.content"]
    assert not checks["report.signature"].ok


def test_facts_are_found_in_the_text_a_reader_shows(investigative: Path, keypair: tuple[Path, Path]) -> None:
    from forensic_vsr.report.facts import check_facts, page_texts

    pdf = (investigative / "report.pdf").read_bytes()
    facts = _facts(investigative, keypair[1])
    assert [f.name for f in facts] == [
        "evidence sha256",
        "input frames Merkle root",
        "output frames Merkle root",
        "chain head",
        "mode",
        "model",
        "examiner",
        "label",
    ]
    assert next(f.text for f in facts if f.name == "examiner") == EXAMINER
    assert check_facts(pdf, facts) == (True, "8 facts")
    pages = page_texts(pdf)
    assert len(pages) >= 4
    # poppler, an independent reader, sees each fact where ours does
    for n, text in enumerate(pages, 1):
        shown = _pdftotext(pdf, n)
        for fact in facts:
            assert (fact.text in text) == (fact.text in shown), (n, fact)


@pytest.mark.parametrize(
    ("page", "old", "new", "missing"),
    [
        (1, None, None, "evidence sha256"),  # one hex digit of the evidence sha256, everywhere it is printed
        (2, b"investigative mode \\227", b"evidential mode \\227", "page 2 of report.pdf does not state the mode"),
        (3, b"NOT FOR EVIDENTIAL USE \\227 INVESTIGATIVE MODE", b"", "page 3 of report.pdf does not state the label"),
        (1, b"O'Brien", b"OBrien", "examiner"),
    ],
)
def test_an_altered_fact_fails(
    investigative: Path, keypair: tuple[Path, Path], page: int, old: bytes | None, new: bytes | None, missing: str
) -> None:
    from forensic_vsr.report.facts import check_facts

    pdf = (investigative / "report.pdf").read_bytes()
    facts = _facts(investigative, keypair[1])
    if old is None:
        evidence = facts[0].text.encode()
        altered = evidence[:-1] + (b"0" if evidence[-1:] != b"0" else b"1")
        for n in range(1, len(_pdftotext_pages(pdf)) + 1):
            pdf = _with_page_text(pdf, n, lambda c: c.replace(evidence, altered))
        shown = " ".join(_pdftotext_pages(pdf))  # what a reader now shows
        assert altered.decode() in shown and evidence.decode() not in shown
    else:
        assert old in _page_content(pdf, page), (old, page)
        pdf = _with_page_text(pdf, page, lambda c: c.replace(old, new or b""))
    ok, reason = check_facts(pdf, facts)
    assert not ok and missing in reason, reason


def _page_content(pdf: bytes, page: int) -> bytes:
    from pyhanko.pdf_utils.reader import PdfFileReader

    data: bytes = PdfFileReader(io.BytesIO(pdf)).root["/Pages"]["/Kids"][page - 1].get_object()["/Contents"].data
    return data


def _pdftotext_pages(pdf: bytes) -> list[str]:
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return done.stdout.decode().split("\f")[:-1]


def test_hostile_pdf_is_one_reason_never_a_hang(investigative: Path, keypair: tuple[Path, Path]) -> None:
    from forensic_vsr.report.facts import MAX_CONTENT_BYTES, check_facts

    pdf = (investigative / "report.pdf").read_bytes()
    facts = _facts(investigative, keypair[1])
    bomb = _with_page_text(pdf, 1, lambda c: c + b" " * (MAX_CONTENT_BYTES + 1))
    assert len(bomb) < len(pdf) + 200_000  # a compression bomb: small on disk
    ok, reason = check_facts(bomb, facts)
    assert not ok and "exceed" in reason, reason
    for hostile in (b"", b"%PDF-1.4\n", pdf[: len(pdf) // 2], b"%PDF-1.4\n" + hashlib.sha256(b"x").digest() * 100):
        ok, reason = check_facts(hostile, facts)
        assert not ok and "cannot be read" in reason, reason
