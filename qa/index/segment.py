"""A segment: one immutable folder of passages with their documents, vectors and postings.

    segments/<name>/
        segment.json        counts, and the approximate index's parameters if it has one
        documents.jsonl     {"doc_id", "title", "sha256", "size", "mtime_ns", "file_sha256",
                            "extractor", "source", "pages", "text"} per document: the
                            extracted text every quote is cut from (qa.extract)
        passages.npy        int32 (doc, start, end) per passage: ``text[start:end]`` is the quote
        sentence_rows.npy   int64: passage i's sentences are rows sentence_rows[i]..[i+1]
        sentence_spans.npy  int32 (start, end) per sentence, in document offsets
        vectors.npy         float32 unit vector per passage (read row by row; exact scores)
        sentences.npy       float16 unit vector per sentence (read row by row)
        ann.faiss           IVF-SQ8 over vectors.npy, only in segments above Layout.ann_above
        bm25/               raw term frequencies and lengths (qa.lexical.Postings)

``Segment`` reads and searches one; ``_Piece`` is passages on their way into a new
one (fresh from the embedder, or cut from old segments by a merge), and
``_write_segment`` writes pieces as a segment folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from qa.chunking import Passage
from qa.corpus import Document, content_hash
from qa.extract import Source
from qa.index.ann import ANN_RESCORE, MIN_PROBES, _build_ann
from qa.index.manifest import IndexFormatError, _fsync_tree, _write_json
from qa.index.params import Layout
from qa.lexical import Postings
from qa.npyfile import NpyRows

_COPY_ROWS = 65_536  # rows copied at a time when a segment is written: bounds memory


class Segment:
    """One immutable folder of passages with their documents, vectors and postings."""

    def __init__(self, name: str, meta: dict, documents: list[Document], entries: list[dict], table: np.ndarray,
                 sentence_rows: np.ndarray, spans: np.ndarray, vectors: np.ndarray, sentences: np.ndarray,
                 postings: Postings, ann=None):
        self.name = name
        self.meta = meta
        self.documents = documents
        self.entries = entries
        self.table = table
        self.sentence_rows = sentence_rows
        self.spans = spans
        self.vectors = vectors
        self.sentences = sentences
        self.postings = postings
        self.ann = ann
        self._flat = None
        # passages of a document are contiguous, documents in file order
        doc_col = table[:, 0] if len(table) else np.zeros(0, dtype=np.int32)
        self.doc_first = np.searchsorted(doc_col, np.arange(len(documents) + 1)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.table)

    def rows_of(self, doc: int) -> tuple[int, int]:
        """(first row, count) of document number ``doc``."""
        return int(self.doc_first[doc]), int(self.doc_first[doc + 1] - self.doc_first[doc])

    def passage(self, row: int) -> Passage:
        doc, start, end = (int(x) for x in self.table[row])
        lo, hi = self.sentence_rows[row], self.sentence_rows[row + 1]
        sentences = tuple((int(a), int(b)) for a, b in self.spans[lo:hi])
        return Passage(self.documents[doc].doc_id, start, end, sentences)

    def search(self, qv: np.ndarray, depth: int, dead: np.ndarray | None, *, probe_share: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` rows closest to ``qv`` (exact cosines), best first, skipping ``dead`` rows.

        Args:
            probe_share: probe at most this share of the approximate index's lists (at
                least MIN_PROBES) instead of its own setting: a shard probes what one index
                over the whole collection would (``qa.shards``).
        """
        import faiss

        depth = min(depth, len(self))
        if depth <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(dead)) if dead is not None and len(dead) else None
        if self.ann is None:
            if self._flat is None:
                flat = faiss.IndexFlatIP(self.vectors.shape[1])
                flat.add(np.ascontiguousarray(self.vectors, dtype=np.float32))
                self._flat = flat
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            scores, rows = self._flat.search(qv[None, :], depth, params=params)
            keep = rows[0] >= 0
            return rows[0][keep], scores[0][keep]
        ann = self.meta["ann"]
        nprobe = int(ann["nprobe"])
        if probe_share is not None:
            nprobe = min(nprobe, max(MIN_PROBES, math.ceil(probe_share * int(ann["nlist"]))))
        params = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
        # SQ8 codes rank well but score coarsely: take a few more candidates than asked
        # and re-score them exactly from the float32 vectors.
        _, rows = self.ann.search(qv[None, :], max(depth, ANN_RESCORE), params=params)
        rows, scores = self.exact(qv, np.sort(rows[0][rows[0] >= 0]))
        return rows[:depth], scores[:depth]

    def exact(self, qv: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` (ascending) ordered by exact cosine to ``qv``, best first, with the cosines."""
        if len(rows) == 0:
            return rows.astype(np.int64), np.zeros(0, dtype=np.float32)
        scores = np.asarray(self.vectors[rows], dtype=np.float32) @ qv
        order = np.argsort(-scores, kind="stable")
        return rows[order].astype(np.int64), scores[order]

    # -- files ---------------------------------------------------------------

    @classmethod
    def load(cls, folder: Path) -> "Segment":
        """Read a segment folder; large arrays are memory-mapped, documents checked against their hashes."""
        import faiss

        meta = json.loads((folder / "segment.json").read_text(encoding="utf-8"))
        documents, entries = [], []
        with open(folder / "documents.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                text, source, pages = row.pop("text"), row.pop("source", None), row.pop("pages", None)
                if content_hash(text) != row["sha256"]:
                    raise IndexFormatError(f"{folder}: the text of {row['doc_id']} no longer matches its hash")
                documents.append(Document(row["doc_id"], row["title"], text, Source.from_dict(source),
                                          tuple(pages) if pages is not None else None))
                entries.append(row)
        load = lambda name: NpyRows(folder / name)  # noqa: E731
        table = np.load(folder / "passages.npy", allow_pickle=False)
        sentence_rows = np.load(folder / "sentence_rows.npy", allow_pickle=False)
        spans = load("sentence_spans.npy")
        vectors, sentences = load("vectors.npy"), load("sentences.npy")
        postings = Postings.load(folder / "bm25")
        n = len(table)
        if not (len(vectors) == len(postings) == n == meta["passages"] and len(sentence_rows) == n + 1
                and len(sentences) == len(spans) == sentence_rows[-1] == meta["sentences"]):
            raise IndexFormatError(f"{folder}: its files disagree on the number of passages or sentences")
        if n:
            lengths = np.array([len(d.text) for d in documents])
            docs = table[:, 0]
            starts, ends = table[:, 1], table[:, 2]
            if (docs.min() < 0 or docs.max() >= len(documents) or np.any(np.diff(docs) < 0)
                    or np.any(starts < 0) or np.any(ends > lengths[docs]) or np.any(starts >= ends)):
                raise IndexFormatError(f"{folder}: a passage no longer fits inside its document")
        ann = faiss.read_index(str(folder / "ann.faiss")) if meta.get("ann") else None
        if ann is not None and ann.ntotal != n:
            raise IndexFormatError(f"{folder}: ann.faiss holds {ann.ntotal} vectors for {n} passages")
        return cls(folder.name, meta, documents, entries, table, sentence_rows, spans, vectors, sentences,
                   postings, ann)


@dataclass
class _Piece:
    """Passages to write into a new segment, with where to copy their vectors from.

    ``vectors[vector_rows]`` are the passages' vectors, ``sentences[sentence_src]``
    their sentences' vectors and ``postings`` rows ``postings_rows`` their terms.
    """

    documents: list[Document]
    entries: list[dict]
    table: np.ndarray
    sentence_rows: np.ndarray
    spans: np.ndarray
    vectors: np.ndarray
    vector_rows: np.ndarray
    sentences: np.ndarray
    sentence_src: np.ndarray
    postings: Postings
    postings_rows: np.ndarray
    embedded_with: tuple[str, ...]  # the embedder backends that made the vectors

    @classmethod
    def of_segment(cls, seg: Segment, entries: list[dict] | None = None) -> "_Piece":
        n, m = len(seg), len(seg.spans)
        return cls(seg.documents, entries or seg.entries, np.asarray(seg.table), np.asarray(seg.sentence_rows),
                   seg.spans, seg.vectors, np.arange(n), seg.sentences, np.arange(m), seg.postings, np.arange(n),
                   tuple(seg.meta.get("embedded_with", ())))

    def select(self, docs: Sequence[int]) -> "_Piece":
        """The piece cut down to documents ``docs`` (ascending numbers)."""
        docs = np.asarray(docs, dtype=np.int64)
        doc_col = self.table[:, 0]
        firsts = np.searchsorted(doc_col, docs, side="left")
        counts = np.searchsorted(doc_col, docs, side="right") - firsts
        rows = _ranges(firsts, counts)
        table = np.array(self.table[rows], dtype=np.int32)
        renumber = np.zeros(len(self.documents), dtype=np.int32)
        renumber[docs] = np.arange(len(docs))
        table[:, 0] = renumber[table[:, 0]]
        s_first, s_count = self.sentence_rows[rows], np.diff(self.sentence_rows)[rows]
        sent = _ranges(s_first, s_count)
        sentence_rows = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(s_count, out=sentence_rows[1:])
        return _Piece([self.documents[i] for i in docs], [self.entries[i] for i in docs], table, sentence_rows,
                      np.asarray(self.spans[sent]), self.vectors, self.vector_rows[rows], self.sentences,
                      self.sentence_src[sent], self.postings, self.postings_rows[rows], self.embedded_with)


def _ranges(firsts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``range(first, first + count)`` for each pair, as one array."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.asarray(firsts, dtype=np.int64) - np.cumsum(counts) + counts, counts)
    return starts + np.arange(total)


def _write_segment(folder: Path, pieces: Sequence[_Piece], *, dim: int, layout: Layout) -> dict:
    """Write pieces, in order, as one segment folder; returns its segment.json."""
    folder.mkdir(parents=True)
    documents = [d for p in pieces for d in p.documents]
    entries = [e for p in pieces for e in p.entries]
    doc_offsets = np.cumsum([0] + [len(p.documents) for p in pieces])
    tables = []
    for p, off in zip(pieces, doc_offsets):
        t = np.array(p.table, dtype=np.int32)
        t[:, 0] += off
        tables.append(t)
    table = np.concatenate(tables) if tables else np.zeros((0, 3), dtype=np.int32)
    counts = np.concatenate([np.diff(p.sentence_rows) for p in pieces]) if pieces else np.zeros(0, dtype=np.int64)
    sentence_rows = np.zeros(len(table) + 1, dtype=np.int64)
    np.cumsum(counts, out=sentence_rows[1:])
    n, m = len(table), int(sentence_rows[-1])

    with open(folder / "documents.jsonl", "w", encoding="utf-8") as f:
        for doc, entry in zip(documents, entries):
            row = {**entry, "doc_id": doc.doc_id, "title": doc.title, "sha256": doc.sha256,
                   "source": doc.source.to_dict(), "pages": list(doc.pages) if doc.pages is not None else None,
                   "text": doc.text}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    np.save(folder / "passages.npy", table, allow_pickle=False)
    np.save(folder / "sentence_rows.npy", sentence_rows, allow_pickle=False)
    spans = (np.concatenate([np.asarray(p.spans, dtype=np.int32) for p in pieces]) if pieces
             else np.zeros((0, 2), np.int32))
    np.save(folder / "sentence_spans.npy", spans.reshape(-1, 2), allow_pickle=False)
    vectors = _copy_rows(folder / "vectors.npy", [(p.vectors, p.vector_rows) for p in pieces], n, dim, np.float32)
    _copy_rows(folder / "sentences.npy", [(p.sentences, p.sentence_src) for p in pieces], m, dim, np.float16)
    by_source: dict[int, tuple[Postings, list, list]] = {}
    start = 0
    for p in pieces:
        entry = by_source.setdefault(id(p.postings), (p.postings, [], []))
        entry[1].append(p.postings_rows)
        entry[2].append(np.arange(start, start + len(p.table)))
        start += len(p.table)
    Postings.concat([(post, np.concatenate(src), np.concatenate(dst)) for post, src, dst in by_source.values()],
                    n).save(folder / "bm25")
    meta = {"passages": n, "sentences": m, "documents": len(documents), "ann": None,
            "embedded_with": sorted({b for p in pieces for b in p.embedded_with})}
    if n > layout.ann_above:
        meta["ann"] = _build_ann(folder / "ann.faiss", vectors, dim)
    _write_json(folder / "segment.json", meta)
    del vectors
    _fsync_tree(folder)
    return meta


def _copy_rows(path: Path, sources: Sequence[tuple[np.ndarray, np.ndarray]], n: int, dim: int, dtype) -> np.ndarray:
    """Write ``source[rows]`` of each source, in order, as one .npy of ``n`` rows, a block at a time."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, dim))
    at = 0
    for source, rows in sources:
        for lo in range(0, len(rows), _COPY_ROWS):
            block = rows[lo : lo + _COPY_ROWS]
            contiguous = len(block) and block[-1] - block[0] == len(block) - 1
            out[at : at + len(block)] = source[block[0] : block[-1] + 1] if contiguous else source[block]
            at += len(block)
    out.flush()
    return out
