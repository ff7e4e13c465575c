"""The tokenizer shared by BM25 and highlighting, and the BM25 wrapper."""

from __future__ import annotations

import numpy as np

from qa.lexical import BM25, tokenize


def test_tokenize_lowercases_stems_and_drops_stop_words_and_apostrophes():
    assert tokenize("The soldiers, REFUSING the orders") == ["soldier", "refus", "order"]
    assert tokenize("Russia’s army") == tokenize("Russia's army") == ["russia", "armi"]
    assert tokenize("a 1 b 17") == ["1", "17"]  # single letters go, numbers stay
    assert tokenize("") == []


def test_bm25_scores_idf_and_unknown_words(tmp_path):
    docs = [tokenize("glacier retreat forty metres"), tokenize("bread price rise"), tokenize("glacier bread")]
    bm25 = BM25.build(docs)
    scores = bm25.scores(tokenize("glacier retreat"))
    assert scores.shape == (3,) and scores[0] > scores[2] > 0 and scores[1] == 0
    assert np.all(bm25.scores(["unseenword"]) == 0)
    assert bm25.idf("retreat") > bm25.idf("glacier") > 0  # rarer word, higher idf
    assert bm25.idf("unseenword") == 0.0
    bm25.save(tmp_path / "bm25")
    again = BM25.load(tmp_path / "bm25")
    assert np.allclose(again.scores(tokenize("glacier retreat")), scores)


def test_empty_passage_list_gives_a_loadable_model(tmp_path):
    bm25 = BM25.build([])
    bm25.save(tmp_path / "b")
    assert BM25.load(tmp_path / "b").scores(["x"]).sum() == 0
