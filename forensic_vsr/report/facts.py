"""A report made by another release: which renderer made it, and the facts its text must state.

`fvsr verify` proves a report's text by rendering it again and comparing bytes; that works only
while the running renderer is the one that made it (same template version, reportlab and tool
version). A report made by another release is checked instead by what it says: its file is the
signed one, its PAdES signature holds, and the key facts of the signed records are printed in
it. This module reads the text a PDF shows on each page (its content streams: the strings of the
text-showing operators) without poppler, torch or OpenCV, bounded in size, since the PDF is
hostile input; and lists the facts as every template version prints them (a template that
prints one differently must add its form here)."""

from __future__ import annotations

import base64
import io
import re
import zlib
from dataclasses import dataclass
from typing import Any

from forensic_vsr.report.content import NOT_EVIDENTIAL

TOOL = "forensic-vsr"
MAX_PAGES = 2000
MAX_TREE_DEPTH = 32
MAX_CONTENT_BYTES = 32 * 1024 * 1024  # decoded content streams of the whole report


class ReportTextError(ValueError):
    """The report's page text cannot be read (malformed, unsupported or over the bounds)."""


@dataclass(frozen=True)
class Renderer:
    """What made a report.pdf: the tool's version, the report template's version
    (`render.TEMPLATE_VERSION`) and reportlab's. Equal renderers give equal bytes."""

    version: str
    template: int
    reportlab: str

    def to_json(self) -> dict[str, Any]:
        return {"tool": TOOL, "version": self.version, "template": self.template, "reportlab": self.reportlab}

    @classmethod
    def from_json(cls, data: Any) -> Renderer | None:
        """The recorded renderer, or None where report.generate records none (format 1)."""
        if not isinstance(data, dict) or data.get("tool") != TOOL:
            return None
        version, template, reportlab = data.get("version"), data.get("template"), data.get("reportlab")
        if not (isinstance(version, str) and isinstance(template, int) and isinstance(reportlab, str)):
            return None
        return cls(version, template, reportlab)

    def describe(self) -> str:
        return f"{TOOL} {self.version} / template {self.template} / reportlab {self.reportlab}"


def running_renderer() -> Renderer:
    """The renderer of this installation."""
    import reportlab

    from forensic_vsr import __version__
    from forensic_vsr.report import render

    return Renderer(__version__, render.TEMPLATE_VERSION, str(reportlab.Version))


@dataclass(frozen=True)
class Fact:
    """A fact of the signed records as the report prints it; `every_page`: on each page."""

    name: str
    text: str
    every_page: bool = False


def report_facts(records: dict[str, Any], chain_head: str) -> list[Fact]:
    """The key facts of the records `render` reads (`content.report_records`) as every template
    version prints them: full hashes in the evidence and integrity tables, the mode in each
    page's footer, the model as "id / class", each earlier operation as "op with model", the
    examiner's name, and for other modes than evidential the banner on each page."""
    ingest, write, decision = records["evidence.ingest"], records["output.write"], records["policy.decision"]
    predicate = records["step.run"]["predicate"]
    mode = predicate["buildDefinition"]["externalParameters"]["mode"]
    step = next(b["annotations"] for b in predicate["runDetails"]["byproducts"] if b["name"] == "step")
    model = decision["model"]
    facts = [
        Fact("evidence sha256", ingest["evidence"]["sha256"]),
        Fact("input frames Merkle root", ingest["input_framehash"]["merkle_root"]),
        Fact("output frames Merkle root", write["frame_roots"]["output"]),
        Fact("chain head", chain_head),
        Fact("mode", f"— {mode} mode — {TOOL}", every_page=True),
        Fact("model", f"{model['id']} / {model['class']}"),
    ]
    facts += [Fact("earlier operation", f"{pre['op']} with {pre['model']}") for pre in step.get("pre_operations") or []]
    examiner = records.get("_meta", {}).get("examiner")
    if examiner:
        facts.append(Fact("examiner", examiner))
    if mode != "evidential":
        facts.append(Fact("label", f"{NOT_EVIDENTIAL} — {mode.upper()} MODE", every_page=True))
    return facts


