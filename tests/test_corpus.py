"""qa.corpus: which files are documents, how they are decoded, which names users may give."""

from __future__ import annotations

import logging

import pytest
from conftest import SEEDS

from qa.corpus import (
    Document,
    DocumentError,
    content_hash,
    corpus_files,
    decode_document,
    load_corpus,
    safe_doc_id,
    title_of,
)


def test_seed_corpus_loads_every_document_sorted():
    docs = load_corpus(SEEDS)
    names = sorted(p.name for p in SEEDS.iterdir() if p.suffix in (".txt", ".md"))
    assert [d.doc_id for d in docs] == names
    for doc in docs:
        assert doc.text == (SEEDS / doc.doc_id).read_bytes().decode("utf-8").removeprefix("\ufeff")
        assert doc.title == title_of(doc.text) and doc.title


def test_recursive_ids_use_slashes_and_skip_hidden_and_other_suffixes(tmp_path):
    (tmp_path / "a.txt").write_text("A\nbody", encoding="utf-8")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "b.md").write_text("# B\nbody", encoding="utf-8")
    (tmp_path / "sub" / "deeper" / "c.TXT").write_text("C", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("hidden", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "d.txt").write_text("in a hidden folder", encoding="utf-8")
    (tmp_path / "e.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "f.txt.bak").write_text("backup", encoding="utf-8")
    (tmp_path / "g.pdf").write_bytes(b"%PDF-1.4 truncated")  # read, and skipped as unreadable

    assert list(corpus_files(tmp_path)) == ["a.txt", "g.pdf", "sub/b.md", "sub/deeper/c.TXT"]
    assert [d.doc_id for d in load_corpus(tmp_path)] == ["a.txt", "sub/b.md", "sub/deeper/c.TXT"]


def test_bom_dropped_line_ends_kept_title_is_first_nonempty_line(tmp_path):
    raw = "\ufeff\r\n  \r\n  The Title  \r\nline two\rline three\n".encode("utf-8")
    (tmp_path / "d.txt").write_bytes(raw)
    (doc,) = load_corpus(tmp_path)
    assert doc.text == "\r\n  \r\n  The Title  \r\nline two\rline three\n"
    assert doc.title == "The Title"
    assert doc.sha256 == content_hash(doc.text)


def test_non_utf8_and_empty_files_are_skipped_with_a_warning_naming_them(tmp_path, caplog):
    (tmp_path / "good.txt").write_text("Good document.", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text(" \n\t\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="qa.corpus"):
        docs = load_corpus(tmp_path)
    assert [d.doc_id for d in docs] == ["good.txt"]
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "latin1.txt" in warnings and "not valid UTF-8" in warnings
    assert "empty.txt" in warnings and "blank.md" in warnings


def test_missing_corpus_folder_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="corpus folder not found.*nowhere"):
        load_corpus(missing)
    a_file = tmp_path / "x.txt"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="x.txt"):
        corpus_files(a_file)


def test_empty_corpus_folder_gives_no_documents(tmp_path):
    assert load_corpus(tmp_path) == []


def test_decode_document_errors_name_the_document():
    with pytest.raises(DocumentError, match=r"bad\.txt: not valid UTF-8 \(byte 3\)"):
        decode_document("bad.txt", b"abc\xff")
    with pytest.raises(DocumentError, match=r"e\.txt: the file is empty"):
        decode_document("e.txt", "\ufeff  \n".encode("utf-8"))
    doc = decode_document("ok.txt", "\ufeffHello\r\n".encode("utf-8"))
    assert doc == Document("ok.txt", "Hello", "Hello\r\n")


@pytest.mark.parametrize("name", ["notes.txt", "sub/notes.md", "a/b/c.TXT", "  spaced.txt  "])
def test_safe_doc_id_accepts_names_inside_the_corpus(name):
    assert safe_doc_id(name) == name.strip()


@pytest.mark.parametrize(
    "name, message",
    [
        ("../x.txt", "must stay inside the corpus folder"),
        ("a/../../x.txt", "must stay inside the corpus folder"),
        ("..\\x.txt", "must stay inside the corpus folder"),
        ("/etc/x.txt", "must stay inside the corpus folder"),
        ("a//x.txt", "must stay inside the corpus folder"),
        ("", "must stay inside the corpus folder"),
        (".hidden.txt", "hidden names are not allowed"),
        ("sub/.hidden/x.txt", "hidden names are not allowed"),
        ("x.doc", "only .txt, .md, .html, .htm, .pdf and .docx"),
        ("x.txt.exe", "only .txt, .md, .html, .htm, .pdf and .docx"),
        ("x\x00.txt", "only .txt, .md, .html, .htm, .pdf and .docx"),
    ],
)
def test_safe_doc_id_refuses_bad_names_with_a_clear_message(name, message):
    with pytest.raises(DocumentError, match=message):
        safe_doc_id(name)
