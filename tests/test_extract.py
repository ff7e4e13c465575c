"""qa.extract: the text and source details of HTML, PDF, DOCX and front-matter text files.

Files the tests make themselves always run; the real documents of
../shared/fixtures/formats (news pages with annotated bodies, PDFs, Word files that no
one here wrote) are read from there and the tests skip when the folder is absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from makefiles import FOOTER, NAV, RELATED, make_article_html, make_docx, make_pdf
from qa.bench.formats import fixture_norm as norm, word_scores as scores
from qa.corpus import DocumentError, decode_document
from qa.extract import ExtractionError, Source, extract, extractor_name, extractors, kind_of, reflow_page

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "formats"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "cases.jsonl").is_file(),
                                    reason=f"no fixtures at {FIXTURES} (a clone elsewhere)")

ARTICLE = [
    "The harbour master recorded waves of nine metres on Tuesday night, the highest since records began in 1911.",
    "Fishing boats stayed in port for a third day, and the ferry to the islands was cancelled until Friday.",
    "“We have never seen the breakwater go under,” said the harbour master, who has worked there for 30 years.",
]


# -- files made here ------------------------------------------------------------------------


def test_html_article_text_without_navigation_footer_related_or_scripts():
    found = extract("storm.html", make_article_html(ARTICLE))
    for sentence in ARTICLE:
        assert sentence in found.text
    for boiler in [*NAV, FOOTER, RELATED, "do not index me", "analytics", "Privacy policy"]:
        assert boiler not in found.text
    assert found.title == "Harbour master logs a record storm"
    assert found.source == Source(url="https://gazette.example/2026/11/03/record-storm", site="The Harbour Gazette",
                                  author="Jane Doe", date="2026-11-03")
    assert found.pages is None


def test_html_page_without_an_article_is_refused():
    page = b"<html><head><title>Links</title></head><body><nav><a href='/a'>A</a> <a href='/b'>B</a></nav></body></html>"
    with pytest.raises(ExtractionError, match="no article text found"):
        extract("links.html", page)


def test_pdf_text_layer_page_by_page_with_offsets_of_each_page():
    pages = [f"Page {n} of the report. The inspectors counted {n * 7} cracked beams on level {n}." for n in range(1, 6)]
    found = extract("report.pdf", make_pdf(pages, info={"Title": "Bridge inspection", "Author": "City engineers",
                                                        "CreationDate": "D:20240315120000Z"}))
    assert len(found.pages) == 5 and found.pages[0] == 0
    for n, page in enumerate(pages, 1):
        at = found.text.index(page)  # verbatim, lines of a paragraph joined
        assert found.pages[n - 1] <= at < (found.pages[n] if n < 5 else len(found.text) + 1)
    assert found.title == "Bridge inspection"
    assert found.source == Source(author="City engineers", date="2024-03-15")


def test_pdf_words_broken_at_a_line_end_are_joined_and_ligatures_unfolded():
    raw = "The commission found the docu\x02\r\nments consis\x02\r\ntent with the ﬁnal report.\r\nShort.\r\n"
    assert reflow_page(raw) == "The commission found the documents consistent with the final report.\nShort."


def test_a_60_page_pdf_cites_every_page_right():
    pages = [f"Section {n}. The auditors sampled {n * 3} invoices from depot number {n}." for n in range(1, 61)]
    doc = decode_document("audit.pdf", make_pdf(pages))
    assert len(doc.pages) == 60
    for n, page in enumerate(pages, 1):
        assert doc.page_of(doc.text.index(page)) == n


@pytest.mark.parametrize("name, data, message", [
    ("scan.pdf", make_pdf(None, blank_pages=3), "no text layer on any of its 3 page"),
    ("scan60.pdf", make_pdf(None, blank_pages=60), "no text layer on any of its 60 page"),
    ("corrupt.pdf", make_pdf(["A page of text that is cut short in the middle."])[:200], "not a readable PDF"),
    ("renamed.pdf", b"Just some text saved with the wrong suffix.", "not a PDF file"),
    ("fake.docx", b"This is plain text, not a Word file.", "not a Word .docx file"),
    ("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64, "not a Word .docx file"),
    ("zip.docx", b"PK\x05\x06" + b"\0" * 18, "not a Word .docx file"),
    ("links.htm", b"<html><body><ul><li><a href='/x'>x</a></li></ul></body></html>", "no article text"),
    ("latin1.md", "Caf\xe9".encode("latin-1"), "not valid UTF-8"),
    ("bad-front.md", b"---\ntitle: [unclosed\n---\nBody text.\n", "front matter is not valid YAML"),
    ("bad-date.md", b"---\ndate: last tuesday\n---\nBody text.\n", "is not a date"),
])
def test_bad_files_give_a_clear_message_naming_them(name, data, message):
    with pytest.raises(DocumentError, match=rf"^{re.escape(name)}: .*{re.escape(message)}"):
        decode_document(name, data)


def test_docx_paragraphs_and_table_cells_in_order():
    data = make_docx(["Minutes of the harbour board.", "The board approved the new breakwater."],
                     table=[["Item", "Cost"], ["Breakwater", "4.2 million"]], title="Board minutes", author="Clerk")
    found = extract("minutes.docx", data)
    assert found.text.split("\n") == ["Minutes of the harbour board.", "The board approved the new breakwater.",
                                      "Item", "Cost", "Breakwater", "4.2 million"]
    assert found.title == "Board minutes" and found.source.author == "Clerk" and found.source.date


def test_front_matter_gives_source_details_and_is_not_quoted():
    data = ("---\ntitle: Storm report\nsite: The Harbour Gazette\nauthor: [Jane Doe, Ali Khan]\n"
            "date: 2026-11-03\nurl: https://gazette.example/storm\n---\nThe breakwater went under.\n").encode()
    doc = decode_document("storm.md", data)
    assert doc.text == "The breakwater went under.\n"
    assert doc.title == "Storm report"
    assert doc.source == Source(url="https://gazette.example/storm", site="The Harbour Gazette",
                                author="Jane Doe, Ali Khan", date="2026-11-03")


def test_text_without_front_matter_is_the_file_as_before():
    doc = decode_document("a.txt", "\ufeffTitle line\r\n---\nbody\r\n".encode())
    assert doc.text == "Title line\r\n---\nbody\r\n" and doc.title == "Title line" and doc.source == Source()


def test_extractor_names_carry_the_library_version():
    assert kind_of("A.HTM") == "html" and kind_of("x.pdf") == "pdf" and kind_of("y.docx") == "docx"
    assert re.fullmatch(r"pdf v\d+ pypdfium2 \d[\w.]*", extractor_name("x.pdf"))
    assert extractors()["html"].startswith("html v") and "trafilatura" in extractors()["html"]
    with pytest.raises(ExtractionError, match="only .txt, .md, .html, .htm, .pdf, .docx files"):
        kind_of("x.doc")


# -- the real documents of ../shared/fixtures/formats ------------------------------------------


def cases(kind: str) -> list[dict]:
    if not (FIXTURES / "cases.jsonl").is_file():
        return []
    rows = [json.loads(line) for line in (FIXTURES / "cases.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [c for c in rows if c["kind"] == kind]


def _id(case: dict) -> str:
    return Path(case["file"]).stem


@needs_fixtures
@pytest.mark.parametrize("case", cases("html"), ids=_id)
def test_real_news_page_body_in_boilerplate_out(case):
    found = extract(case["file"], (FIXTURES / case["file"]).read_bytes())
    text = norm(found.text)
    for sentence in case["must_contain"]:
        assert norm(sentence) in text
    for boiler in case["must_not_contain"]:
        assert norm(boiler) not in text
    truth = json.loads((FIXTURES / "html" / "ground-truth.json").read_text(encoding="utf-8"))[case["file"]]
    precision, recall = scores(found.text, truth["articleBody"])
    assert recall >= 0.94 and precision >= 0.85, (precision, recall)
    assert found.title and found.source.site and found.source.date


@needs_fixtures
def test_real_news_pages_mean_recall_and_precision():
    truth = json.loads((FIXTURES / "html" / "ground-truth.json").read_text(encoding="utf-8"))
    pairs = [scores(extract(c["file"], (FIXTURES / c["file"]).read_bytes()).text, truth[c["file"]]["articleBody"])
             for c in cases("html")]
    precision = sum(p for p, _ in pairs) / len(pairs)
    recall = sum(r for _, r in pairs) / len(pairs)
    assert recall >= 0.98 and precision >= 0.96, (precision, recall)  # measured 0.9922 / 0.9607


@needs_fixtures
@pytest.mark.parametrize("case", cases("pdf"), ids=_id)
def test_real_pdf_sentence_is_on_its_page(case):
    doc = decode_document(Path(case["file"]).name, (FIXTURES / case["file"]).read_bytes())
    assert len(doc.pages) == case["pages"]
    for sentence in case["must_contain"]:
        assert sentence in doc.text  # verbatim: no normalising needed
    assert doc.page_of(doc.text.index(case["must_contain"][0])) == case["page"]
    for marker in case["must_not_contain"]:
        assert marker not in doc.text


@needs_fixtures
@pytest.mark.parametrize("case", cases("docx"), ids=_id)
def test_real_docx_paragraphs_and_cells(case):
    doc = decode_document(Path(case["file"]).name, (FIXTURES / case["file"]).read_bytes())
    for sentence in case["must_contain"]:
        assert sentence in doc.text
    for marker in case["must_not_contain"]:
        assert marker not in doc.text
    assert doc.pages is None
