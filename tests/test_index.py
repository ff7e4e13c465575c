"""qa.index: the saved folder, round trips, incremental updates, staleness, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import KNOWN_QUESTIONS, leftovers, snapshot

from qa.chunking import CHUNKING_VERSION
from qa.corpus import content_hash
from qa.embedding import MODEL_NAME, MODEL_SHA256
from qa.index import (
    FORMAT_VERSION,
    Index,
    IndexBusyError,
    IndexFormatError,
    IndexParams,
    compatibility,
    corpus_changes,
    update_index,
    write_lock,
)
from qa.lexical import Postings, tokenize
from qa.retrieval import Searcher

SEGMENT_FILES = ["segment.json", "documents.jsonl", "passages.npy", "sentence_rows.npy", "sentence_spans.npy",
                 "vectors.npy", "sentences.npy", "bm25"]
NEW_DOC = (
    "Ceasefire talks resume\n\n"
    "Negotiators met in Istanbul on Tuesday to resume the ceasefire talks. "
    "The U.S. delegation said progress was slow. “We are not there yet,” one envoy said.\n"
    "Talks continue next week.\n"
)


def all_vectors(index: Index) -> np.ndarray:
    return index.passage_vectors(0, len(index))


def results(index: Index, embedder, questions=KNOWN_QUESTIONS) -> list[list[tuple]]:
    searcher = Searcher(index, embedder)
    out = []
    for q, *_ in questions:
        answer = searcher.search(q, k=5)
        out.append([(h.doc_id, h.start, h.end, h.quote, h.highlight and (h.highlight.start, h.highlight.end))
                    for h in answer.passages])
    return out


# Backends that give a text the same vector whatever else shares its batch. OpenVINO's bf16
# kernels do not: a text's vector moves by up to about 6e-4 per component (cosine > 0.99999)
# with the lengths of its batch mates, so an updated index and a fresh build differ that much.
BATCH_INVARIANT = ("torch", "onnx-fp32")


def assert_same_index(a: Index, b: Index, embedder) -> None:
    assert a.passages == b.passages
    assert {d: doc.text for d, doc in a.documents.items()} == {d: doc.text for d, doc in b.documents.items()}
    va, vb = all_vectors(a), all_vectors(b)
    assert va.shape == vb.shape
    assert np.sum(va * vb, axis=1).min() >= 0.9999  # row for row, the same passage's vector
    if embedder.backend in BATCH_INVARIANT:
        np.testing.assert_allclose(va, vb, atol=1e-5)
    # the per-sentence vectors (stored as float16) must match too
    np.testing.assert_allclose(a.sentence_vectors_of(0, len(a)), b.sentence_vectors_of(0, len(b)), atol=2e-3)
    assert a.entries.keys() == b.entries.keys()
    for d in a.entries:
        assert a.entries[d]["sha256"] == b.entries[d]["sha256"]
    assert results(a, embedder) == results(b, embedder)


def fresh_build(tmp_path: Path, corpus: Path, embedder) -> Index:
    """An index built from nothing, of a copy of ``corpus`` in its own folder."""
    root = tmp_path / "fresh"
    shutil.copytree(corpus, root / "seeds")
    index, report = update_index(root / "seeds", root / "index", embedder=embedder, show_progress=False)
    assert report.added == sorted(report.added) and not report.changed and not report.removed
    return index


# -- the saved folder ----------------------------------------------------------------------


def segment_dirs(index_dir: Path) -> list[Path]:
    names = [s["name"] for s in json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))["segments"]]
    return [index_dir / "segments" / n for n in names]


def test_saved_index_is_a_manifest_and_a_folder_of_named_files_per_segment(seed_build):
    _, index_dir = seed_build
    assert (index_dir / "manifest.json").is_file()
    [segment] = segment_dirs(index_dir)  # a small index is one segment
    for name in SEGMENT_FILES:
        assert (segment / name).exists(), name
    assert not (segment / "ann.faiss").exists()  # small: searched exactly
    for name in Postings.FILES:
        assert (segment / "bm25" / name).is_file(), name


def test_manifest_records_version_model_params_segments_and_counts(seed_build, embedder):
    corpus, index_dir = seed_build
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["model"]["name"] == MODEL_NAME and manifest["model"]["sha256"] == MODEL_SHA256
    assert manifest["model"]["backend"] == embedder.backend  # e.g. "openvino-bf16", or "torch" as the fallback
    assert manifest["params"] == asdict(IndexParams())
    [segment] = manifest["segments"]
    meta = json.loads((index_dir / "segments" / segment["name"] / "segment.json").read_text(encoding="utf-8"))
    files = sorted(p.name for p in corpus.iterdir())
    assert manifest["counts"] == {"documents": len(files), "passages": meta["passages"]}
    assert segment["deleted"] == [] and segment["ann"] is None and meta["ann"] is None
    assert segment["embedded_with"] == meta["embedded_with"] == [embedder.backend]


def test_documents_are_recorded_with_their_hashes_sizes_and_mtimes(seed_build, seed_index):
    corpus, _ = seed_build
    files = sorted(p.name for p in corpus.iterdir())
    assert sorted(seed_index.entries) == files
    for name in files:
        st = (corpus / name).stat()
        text = (corpus / name).read_bytes().decode("utf-8").removeprefix("\ufeff")
        entry = seed_index.entries[name]
        assert entry["sha256"] == content_hash(text)
        assert (entry["size"], entry["mtime_ns"]) == (st.st_size, st.st_mtime_ns)


def test_no_pickles_anywhere_in_the_index(seed_build):
    _, index_dir = seed_build
    for path in index_dir.rglob("*"):
        if not path.is_file():
            continue
        assert path.suffix not in (".pkl", ".pickle", ".joblib", ".pt"), path
        head = path.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), f"{path} is a pickle"
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                json.loads(line)


def test_passage_offsets_on_disk_quote_the_document_text(seed_build):
    """Read with numpy and json alone, without qa: every passage and sentence lies in its document."""
    _, index_dir = seed_build
    [segment] = segment_dirs(index_dir)
    docs = [json.loads(line) for line in (segment / "documents.jsonl").read_text(encoding="utf-8").splitlines()]
    table = np.load(segment / "passages.npy")
    rows, spans = np.load(segment / "sentence_rows.npy"), np.load(segment / "sentence_spans.npy")
    assert len(table) and len(rows) == len(table) + 1
    for i, (doc, start, end) in enumerate(table):
        text = docs[doc]["text"]
        assert 0 <= start < end <= len(text) and text[start:end].strip() == text[start:end]
        for a, b in spans[rows[i] : rows[i + 1]]:
            assert start <= a < b <= end


def test_load_gives_back_what_was_built(seed_build, seed_index, embedder):
    corpus, index_dir = seed_build
    built, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert report.unchanged
    loaded = Index.load(index_dir)
    assert loaded.manifest == seed_index.manifest
    assert loaded.passages == seed_index.passages
    assert loaded.documents == seed_index.documents
    assert loaded.doc_ranges == seed_index.doc_ranges
    assert [loaded.doc_id_of(i) for i in range(len(loaded))] == [p.doc_id for p in seed_index.passages]
    np.testing.assert_array_equal(all_vectors(loaded), all_vectors(seed_index))
    np.testing.assert_array_equal(loaded.sentence_vectors_of(0, len(loaded)), seed_index.sentence_vectors_of(0, len(loaded)))
    tokens = tokenize("soldiers refused to fight near Bakhmut")
    np.testing.assert_array_equal(loaded.bm25_scores(tokens), seed_index.bm25_scores(tokens))
    assert results(loaded, embedder) == results(seed_index, embedder)


def test_odd_characters_survive_the_round_trip(tmp_path, embedder):
    corpus = tmp_path / "c"
    corpus.mkdir()
    text = ("Odd “document” — with\u2028line separators\r\nand CRLF\rand CR\x85NEL « guillemets » 😀👍🏽.\r\n\r\n"
            "Second\u00a0paragraph\ttabbed – dashed. ‘Single’ quotes.\n")
    (corpus / "odd.txt").write_bytes(text.encode("utf-8"))
    built, _ = update_index(corpus, tmp_path / "i", embedder=embedder, show_progress=False)
    loaded = Index.load(tmp_path / "i")
    assert loaded.documents["odd.txt"].text == text
    assert loaded.passages == built.passages
    for i in range(len(loaded)):
        p = loaded.passages[i]
        assert loaded.quote(i) == text[p.start : p.end]


# -- loading what is not a valid index --------------------------------------------------------


def test_missing_index_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no index at .*nowhere.*python -m qa index"):
        Index.load(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_other_format_version_is_refused(built):
    _, index_dir = built
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    manifest["format_version"] = FORMAT_VERSION + 1
    (index_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexFormatError, match="index format"):
        Index.load(index_dir)


def test_a_document_whose_text_was_edited_on_disk_is_refused(built):
    """A quote is cut from the stored text by offsets: text that no longer hashes right is never served."""
    _, index_dir = built
    path = segment_dirs(index_dir)[0] / "documents.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows[0]["text"] = "Edited. " + rows[0]["text"]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(IndexFormatError, match="no longer matches its hash"):
        Index.load(index_dir)


def test_a_passage_outside_its_document_is_refused(built):
    _, index_dir = built
    path = segment_dirs(index_dir)[0] / "passages.npy"
    table = np.load(path)
    table[0, 2] = 10**8
    np.save(path, table)
    with pytest.raises(IndexFormatError, match="no longer fits inside its document"):
        Index.load(index_dir)


@pytest.mark.parametrize("name", ["vectors.npy", "passages.npy", "bm25/rows.npy", "segment.json"])
def test_corrupt_files_are_refused(built, name):
    _, index_dir = built
    (segment_dirs(index_dir)[0] / name).write_bytes(b"garbage")
    with pytest.raises(IndexFormatError, match="not a readable index|disagree"):
        Index.load(index_dir)


def test_a_missing_segment_is_refused(built):
    _, index_dir = built
    shutil.rmtree(segment_dirs(index_dir)[0])
    with pytest.raises(IndexFormatError, match="missing a file"):
        Index.load(index_dir)


def test_corrupt_index_is_rebuilt_by_update(built, embedder):
    corpus, index_dir = built
    (segment_dirs(index_dir)[0] / "vectors.npy").write_bytes(b"garbage")
    index, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert report.rebuilt and "not a readable index" in report.rebuilt
    assert len(index) > 0 and Index.load(index_dir).passages == index.passages
    assert len(list((index_dir / "segments").iterdir())) == 1  # the corrupt segment is gone


def test_an_index_of_the_first_format_is_rebuilt_and_its_files_removed(built, embedder):
    corpus, index_dir = built
    shutil.rmtree(index_dir)
    index_dir.mkdir()
    (index_dir / "manifest.json").write_text(json.dumps({"format_version": 1}), encoding="utf-8")
    for name in ("documents.jsonl", "passages.jsonl", "vectors.faiss", "sentences.npy"):
        (index_dir / name).write_text("old", encoding="utf-8")
    (index_dir / "bm25").mkdir()
    with pytest.raises(IndexFormatError, match="index format 1"):
        Index.load(index_dir)
    index, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert "index format 1" in report.rebuilt and len(index.documents) == 5
    assert sorted(p.name for p in index_dir.iterdir()) == ["manifest.json", "segments"]


# -- incremental updates ----------------------------------------------------------------------


def test_unchanged_corpus_embeds_nothing_and_rewrites_nothing(built, embedder, embed_spy):
    corpus, index_dir = built
    before = snapshot(index_dir)
    spy = embed_spy
    index, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert report.unchanged and report.embedded == 0 and spy.texts == []
    assert report.documents == len(list(corpus.iterdir())) and report.passages == len(index)
    assert snapshot(index_dir) == before


def test_adding_a_document_embeds_only_that_document(tmp_path, built, embedder, embed_spy):
    corpus, index_dir = built
    (corpus / "sub").mkdir()
    (corpus / "sub" / "new.md").write_text(NEW_DOC, encoding="utf-8")
    spy = embed_spy
    index, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert report.added == ["sub/new.md"] and report.changed == [] and report.removed == []
    new_passages = [i for i, p in enumerate(index.passages) if p.doc_id == "sub/new.md"]
    assert new_passages and report.embedded == len(spy.texts) == len(new_passages)
    for text, i in zip(spy.texts, new_passages):
        assert text.endswith(index.quote(i))
    assert_same_index(Index.load(index_dir), fresh_build(tmp_path, corpus, embedder), embedder)


def test_changing_a_document_embeds_only_that_document(tmp_path, built, embedder, embed_spy):
    corpus, index_dir = built
    name = "002_0239b8b82e17a921.txt"
    path = corpus / name
    path.write_bytes(path.read_bytes() + b"\nA new closing sentence about the ceasefire talks.\n")
    spy = embed_spy
    index, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert report.changed == [name] and report.added == [] and report.removed == []
    changed = [i for i, p in enumerate(index.passages) if p.doc_id == name]
    assert len(spy.texts) == len(changed) == report.embedded
    assert any("ceasefire talks" in t for t in spy.texts)
    assert all(name == index.passages[i].doc_id for i in changed)
    assert_same_index(Index.load(index_dir), fresh_build(tmp_path, corpus, embedder), embedder)


def test_deleting_a_document_embeds_nothing_and_drops_it(tmp_path, built, embedder, embed_spy):
    corpus, index_dir = built
    name = "001_b0c2a5a791f52d3c.txt"
    (corpus / name).unlink()
    spy = embed_spy
    index, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert report.removed == [name] and report.added == [] and report.changed == []
    assert spy.texts == [] and report.embedded == 0
    assert name not in index.documents and all(p.doc_id != name for p in index.passages)
    assert_same_index(Index.load(index_dir), fresh_build(tmp_path, corpus, embedder), embedder)


def test_touched_but_identical_file_is_not_re_embedded(built, embedder, embed_spy):
    corpus, index_dir = built
    path = corpus / "003_5b9c610a72473fdf.txt"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert corpus_changes(Index.load(index_dir), corpus) == []
    spy = embed_spy
    segments = snapshot(index_dir / "segments")
    _, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert spy.texts == [] and not (report.added or report.changed or report.removed)
    assert snapshot(index_dir / "segments") == segments  # only the manifest is rewritten
    # the new mtime is recorded: the file is not read again next time
    assert Index.load(index_dir).entries[path.name]["mtime_ns"] == path.stat().st_mtime_ns


def test_non_utf8_file_is_skipped_others_indexed_and_recorded(built, embedder, embed_spy):
    corpus, index_dir = built
    (corpus / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e.".encode("latin-1"))
    index, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert list(report.skipped) == ["latin1.txt"] and "not valid UTF-8" in report.skipped["latin1.txt"]
    assert "latin1.txt" not in index.documents and len(index.documents) == 5
    # the skipped file is remembered: the next run has nothing to do
    assert corpus_changes(Index.load(index_dir), corpus) == []
    spy = embed_spy
    spy.reset()
    _, again = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert again.unchanged and spy.texts == []
    # once fixed, it is indexed
    (corpus / "latin1.txt").write_text("Café crème brûlée.", encoding="utf-8")
    index, fixed = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert "latin1.txt" in fixed.added and "latin1.txt" in index.documents


def test_empty_corpus_gives_an_empty_loadable_index(tmp_path, embedder):
    (tmp_path / "empty").mkdir()
    index, report = update_index(tmp_path / "empty", tmp_path / "i", embedder=embedder, show_progress=False)
    assert report.documents == 0 and report.passages == 0 and len(index) == 0
    loaded = Index.load(tmp_path / "i")
    assert len(loaded) == 0 and loaded.documents == {}


def test_missing_corpus_folder_changes_nothing(tmp_path, built, embedder):
    _, index_dir = built
    before = snapshot(index_dir)
    with pytest.raises(FileNotFoundError, match="corpus folder not found"):
        update_index(tmp_path / "nowhere", index_dir, embedder=embedder, show_progress=False)
    with pytest.raises(FileNotFoundError):
        update_index(tmp_path / "nowhere", tmp_path / "new_index", embedder=embedder, show_progress=False)
    assert snapshot(index_dir) == before
    assert not (tmp_path / "new_index").exists()


# -- staleness ------------------------------------------------------------------------------


def test_compatibility_gives_the_reason(seed_index, embedder):
    manifest = seed_index.manifest
    assert compatibility(manifest, embedder, IndexParams()) is None
    assert "index format" in compatibility({**manifest, "format_version": 0}, embedder, IndexParams())
    other_model = {**manifest, "model": {**manifest["model"], "sha256": "f" * 64}}
    assert "another model" in compatibility(other_model, embedder, IndexParams())
    renamed = {**manifest, "model": {**manifest["model"], "name": "some/other-model"}}
    assert "another model" in compatibility(renamed, embedder, IndexParams())
    assert "passage parameters" in compatibility(manifest, embedder, IndexParams(max_tokens=64))
    assert "passage parameters" in compatibility(manifest, embedder, IndexParams(title_prefix=True))


def test_corpus_changes_lists_added_changed_removed(built):
    corpus, index_dir = built
    index = Index.load(index_dir)
    assert corpus_changes(index, corpus) == []
    (corpus / "new.txt").write_text(NEW_DOC, encoding="utf-8")
    (corpus / "000_93644d6605fbd4ae.txt").write_text("Replaced text.", encoding="utf-8")
    (corpus / "004_6faa4890d470160d.txt").unlink()
    assert sorted(corpus_changes(index, corpus)) == [
        "added new.txt", "changed 000_93644d6605fbd4ae.txt", "removed 004_6faa4890d470160d.txt"]


# -- atomic writes and crashes -------------------------------------------------------------------


def _change_a_document(corpus: Path) -> None:
    (corpus / "new.txt").write_text(NEW_DOC, encoding="utf-8")


@pytest.mark.parametrize("fail_in, error", [("Postings.save", OSError), ("_commit", KeyboardInterrupt)])
def test_interrupted_update_leaves_the_old_index_usable(built, embedder, monkeypatch, fail_in, error):
    import qa.index.writer

    corpus, index_dir = built
    old = Index.load(index_dir)
    before = snapshot(index_dir)

    def boom(*args, **kwargs):
        raise error("interrupted mid-write")

    if fail_in == "Postings.save":
        monkeypatch.setattr(Postings, "save", boom)
    else:
        monkeypatch.setattr(qa.index.writer, "_commit", boom)  # where the writer looks it up
    _change_a_document(corpus)
    with pytest.raises(error):
        update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    monkeypatch.undo()

    survived = Index.load(index_dir)
    assert survived.passages == old.passages and "new.txt" not in survived.documents
    assert results(survived, embedder) == results(old, embedder)
    # the next update goes through, and clears what the failed one left
    _, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert report.added == ["new.txt"] and "new.txt" in Index.load(index_dir).documents
    assert [p.name for p in (index_dir / "segments").iterdir()] == [p.name for p in segment_dirs(index_dir)]
    assert before.keys() != snapshot(index_dir).keys() and leftovers(index_dir) == []


def test_temp_folders_of_dead_writers_are_removed_live_ones_kept(built, embedder):
    corpus, index_dir = built
    dead = index_dir / "segments" / f".tmp-{_dead_pid()}-s000009"
    dead.mkdir()
    other_writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = index_dir / "segments" / f".tmp-{other_writer.pid}-s000010"
        live.mkdir()
        orphan = index_dir / "segments" / "s000099"  # written, but its manifest never committed
        orphan.mkdir()
        update_index(corpus, index_dir, embedder=embedder, show_progress=False)
        assert not dead.exists() and not orphan.exists()
        assert live.exists()
    finally:
        other_writer.kill()
        other_writer.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_writer_is_refused_and_changes_nothing(built, embedder):
    corpus, index_dir = built
    before = snapshot(index_dir)
    _change_a_document(corpus)
    with write_lock(index_dir), pytest.raises(IndexBusyError, match="being updated by another process"):
        update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert snapshot(index_dir) == before


def test_an_index_cut_by_another_chunker_version_is_rebuilt(built, embedder, embed_spy):
    """Regression: a chunking change kept reusing the old passages of unchanged documents,
    mixing two chunkers in one index. The manifest now records the chunker's version."""
    corpus, index_dir = built
    manifest_path = index_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["chunking"]["version"] = 1
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert "chunker version 1" in compatibility(manifest, embedder, IndexParams())
    index, report = update_index(corpus, index_dir, embedder=embedder, show_progress=False)
    assert report.rebuilt and "chunker version 1" in report.rebuilt
    assert report.embedded == len(index) > 0
    assert json.loads(manifest_path.read_text(encoding="utf-8"))["chunking"]["version"] == CHUNKING_VERSION
