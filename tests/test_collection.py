"""qa.collection: a corpus folder and its index kept in step; uploads and deletions."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from conftest import KNOWN_QUESTIONS, leftovers, snapshot

import qa.collection
from qa.collection import Collection, DocumentInfo
from qa.corpus import MAX_DOCUMENT_BYTES, DocumentError
from qa.embedding import MODEL_SHA256
from qa.index import Index, IndexParams, Layout

NEW_DOC = (
    b"Ceasefire talks resume\n\n"
    b"Negotiators met in Istanbul on Tuesday to resume the ceasefire talks about grain exports. "
    b"The delegation said progress was slow.\n"
)


def collection(corpus, index_dir, embedder, **kwargs) -> Collection:
    return Collection(corpus, index_dir, embedder=embedder, show_progress=False, **kwargs)


# -- opening: never serve a stale index ------------------------------------------------------


def test_open_builds_a_missing_index(corpus_copy, tmp_path, embedder, embed_spy):
    spy = embed_spy
    col = collection(corpus_copy, tmp_path / "index", embedder).open()
    assert sorted(col.last_report.added) == sorted(p.name for p in corpus_copy.iterdir())
    assert len(spy.texts) == len(col.index) > 0
    assert (tmp_path / "index" / "manifest.json").is_file()


def test_open_uses_an_up_to_date_index_as_is(built, embedder, embed_spy):
    corpus, index_dir = built
    before = snapshot(index_dir)
    spy = embed_spy
    col = collection(corpus, index_dir, embedder).open()
    assert col.last_report is None and spy.texts == []
    assert col.staleness(col.index) == []
    assert col.index.passages == Index.load(index_dir).passages
    assert snapshot(index_dir) == before


def test_open_updates_after_a_corpus_file_changed(built, embedder, embed_spy):
    corpus, index_dir = built
    name = "003_5b9c610a72473fdf.txt"
    new_text = (corpus / name).read_text(encoding="utf-8").replace("Andrei Rinchino", "Andrei Rinchino-Smith")
    (corpus / name).write_text(new_text, encoding="utf-8")
    stale = Index.load(index_dir)
    spy = embed_spy
    col = collection(corpus, index_dir, embedder)
    assert col.staleness(stale) == [f"changed {name}"]
    col.open()
    assert col.last_report.changed == [name]
    assert col.index.documents[name].text == new_text
    assert spy.texts and all(any(t.endswith(col.index.quote(i)) for i in range(len(col.index))
                                 if col.index.passages[i].doc_id == name) for t in spy.texts)
    answer = col.ask("Who is the legal director of the Free Buryatia Foundation?", doc_ids=[name])
    for h in answer.passages:
        assert new_text[h.start : h.end] == h.quote


def test_open_updates_after_a_file_was_added_and_one_removed(built, embedder):
    corpus, index_dir = built
    (corpus / "new.txt").write_bytes(NEW_DOC)
    (corpus / "000_93644d6605fbd4ae.txt").unlink()
    col = collection(corpus, index_dir, embedder).open()
    assert col.last_report.added == ["new.txt"] and col.last_report.removed == ["000_93644d6605fbd4ae.txt"]
    assert "new.txt" in col.index.documents and "000_93644d6605fbd4ae.txt" not in col.index.documents


def test_open_rebuilds_when_the_manifest_names_another_model(built, embedder, embed_spy):
    corpus, index_dir = built
    path = index_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["model"]["sha256"] = "1" * 64
    path.write_text(json.dumps(manifest), encoding="utf-8")
    col = collection(corpus, index_dir, embedder)
    assert "another model" in col.staleness(Index.load(index_dir))[0]
    col.open()
    assert col.last_report.rebuilt and "another model" in col.last_report.rebuilt
    assert len(embed_spy.texts) == len(col.index) == col.last_report.embedded  # nothing reused
    assert json.loads(path.read_text(encoding="utf-8"))["model"]["sha256"] == MODEL_SHA256


def test_open_rebuilds_when_the_parameters_differ(built, embedder, embed_spy):
    corpus, index_dir = built
    params = IndexParams(max_tokens=64, overlap_tokens=8)
    col = collection(corpus, index_dir, embedder, index_params=params).open()
    assert col.last_report.rebuilt and "passage parameters" in col.last_report.rebuilt
    assert len(embed_spy.texts) == len(col.index) == col.last_report.embedded  # nothing reused
    assert col.index.params == params
    assert Index.load(index_dir).manifest["params"] == asdict(params)


def test_open_resumes_a_build_that_was_interrupted_without_re_embedding_what_was_done(
        tmp_path, corpus_copy, embedder, embed_spy, monkeypatch):
    index_dir = tmp_path / "index"
    layout = Layout(batch_passages=8, merge_below=0)
    real = embedder.embed_passages
    calls = []

    def dies_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(embedder, "embed_passages", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        collection(corpus_copy, index_dir, embedder, layout=layout).open()
    monkeypatch.undo()
    partial = Index.load(index_dir)
    assert 0 < len(partial.documents) < 5
    done = set(partial.documents)
    embed_spy.reset()
    col = collection(corpus_copy, index_dir, embedder, layout=layout).open()
    assert sorted(col.last_report.added) == sorted(set(col.index.documents) - done)
    assert all(not t.endswith(partial.quote(i)) or partial.passages[i].doc_id not in done
               for t in embed_spy.texts for i in range(len(partial)))
    assert len(col.index.documents) == 5 and leftovers(index_dir) == []
    keys = [(p.doc_id, p.start, p.end) for p in col.index.passages]
    assert len(keys) == len(set(keys))  # no passage twice


def test_missing_corpus_folder_is_a_clear_error_and_writes_nothing(tmp_path, embedder):
    col = collection(tmp_path / "nowhere", tmp_path / "index", embedder)
    with pytest.raises(FileNotFoundError, match="corpus folder not found"):
        col.open()
    assert not (tmp_path / "index").exists()


def test_ask_opens_lazily(built, embedder):
    corpus, index_dir = built
    q, doc, _ = KNOWN_QUESTIONS[0]
    answer = collection(corpus, index_dir, embedder).ask(q, k=5)
    assert doc in [h.doc_id for h in answer.passages]


# -- documents ------------------------------------------------------------------------------


def test_documents_lists_what_is_indexed(built, embedder):
    corpus, index_dir = built
    col = collection(corpus, index_dir, embedder)
    infos = col.documents()
    assert [i.doc_id for i in infos] == sorted(p.name for p in corpus.iterdir())
    for info in infos:
        assert isinstance(info, DocumentInfo)
        doc = col.document(info.doc_id)
        assert info.title == doc.title and info.chars == len(doc.text)
        assert info.passages == sum(p.doc_id == info.doc_id for p in col.index.passages) > 0


def test_unknown_document_is_a_key_error_naming_it(built, embedder):
    col = collection(*built, embedder)
    with pytest.raises(KeyError, match="no document 'missing.txt' in the index"):
        col.document("missing.txt")


# -- uploads -----------------------------------------------------------------------------


def test_add_document_indexes_only_it(built, embedder, embed_spy):
    corpus, index_dir = built
    spy = embed_spy
    col = collection(corpus, index_dir, embedder).open()
    report = col.add_documents([("talks.txt", NEW_DOC)])
    assert report.added == ["talks.txt"] and (corpus / "talks.txt").read_bytes() == NEW_DOC
    n = sum(p.doc_id == "talks.txt" for p in col.index.passages)
    assert len(spy.texts) == n > 0
    answer = col.ask("Where did the negotiators meet?", doc_ids=["talks.txt"])
    assert answer.passages and "Istanbul" in " ".join(h.quote for h in answer.passages)
    assert "talks.txt" in Index.load(index_dir).documents


def test_add_into_a_subfolder_and_from_a_windows_path(built, embedder):
    corpus, index_dir = built
    col = collection(corpus, index_dir, embedder).open()
    report = col.add_documents([("notes/talks.md", NEW_DOC), ("C:\\Users\\me\\other.txt", NEW_DOC)])
    assert sorted(report.added) == ["notes/talks.md", "other.txt"]
    assert (corpus / "notes" / "talks.md").is_file() and (corpus / "other.txt").is_file()


def test_replacing_a_document(built, embedder):
    corpus, index_dir = built
    col = collection(corpus, index_dir, embedder).open()
    name = "001_b0c2a5a791f52d3c.txt"
    with pytest.raises(DocumentError, match="already exists"):
        col.add_documents([(name, NEW_DOC)])
    report = col.add_documents([(name, NEW_DOC)], replace=True)
    assert report.changed == [name] and col.document(name).text == NEW_DOC.decode("utf-8")


@pytest.mark.parametrize(
    "files, message",
    [
        ([("../x.txt", NEW_DOC)], "must stay inside the corpus folder"),
        ([("/etc/x.txt", NEW_DOC)], "must stay inside the corpus folder"),
        ([("sub/../../x.txt", NEW_DOC)], "must stay inside the corpus folder"),
        ([(".hidden.txt", NEW_DOC)], "hidden names are not allowed"),
        ([("x.pdf", NEW_DOC)], r"x\.pdf: not a PDF file"),
        ([("000_93644d6605fbd4ae.txt", NEW_DOC)], "already exists; replace it or choose another name"),
        ([("big.txt", b"a" * (MAX_DOCUMENT_BYTES + 1))], "over the 10 MB limit"),
        ([("latin1.txt", "Caf\xe9".encode("latin-1"))], "latin1.txt: not valid UTF-8"),
        ([("blank.txt", b" \n \n")], "blank.txt: the file is empty"),
        ([("twice.txt", NEW_DOC), ("twice.txt", NEW_DOC)], "twice.txt is given twice"),
        ([("good.txt", NEW_DOC), ("bad.doc", NEW_DOC)], r"only \.txt, \.md, \.html, \.htm, \.pdf and \.docx"),
        ([], "no files given"),
    ],
    ids=["dotdot", "absolute", "escape", "hidden", "pdf", "duplicate", "too-big", "not-utf8", "empty",
         "twice", "one-bad-in-batch", "none"],
)
def test_bad_uploads_are_refused_and_change_nothing(built, embedder, embed_spy, files, message):
    corpus, index_dir = built
    col = collection(corpus, index_dir, embedder).open()
    corpus_before, index_before = snapshot(corpus), snapshot(index_dir)
    embed_spy.reset()
    with pytest.raises(DocumentError, match=message):
        col.add_documents(files)
    assert snapshot(corpus) == corpus_before
    assert snapshot(index_dir) == index_before
    assert embed_spy.texts == []
    assert not (corpus.parent / "x.txt").exists() and not (corpus.parent.parent / "x.txt").exists()


def test_failed_indexing_puts_the_corpus_back(built, embedder, monkeypatch):
    corpus, index_dir = built
    col = collection(corpus, index_dir, embedder).open()
    corpus_before, index_before = snapshot(corpus), snapshot(index_dir)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(qa.collection, "update_index", fail)
    name = "002_0239b8b82e17a921.txt"
    with pytest.raises(RuntimeError, match="disk full"):
        col.add_documents([("new.txt", NEW_DOC), (name, NEW_DOC)], replace=True)
    with pytest.raises(RuntimeError, match="disk full"):
        col.delete_document(name)
    assert {k: v[2] for k, v in snapshot(corpus).items()} == {k: v[2] for k, v in corpus_before.items()}
    assert snapshot(index_dir) == index_before
    assert not any(p.name.startswith(".") for p in corpus.iterdir())


# -- deletion ------------------------------------------------------------------------------


def test_delete_document_removes_file_and_passages(built, embedder, embed_spy):
    corpus, index_dir = built
    spy = embed_spy
    col = collection(corpus, index_dir, embedder).open()
    name = "004_6faa4890d470160d.txt"
    report = col.delete_document(name)
    assert report.removed == [name] and spy.texts == []
    assert not (corpus / name).exists()
    assert name not in col.index.documents and name not in Index.load(index_dir).documents
    with pytest.raises(ValueError, match="not in the index"):
        col.ask("Who wrote it?", doc_ids=[name])


def test_delete_unknown_or_bad_name_changes_nothing(built, embedder):
    corpus, index_dir = built
    col = collection(corpus, index_dir, embedder).open()
    corpus_before, index_before = snapshot(corpus), snapshot(index_dir)
    with pytest.raises(KeyError, match="no document 'missing.txt' in the index"):
        col.delete_document("missing.txt")
    with pytest.raises(KeyError, match="no document '../seeds/000_93644d6605fbd4ae.txt' in the index"):
        col.delete_document("../seeds/000_93644d6605fbd4ae.txt")
    assert snapshot(corpus) == corpus_before and snapshot(index_dir) == index_before
