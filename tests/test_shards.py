"""Sharded serving, in-process: split an index by document, search all shards, answers equal one index's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import SCIFACT, write_small_corpus
from qa.cli import main as cli_main
from qa.corpus import DocumentError
from qa.index import Index, Layout, update_index
from qa.index.ann import probe_share
from qa.lexical import tokenize
from qa.retrieval import Searcher, SearchParams
from qa.shards import ShardedCollection, ShardedSearcher, ShardError, open_shards, split_index


QUESTIONS = [
    "Who claims he never gave the order to retreat?",
    "Why were 17 soldiers imprisoned?",
    "What did the women say about the men's food and water?",
    "Who painted the Mona Lisa?",
    "Does vitamin D lower the risk of fractures?",
    "What happens to white matter in the developing brain?",
    "How do T cells respond to infection?",
    "soldiers",
]


def assert_same_answers(one: Searcher, sharded: Searcher, questions=QUESTIONS, **filters) -> None:
    for q in questions:
        expected, got = one.search(q, k=5, **filters).to_dict(), sharded.search(q, k=5, **filters).to_dict()
        assert got == expected, q


def test_split_cuts_contiguous_documents_balanced_by_passages(tmp_path, small_index, small_build):
    folders = split_index(small_build[1], tmp_path / "shards", 3)
    shards = [Index.load(f) for f in folders]
    assert [len(s.documents) for s in shards] and all(len(s.documents) for s in shards)
    # laid end to end, the shards are the index: same documents, same passages, same order
    assert [p for s in shards for p in s.passages] == list(small_index.passages)
    assert [d for s in shards for d in s.documents] == list(small_index.documents)
    joined = np.concatenate([s.passage_vectors(0, len(s)) for s in shards])
    assert np.array_equal(joined, small_index.passage_vectors(0, len(small_index)))
    # balanced: no shard is off its share by more than its largest document
    share = len(small_index) / 3
    biggest = max(c for _, c in small_index.doc_ranges.values())
    assert all(abs(len(s) - share) <= biggest for s in shards), [len(s) for s in shards]
    info = json.loads((tmp_path / "shards" / "shards.json").read_text())
    assert info["shards"] == ["shard-000", "shard-001", "shard-002"]
    assert [c["passages"] for c in info["counts"]] == [len(s) for s in shards]
    assert all(s.manifest["shard"]["of"] == 3 for s in shards)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_sharded_bm25_and_dense_equal_one_index_exactly(tmp_path, small_index, small_build, embedder, n):
    """BM25 with the statistics of all shards scores bit for bit as one index; dense cosines too."""
    split_index(small_build[1], tmp_path / "shards", n)
    sharded = open_shards(tmp_path / "shards")
    assert len(sharded) == len(small_index)
    assert sharded.avg_length == small_index.bm25.avg_length
    assert sharded.probe_share == probe_share(len(small_index))  # each shard probes as one index would
    for q in QUESTIONS:
        tokens = tokenize(q)
        for depth in (5, 100, len(small_index)):
            one_ids, one_scores = small_index.lexical_top(tokens, depth)
            ids, scores = sharded.lexical_top(tokens, depth)
            assert np.array_equal(ids, one_ids) and np.array_equal(scores, one_scores), (q, depth)
        qv = embedder.embed([q])[0]
        one_ids, one_scores = small_index.dense_top(qv, 50)
        ids, scores = sharded.dense_top(qv, 50)
        assert np.array_equal(ids, one_ids) and np.array_equal(scores, one_scores), q
        assert all(sharded.idf(t) == small_index.idf(t) for t in tokens)


def test_shards_send_each_question_its_own_cosines_not_vectors(tmp_path, small_index, small_build, embedder):
    """A question reads its passages' cosines (sentences and passage) as the shard computed them,
    bit for bit those of one index, and one question's cosines never answer another's."""
    split_index(small_build[1], tmp_path / "shards", 3)
    sharded = open_shards(tmp_path / "shards")
    every = range(len(small_index))
    vectors = embedder.embed(QUESTIONS[:2])
    for qv in (*vectors, vectors[0]):  # the first question again, after the second filled the cache
        sharded.prefetch(every, qv, sentences=every, passages=every)
        for i in every:
            assert np.array_equal(sharded.sentence_cosines(i, qv), small_index.sentence_cosines(i, qv)), i
            assert sharded.passage_cosine(i, qv) == small_index.passage_cosine(i, qv)
    cold = open_shards(tmp_path / "shards")  # nothing fetched ahead: read on demand
    assert np.array_equal(cold.sentence_cosines(5, vectors[1]), small_index.sentence_cosines(5, vectors[1]))
    shard = sharded.shards[0].core
    passages, docs, sentence_cosines, passage_cosines = shard.fetch([0, 1], vectors[0], [1], [0, 1])
    assert passages == [shard.index.passages[0], shard.index.passages[1]] and set(docs) == {passages[0].doc_id}
    assert len(sentence_cosines) == 1 and sentence_cosines[0].shape == (len(passages[1].sentences),)
    assert passage_cosines == [shard.index.passage_cosine(0, vectors[0]), shard.index.passage_cosine(1, vectors[0])]


@pytest.mark.parametrize("n", [2, 3])
def test_sharded_answers_equal_one_index_with_and_without_the_relevance_model(
        tmp_path, small_index, small_build, embedder, reranker, n):
    split_index(small_build[1], tmp_path / "shards", n)
    sharded = open_shards(tmp_path / "shards")
    for model in (None, reranker):
        params = SearchParams() if model is not None else SearchParams(rerank_depth=0)
        assert_same_answers(Searcher(small_index, embedder, params, reranker=model),
                            ShardedSearcher(sharded, embedder, params, reranker=model))
    one, many = Searcher(small_index, embedder, reranker=reranker), ShardedSearcher(sharded, embedder, reranker=reranker)
    follow = ["Why were 17 soldiers imprisoned?"]
    assert many.search("Where were they held?", history=follow).to_dict() == \
        one.search("Where were they held?", history=follow).to_dict()
    doc = next(iter(small_index.documents))
    assert_same_answers(one, many, QUESTIONS[:3], doc_ids=[doc])
    with pytest.raises(ValueError, match="not in the index: nope.txt"):
        many.search("soldiers", doc_ids=["nope.txt"])
    with pytest.raises(ValueError, match="no document from 'Nowhere'"):
        many.search("soldiers", sites=["Nowhere"])


def test_a_question_makes_one_round_of_fetches_in_the_asking_thread(tmp_path, small_build, embedder, reranker):
    """Each shard is asked once for what the answer reads (over Ray a round trip each), and in
    process that call runs in the asking thread: it is Python holding the GIL, not a search."""
    import threading

    split_index(small_build[1], tmp_path / "shards", 3)
    calls = []
    for model in (None, reranker):
        sharded = open_shards(tmp_path / "shards")  # nothing cached
        for shard in sharded.shards:
            core_fetch = shard.core.fetch

            def fetch(*args, _name=shard.name, _fetch=core_fetch):
                calls.append((_name, threading.current_thread()))
                return _fetch(*args)

            shard.core.fetch = fetch
        searcher = ShardedSearcher(sharded, embedder, SearchParams() if model else SearchParams(rerank_depth=0),
                                   reranker=model)
        for q in QUESTIONS:
            del calls[:]
            assert searcher.search(q, k=5).passages, q
            names = [name for name, _ in calls]
            assert names and sorted(names) == sorted(set(names)), (q, names)  # at most one call a shard
            assert {thread for _, thread in calls} == {threading.current_thread()}, q


def test_a_missing_shard_is_a_clear_error_not_a_partial_answer(tmp_path, small_build, embedder):
    split_index(small_build[1], tmp_path / "shards", 3)
    shutil.rmtree(tmp_path / "shards" / "shard-001")
    with pytest.raises(ShardError, match="1 of 3 shards .* missing: shard-001"):
        open_shards(tmp_path / "shards")

    split_index(small_build[1], tmp_path / "again", 2)
    sharded = open_shards(tmp_path / "again")
    searcher = ShardedSearcher(sharded, embedder, SearchParams(rerank_depth=0))
    assert searcher.search("soldiers").passages
    # a shard that fails under a loaded set (its disk, say) fails the whole search, naming it
    def broken(*args):
        raise OSError("Input/output error")

    sharded.shards[1].core.dense = broken
    with pytest.raises(ShardError, match="shard shard-001 .* cannot be read: Input/output error"):
        searcher.search("How do T cells respond to infection?")


def test_split_refuses_what_it_cannot_do(tmp_path, small_build):
    n_docs = len(Index.load(small_build[1]).documents)
    with pytest.raises(ValueError, match=f"cannot split {n_docs} documents into {n_docs + 1} shards"):
        split_index(small_build[1], tmp_path / "shards", n_docs + 1)
    with pytest.raises(ValueError, match="whole number"):
        split_index(small_build[1], tmp_path / "shards", 0)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a shard set"):
        split_index(small_build[1], tmp_path / "busy", 2)
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_the_cli_splits_and_asks_a_shard_set(tmp_path, small_build, capsys):
    shutil.copytree(small_build[0], tmp_path / "corpus")
    shutil.copytree(small_build[1], tmp_path / "index")
    assert cli_main(["shard", "--index", str(tmp_path / "index"), "--shards", "2", "--out",
                     str(tmp_path / "shards")]) == 0
    assert "split into 2 shards" in capsys.readouterr().out
    assert cli_main(["ask", "--index", str(tmp_path / "shards"), "--json", "-k", "2",
                     "Why were 17 soldiers imprisoned?"]) == 0
    sharded = json.loads(capsys.readouterr().out)
    assert cli_main(["ask", "--index", str(tmp_path / "index"), "--json", "-k", "2",
                     "Why were 17 soldiers imprisoned?"]) == 0
    assert sharded == json.loads(capsys.readouterr().out)
    # one shard alone is not asked: updated on its own it would take in the whole corpus
    assert cli_main(["ask", "--index", str(tmp_path / "shards" / "shard-000"), "soldiers"]) == 2
    assert "one shard of a shard set" in capsys.readouterr().err


def test_a_shard_set_is_read_only(tmp_path, small_build, embedder, reranker):
    split_index(small_build[1], tmp_path / "shards", 2)
    col = ShardedCollection(tmp_path / "shards", embedder=embedder, reranker=reranker).open()
    assert sum(d.passages for d in col.documents()) == len(Index.load(small_build[1]))
    doc = col.documents()[0].doc_id
    assert col.document(doc).doc_id == doc
    with pytest.raises(DocumentError, match="read-only"):
        col.add_documents([("a.txt", b"A new note.\n")])
    with pytest.raises(KeyError, match="no document"):
        col.document("nope.txt")


@pytest.mark.skipif(not SCIFACT.is_file(), reason="needs ../shared/bench/scifact")
def test_an_index_of_several_segments_with_a_deletion_splits_into_shards_that_score_as_it_does(tmp_path, embedder):
    """The shards take only live documents, in the index's order; the statistics still add up to one index's."""
    corpus = write_small_corpus(tmp_path / "corpus", abstracts=18)
    (tmp_path / "later").mkdir()
    later = sorted(corpus.glob("scifact_01[2-7].txt"))
    for path in later:
        path.rename(tmp_path / "later" / path.name)
    layout = Layout(merge_below=0)
    update_index(corpus, tmp_path / "index", embedder=embedder, layout=layout, show_progress=False)
    for path in later:
        (tmp_path / "later" / path.name).rename(path)
    (corpus / "scifact_003.txt").unlink()
    index, _ = update_index(corpus, tmp_path / "index", embedder=embedder, layout=layout, show_progress=False)
    assert len(index.segments) == 2 and index.manifest["segments"][0]["deleted"] == ["scifact_003.txt"]
    split_index(tmp_path / "index", tmp_path / "shards", 3)
    sharded = open_shards(tmp_path / "shards")
    assert list(sharded.passages) == list(index.passages)
    for q in QUESTIONS:
        one_ids, one_scores = index.lexical_top(tokenize(q), 20)
        ids, scores = sharded.lexical_top(tokenize(q), 20)
        assert np.array_equal(ids, one_ids) and np.array_equal(scores, one_scores), q
