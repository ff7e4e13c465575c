"""Question answering over a document corpus with verbatim, cited quotes."""

from __future__ import annotations

# First, before any library that could call out is imported: nothing leaves the machine.
from qa.offline import stay_offline

stay_offline()

from qa.chunking import Chunker, ChunkParams, Passage, split_sentences
from qa.citations import render_text
from qa.collection import Collection, DocumentInfo
from qa.corpus import Document, DocumentError, load_corpus
from qa.embedding import Embedder, ModelError
from qa.index import Index, IndexBusyError, IndexFormatError, IndexParams, Layout, UpdateReport, update_index
from qa.reranker import Calibration, Reranker, RerankerError
from qa.reranker_backends import load_reranker
from qa.retrieval import Answer, Hit, Searcher, SearchParams

__all__ = [
    # chunking
    "Chunker", "ChunkParams", "Passage", "split_sentences",
    # citations
    "render_text",
    # collection
    "Collection", "DocumentInfo",
    # corpus
    "Document", "DocumentError", "load_corpus",
    # embedding
    "Embedder", "ModelError",
    # index
    "Index", "IndexBusyError", "IndexFormatError", "IndexParams", "Layout", "UpdateReport", "update_index",
    # offline
    "stay_offline",
    # reranker, reranker_backends
    "Calibration", "Reranker", "RerankerError", "load_reranker",
    # retrieval
    "Answer", "Hit", "Searcher", "SearchParams",
]
