"""Text and source details out of the files reporters have: HTML pages, PDFs, Word files, text.

Each extractor turns a file's bytes into an ``Extracted``: the text every quote is
cut from, the title and source details found in the file's metadata, and for PDFs
where each page starts in that text. The index stores the text, so nothing here
runs at question time. ``extractor_name`` says which extractor (and version)
reads a file, and is recorded with each document: a new one re-extracts.

- ``.txt``, ``.md``: UTF-8 (BOM dropped, line ends kept); a YAML front-matter block
  at the top gives the title and source details and is not part of the text.
- ``.html``, ``.htm``: the article text (trafilatura), without navigation, footers,
  related links or scripts; metadata from the page.
- ``.pdf``: the text layer page by page (PDFium, through pypdfium2), lines of a
  paragraph joined, words split at a line end rejoined, ligatures unfolded. A PDF
  with no text layer is refused: nothing is guessed.
- ``.docx``: paragraphs and table cells in document order (python-docx).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import unicodedata
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import metadata
from typing import Callable
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

# Bumped when the same file and library versions would give another text or
# other source details; part of every extractor's name.
EXTRACT_VERSION = 1

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIXES = (".pdf",)
DOCX_SUFFIXES = (".docx",)
SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES + DOCX_SUFFIXES


class ExtractionError(ValueError):
    """A file whose text cannot be had (corrupt, no text layer, no article, not what its name says)."""


@dataclass(frozen=True)
class Source:
    """Where a document comes from, as a citation names it. Each field is a str or None; date is YYYY-MM-DD."""

    url: str | None = None
    site: str | None = None
    author: str | None = None
    date: str | None = None

    def to_dict(self) -> dict:
        # Not dataclasses.asdict: it deep-copies each field, and every quote of every answer
        # carries its source (strings and None only).
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Source":
        data = data or {}
        return cls(**{k: data.get(k) for k in ("url", "site", "author", "date")})


@dataclass(frozen=True)
class Extracted:
    """A file's text and what is known about it.

    ``pages`` (PDFs only) holds the offset in ``text`` where each page starts,
    in page order, so page n (1-based) is ``text[pages[n - 1]:pages[n]]``.
    """

    text: str
    title: str | None = None
    source: Source = field(default_factory=Source)
    pages: tuple[int, ...] | None = None


def kind_of(name: str) -> str:
    """"text", "html", "pdf" or "docx" for a file name.

    Raises:
        ExtractionError: another suffix, naming the ones that can be read.
    """
    lower = name.lower()
    for kind, suffixes in (("text", TEXT_SUFFIXES), ("html", HTML_SUFFIXES), ("pdf", PDF_SUFFIXES),
                           ("docx", DOCX_SUFFIXES)):
        if lower.endswith(suffixes):
            return kind
    raise ExtractionError(f"only {', '.join(SUFFIXES)} files can be read")


@lru_cache(maxsize=None)
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@lru_cache(maxsize=64)
def _extractor_of_kind(kind: str) -> str:
    library = {"text": "", "html": f" trafilatura {_version('trafilatura')}",
               "pdf": f" pypdfium2 {_version('pypdfium2')}", "docx": f" python-docx {_version('python-docx')}"}[kind]
    return f"{kind} v{EXTRACT_VERSION}{library}"


def extractor_name(name: str) -> str:
    """The extractor that reads a file of this name, with its library's version: recorded per document."""
    return _extractor_of_kind(kind_of(name))


def extractors() -> dict[str, str]:
    """The extractor of each kind of file, as recorded in an index manifest."""
    return {kind: _extractor_of_kind(kind) for kind in ("text", "html", "pdf", "docx")}


def extract(name: str, data: bytes) -> Extracted:
    """The text and source details of a file, by its suffix.

    Raises:
        ExtractionError: the file cannot be read as what its suffix says, or holds no text.
    """
    extracted = _EXTRACTORS[kind_of(name)](data)
    if not extracted.text.strip():
        raise ExtractionError("holds no text")
    return extracted


# -- plain text, with optional YAML front matter ----------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S | re.M)
_FIELDS = {
    "title": ("title", "headline"),
    "url": ("url", "link", "source_url", "canonical_url"),
    "site": ("site", "outlet", "publisher", "publication", "source", "sitename"),
    "author": ("author", "authors", "byline", "by"),
    "date": ("date", "published", "published_at", "pubdate", "date_published"),
}


def extract_text(data: bytes) -> Extracted:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExtractionError(f"not valid UTF-8 (byte {exc.start}); save it as UTF-8 text") from None
    text = text.removeprefix("\ufeff")
    match = _FRONT_MATTER.match(text)
    if not match:
        return Extracted(text)
    fields = _front_matter(match.group(1))
    return Extracted(text[match.end():], title=fields.pop("title"), source=Source(**fields))


