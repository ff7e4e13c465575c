"""The tokenizer shared by BM25 and highlighting, and BM25 over segments."""

from __future__ import annotations

import numpy as np
import pytest

from qa.lexical import BM25, Postings, tokenize

PASSAGES = [
    "Soldiers refused the order to advance on the town.",
    "The commander said he never gave the order to retreat.",
    "Women in Buryatia asked where their husbands were.",
    "Soldiers wrote to the governor: no food, no water, no orders.",
    "The glacier retreat measured forty metres this year.",
    "Bread prices rose in the town; soldiers' families wrote letters.",
]
QUERIES = ["soldiers refused orders", "retreat", "families wrote letters about food", "glacier glacier", "unseenword"]


def test_tokenize_lowercases_stems_and_drops_stop_words_and_apostrophes():
    assert tokenize("The soldiers, REFUSING the orders") == ["soldier", "refus", "order"]
    assert tokenize("Russia’s army") == tokenize("Russia's army") == ["russia", "armi"]
    assert tokenize("a 1 b 17") == ["1", "17"]  # single letters go, numbers stay
    assert tokenize("") == []


def test_bm25_scores_idf_and_unknown_words():
    docs = [tokenize("glacier retreat forty metres"), tokenize("bread price rise"), tokenize("glacier bread")]
    bm25 = BM25.build(docs)
    scores = bm25.scores(tokenize("glacier retreat"))
    assert scores.shape == (3,) and scores[0] > scores[2] > 0 and scores[1] == 0
    assert np.all(bm25.scores(["unseenword"]) == 0)
    assert bm25.idf("retreat") > bm25.idf("glacier") > 0  # rarer word, higher idf
    assert bm25.idf("unseenword") == 0.0


@pytest.mark.parametrize("query", QUERIES)
def test_scores_equal_bm25s_lucene(query):
    """Reference check: the same numbers as bm25s's Lucene BM25 over the same tokens."""
    import bm25s

    docs = [tokenize(p) for p in PASSAGES]
    reference = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    reference.index(docs, show_progress=False)
    known = [t for t in tokenize(query) if t in reference.vocab_dict]
    expected = np.asarray(reference.get_scores(known)) if known else np.zeros(len(docs))
    np.testing.assert_allclose(BM25.build(docs).scores(tokenize(query)), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("query", QUERIES)
def test_split_into_segments_scores_as_one_index(query):
    docs = [tokenize(p) for p in PASSAGES]
    whole = BM25.build(docs).scores(tokenize(query))
    parts = BM25([Postings.build(docs[:1]), Postings.build(docs[1:4]), Postings.build([]), Postings.build(docs[4:])])
    np.testing.assert_allclose(parts.scores(tokenize(query)), whole, rtol=1e-6)


def test_concat_moves_rows_where_told_and_drops_the_rest():
    docs = [tokenize(p) for p in PASSAGES]
    a, b = Postings.build(docs[:3]), Postings.build(docs[3:])
    # keep passages 5, 0, 2, 4 in that order (1 and 3 deleted)
    merged = Postings.concat([(a, np.array([0, 2]), np.array([1, 2])), (b, np.array([2, 1]), np.array([0, 3]))], 4)
    expected = Postings.build([docs[5], docs[0], docs[2], docs[4]])
    for query in QUERIES:
        np.testing.assert_allclose(BM25([merged]).scores(tokenize(query)), BM25([expected]).scores(tokenize(query)))
    np.testing.assert_array_equal(merged.lengths, expected.lengths)


def test_top_is_best_first_positive_only_and_respects_the_mask():
    docs = [tokenize(p) for p in PASSAGES]
    bm25 = BM25.build(docs)
    q = tokenize("soldiers wrote orders")
    scores = bm25.scores(q)
    rows, top = bm25.top(q, 3)
    assert list(rows) == list(np.argsort(-scores, kind="stable")[:3]) and np.all(np.diff(top) <= 0) and np.all(top > 0)
    allowed = np.zeros(len(docs), dtype=bool)
    allowed[[4, 5]] = True
    rows, _ = bm25.top(q, 3, allowed)
    assert list(rows) == [5]  # passage 4 has none of the words
    assert len(bm25.top(["unseenword"], 3)[0]) == 0


def test_save_load_round_trip(tmp_path):
    docs = [tokenize(p) for p in PASSAGES]
    postings = Postings.build(docs)
    postings.save(tmp_path / "bm25")
    again = Postings.load(tmp_path / "bm25")
    for query in QUERIES:
        np.testing.assert_array_equal(BM25([again]).scores(tokenize(query)), BM25([postings]).scores(tokenize(query)))


def test_empty_passage_list_gives_a_loadable_model(tmp_path):
    Postings.build([]).save(tmp_path / "b")
    bm25 = BM25([Postings.load(tmp_path / "b")])
    assert len(bm25.scores(["x"])) == 0 and bm25.idf("x") == 0.0 and len(bm25.top(["x"], 5)[0]) == 0
