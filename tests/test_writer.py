"""qa.index.writer: a build reads and chunks beside the embedder, and gives the index a one-shot build gives.

The reference is computed here without the writer: each document chunked, every
passage embedded in one call of the embedder, BM25 tokens made, so the pipelined
build (a reading thread, a bounded queue, the model fed a few passages at a time)
is checked against what it replaces.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import qa.index.writer
from conftest import SEEDS
from qa.chunking import Chunker, count_tiktokens, tiktoken_encoding
from qa.collection import Collection
from qa.corpus import load_corpus
from qa.index import Index, IndexParams, Layout, embedding_input, update_index
from qa.index.params import _lexical_text
from qa.index.writer import _Read, _Reader
from qa.lexical import BM25, Postings, tokenize


def _reference(corpus: Path, embedder, params: IndexParams):
    """Passages, vectors, sentence vectors and postings of a corpus, all embedded in one call."""
    docs = sorted(load_corpus(corpus), key=lambda d: d.doc_id)
    chunker = Chunker(params.chunk_params(), count_tokens=count_tiktokens, count_wordpieces=embedder.count_wordpieces)
    pairs = [(d, p) for d in docs for p in chunker.chunk(d)]
    inputs = [embedding_input(d, p, params, embedder) for d, p in pairs]
    vectors, sentences = embedder.embed_passages([t for t, _ in inputs], [s for _, s in inputs])
    postings = Postings.build([tokenize(_lexical_text(d, p, params)) for d, p in pairs])
    return [p for _, p in pairs], vectors, sentences, postings


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    assert np.array_equal(na > 0, nb > 0)  # the same sentences have no token of their own
    keep = na > 0
    return (a[keep] * b[keep]).sum(axis=1) / (na[keep] * nb[keep])


@pytest.mark.parametrize("embed_passages, layout", [
    (5, Layout()),  # many calls of the model, one segment
    (512, Layout(batch_passages=8, merge_below=0)),  # one call per committed batch, several segments
])
def test_a_pipelined_build_equals_embedding_every_passage_at_once(tmp_path, embedder, monkeypatch, embed_passages,
                                                                   layout):
    monkeypatch.setattr(qa.index.writer, "_EMBED_PASSAGES", embed_passages)
    index, report = update_index(SEEDS, tmp_path / "index", embedder=embedder, layout=layout, show_progress=False)
    passages, vectors, sentences, postings = _reference(SEEDS, embedder, IndexParams())

    assert list(index.passages) == passages
    assert _cosines(index.passage_vectors(0, len(index)), vectors).min() >= 0.9999
    assert _cosines(index.sentence_vectors_of(0, len(index)), sentences.astype(np.float16)).min() >= 0.9999
    reference = BM25([postings])
    for words in (["soldiers", "retreat"], ["commander", "order", "Moscow"], ["Ukraine"]):
        tokens = tokenize(" ".join(words))
        assert np.allclose(index.bm25_scores(tokens), reference.scores(tokens), rtol=1e-6, atol=1e-6), words
    assert report.embedded == len(passages)
    assert set(report.timings) == {"reading", "chunking", "embedding", "waiting", "writing"}
    assert report.timings["embedding"] > 0 and report.timings["writing"] > 0


def test_a_fresh_build_is_identical_whatever_the_embedding_calls(tmp_path, embedder, monkeypatch):
    """The same passages and BM25 scores, and vectors within cosine 0.9999, for 3 passages a call or 512."""
    built = {}
    for n in (3, 512):
        monkeypatch.setattr(qa.index.writer, "_EMBED_PASSAGES", n)
        built[n], _ = update_index(SEEDS, tmp_path / f"index-{n}", embedder=embedder, show_progress=False)
    a, b = built[3], built[512]
    assert list(a.passages) == list(b.passages) and a.documents == b.documents
    assert _cosines(a.passage_vectors(0, len(a)), b.passage_vectors(0, len(b))).min() >= 0.9999
    assert np.array_equal(a.bm25_scores(["soldiers", "refused"]), b.bm25_scores(["soldiers", "refused"]))


def _reads(n: int, delay: float = 0.0, fail_at: int | None = None):
    made = []

    def prepare(doc_id, path):
        if fail_at is not None and len(made) == fail_at:
            raise OSError(f"cannot read {doc_id}")
        time.sleep(delay)
        made.append(doc_id)
        return _Read(doc_id, {"size": 1})

    ids = [f"d{i:03d}.txt" for i in range(n)]
    return {d: Path(d) for d in ids}, ids, prepare, made


def test_the_reader_stays_a_bounded_number_of_documents_ahead():
    files, ids, prepare, made = _reads(200)
    seen = []
    with _Reader(files, ids, prepare, ahead=4) as reader:
        for read in reader:
            seen.append(read.doc_id)
            if len(seen) == 10:
                time.sleep(0.3)  # a slow embedder: the reader must wait, not run on
                # at most: 4 queued, one being put, the one we hold
                assert len(made) <= len(seen) + 4 + 1
    assert seen == ids


def test_an_error_in_the_reading_thread_is_raised_where_the_build_is():
    files, ids, prepare, made = _reads(20, fail_at=7)
    with pytest.raises(OSError, match="cannot read d007.txt"):
        with _Reader(files, ids, prepare, ahead=2) as reader:
            for _ in reader:
                pass
    assert made == ids[:7]


def test_leaving_a_build_early_stops_its_reading_thread():
    files, ids, prepare, made = _reads(500, delay=0.001)
    before = {t.name for t in threading.enumerate()}
    with _Reader(files, ids, prepare, ahead=3) as reader:
        for k, _ in enumerate(reader):
            if k == 5:
                break
    assert not any(t.name == "qa-read" for t in threading.enumerate() if t.name not in before)
    assert len(made) < 20


def test_an_interrupted_build_stops_reading_and_keeps_the_index(tmp_path, corpus_copy, embedder, monkeypatch):
    """KeyboardInterrupt in the embedder: the reading thread ends and the index on disk is still readable."""
    real = embedder.embed_passages
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(embedder, "embed_passages", interrupted)
    with pytest.raises(KeyboardInterrupt):
        update_index(corpus_copy, tmp_path / "index", embedder=embedder, show_progress=False,
                     layout=Layout(batch_passages=8, merge_below=0))
    monkeypatch.undo()
    assert not any(t.name == "qa-read" for t in threading.enumerate())
    partial = Index.load(tmp_path / "index")
    assert 0 < len(partial.documents) < 5


def test_count_tiktokens_counts_as_the_batch_encoder_does():
    """Regression: counting one text at a time (encode_ordinary_batch started threads on every call) changes no count."""
    texts = ["", "Hello.", "Müller said “it’s done” — then left; 12.5% of 3,000 voters (±2) disagreed.",
             "東京は日本の首都です。", "word " * 300, "<|endoftext|> is ordinary text here"]
    expected = [len(ids) for ids in tiktoken_encoding().encode_ordinary_batch(texts)]
    assert count_tiktokens(texts) == expected
    assert count_tiktokens([]) == []


def test_count_wordpieces_one_by_one_equals_the_batch(embedder):
    texts = ["Hello.", "The Eiffel Tower was completed in 1889.", "a " * 400, "東京は日本の首都です。"]
    one_by_one = embedder.count_wordpieces(texts)
    batched = embedder.count_wordpieces(texts * 10)[: len(texts)]  # over the small-batch limit: encode_batch
    assert one_by_one == batched and one_by_one[2] == 400


def test_building_an_index_does_not_load_the_relevance_model(tmp_path, corpus_copy, embedder):
    """qa index only builds: the relevance model (seconds to load) waits for the first question."""
    col = Collection(corpus_copy, tmp_path / "index", embedder=embedder, show_progress=False)
    col.update()
    assert col._reranker is None
    answer = col.ask("Who claims he never gave the order to retreat?", k=1)
    assert col._reranker is not None and answer.passages[0].relevance is not None
