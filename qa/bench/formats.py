"""``python -m qa.bench.formats``: documents as reporters have them, measured.

- **PDF against text**: a 100-page PDF is indexed from nothing, and so is the same
  text as a ``.txt`` file (same embedder, fresh index each time, runs interleaved,
  median of three); the target is at most 2x the time.
- **Extraction** on the real documents of ``../shared/fixtures/formats`` (when
  present): recall and precision of each news page's words against its annotated
  article body, the spot sentences found and the boilerplate left out, and for PDFs
  whether a sentence on page N is on page N.

Also one table of ``python -m qa bench``.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from qa.bench.common import DEFAULT_SCIFACT, ROOT, SHARED, format_table, load_average

DEFAULT_FIXTURES = SHARED / "fixtures" / "formats"
PAGE_CHARS = 3_000  # about a page of a report in 10-point type


# -- a PDF with a text layer, written by hand (no PDF library needed to make one) ----------


def _pdf_string(line: str) -> str:
    out = []
    for b in line.encode("cp1252", errors="replace"):
        ch = chr(b)
        out.append("\\" + ch if ch in "\\()" else ch if 32 <= b < 127 else f"\\{b:03o}")
    return "(" + "".join(out) + ")"


def text_pdf(pages: Sequence[str] | None, *, info: dict[str, str] | None = None, blank_pages: int = 0,
             width: int = 88) -> bytes:
    """A PDF whose pages carry ``pages`` as a text layer (Helvetica 10 pt, lines wrapped at
    ``width`` characters, a blank line between paragraphs), then ``blank_pages`` pages with
    only a drawn shape and no text (a scan, as far as text goes)."""
    contents = []
    for text in pages or []:
        lines: list[str] = []
        for para in text.split("\n\n"):
            lines += textwrap.wrap(para, width) + [""]
        contents.append("\n".join(["BT", "/F1 10 Tf", "13 TL", "50 800 Td",
                                   *(f"{_pdf_string(line)} '" for line in lines), "ET"]))
    contents += ["0.2 0.2 0.2 rg 60 60 400 600 re f"] * blank_pages
    objects = {1: "<< /Type /Catalog /Pages 2 0 R >>",
               3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"}
    kids = []
    for i, stream in enumerate(contents):
        page, content = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page} 0 R")
        objects[page] = ("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                         f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>")
        objects[content] = f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream"
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
    xref, size = out.tell(), max(objects) + 1
    out.write(f"xref\n0 {size}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{offsets[n]:010d} 00000 n \n" for n in range(1, size)).encode())
    out.write(f"trailer\n<< /Size {size} /Root 1 0 R{trailer_info} >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


# -- PDF against the same text as .txt ---------------------------------------------------------


@dataclass
class PdfRow:
    pages: int
    chars: int
    pdf_passages: int
    txt_passages: int
    extract_s: float
    pdf_s: float
    txt_s: float
    ratio: float
    load: str = ""


PDF_COLUMNS = [
    ("pages", "PDF pages"), ("chars", "characters"), ("pdf_passages", "passages (PDF)"),
    ("txt_passages", "passages (.txt)"), ("extract_s", "text layer read s", ".2f"),
    ("pdf_s", "index PDF s (median)", ".2f"), ("txt_s", "index .txt s (median)", ".2f"),
    ("ratio", "PDF ÷ .txt", ".2f"), ("load", "load avg"),
]


def report_pages(n: int, *, scifact: Path = DEFAULT_SCIFACT) -> list[str]:
    """``n`` pages of about PAGE_CHARS characters of real prose: SciFact abstracts, or the seed corpus."""
    paragraphs: list[str] = []
    corpus = scifact / "corpus.jsonl"
    if corpus.is_file():
        with open(corpus, encoding="utf-8") as f:
            for line in f:
                paragraphs.append(" ".join(json.loads(line)["text"].split()))
                if sum(map(len, paragraphs)) > 2 * n * PAGE_CHARS:
                    break
    else:
        seeds = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "seeds").glob("*.txt"))]
        blocks = [" ".join(b.split()) for s in seeds for b in s.split("\n\n") if b.strip()]
        while sum(map(len, paragraphs)) <= 2 * n * PAGE_CHARS:
            paragraphs += blocks
    pages, current = [], []
    for para in paragraphs:
        current.append(para)
        if sum(map(len, current)) >= PAGE_CHARS:
            pages.append("\n\n".join(current))
            current = []
        if len(pages) == n:
            break
    return pages


def measure_pdf_vs_txt(*, pages: int = 100, repeats: int = 3, embedder=None,
                       scifact: Path = DEFAULT_SCIFACT) -> PdfRow:
    """Index a ``pages``-page PDF and the same text as a .txt, each from nothing, ``repeats`` times."""
    from qa.backends import default_embedder
    from qa.extract import extract_pdf
    from qa.index import update_index

    embedder = embedder or default_embedder()
    text_pages = report_pages(pages, scifact=scifact)
    pdf = text_pdf(text_pages)
    text = "\n\n".join(text_pages) + "\n"
    t0 = time.perf_counter()
    extract_pdf(pdf)
    extract_s = time.perf_counter() - t0
    times: dict[str, list[float]] = {"pdf": [], "txt": []}
    counts = {}
    with tempfile.TemporaryDirectory(prefix="qa-bench-formats-") as tmp:
        for name, data in (("report.pdf", pdf), ("report.txt", text.encode("utf-8"))):
            folder = Path(tmp) / name.split(".")[1] / "corpus"
            folder.mkdir(parents=True)
            (folder / name).write_bytes(data)
        update_index(Path(tmp) / "txt" / "corpus", Path(tmp) / "warm", embedder=embedder, show_progress=False)
        for r in range(repeats):
            for kind in ("pdf", "txt") if r % 2 == 0 else ("txt", "pdf"):
                index_dir = Path(tmp) / kind / f"index{r}"
                t0 = time.perf_counter()
                index, _ = update_index(Path(tmp) / kind / "corpus", index_dir, embedder=embedder,
                                        show_progress=False)
                times[kind].append(time.perf_counter() - t0)
                counts[kind] = len(index)
    pdf_s, txt_s = statistics.median(times["pdf"]), statistics.median(times["txt"])
    return PdfRow(pages=len(text_pages), chars=len(text), pdf_passages=counts["pdf"], txt_passages=counts["txt"],
                  extract_s=extract_s, pdf_s=pdf_s, txt_s=txt_s, ratio=pdf_s / txt_s, load=load_average())


# -- extraction on the real fixtures ------------------------------------------------------------------


@dataclass
class ExtractionRow:
    kind: str
    files: int
    spot_found: str
    boilerplate_out: str
    precision: float | None = None
    recall: float | None = None
    min_recall: float | None = None
    page_right: str = "–"
    seconds: float = 0.0


EXTRACTION_COLUMNS = [
    ("kind", "kind"), ("files", "files"), ("spot_found", "spot sentences found"),
    ("boilerplate_out", "boilerplate / raw markers left out"), ("precision", "mean precision", ".4f"),
    ("recall", "mean recall", ".4f"), ("min_recall", "lowest recall", ".4f"),
    ("page_right", "sentence on page N cites page N"), ("seconds", "extract s (all files)", ".2f"),
]


def fixture_norm(s: str) -> str:
    """The fixtures' comparison: NBSP to space, zero-width spaces dropped, whitespace runs collapsed."""
    return re.sub(r"\s+", " ", s.replace("\xa0", " ").replace("\u200b", ""))


