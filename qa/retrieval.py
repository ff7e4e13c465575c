"""Hybrid search: dense and BM25 candidates fused, collapsed, highlighted; abstention."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from qa.arguments import ArgumentError, check_count, check_list, check_text, describe
from qa.citations import (
    SAME_MIN_COSINE, answer_type, best_sentence, collapse_overlaps, describe_filters, may_be_same,
    reads_as_question,
)
from qa.embedding import Embedder
from qa.index import Index
from qa.lexical import tokenize
from qa.results import MAX_DOC_ID_CHARS, Answer, Citation, Filters, Highlight, Hit  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from qa.reranker import Reranker

MAX_QUESTION_CHARS = 2000
# A follow-up reads only the turn before it; the limits keep a huge history from costing anything.
MAX_HISTORY_TURNS = 50
FOLLOW_UP_WEIGHT = 0.5  # weight of the previous question's vector in a follow-up's query
# A follow-up is steered by the start of the question before it: its subject. Any longer, and the
# history would cost more than the question (a 2,000-character turn is 256 word pieces to embed).
FOLLOW_UP_CONTEXT_CHARS = 300
FUSIONS = ("rrf", "linear")
MODES = ("hybrid", "dense", "bm25")

# BM25 runs here while the question is embedded: the two take about the same time at a
# million passages (2.5 and 3-6 ms) and release the GIL for most of it.
_LEXICAL_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="qa-bm25")

# A follow-up leans on the conversation when it refers back ("Where were they held?").
_REFERRING = re.compile(
    r"\b(they|them|their|theirs|he|him|his|she|her|hers|it|its|there|those|these|that|this|the same)\b", re.I
)


@dataclass(frozen=True)
class SearchParams:
    """How candidates are found, fused and judged.

    Args:
        fusion: "rrf" (reciprocal rank fusion) or "linear" (weighted cosine plus
            BM25 scaled by the query's best BM25 score).
        candidates: depth of each list before fusion.
        rrf_k: the RRF constant.
        dense_weight: weight of the dense list (BM25 gets 1 - dense_weight).
        sentence_weight: in hybrid search, the best ``rescore_depth`` fused passages
            gain this times the cosine of their closest sentence to the question (a
            passage is as good as its best sentence); scores are then divided by
            1 + sentence_weight to stay at most 1.
        rescore_depth: how many fused passages are re-scored that way.
        min_relevance: without a relevance model (``rerank_depth`` 0), the best
            passage's cosine similarity to the question must reach this for
            ``answered`` to be true. Calibrated with scripts/calibrate_abstention.py
            on the seed questions; see README, "Abstention".
        rerank_depth: how many of the best first-stage passages the relevance model
            (``qa.reranker``) reads; a question's are reordered by its calibrated
            probability (a statement's keep their order), which also decides
            ``answered``. 0 turns it off. Chosen with ``python -m qa bench-relevance``
            (README, "Relevance model").
    """

    fusion: str = "linear"
    candidates: int = 100
    rrf_k: int = 60
    dense_weight: float = 0.8
    sentence_weight: float = 0.5
    rescore_depth: int = 30
    min_relevance: float = 0.19
    rerank_depth: int = 8

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}. Choose from {', '.join(map(repr, FUSIONS))}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError("dense_weight must lie in [0, 1]")
        if self.rerank_depth < 0:
            raise ValueError("rerank_depth must be 0 (no reranking) or more")


def check_question(question: object) -> str:
    """The question stripped, or ArgumentError (a ValueError) saying what is wrong with it."""
    q = check_text(question, "the question").strip()
    if not q:
        raise ArgumentError("the question is empty: type a question")
    if len(q) > MAX_QUESTION_CHARS:
        raise ArgumentError(f"the question is {len(q):,} characters long; the limit is {MAX_QUESTION_CHARS:,}")
    return q


def previous_questions(history: Sequence | None) -> list[str]:
    """The user's earlier questions from a chat history, oldest first.

    Accepts a list of strings (earlier questions), of (user, assistant) pairs, or of
    {"role", "content"} messages as Gradio's chatbot keeps them: at most
    MAX_HISTORY_TURNS turns, each question valid text of at most MAX_QUESTION_CHARS
    characters. Answers are not read, so they are not checked.

    Raises:
        ArgumentError: history is not such a list, naming the turn that is wrong.
    """
    out = []
    for i, turn in enumerate(check_list(history, "history", max_items=MAX_HISTORY_TURNS)):
        name = f"history[{i}]"
        if isinstance(turn, dict):
            if turn.get("role") != "user" or not isinstance(turn.get("content"), str):
                continue  # an answer, or a message that is not text (an image)
            question = turn["content"]
        elif isinstance(turn, (list, tuple)) and turn:
            question = turn[0]
        else:
            question = turn
        if not isinstance(question, str):
            raise ArgumentError(f"{name} must be a question (text), a [question, answer] pair or a "
                                f"{{role, content}} message, got {describe(question)}")
        out.append(check_text(question, name, max_chars=MAX_QUESTION_CHARS))
    return [q.strip() for q in out if q.strip()]


def follow_up_context(earlier: Sequence[str]) -> str:
    """What a follow-up takes from the conversation: the previous question, cut to
    FOLLOW_UP_CONTEXT_CHARS at a word boundary."""
    text = earlier[-1]
    if len(text) <= FOLLOW_UP_CONTEXT_CHARS:
        return text
    words = text[:FOLLOW_UP_CONTEXT_CHARS].rsplit(None, 1)
    return words[0] if len(words) == 2 else text[:FOLLOW_UP_CONTEXT_CHARS]


def contextual_query(question: str, history: Sequence | None) -> str:
    """The text to search BM25 for: the question, preceded by the previous one when it refers back.

    The dense side embeds the two separately and adds the previous one's vector at
    FOLLOW_UP_WEIGHT (see ``Searcher.search``).
    """
    earlier = previous_questions(history)
    if earlier and _REFERRING.search(question):
        return f"{follow_up_context(earlier)} {question}"
    return question


class Searcher:
    """Answers questions from one loaded Index; thread-safe for concurrent readers."""

    def __init__(self, index: Index, embedder: Embedder, params: SearchParams | None = None, *,
                 reranker: "Reranker | None" = None):
        self.index = index
        self.embedder = embedder
        self.params = params or SearchParams()
        self.reranker = reranker if self.params.rerank_depth else None
        self._sentence_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._question_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _question_vector(self, text: str) -> np.ndarray:
        """A question's vector, embedded alone (cached).

        A follow-up needs the previous question's vector, which its own turn computed
        moments before; and embedded alone, a short question is never padded to the
        length of a long one beside it.
        """
        with self._cache_lock:
            vector = self._question_cache.get(text)
            if vector is not None:
                self._question_cache.move_to_end(text)
                return vector.copy()
        vector = self.embedder.embed([text])[0]
        with self._cache_lock:
            self._question_cache[text] = vector
            while len(self._question_cache) > 1024:
                self._question_cache.popitem(last=False)
        return vector.copy()

    def _standalone_vectors(self, doc_id: str, spans: list[tuple[int, int]]) -> np.ndarray:
        """Vectors of sentences embedded on their own: for comparing statements across documents.

        Cached by their text: the same sentence reprinted in many reports is embedded once.
        """
        text = self.index.documents[doc_id].text
        sentences = [text[a:b] for a, b in spans]
        with self._cache_lock:
            found = {s: self._sentence_cache.get(s) for s in sentences}
        missing = [s for s, v in found.items() if v is None]
        if missing:
            # Kept in hand as well as in the cache: another thread may evict it first.
            found.update(zip(missing, self.embedder.embed(missing)))
            with self._cache_lock:
                for sentence in missing:
                    self._sentence_cache[sentence] = found[sentence]
                while len(self._sentence_cache) > 4096:
                    self._sentence_cache.popitem(last=False)
        return np.stack([found[s] for s in sentences])

    def _corroboration(self, kept: "Hit", candidate: "Hit", sentences: list[tuple[int, int]]) -> tuple[int, int] | None:
        """The sentence of ``candidate`` that says what ``kept``'s answer sentence says, if any."""
        if kept.highlight is None or kept.doc_id == candidate.doc_id:
            return None
        key_span = (kept.highlight.start, kept.highlight.end)
        key_text = self.index.documents[kept.doc_id].text[key_span[0] : key_span[1]]
        key_words = set(tokenize(key_text))
        text = self.index.documents[candidate.doc_id].text
        # The same words in the same order is the same statement: no model needed
        # (wire copy reprinted by several outlets is common, and embedding is the cost).
        same_text = " ".join(key_text.split())
        for s in sentences:
            if " ".join(text[s[0] : s[1]].split()) == same_text:
                return s
        close = [s for s in sentences if may_be_same(key_words, set(tokenize(text[s[0] : s[1]])))]
        if not close:
            return None
        key_vec = self._standalone_vectors(kept.doc_id, [key_span])[0]
        sims = self._standalone_vectors(candidate.doc_id, close) @ key_vec
        best = int(np.argmax(sims))
        return close[best] if sims[best] >= SAME_MIN_COSINE else None

    def _candidate_mask(self, filters: Filters | Sequence[str] | None) -> np.ndarray | None:
        """The passages ``filters`` let through, as a bool mask; None when there is no filter.

        Raises:
            ValueError: an unknown doc_id, or a site no document comes from (naming the sites there are).
        """
        if not isinstance(filters, Filters):
            filters = Filters.of(doc_ids=filters)
        if not filters.active:
            return None
        documents = self.index.documents
        unknown = [d for d in filters.doc_ids if d not in documents]
        if unknown:
            more = f" and {len(unknown) - 10:,} more" if len(unknown) > 10 else ""
            raise ArgumentError(f"not in the index: {', '.join(unknown[:10])}{more}")
        if filters.sites:
            known = {(doc.source.site or "").casefold(): doc.source.site for doc in documents.values()}
            missing = [s for s in filters.sites if s.casefold() not in known]
            if missing:
                sites = sorted(v for v in known.values() if v)
                raise ArgumentError(f"no document from {', '.join(map(repr, missing))}; the sites in the index are "
                                    f"{', '.join(map(repr, sites)) if sites else 'none (no document has a site)'}")
        pool = filters.doc_ids or documents
        mask = np.zeros(len(self.index), dtype=bool)
        for d in pool:
            if filters.admits(d, documents[d].source):
                first, count = self.index.doc_ranges.get(d, (0, 0))
                mask[first : first + count] = True
        return mask

    def _dense(self, qv: np.ndarray, depth: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        # One query is too small to share out: OpenMP threads only spin and, on a
        # busy machine, cost ten times the search itself. (Per calling thread.)
        faiss.omp_set_num_threads(1)
        return self.index.dense_top(qv, depth, mask)

    def _lexical(self, tokens: list[str], depth: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.index.lexical_top(tokens, depth, mask)

    def _fuse(self, dense_ids, dense_scores, bm_ids, bm_scores) -> dict[int, float]:
        p, w = self.params, self.params.dense_weight
        fused: dict[int, float] = {}
        if p.fusion == "rrf":
            for rank, i in enumerate(dense_ids):
                fused[int(i)] = fused.get(int(i), 0.0) + w / (p.rrf_k + rank + 1)
            for rank, i in enumerate(bm_ids):
                fused[int(i)] = fused.get(int(i), 0.0) + (1 - w) / (p.rrf_k + rank + 1)
        else:
            top = float(bm_scores[0]) if len(bm_scores) else 1.0
            for i, s in zip(dense_ids, dense_scores):
                fused[int(i)] = w * float(s)
            for i, s in zip(bm_ids, bm_scores):
                fused[int(i)] = fused.get(int(i), 0.0) + (1 - w) * float(s) / top
        return fused

    def _start_lexical(self, query: str, mode: str, depth: int, mask: np.ndarray | None) -> Future | None:
        return None if mode == "dense" else _LEXICAL_POOL.submit(self._lexical, tokenize(query), depth, mask)

    def _rank(self, query: str, qv: np.ndarray | None, mode: str, depth: int, mask: np.ndarray | None,
              lexical: Future | None = None):
        dense_ids = dense_scores = bm_ids = bm_scores = np.zeros(0)
        if mode != "bm25":
            dense_ids, dense_scores = self._dense(qv, depth, mask)
        if mode != "dense":
            bm_ids, bm_scores = lexical.result() if lexical is not None else self._lexical(tokenize(query), depth, mask)
        cosine = dict(zip(map(int, dense_ids), map(float, dense_scores)))
        if mode == "dense":
            fused = dict(cosine)
        elif mode == "bm25":
            fused = dict(zip(map(int, bm_ids), map(float, bm_scores)))
        else:
            fused = self._fuse(dense_ids, dense_scores, bm_ids, bm_scores)
        self._read_ahead(fused, cosine, qv)
        if mode == "hybrid" and self.params.sentence_weight:
            self._rescore_by_sentence(fused, qv)
        return sorted(fused, key=lambda i: (-fused[i], i)), fused, cosine

    def _read_ahead(self, fused: dict[int, float], cosine: dict[int, float], qv: np.ndarray | None) -> None:
        """Fetch at once what the search will read of its best candidates. An index on this
        machine is read as needed; a sharded one (``qa.shards``) fetches here."""

    def _rescore_by_sentence(self, fused: dict[int, float], qv: np.ndarray) -> None:
        w, scale = self.params.sentence_weight, 1.0 + self.params.sentence_weight
        top = sorted(fused, key=lambda i: (-fused[i], i))[: self.params.rescore_depth]
        best = {i: float(self.index.sentence_cosines(i, qv).max()) for i in top}
        for i in fused:
            fused[i] = (fused[i] + w * best.get(i, 0.0)) / scale

    def _rerank(self, query: str, ranked: list[int], fused: dict[int, float], depth: int, *, reorder: bool
                ) -> tuple[list[int], dict[int, tuple[float, np.ndarray]]]:
        """The first ``depth`` passages judged by the relevance model and, when ``reorder``
        (the user asked a question, not a statement), reordered by it; the rest after them.

        Returns:
            (passage numbers best first, {passage: (relevance probability, score of each of its sentences)}).
        """
        top = ranked[:depth]
        if not top:
            return ranked, {}
        passages = [self.index.passages[i] for i in top]
        scores = self.reranker.score(query, [self.index.quote(i) for i in top],
                                     [[(a - p.start, b - p.start) for a, b in p.sentences] for p in passages])
        probability = self.reranker.relevance([s.logit for s in scores], [fused[i] for i in top])
        judged = {i: (float(pr), s.sentences) for i, pr, s in zip(top, probability, scores)}
        if not reorder:
            return ranked, judged  # a statement: the model judges and highlights, the first stage orders
        order = sorted(top, key=lambda i: (-judged[i][0], i))
        return order + ranked[depth:], judged

    def rank(
        self, query: str, *, mode: str = "hybrid", depth: int | None = None, doc_ids: Sequence[str] | None = None,
        rerank: bool = False,
    ) -> tuple[list[int], dict[int, float]]:
        """Passage numbers for a query text, best first, before collapsing (for benchmarks).

        Args:
            query: the text to search for.
            mode: "hybrid", "dense" or "bm25".
            depth: candidates taken from each list (default ``params.candidates``).
            doc_ids: restrict to these documents.
            rerank: reorder the first ``params.rerank_depth`` by the relevance model
                (if the searcher has one); their scores become its probabilities.

        Returns:
            (passage numbers best first, their scores).
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}. Choose from {', '.join(map(repr, MODES))}")
        mask = self._candidate_mask(doc_ids)
        depth = min(depth or self.params.candidates, len(self.index))
        lexical = self._start_lexical(query, mode, depth, mask)
        qv = self.embedder.embed([query])[0] if mode != "bm25" else None
        ranked, fused, _ = self._rank(query, qv, mode, depth, mask, lexical)
        if rerank and self.reranker is not None:
            ranked, judged = self._rerank(query, ranked, fused, self.params.rerank_depth,
                                          reorder=reads_as_question(query))
            fused = {**fused, **{i: r for i, (r, _) in judged.items()}}
        return ranked, fused

    def search(
        self,
        question: str,
        *,
        k: int = 5,
        history: Sequence | None = None,
        doc_ids: Sequence[str] | None = None,
        sites: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Answer:
        """The passages that answer a question, best first.

        Args:
            question: the question (at most 2,000 characters).
            k: how many passages to return.
            history: earlier turns of a chat, used when the question refers back.
            doc_ids: restrict the search to these documents.
            sites: restrict it to documents from these sites (``source.site``, any case).
            since, until: restrict it to documents dated within these days (YYYY-MM-DD, inclusive).

        Returns:
            Answer, with the filters in force; ``answered`` is false when no passage
            is relevant enough (the closest passages are still returned) or when no
            document passes the filters.

        Raises:
            ArgumentError (a ValueError): a question that is empty, over-long or not valid
                text; k not a whole number >= 1; a history, doc_ids or sites that is not a
                list of valid text (see ``previous_questions``); an unknown doc_id or site; a
                date that is not YYYY-MM-DD.
        """
        q = check_question(question)
        k = check_count(k, "k", low=1)
        earlier = previous_questions(history)
        filters = Filters.of(doc_ids, sites, since, until)
        mask = self._candidate_mask(filters)
        if len(self.index) == 0:
            return Answer(q, False, [], reason="the index holds no passages", filters=filters)
        if mask is not None and not mask.any():
            return Answer(q, False, [], reason=f"no document passes the filters ({describe_filters(filters.to_dict())})",
                          filters=filters)
        query = contextual_query(q, earlier)
        depth = min(max(self.params.candidates, 4 * k), len(self.index))
        lexical = self._start_lexical(query, "hybrid", depth, mask)
        if query != q:
            # A follow-up: the question leads and the one before steers. Adding the two
            # vectors keeps "where" in charge, where embedding the joined text let the
            # earlier question's subject take over (measured on "Where were they held?").
            now, before = self._question_vector(q), self._question_vector(follow_up_context(earlier))
            qv = now + FOLLOW_UP_WEIGHT * before
            qv = (qv / np.linalg.norm(qv)).astype(np.float32)
        else:
            qv = self._question_vector(q)
        ranked, fused, cosine = self._rank(query, qv, "hybrid", depth, mask, lexical)
        judged: dict[int, tuple[float, np.ndarray]] = {}
        if self.reranker is not None:
            # The user's own words say question or statement; a follow-up's query starts with the turn before.
            ranked, judged = self._rerank(query, ranked, fused, max(self.params.rerank_depth, k),
                                          reorder=reads_as_question(q))
        idf = {t: self.index.idf(t) for t in set(tokenize(q))}
        expects = answer_type(q)

        hits: list[Hit] = []
        # Look a little past k: passages that only repeat a better one from another
        # report become its "also_in" citations instead of taking a place.
        for i, span in collapse_overlaps(self.index, ranked, limit=3 * k):
            if len(hits) == k:
                break
            p = self.index.passages[i]
            doc = self.index.documents[p.doc_id]
            inside = [n for n, s in enumerate(p.sentences) if span[0] <= s[0] and s[1] <= span[1]]
            sentences = [p.sentences[n] for n in inside]
            if i in judged:
                # The relevance model's sentence scores pick the answering sentence.
                scores = judged[i][1][inside]
                hl = sentences[int(np.argmax(scores))] if len(sentences) else None
            else:
                similarity = self.index.sentence_cosines(i, qv)[inside]
                hl = best_sentence(doc.text, sentences, idf, similarity, expects=expects)
            if i not in cosine:
                cosine[i] = self.index.passage_cosine(i, qv)
            hit = Hit(
                rank=len(hits) + 1, doc_id=p.doc_id, title=doc.title, start=span[0], end=span[1],
                quote=doc.text[span[0] : span[1]], score=round(fused[i], 6),
                highlight=Highlight(*hl) if hl else None,
                relevance=round(judged[i][0], 4) if i in judged else None, cosine=cosine[i],
                page=doc.page_of(span[0]), source=doc.source.to_dict(),
            )
            for kept in hits:
                same = self._corroboration(kept, hit, sentences)
                if same is not None:
                    if all(c.doc_id != hit.doc_id for c in kept.also_in):
                        kept.also_in.append(Citation(hit.doc_id, hit.title, *same, page=doc.page_of(same[0]),
                                                     source=hit.source))
                    break
            else:
                hits.append(hit)
        if self.reranker is not None:
            best = max((r for r, _ in judged.values()), default=0.0)
            needed = self.reranker.calibration.threshold
            answered = best >= needed
            reason = None if answered else (
                f"no passage answers the question (best relevance {best:.2f}, needed {needed:.2f})")
        else:
            best = max(cosine.values(), default=0.0)
            answered = best >= self.params.min_relevance
            reason = None if answered else (
                f"no passage is close enough to the question (best similarity {best:.2f}, "
                f"needed {self.params.min_relevance:.2f})"
            )
        return Answer(q, answered, hits, reason=reason, filters=filters)