def check_facts(pdf: bytes, facts: list[Fact]) -> tuple[bool, str]:
    """(ok, reason): every fact is printed in the PDF's text (each `every_page` one on every
    page), whitespace-insensitively; the reason names the first one missing."""
    try:
        pages = page_texts(pdf)
    except ReportTextError as exc:
        return False, f"report.pdf's text cannot be read: {exc}"
    if not pages:
        return False, "report.pdf has no pages"
    whole = " ".join(pages)
    for fact in facts:
        text = _normal(fact.text)
        if fact.every_page:
            missing = [n for n, page in enumerate(pages, 1) if text not in page]
            if missing:
                return False, f"page {missing[0]} of report.pdf does not state the {fact.name} ({fact.text!r})"
        elif text not in whole:
            return False, f"report.pdf does not state the {fact.name} {fact.text!r} that the signed records give"
    return True, f"{len(facts)} facts"


def page_texts(pdf: bytes) -> list[str]:
    """The text each page of the PDF's last revision shows (what a reader displays), in content
    stream order, whitespace collapsed; a line break counts as a space."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(io.BytesIO(pdf))
        pages = _pages(reader.root["/Pages"])
        budget = [MAX_CONTENT_BYTES]
        return [_normal(_shown_text(b"\n".join(_decoded(s, budget) for s in _contents(page)))) for page in pages]
    except ReportTextError:
        raise
    except Exception as exc:  # hostile input: pyHanko raises many kinds; each is one FAIL line
        raise ReportTextError(f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _pages(root: Any) -> list[Any]:
    """The page tree's leaves in order; bounded in depth and in nodes, so a cycle ends too."""
    pages: list[Any] = []
    stack: list[tuple[Any, int]] = [(root, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_TREE_DEPTH or nodes > 2 * MAX_PAGES:
            raise ReportTextError("the page tree is too deep or too large (a cycle?)")
        if _get(node, "/Type") == "/Pages":
            kids = [k.get_object() for k in node["/Kids"]]
            stack.extend((k, depth + 1) for k in reversed(kids))
        else:
            pages.append(node)
        if len(pages) > MAX_PAGES:
            raise ReportTextError(f"more than {MAX_PAGES} pages")
    return pages


def _get(obj: Any, key: str) -> Any:
    """A dictionary entry, indirect references resolved (pyHanko's `get` does not resolve)."""
    value = obj.get(key)
    return None if value is None else value.get_object()


def _contents(page: Any) -> list[Any]:
    contents = _get(page, "/Contents")
    if contents is None:
        return []
    if isinstance(contents, list):
        return [c.get_object() for c in contents]
    return [contents]


def _decoded(stream: Any, budget: list[int]) -> bytes:
    """A content stream's bytes through its filters (ASCII85 and Flate, what reportlab writes),
    charged against the document's `budget`: a compression bomb stops at the bound."""
    filters = _get(stream, "/Filter")
    names = [] if filters is None else [str(f) for f in (filters if isinstance(filters, list) else [filters])]
    if _get(stream, "/DecodeParms") is not None:
        raise ReportTextError("a content stream uses decode parameters (predictors): not a report this tool wrote")
    data = bytes(stream.encoded_data)
    for name in names:
        if name in ("/ASCII85Decode", "/A85"):
            end = data.find(b"~>")
            data = base64.a85decode(data[: end if end >= 0 else len(data)].replace(b"<~", b"", 1), ignorechars=b" \t\n\r\x0b\x0c\x00")
        elif name in ("/FlateDecode", "/Fl"):
            inflate = zlib.decompressobj()
            data = inflate.decompress(data, budget[0] + 1)
        else:
            raise ReportTextError(f"a content stream uses the filter {name}: not a report this tool wrote")
        if len(data) > budget[0]:
            raise ReportTextError(f"the page contents exceed {MAX_CONTENT_BYTES} bytes decoded")
    budget[0] -= len(data)
    if budget[0] < 0:
        raise ReportTextError(f"the page contents exceed {MAX_CONTENT_BYTES} bytes decoded")
    return data


_WS = b"\x00\t\n\x0c\r "
_DELIM = rb"()<>\[\]{}/%"
_TOKEN = re.compile(
    rb"(?P<ws>[\x00\t\n\x0c\r ]+)|(?P<comment>%[^\r\n]*)|(?P<lit>\()|(?P<dict><<|>>)"
    rb"|(?P<hex><[0-9A-Fa-f\x00\t\n\x0c\r ]*>)|(?P<open>\[)|(?P<close>\])"
    rb"|(?P<name>/[^\x00\t\n\x0c\r " + _DELIM + rb"]*)|(?P<word>[^\x00\t\n\x0c\r " + _DELIM + rb"]+)|(?P<other>.)",
    re.S,
)
_LINE_MOVES = {b"T*", b"Td", b"TD", b"Tm", b"BT", b"ET", b"'", b'"'}
_SHOWS = {b"Tj", b"TJ", b"'", b'"'}
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f", b"(": b"(", b")": b")", b"\\": b"\\"}
_ESCAPE = re.compile(rb"\\([0-7]{1,3}|\r\n|[\r\n]|.)", re.S)


def _shown_text(content: bytes) -> str:
    """The strings of the text-showing operators (Tj, TJ, ', ") in order, a space at each line
    move; reportlab's standard fonts use WinAnsiEncoding, read here as cp1252."""
    out: list[str] = []
    operands: list[bytes] = []
    array: list[bytes] | None = None
    pos = 0
    while pos < len(content):
        m = _TOKEN.match(content, pos)
        assert m is not None  # the last alternative matches any byte
        kind, pos = m.lastgroup, m.end()
        if kind == "lit":
            raw, pos = _literal(content, pos)
            (array if array is not None else operands).append(raw)
        elif kind == "hex":
            digits = bytes(c for c in m.group()[1:-1] if c not in _WS)
            (array if array is not None else operands).append(bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode()))
        elif kind == "open":
            array = []
        elif kind == "close" and array is not None:
            operands.append(b"".join(array))
            array = None
        elif kind == "word" and array is None:
            op = m.group()
            if op in _LINE_MOVES:
                out.append(" ")
            if op in _SHOWS and operands:
                out.append(operands[-1].decode("cp1252", errors="replace"))
            if op == b"ID":  # inline image data: skip to its end marker
                end = re.compile(rb"[\x00\t\n\x0c\r ]EI(?=[\x00\t\n\x0c\r ]|$)").search(content, pos)
                pos = end.end() if end else len(content)
            operands = []
    return "".join(out)


def _literal(content: bytes, pos: int) -> tuple[bytes, int]:
    """A literal string starting after its `(` at `pos`: its bytes and the position after it."""
    depth, start = 1, pos
    special = re.compile(rb"[()\\]")
    while depth:
        m = special.search(content, pos)
        if m is None:
            pos = len(content)
            break
        c, pos = m.group(), m.end()
        if c == b"\\":
            pos += 1
        elif c == b"(":
            depth += 1
        else:
            depth -= 1
    raw = content[start : pos - 1] if depth == 0 else content[start:pos]
    return _ESCAPE.sub(_unescape, raw), pos


def _unescape(m: re.Match[bytes]) -> bytes:
    e = m.group(1)
    if 0x30 <= e[0] <= 0x37:
        return bytes([int(e, 8) & 0xFF])
    if e in (b"\r\n", b"\r", b"\n"):
        return b""
    return _ESCAPES.get(e, e)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
