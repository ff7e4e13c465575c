"""Files the tests make themselves: PDFs (with or without a text layer), Word files, HTML pages.

The real documents of ../shared/fixtures/formats are read where they are; these are
for the tests that must always run.
"""

from __future__ import annotations

import io

from qa.bench.formats import text_pdf


# The benchmark's PDF writer: a real text layer (Helvetica), or pages with no text at all.
make_pdf = text_pdf


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
