"""What shapes an index and how it is laid out, and the text of a passage that is embedded and indexed."""

from __future__ import annotations

from dataclasses import dataclass

from qa.chunking import ChunkParams, Passage
from qa.corpus import Document
from qa.embedding import MAX_SEQ_LENGTH, Embedder

TITLE_WORDPIECES = 32


@dataclass(frozen=True)
class IndexParams:
    """Everything besides the model that shapes an index; recorded in its manifest.

    Args:
        max_tokens: passage budget in cl100k_base tokens.
        overlap_tokens: whole sentences up to this many tokens repeat in the next passage.
        title_prefix: embed and BM25-index each passage with its document's title before it.
    """

    max_tokens: int = 128
    overlap_tokens: int = 32
    title_prefix: bool = False

    def chunk_params(self) -> ChunkParams:
        room = MAX_SEQ_LENGTH - 2 - (TITLE_WORDPIECES + 1 if self.title_prefix else 0)
        return ChunkParams(max_tokens=self.max_tokens, overlap_tokens=self.overlap_tokens, max_wordpieces=room)

    @classmethod
    def from_dict(cls, data: dict) -> "IndexParams":
        return cls(**{k: data[k] for k in ("max_tokens", "overlap_tokens", "title_prefix")})


@dataclass(frozen=True)
class Layout:
    """How passages are stored and searched. It never changes which passages exist.

    Args:
        merge_below: an index of at most this many passages is kept as one segment
            and rewritten whole on every change.
        ann_above: a segment of more passages than this is searched through an
            IVF-SQ8 index (then re-scored exactly); smaller ones are scanned whole.
            Measured with ``python -m qa bench``: a flat scan of 50k passages takes
            about 2 ms, of 1M about 50 ms.
        merge_factor: when this many segments share a size tier (a power of it),
            they are merged into one.
        batch_passages: a build commits a segment every this many passages: what a
            killed build loses at most.
        max_deleted: a segment whose deleted share of passages passes this is
            rewritten without them.
    """

    merge_below: int = 5_000
    ann_above: int = 50_000
    merge_factor: int = 8
    batch_passages: int = 8_192
    max_deleted: float = 0.25


# -- what is embedded --------------------------------------------------------------


def embedding_input(doc: Document, passage: Passage, params: IndexParams, embedder: Embedder) -> tuple[str, list[tuple[int, int]]]:
    """The text the model embeds for a passage, and its sentences' offsets in that text."""
    text = embedding_text(doc, passage, params, embedder)
    shift = len(text) - (passage.end - passage.start) - passage.start
    return text, [(a + shift, b + shift) for a, b in passage.sentences]


def embedding_text(doc: Document, passage: Passage, params: IndexParams, embedder: Embedder | None = None) -> str:
    quote = doc.text[passage.start : passage.end]
    if not params.title_prefix or passage.start == 0 or not doc.title:
        return quote
    title = doc.title
    if embedder is not None and embedder.count_wordpieces([title])[0] > TITLE_WORDPIECES:
        words = title.split()
        while words and embedder.count_wordpieces([" ".join(words)])[0] > TITLE_WORDPIECES:
            words.pop()
        title = " ".join(words)
    return f"{title}\n{quote}"


def _lexical_text(doc: Document, passage: Passage, params: IndexParams) -> str:
    quote = doc.text[passage.start : passage.end]
    return f"{doc.title}\n{quote}" if params.title_prefix and passage.start != 0 else quote
