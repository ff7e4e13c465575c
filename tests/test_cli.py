"""qa.cli: `python -m qa index | ask | eval`, the JSON contract, and messages for bad input."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import KNOWN_QUESTIONS, ROOT, snapshot

from qa.cli import main
from qa.index import Index

CONTRACT_KEYS = {"question", "answered", "passages"}
# issue 2's contract, plus issue 4's "also_in" (other reports of the same passage) and
# issue 10's "page" and "source" (where the quote is, and where its document comes from)
# and issue 9's "relevance" (the relevance model's probability, null without it)
PASSAGE_KEYS = {"rank", "doc_id", "title", "start", "end", "quote", "score", "highlight", "also_in", "page", "source",
                "relevance"}
CITATION_KEYS = {"doc_id", "title", "start", "end", "page", "source"}


def check_contract(obj: dict, corpus, *, k: int) -> None:
    assert CONTRACT_KEYS <= set(obj) <= CONTRACT_KEYS | {"reason"}
    assert isinstance(obj["question"], str) and isinstance(obj["answered"], bool)
    assert isinstance(obj["passages"], list) and 1 <= len(obj["passages"]) <= k
    assert [p["rank"] for p in obj["passages"]] == list(range(1, len(obj["passages"]) + 1))
    for p in obj["passages"]:
        assert set(p) == PASSAGE_KEYS
        for key in ("rank", "start", "end"):
            assert type(p[key]) is int
        for key in ("doc_id", "title", "quote"):
            assert type(p[key]) is str
        assert type(p["score"]) is float
        assert type(p["relevance"]) is float and 0.0 <= p["relevance"] <= 1.0
        text = (corpus / p["doc_id"]).read_bytes().decode("utf-8").removeprefix("\ufeff")
        assert text[p["start"] : p["end"]] == p["quote"]
        hl = p["highlight"]
        if hl is not None:
            assert set(hl) == {"start", "end"} and type(hl["start"]) is int and type(hl["end"]) is int
            assert p["start"] <= hl["start"] < hl["end"] <= p["end"]
        assert type(p["also_in"]) is list
        for c in p["also_in"]:
            assert set(c) == CITATION_KEYS and c["doc_id"] != p["doc_id"]
            assert type(c["start"]) is int and type(c["end"]) is int and type(c["title"]) is str
            other = (corpus / c["doc_id"]).read_bytes().decode("utf-8").removeprefix("\ufeff")
            assert 0 <= c["start"] < c["end"] <= len(other)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- qa index ---------------------------------------------------------------------------------


def test_index_builds_and_reports(tmp_path, corpus_copy, capsys):
    code, out, _ = run(capsys, "index", "--corpus", str(corpus_copy), "--index", str(tmp_path / "index"), "-q")
    assert code == 0
    n = len(list(corpus_copy.iterdir()))
    assert f"{n} documents" in out and "passages" in out and " s" in out
    assert f"added ({n}):" in out
    assert (tmp_path / "index" / "manifest.json").is_file()


def test_index_summary_names_added_changed_removed_then_up_to_date(built, capsys):
    corpus, index_dir = built
    args = ("index", "--corpus", str(corpus), "--index", str(index_dir), "-q")
    code, out, _ = run(capsys, *args)
    assert code == 0 and "up to date: nothing to do" in out and "(0 embedded)" in out

    (corpus / "new.txt").write_text("A new document.\nIt talks about the ceasefire.\n", encoding="utf-8")
    changed = corpus / "000_93644d6605fbd4ae.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
    (corpus / "004_6faa4890d470160d.txt").unlink()
    code, out, _ = run(capsys, *args)
    assert code == 0
    assert "added (1): new.txt" in out
    assert "changed (1): 000_93644d6605fbd4ae.txt" in out
    assert "removed (1): 004_6faa4890d470160d.txt" in out
    assert "5 documents" in out and "up to date" not in out


def test_index_skips_a_non_utf8_file_naming_it(built, capsys):
    corpus, index_dir = built
    (corpus / "bad.txt").write_bytes(b"caf\xe9\n")
    code, out, _ = run(capsys, "index", "--corpus", str(corpus), "--index", str(index_dir), "-q")
    assert code == 0
    assert "skipped bad.txt: not valid UTF-8" in out
    assert "5 documents" in out
    entries = Index.load(index_dir).entries
    assert "bad.txt" not in entries and len(entries) == 5


def test_index_of_an_empty_corpus_folder_warns(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "index", "--corpus", str(tmp_path / "empty"), "--index", str(tmp_path / "i"), "-q")
    assert code == 0
    assert "holds no documents (.txt, .md, .html, .htm, .pdf, .docx)" in err and "0 documents, 0 passages" in out


def test_index_of_a_missing_corpus_folder_is_an_error_and_writes_nothing(tmp_path, built, capsys):
    _, index_dir = built
    before = snapshot(index_dir)
    code, _, err = run(capsys, "index", "--corpus", str(tmp_path / "nowhere"), "--index", str(index_dir), "-q")
    assert code == 2 and err.startswith("error: corpus folder not found") and "nowhere" in err
    assert snapshot(index_dir) == before
    code, _, err = run(capsys, "index", "--corpus", str(tmp_path / "nowhere"), "--index", str(tmp_path / "new"), "-q")
    assert code == 2 and not (tmp_path / "new").exists()


# -- qa ask -------------------------------------------------------------------------------


def test_ask_json_prints_the_contract(built, capsys):
    corpus, index_dir = built
    q, doc, _ = KNOWN_QUESTIONS[0]
    code, out, _ = run(capsys, "ask", "--index", str(index_dir), "--json", "-k", "3", "-q", q)
    assert code == 0
    obj = json.loads(out)
    assert obj["question"] == q
    check_contract(obj, corpus, k=3)
    assert doc in [p["doc_id"] for p in obj["passages"]]


def test_ask_prints_numbered_cited_quotes(built, capsys):
    _, index_dir = built
    q, doc, _ = KNOWN_QUESTIONS[0]
    code, out, _ = run(capsys, "ask", "--index", str(index_dir), "-q", q)
    assert code == 0
    assert out.startswith(f"Q: {q}")
    assert "\n[1] " in out and "\n[2] " in out
    assert re.search(r"\n    — .+ \([^,]+\.txt, characters \d+–\d+\), [a-z ]+ answers? the question \(\d+%\)\n", out)
    assert f"({doc}, characters " in out
    assert "»" in out and "«" in out  # the answering sentence is marked


def test_ask_stdin_writes_one_json_object_per_line(built, capsys, monkeypatch):
    corpus, index_dir = built
    questions = [q for q, _, _ in KNOWN_QUESTIONS[:3]]
    monkeypatch.setattr(sys, "stdin", io.StringIO(questions[0] + "\n\n   \n" + "\n".join(questions[1:]) + "\n"))
    code, out, _ = run(capsys, "ask", "--index", str(index_dir), "-k", "2", "-q", "-")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    for line, q in zip(lines, questions):
        obj = json.loads(line)
        assert obj["question"] == q
        check_contract(obj, corpus, k=2)


def test_ask_stdin_reports_a_bad_line_and_goes_on(built, capsys, monkeypatch):
    corpus, index_dir = built
    good = KNOWN_QUESTIONS[1][0]
    monkeypatch.setattr(sys, "stdin", io.StringIO("x" * 3000 + "\n" + good + "\n"))
    code, out, _ = run(capsys, "ask", "--index", str(index_dir), "-q", "-")
    assert code == 1
    first, second = (json.loads(line) for line in out.splitlines())
    assert set(first) == {"question", "error"} and "limit is 2,000" in first["error"]
    check_contract(second, corpus, k=5)


def test_python_dash_m_qa_ask_stdin(built):
    """The real entry point, in a fresh process: JSON lines out, one per question."""
    corpus, index_dir = built
    questions = [q for q, _, _ in KNOWN_QUESTIONS[:2]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "qa", "ask", "--index", str(index_dir), "-q", "-"],
        input="\n".join(questions) + "\n", capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [json.loads(line)["question"] for line in lines] == questions
    for line in lines:
        check_contract(json.loads(line), corpus, k=5)


def test_ask_updates_a_stale_index_before_answering(built, capsys):
    corpus, index_dir = built
    name = "003_5b9c610a72473fdf.txt"
    text = (corpus / name).read_text(encoding="utf-8").replace("Andrei Rinchino", "Andrei Q. Rinchino")
    (corpus / name).write_text(text, encoding="utf-8")
    code, out, _ = run(capsys, "ask", "--index", str(index_dir), "--json", "-k", "10", "-q",
                       "Who is the legal director of the Free Buryatia Foundation?")
    assert code == 0
    check_contract(json.loads(out), corpus, k=10)  # quotes match the file as it is now
    from qa.corpus import content_hash

    assert Index.load(index_dir).entries[name]["sha256"] == content_hash(text)


@pytest.mark.parametrize(
    "question, message",
    [
        ("", "error: the question is empty"),
        ("  \t ", "error: the question is empty"),
        ("x" * 100_000, "error: the question is 100,000 characters long; the limit is 2,000"),
    ],
    ids=["empty", "whitespace", "100k"],
)
def test_ask_bad_question_is_a_clear_error_and_changes_nothing(built, capsys, question, message):
    corpus, index_dir = built
    before = snapshot(index_dir), snapshot(corpus)
    code, out, err = run(capsys, "ask", "--index", str(index_dir), "--json", "-q", question)
    assert code == 2 and out == ""
    assert err.startswith(message)
    assert (snapshot(index_dir), snapshot(corpus)) == before


def test_ask_with_a_missing_index_directory(tmp_path, capsys):
    code, out, err = run(capsys, "ask", "--index", str(tmp_path / "nowhere"), "-q", "Who fled?")
    assert code == 2 and out == ""
    assert err.startswith(f"error: no index at {tmp_path / 'nowhere'}") and "python -m qa index" in err
    assert not (tmp_path / "nowhere").exists()


def test_eval_with_a_missing_index_directory(tmp_path, questions_file, capsys):
    code, out, err = run(capsys, "eval", str(questions_file), "--index", str(tmp_path / "nowhere"), "-q")
    assert code == 2 and out == "" and err.startswith(f"error: no index at {tmp_path / 'nowhere'}")
    assert not (tmp_path / "nowhere").exists()


def test_k_below_one_is_refused(built, capsys):
    _, index_dir = built
    code, _, err = run(capsys, "ask", "--index", str(index_dir), "-k", "0", "-q", "Who fled?")
    assert code == 2 and err == "error: -k must be a whole number of at least 1, got 0\n"


# -- qa eval -------------------------------------------------------------------------------


@pytest.fixture
def questions_file(tmp_path):
    path = tmp_path / "questions.jsonl"
    rows = [{"question": q, "doc": d, "evidence": [e]} for q, d, e in KNOWN_QUESTIONS]
    rows.append({"question": "Who painted the Mona Lisa?", "doc": None, "evidence": []})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_eval_prints_the_figures(built, questions_file, capsys):
    _, index_dir = built
    code, out, _ = run(capsys, "eval", str(questions_file), "--index", str(index_dir), "-q")
    assert code == 0
    assert f"{len(KNOWN_QUESTIONS) + 1} questions from {questions_file}: {len(KNOWN_QUESTIONS)} answerable, 1 not" in out
    for label in ("hit@1 ", "hit@3 ", "hit@5 ", "MRR ", "abstained on unanswerable: ", "false abstentions: "):
        assert label in out
    assert "every quote is the document's exact text: yes" in out


def test_eval_json(built, questions_file, capsys):
    _, index_dir = built
    code, out, _ = run(capsys, "eval", str(questions_file), "--index", str(index_dir), "--json", "-q")
    assert code == 0
    m = json.loads(out)
    assert {"hit@1", "hit@3", "hit@5", "mrr", "abstained", "false_abstentions", "quotes_exact", "missed"} <= set(m)
    assert 0.0 <= m["hit@1"] <= m["hit@3"] <= m["hit@5"] <= 1.0 and 0.0 <= m["mrr"] <= 1.0
    assert m["answerable"] == len(KNOWN_QUESTIONS) and m["unanswerable"] == 1 and m["quotes_exact"] is True


def test_eval_missing_file(built, tmp_path, capsys):
    _, index_dir = built
    code, _, err = run(capsys, "eval", str(tmp_path / "none.jsonl"), "--index", str(index_dir), "-q")
    assert code == 2 and err.strip() == f"error: no such file: {tmp_path / 'none.jsonl'}"


def test_eval_bad_line_names_it(built, tmp_path, capsys):
    _, index_dir = built
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "ok?", "doc": null}\nnot json\n', encoding="utf-8")
    code, _, err = run(capsys, "eval", str(path), "--index", str(index_dir), "-q")
    assert code == 2 and f"{path}:2: not a question object" in err


# -- issue 10: formats, filters, qa document ---------------------------------------------------


@pytest.fixture
def mixed(tmp_path, built):
    """The seed copy plus an HTML page, a PDF and a front-matter note, indexed."""
    from makefiles import make_article_html, make_pdf
    from test_extract import ARTICLE

    corpus, index_dir = built
    (corpus / "storm.html").write_bytes(make_article_html(ARTICLE))
    (corpus / "trust.pdf").write_bytes(make_pdf(["Intro page of the trust report.",
                                                 "Some 41,500 visitors climbed the Skerry lighthouse this summer."]))
    assert main(["index", "--corpus", str(corpus), "--index", str(index_dir), "-q"]) == 0
    return corpus, index_dir


def test_document_prints_the_indexed_text_and_source(mixed, capsys):
    _, index_dir = mixed
    code, out, _ = run(capsys, "document", "storm.html", "--index", str(index_dir), "--json")
    doc = json.loads(out)
    assert code == 0 and set(doc) == {"doc_id", "title", "text", "source"}
    assert doc["source"] == {"url": "https://gazette.example/2026/11/03/record-storm", "site": "The Harbour Gazette",
                             "author": "Jane Doe", "date": "2026-11-03"}
    assert "nine metres" in doc["text"] and "newsletter" not in doc["text"]
    code, out, _ = run(capsys, "document", "trust.pdf", "--index", str(index_dir))
    assert code == 0 and "2 pages" in out and "41,500 visitors" in out
    code, _, err = run(capsys, "document", "nope.pdf", "--index", str(index_dir))
    assert code == 2 and "error: no document 'nope.pdf' in the index" in err


def test_ask_with_site_and_date_filters(mixed, capsys):
    _, index_dir = mixed
    code, out, _ = run(capsys, "ask", "--index", str(index_dir), "--json", "--site", "The Harbour Gazette",
                       "--since", "2026-11-01", "How high were the waves?")
    result = json.loads(out)
    assert code == 0 and result["filters"] == {"sites": ["The Harbour Gazette"], "since": "2026-11-01"}
    assert {p["doc_id"] for p in result["passages"]} == {"storm.html"}
    code, out, _ = run(capsys, "ask", "--index", str(index_dir), "-k", "1", "How many visitors climbed the lighthouse?")
    assert code == 0 and ", p. 2 (trust.pdf, characters" in out
    code, _, err = run(capsys, "ask", "--index", str(index_dir), "--until", "2026-02-30", "Why?")
    assert code == 2 and "error: until must be a date as YYYY-MM-DD" in err