def _front_matter(block: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        raise ExtractionError(f"its front matter is not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ExtractionError("its front matter must be 'key: value' lines (title, site, author, date, url)")
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    out = {}
    for key, names in _FIELDS.items():
        value = next((lowered[n] for n in names if lowered.get(n) not in (None, "")), None)
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        if key == "date" and value is not None:
            out[key] = _iso_date(value)
            if out[key] is None:
                raise ExtractionError(f"the date {value!r} in its front matter is not a date (write YYYY-MM-DD)")
        else:
            out[key] = _clean(value)
    return out


# -- HTML ----------------------------------------------------------------------------


MIN_ARTICLE_WORDS = 15


def extract_html(data: bytes) -> Extracted:
    import trafilatura

    try:
        doc = trafilatura.bare_extraction(data, with_metadata=True, include_comments=False, include_tables=True,
                                          deduplicate=False)
    except Exception as exc:  # noqa: BLE001 - lxml and trafilatura raise many kinds on broken input
        raise ExtractionError(f"not a readable HTML page ({type(exc).__name__}: {exc})") from None
    text = (doc.text if doc is not None else None) or ""
    # trafilatura falls back to whatever text a page has: a menu's links are not an article.
    if len(text.split()) < MIN_ARTICLE_WORDS or not any(len(line.split()) >= 6 for line in text.splitlines()):
        raise ExtractionError("no article text found in the page (a page of links, or one that needs JavaScript?)")
    text = _rest_of_split_body(data, text)
    url = _clean(doc.url)
    if url and not url.lower().startswith(("http://", "https://")):
        url = None
    site = _clean(doc.sitename)
    if site and re.match(r"(?i)^(https?://|www\.)", site):
        site = _host(site)
    if not site and url:
        site = _host(url)
    return Extracted(text, title=_clean(doc.title),
                     source=Source(url=url, site=site, author=_clean(doc.author), date=_iso_date(doc.date)))


# An article body split into several containers of one class (ads between them) is
# read by trafilatura up to the first break. When the containers like the one that
# holds the extracted paragraphs hold this much more text, their other paragraphs
# are added after it. On the development pages this fires on one page (WIRED:
# recall 0.45 -> 0.95) and on none of the other 19.
_SPLIT_BODY_GAIN = 1.5


def _rest_of_split_body(data: bytes, text: str) -> str:
    import lxml.html
    import trafilatura

    from trafilatura.utils import decode_file

    try:
        tree = lxml.html.fromstring(decode_file(data))
    except (ValueError, lxml.etree.ParserError):
        return text
    have = {" ".join(line.split()) for line in text.split("\n")}
    holders: dict[tuple[str, str], int] = {}
    for p in tree.iter("p"):
        parent = p.getparent()
        if parent is not None and parent.get("class") and " ".join(p.text_content().split()) in have:
            key = (parent.tag, parent.get("class"))
            holders[key] = holders.get(key, 0) + 1
    if not holders:
        return text
    tag, cls = max(holders, key=holders.get)
    boxes = [e for e in tree.iter(tag) if e.get("class") == cls]
    if len(boxes) < 2:
        return text
    head = tree.find("head")
    page = "".join([
        "<html>", lxml.html.tostring(head, encoding="unicode") if head is not None else "", "<body><article>",
        *(lxml.html.tostring(child, encoding="unicode") for box in boxes for child in box),
        "</article></body></html>",
    ])
    more = trafilatura.extract(page, include_comments=False, include_tables=True, deduplicate=False) or ""
    if len(more) < _SPLIT_BODY_GAIN * len(text):
        return text
    added = [line for line in more.split("\n") if line.strip() and " ".join(line.split()) not in have]
    return "\n".join([text, *added])


def _host(url: str) -> str | None:
    host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    return host.removeprefix("www.") or None


# -- PDF ------------------------------------------------------------------------------

_LIGATURES = re.compile("[\ufb00-\ufb06]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_REPLACEMENT_RUN = re.compile("\ufffd{2,}")
_CONTINUES = re.compile(r"[a-z]|\d+(?![.)\d])")  # a line starting so carries on the sentence before
_OPEN_END = re.compile(r"(?i)(?:[,\-–—]|\b(?:the|a|an|of|to|and|or|in|on|for|with|by|at|from|that|as|is|are|was|were|be))$")
_SENTENCE_END = re.compile(r"[.!?:;\"”’)\]]$")
# A page is read as text when it has at least this many letters or digits; fewer
# is a scan, a stamp or a page number, and the file is refused as having no text layer.
MIN_PAGE_CHARS = 20


def extract_pdf(data: bytes) -> Extracted:
    import pypdfium2

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise ExtractionError("not a PDF file (it does not start with %PDF)")
    try:
        pdf = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        message = "it is password-protected" if "password" in str(exc).lower() else f"not a readable PDF ({exc})"
        raise ExtractionError(message) from None
    try:
        pages = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            pages.append(textpage.get_text_range())
            textpage.close()
            page.close()
        meta = pdf.get_metadata_dict(skip_empty=True)
    except pypdfium2.PdfiumError as exc:
        raise ExtractionError(f"not a readable PDF ({exc})") from None
    finally:
        pdf.close()
    if not any(sum(ch.isalnum() for ch in p) >= MIN_PAGE_CHARS for p in pages):
        raise ExtractionError(f"no text layer on any of its {len(pages)} page(s) (a scan?): "
                              "run OCR on it first, it is not guessed here")
    text, starts = "", []
    for raw in pages:
        if text:
            text += "\n\n"
        starts.append(len(text))
        text += reflow_page(raw)
    title = _clean(meta.get("Title"))
    if title and re.search(r"(?i)^(microsoft word - |untitled)|\.(docx?|pdf|indd|qxd)$", title):
        title = None
    return Extracted(text, title=title, source=Source(author=_clean(meta.get("Author")),
                                                      date=_pdf_date(meta.get("CreationDate"))),
                     pages=tuple(starts))


def reflow_page(raw: str) -> str:
    """One page's text layer as paragraphs: one line per paragraph, heading or short line.

    PDFium ends lines with CR LF and marks a word broken at a line end with U+0002:
    such words are joined again. A line is joined to the next with a space unless
    it ends a sentence short of the page's usual line width or before a short
    line (a paragraph's last line), or it is short and ends no sentence (a heading,
    a caption, a list item). Ligatures (U+FB00-FB06) are unfolded and control characters dropped.
    """
    text = _LIGATURES.sub(lambda m: unicodedata.normalize("NFKC", m.group()), raw)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xad\n", "\x02\n")
    text = _REPLACEMENT_RUN.sub(" ", text)
    lines = [line.strip() for line in text.split("\n")]
    widths = sorted(len(line) for line in lines if len(line) >= 20)
    usual = widths[len(widths) * 3 // 4] if widths else 0

    def short(line: str) -> bool:
        return len(line) < 0.7 * usual

    out: list[str] = []
    previous, broken = "", False
    for raw_line in lines:
        line = _CONTROL.sub("", raw_line.rstrip("\x02")).strip()
        if not line:
            previous, broken = "", False
            continue
        if not previous:
            out.append("\n" if out else "")
        elif broken:
            pass  # a word broken at the line end: joined without its hyphen
        elif _CONTINUES.match(line) or _OPEN_END.search(previous):
            out.append(" ")  # a sentence goes on: "... ext." / "61200 at least", "... agenda. The" / "Board"
        elif not usual or (_SENTENCE_END.search(previous) and (len(previous) < 0.9 * usual or short(line))) or (
                short(previous) and not _SENTENCE_END.search(previous)):
            out.append("\n")
        else:
            out.append(" ")
        out.append(line)
        previous, broken = line, raw_line.endswith("\x02")
    return "".join(out).strip()


def _pdf_date(value: str | None) -> str | None:
    match = re.match(r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?", value or "")
    if not match or not match.group(2):
        return None
    return _iso_date(f"{match.group(1)}-{match.group(2)}-{match.group(3) or '01'}")


# -- DOCX ----------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def extract_docx(data: bytes) -> Extracted:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ExtractionError("not a Word .docx file (it is not a zip package; an old .doc? save it as .docx)")
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ExtractionError(f"not a Word .docx file ({exc})") from None
    lines: list[str] = []
    _docx_blocks(document.element.body, document, lines, seen=set())
    props = document.core_properties
    created = props.created or props.modified
    return Extracted("\n".join(lines), title=_clean(props.title),
                     source=Source(author=_clean(props.author), date=created.date().isoformat() if created else None))


def _docx_blocks(element, parent, lines: list[str], seen: set) -> None:
    """Paragraph and table-cell text under ``element``, in document order; a merged cell once."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in element.iterchildren():
        tag = child.tag
        if tag == f"{_W}p":
            text = Paragraph(child, parent).text.strip()
            if text:
                lines.append(text)
        elif tag == f"{_W}tbl":
            table = Table(child, parent)
            for row in table.rows:
                for cell in row.cells:
                    if cell._tc in seen:
                        continue  # a merged cell is repeated in every row and column it spans
                    seen.add(cell._tc)
                    _docx_blocks(cell._tc, cell, lines, seen)
        elif tag in (f"{_W}sdt", f"{_W}sdtContent", f"{_W}customXml", f"{_W}smartTag"):
            _docx_blocks(child, parent, lines, seen)


# -- shared ------------------------------------------------------------------------------------


def _clean(value) -> str | None:
    if value is None:
        return None
    value = " ".join(str(value).split())
    return value or None


def _iso_date(value) -> str | None:
    """YYYY-MM-DD of a date, a datetime or a string starting with one; None otherwise."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    match = re.match(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})", str(value or ""))
    if not match:
        return None
    try:
        return dt.date(*(int(g) for g in match.groups())).isoformat()
    except ValueError:
        return None


_EXTRACTORS: dict[str, Callable[[bytes], Extracted]] = {
    "text": extract_text, "html": extract_html, "pdf": extract_pdf, "docx": extract_docx,
}