def word_scores(extracted: str, truth: str) -> tuple[float, float]:
    """(precision, recall) of the extracted words against the annotated body, as multisets of words."""
    a, b = Counter(fixture_norm(extracted).split()), Counter(fixture_norm(truth).split())
    common = sum((a & b).values())
    return common / max(1, sum(a.values())), common / max(1, sum(b.values()))


def measure_extraction(fixtures: Path = DEFAULT_FIXTURES) -> list[ExtractionRow]:
    """One row per kind (html, pdf, docx) over ``fixtures``/cases.jsonl; empty when the folder is absent."""
    from qa.corpus import decode_document

    if not (fixtures / "cases.jsonl").is_file():
        return []
    cases = [json.loads(line) for line in (fixtures / "cases.jsonl").read_text(encoding="utf-8").splitlines() if line]
    truth = json.loads((fixtures / "html" / "ground-truth.json").read_text(encoding="utf-8"))
    rows = []
    for kind in ("html", "pdf", "docx"):
        mine = [c for c in cases if c["kind"] == kind]
        found = spots = out = boiler = pages_right = 0
        pr = []
        seconds = 0.0
        for c in mine:
            t0 = time.perf_counter()
            doc = decode_document(Path(c["file"]).name, (fixtures / c["file"]).read_bytes())
            seconds += time.perf_counter() - t0
            text = fixture_norm(doc.text)
            spots += len(c["must_contain"])
            found += sum(fixture_norm(s) in text for s in c["must_contain"])
            boiler += len(c["must_not_contain"])
            out += sum(fixture_norm(s) not in text for s in c["must_not_contain"])
            if kind == "html":
                pr.append(word_scores(doc.text, truth[c["file"]]["articleBody"]))
            if kind == "pdf" and c["must_contain"][0] in doc.text:
                pages_right += doc.page_of(doc.text.index(c["must_contain"][0])) == c["page"]
        row = ExtractionRow(kind, len(mine), f"{found}/{spots}", f"{out}/{boiler}", seconds=seconds)
        if pr:
            row.precision = sum(p for p, _ in pr) / len(pr)
            row.recall = sum(r for _, r in pr) / len(pr)
            row.min_recall = min(r for _, r in pr)
        if kind == "pdf":
            row.page_right = f"{pages_right}/{len(mine)}"
        rows.append(row)
    return rows


def report(extraction: list[ExtractionRow], pdf: list[PdfRow]) -> str:
    parts = []
    if extraction:
        parts += ["Extraction on ../shared/fixtures/formats (precision and recall: words of the extracted text "
                  "against each page's annotated article body).", format_table(extraction, EXTRACTION_COLUMNS)]
    if pdf:
        parts += ["Indexing a PDF against the same text as a .txt file (fresh index each, median of 3 interleaved "
                  "runs; target PDF ÷ .txt <= 2).", format_table(pdf, PDF_COLUMNS)]
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.bench.formats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", default=str(DEFAULT_FIXTURES), help="the formats fixtures folder")
    parser.add_argument("--pages", type=int, default=100, help="pages of the PDF (default 100)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    extraction = measure_extraction(Path(args.fixtures))
    pdf = [measure_pdf_vs_txt(pages=args.pages, repeats=args.repeats)]
    print(report(extraction, pdf))
    if args.json:
        Path(args.json).write_text(json.dumps({"extraction": [asdict(r) for r in extraction],
                                               "pdf": [asdict(r) for r in pdf]}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
