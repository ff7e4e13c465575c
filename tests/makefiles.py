"""Files the tests make themselves: PDFs (with or without a text layer), Word files, HTML pages.

The real documents of ../shared/fixtures/formats are read where they are; these are
for the tests that must always run.
"""

from __future__ import annotations

import io
import textwrap


def _pdf_string(line: str) -> str:
    raw = line.encode("cp1252", errors="replace")
    out = []
    for b in raw:
        ch = chr(b)
        if ch in "\\()":
            out.append("\\" + ch)
        elif 32 <= b < 127:
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return "(" + "".join(out) + ")"


def make_pdf(pages: list[str] | None, *, info: dict[str, str] | None = None, blank_pages: int = 0,
             width: int = 88) -> bytes:
    """A PDF whose pages carry ``pages`` as a text layer (Helvetica, lines wrapped at ``width``
    characters, a blank line between paragraphs), or, with ``blank_pages``, that many pages
    with only a drawn shape and no text (a scan, as far as text goes)."""
    contents = []
    for text in pages or []:
        lines = []
        for para in text.split("\n\n"):
            lines += textwrap.wrap(para, width) + [""]
        ops = ["BT", "/F1 10 Tf", "13 TL", "50 800 Td"] + [f"{_pdf_string(line)} '" for line in lines] + ["ET"]
        contents.append("\n".join(ops))
    contents += ["0.2 0.2 0.2 rg 60 60 400 600 re f"] * blank_pages
    objects = {1: "<< /Type /Catalog /Pages 2 0 R >>", 3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
                                                         "/Encoding /WinAnsiEncoding >>"}
    kids = []
    for i, stream in enumerate(contents):
        page, content = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page} 0 R")
        objects[page] = (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
                         f"/Contents {content} 0 R >>")
        data = stream.encode("latin-1")
        objects[content] = f"<< /Length {len(data)} >>\nstream\n{stream}\nendstream"
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    trailer_info = ""
    if info:
        n = max(objects) + 1
        objects[n] = "<< " + " ".join(f"/{k} {_pdf_string(v)}" for k, v in info.items()) + " >>"
        trailer_info = f" /Info {n} 0 R"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = {}
    for n in sorted(objects):
        offsets[n] = out.tell()
        out.write(f"{n} 0 obj\n{objects[n]}\nendobj\n".encode("latin-1"))
    xref = out.tell()
    size = max(objects) + 1
    out.write(f"xref\n0 {size}\n0000000000 65535 f \n".encode())
    for n in range(1, size):
        out.write(f"{offsets[n]:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {size} /Root 1 0 R{trailer_info} >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def make_docx(paragraphs: list[str], *, table: list[list[str]] | None = None, title: str | None = None,
              author: str | None = None) -> bytes:
    """A Word file with these paragraphs, then a table of these rows, and these core properties."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, text in enumerate(row):
                grid.cell(r, c).text = text
    if title:
        document.core_properties.title = title
    if author:
        document.core_properties.author = author
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


NAV = ["Home", "World news", "Business desk", "Sign up for our newsletter today"]
FOOTER = "Copyright 2026 The Harbour Gazette. All rights reserved."
RELATED = "Related: Ten lighthouses you must see before they close"


def make_article_html(paragraphs: list[str], *, title: str = "Harbour master logs a record storm",
                      site: str = "The Harbour Gazette", author: str = "Jane Doe", date: str = "2026-11-03",
                      url: str = "https://gazette.example/2026/11/03/record-storm") -> bytes:
    """A news page: navigation, the article with its metadata, related links, a footer, scripts."""
    nav = "".join(f'<li><a href="/{i}">{item}</a></li>' for i, item in enumerate(NAV))
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} | {site}</title>
<meta property="og:title" content="{title}"><meta property="og:site_name" content="{site}">
<meta name="author" content="{author}"><meta property="article:published_time" content="{date}T08:00:00Z">
<link rel="canonical" href="{url}"><script>window.tracker = "do not index me";</script></head>
<body><header><nav><ul>{nav}</ul></nav></header>
<main><article><h1>{title}</h1><p class="byline">By {author}</p>{body}</article>
<aside class="related"><h2>Related</h2><ul><li><a href="/r1">{RELATED}</a></li></ul></aside></main>
<footer><p>{FOOTER}</p><p><a href="/privacy">Privacy policy</a></p></footer>
<script>console.log("analytics");</script></body></html>""".encode("utf-8")
