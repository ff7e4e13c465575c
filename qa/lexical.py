"""Lexical side: the tokenizer shared by BM25 and highlighting, and BM25 itself (bm25s)."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.tokenization import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop words dropped, Snowball-stemmed word tokens.

    Apostrophes inside words (’ or ') are dropped first, so "Russia’s" and
    "Russia's" give the same token.
    """
    text = text.lower().replace("’", "").replace("'", "")
    stop = _stopwords()
    words = [w for w in _TOKEN.findall(text) if w not in stop and (len(w) > 1 or w.isdigit())]
    return _stemmer().stemWords(words)


class BM25:
    """BM25 (bm25s, Lucene variant) over passages, saved as bm25s's own .npy/.json files."""

    def __init__(self, retriever):
        self._retriever = retriever

    @classmethod
    def build(cls, token_lists: list[list[str]]) -> "BM25":
        import bm25s

        retriever = bm25s.BM25()
        # An empty passage list still needs a valid (empty) model to save and load.
        retriever.index(token_lists or [[""]], show_progress=False)
        return cls(retriever)

    def save(self, folder: Path) -> None:
        self._retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> "BM25":
        import bm25s

        return cls(bm25s.BM25.load(str(folder), show_progress=False, mmap=False))

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every passage, in passage order (zeros where no token matches)."""
        known = [t for t in query_tokens if t in self._retriever.vocab_dict]
        n = self._retriever.scores["num_docs"]
        if not known:
            return np.zeros(n, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)

    def idf(self, token: str) -> float:
        """Robertson-Sparck Jones idf of a token over the passages (0 when unseen)."""
        tid = self._retriever.vocab_dict.get(token)
        if tid is None:
            return 0.0
        indptr = self._retriever.scores["indptr"]
        df = int(indptr[tid + 1] - indptr[tid])
        n = self._retriever.scores["num_docs"]
        return float(np.log(1 + (n - df + 0.5) / (df + 0.5)))
