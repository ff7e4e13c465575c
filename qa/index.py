"""The persistent index: documents, passages, their vectors and BM25, as segments on disk.

Layout of an index folder (all inspectable, no pickles)::

    manifest.json           format version, model and its hash, passage parameters,
                            the segments in order, with the documents deleted from each
    segments/<name>/        one immutable segment, written once:
        segment.json        counts, and the approximate index's parameters if it has one
        documents.jsonl     {"doc_id", "title", "sha256", "size", "mtime_ns", "file_sha256",
                            "extractor", "source", "pages", "text"} per document: the
                            extracted text every quote is cut from (qa.extract)
        passages.npy        int32 (doc, start, end) per passage: ``text[start:end]`` is the quote
        sentence_rows.npy   int64: passage i's sentences are rows sentence_rows[i]..[i+1]
        sentence_spans.npy  int32 (start, end) per sentence, in document offsets
        vectors.npy         float32 unit vector per passage (memory-mapped; exact scores)
        sentences.npy       float16 unit vector per sentence (memory-mapped)
        ann.faiss           IVF-SQ8 over vectors.npy, only in segments above Layout.ann_above
        bm25/               raw term frequencies and lengths (qa.lexical.Postings)

Why segments: adding one document to a million-passage index writes one small
segment and a new manifest instead of rewriting a gigabyte, and removing one marks
it deleted in the manifest. Small indexes are rewritten as a single segment on
every change, so they stay exactly what a fresh build gives. Big ones merge their
segments now and then (``Layout``). Every change commits by renaming a new
manifest into place, so a crash or a kill leaves the previous index or the new
one, and a big build commits a segment every ``Layout.batch_passages`` passages,
so a killed build resumes where it stopped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from qa.chunking import CHUNKING_VERSION, Chunker, ChunkParams, Passage, count_tiktokens
from qa.corpus import Document, DocumentError, content_hash, corpus_files, decode_document, read_file
from qa.extract import Source, extractor_name, extractors
from qa.embedding import MAX_SEQ_LENGTH, Embedder
from qa.lexical import B, BM25, K1, Postings, tokenize
from qa.npyfile import NpyRows

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
SEGMENTS = "segments"
TITLE_WORDPIECES = 32
ANN_RESCORE = 100  # candidates an approximate search re-scores exactly, at least
_COPY_ROWS = 65_536  # rows copied at a time when a segment is written: bounds memory
_REBUILD = "rebuild it with `python -m qa index`"
_OLD_FORMAT_FILES = ("documents.jsonl", "passages.jsonl", "vectors.faiss", "sentences.npy", "bm25")


class IndexFormatError(RuntimeError):
    """An index folder that cannot be read: another format, or corrupt."""


class IndexBusyError(RuntimeError):
    """Another process holds the index's writer lock."""


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


@dataclass
class UpdateReport:
    """What ``update_index`` did."""

    documents: int = 0
    passages: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    embedded: int = 0
    rebuilt: str | None = None
    segments: int = 0
    seconds: float = 0.0

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.removed or self.rebuilt)

    def to_dict(self) -> dict:
        return asdict(self)


# -- a segment ------------------------------------------------------------------


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

    def search(self, qv: np.ndarray, depth: int, dead: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` rows closest to ``qv`` (exact cosines), best first, skipping ``dead`` rows."""
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
        params = faiss.SearchParametersIVF(nprobe=int(self.meta["ann"]["nprobe"]), sel=selector)
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


def _ann_params(n: int) -> dict:
    """IVF-SQ8 settings for ``n`` vectors: about 2 sqrt(n) lists, 128 of them probed (a 16th past 2M).

    Recall@10 against exact search, with the 100 best candidates re-scored exactly,
    on SciFact vectors replicated with noise (300 claims, one thread):
    at 1M passages (2,048 lists) 0.947 / 0.978 / 0.988 / 0.992 probing 16 / 32 / 64 /
    128 lists (0.65 / 0.83 / 1.2 / 2.0 ms); at 100k (512 lists) 0.956 / 0.977 / 0.992 /
    0.998 probing 32 / 64 / 128 / 192 (0.5 / 0.6 / 0.85 / 1.1 ms).
    """
    nlist = max(64, 1 << int(round(math.log2(2 * math.sqrt(n)))))
    nlist = min(nlist, max(1, n // 39))  # k-means wants at least 39 points a centroid
    return {"type": "IVF-SQ8", "nlist": nlist, "nprobe": min(nlist, max(128, nlist // 16)),
            "trained_on": min(n, 100_000),
            "rescored": "exact cosine from vectors.npy"}


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


def _build_ann(path: Path, vectors: np.ndarray, dim: int) -> dict:
    import faiss

    n = len(vectors)
    params = _ann_params(n)
    t0 = time.perf_counter()
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, params["nlist"],
                                          faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sample = np.sort(np.random.default_rng(0).choice(n, size=params["trained_on"], replace=False))
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for lo in range(0, n, _COPY_ROWS):
        index.add(np.ascontiguousarray(vectors[lo : lo + _COPY_ROWS], dtype=np.float32))
    faiss.write_index(index, str(path))
    logger.info("trained %s over %d passages in %.1f s", params["type"], n, time.perf_counter() - t0)
    return params


# -- the index -------------------------------------------------------------------


class PassageList(Sequence):
    """The live passages of an index, in order, as Passage objects made on access."""

    def __init__(self, index: "Index"):
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        seg, row = self._index.locate(i)
        return seg.passage(row)

    def __eq__(self, other) -> bool:
        if not isinstance(other, (PassageList, list)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))


class Index:
    """A loaded index: its segments seen as one list of live passages.

    Passages are numbered 0 .. len - 1 over the live (not deleted) passages of the
    segments in order; ``passages[i]``, ``quote(i)`` and the search methods use
    these numbers.
    """

    def __init__(self, manifest: dict, segments: list[Segment]):
        self.manifest = manifest
        self.segments = segments
        restat = manifest.get("restat", {})
        self.documents: dict[str, Document] = {}
        self.entries: dict[str, dict] = {}
        self.doc_ranges: dict[str, tuple[int, int]] = {}
        self._dead: list[np.ndarray | None] = []
        dead_masks: list[np.ndarray | None] = []
        live_blocks = []
        raw = live = 0
        for seg, info in zip(segments, manifest["segments"]):
            deleted = set(info.get("deleted", ()))
            dead = []
            for k, doc in enumerate(seg.documents):
                first, count = seg.rows_of(k)
                if doc.doc_id in deleted:
                    dead.append(np.arange(first, first + count))
                    continue
                self.documents[doc.doc_id] = doc
                entry = {**seg.entries[k], "chars": len(doc.text), "passages": count}
                entry.update(restat.get(doc.doc_id, {}))
                self.entries[doc.doc_id] = entry
                self.doc_ranges[doc.doc_id] = (live, count)
                live += count
            dead_rows = np.concatenate(dead).astype(np.int64) if dead else None
            dead_mask = np.zeros(len(seg), dtype=bool)
            if dead_rows is not None:
                dead_mask[dead_rows] = True
            self._dead.append(dead_rows)
            dead_masks.append(dead_mask if dead_rows is not None else None)
            live_blocks.append(raw + np.flatnonzero(~dead_mask))
            raw += len(seg)
        self.raw_offsets = np.zeros(len(segments) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in segments], out=self.raw_offsets[1:])
        self.live_to_raw = np.concatenate(live_blocks) if live_blocks else np.zeros(0, dtype=np.int64)
        self.raw_to_live = np.full(raw, -1, dtype=np.int64)
        self.raw_to_live[self.live_to_raw] = np.arange(len(self.live_to_raw))
        self._all_live = len(self.live_to_raw) == raw
        self.bm25 = BM25([s.postings for s in segments], dead_masks)
        self.passages = PassageList(self)

    @property
    def params(self) -> IndexParams:
        return IndexParams.from_dict(self.manifest["params"])

    def __len__(self) -> int:
        return len(self.live_to_raw)

    def locate(self, i: int) -> tuple[Segment, int]:
        """The segment and row of live passage ``i``."""
        raw = int(self.live_to_raw[i])
        s = int(np.searchsorted(self.raw_offsets, raw, side="right")) - 1
        return self.segments[s], raw - int(self.raw_offsets[s])

    def doc_id_of(self, i: int) -> str:
        """The doc_id of passage ``i`` (cheaper than ``passages[i].doc_id``)."""
        seg, row = self.locate(i)
        return seg.documents[int(seg.table[row, 0])].doc_id

    def quote(self, i: int) -> str:
        p = self.passages[i]
        return self.documents[p.doc_id].text[p.start : p.end]

    def sentence_vectors_of(self, first: int, count: int = 1) -> np.ndarray:
        """Sentence vectors of passages ``first`` .. ``first + count - 1``, in order (float32)."""
        blocks = []
        for i in range(first, first + count):
            seg, row = self.locate(i)
            blocks.append(np.asarray(seg.sentences[seg.sentence_rows[row] : seg.sentence_rows[row + 1]], np.float32))
        return np.concatenate(blocks) if blocks else np.zeros((0, self.dim), dtype=np.float32)

    def passage_vectors(self, first: int, count: int) -> np.ndarray:
        """Vectors of passages ``first`` .. ``first + count - 1`` (float32 rows)."""
        out = np.zeros((count, self.dim), dtype=np.float32)
        for j in range(count):
            seg, row = self.locate(first + j)
            out[j] = seg.vectors[row]
        return out

    @property
    def dim(self) -> int:
        return int(self.manifest["model"]["dim"])

    # -- search --------------------------------------------------------------

    def dense_top(self, qv: np.ndarray, depth: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` passages closest to unit vector ``qv``, best first, with their cosines.

        Args:
            allowed: a bool mask over passages; when given, only those are scored,
                exactly.
        """
        ids, scores = [], []
        raw = self.live_to_raw[allowed] if allowed is not None else None
        for s, seg in enumerate(self.segments):
            off = self.raw_offsets[s]
            if raw is not None:
                rows = raw[(raw >= off) & (raw < off + len(seg))] - off
                rows, sc = seg.exact(qv, rows)
                rows, sc = rows[:depth], sc[:depth]
            else:
                rows, sc = seg.search(qv, depth, self._dead[s])
            ids.append(self.raw_to_live[off + rows])
            scores.append(sc)
        return _best(ids, scores, depth)

    def lexical_top(self, tokens: Sequence[str], depth: int, allowed: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` passages with the best positive BM25 score, best first, with the scores."""
        keep = None
        if allowed is not None or not self._all_live:
            keep = np.zeros(len(self.raw_to_live), dtype=bool)
            keep[self.live_to_raw if allowed is None else self.live_to_raw[allowed]] = True
        raw, scores = self.bm25.top(tokens, depth, keep)
        return self.raw_to_live[raw], scores

    def bm25_scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every live passage, in order."""
        return self.bm25.scores(tokens)[self.live_to_raw]

    def idf(self, token: str) -> float:
        return self.bm25.idf(token)

    # -- files ---------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Index":
        """Load an index folder.

        Raises:
            FileNotFoundError: there is no index at ``folder``.
            IndexFormatError: the folder is not a readable index of this format.
        """
        folder = Path(folder)
        for attempt in range(3):
            manifest = _read_manifest(folder)
            try:
                segments = [Segment.load(folder / SEGMENTS / s["name"]) for s in manifest["segments"]]
            except FileNotFoundError as exc:
                # A writer may have merged segments away between our reading the manifest and them.
                if attempt < 2 and _read_manifest(folder) != manifest:
                    continue
                raise IndexFormatError(f"{folder} is missing a file ({exc}); {_REBUILD}") from exc
            except (OSError, KeyError, ValueError, RuntimeError) as exc:
                if isinstance(exc, IndexFormatError):
                    raise
                raise IndexFormatError(f"{folder} is not a readable index ({exc}); {_REBUILD}") from exc
            return cls(manifest, segments)
        raise AssertionError("unreachable")


def _best(ids: list[np.ndarray], scores: list[np.ndarray], depth: int) -> tuple[np.ndarray, np.ndarray]:
    if not ids:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    ids, scores = np.concatenate(ids), np.concatenate(scores)
    order = np.lexsort((ids, -scores))[:depth]
    return ids[order], scores[order]


def _read_manifest(folder: Path) -> dict:
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"no index at {folder}: build one with `python -m qa index --index {folder}`")
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{folder}/{MANIFEST} is not readable ({exc}); {_REBUILD}") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{folder} has index format {manifest.get('format_version')!r}, this version reads "
            f"{FORMAT_VERSION}; rebuild it with `python -m qa index`"
        )
    return manifest


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(folder: Path, manifest: dict) -> None:
    """Make ``manifest`` the index's: written aside, then renamed over the old one (atomic)."""
    tmp = folder / f".{MANIFEST}.tmp-{os.getpid()}"
    _write_json(tmp, manifest)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST)
    _fsync_dir(folder)


def _collect_garbage(folder: Path, manifest: dict) -> None:
    """Remove segments the manifest no longer names, and temporary files of dead writers."""
    live = {s["name"] for s in manifest["segments"]}
    seg_dir = folder / SEGMENTS
    for path in seg_dir.iterdir() if seg_dir.is_dir() else ():
        if path.name.startswith(".tmp-"):
            pid = path.name.split("-")[1]
            if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
                continue
        elif path.name in live:
            continue
        shutil.rmtree(path, ignore_errors=True)
    for path in folder.glob(f".{MANIFEST}.tmp-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and _alive(int(pid))):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def write_lock(folder: str | os.PathLike):
    """Hold the index's writer lock; a second writer fails at once with a clear error."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.with_name(f".{folder.name}.lock")
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBusyError(
                f"{folder} is being updated by another process; try again when it has finished") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


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


def compatibility(manifest: dict, embedder: Embedder, params: IndexParams) -> str | None:
    """Why an index cannot be reused for this model and these parameters, or None."""
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"index format {manifest.get('format_version')} is not {FORMAT_VERSION}"
    model = manifest.get("model", {})
    if model.get("sha256") != embedder.sha256 or model.get("name") != embedder.name:
        return f"it was built with another model ({model.get('name')}, sha256 {str(model.get('sha256'))[:12]})"
    if manifest.get("params") != asdict(params):
        return f"its passage parameters {manifest.get('params')} differ from {asdict(params)}"
    built_with = manifest.get("chunking", {}).get("version")
    if built_with != CHUNKING_VERSION:
        return f"its passages were cut by chunker version {built_with}, this is version {CHUNKING_VERSION}"
    return None


# -- keeping an index up to date ---------------------------------------------------------


def corpus_changes(index: Index, corpus_dir: str | os.PathLike) -> list[str]:
    """Cheap check of a corpus against an index: names, sizes and mtimes, then hashes.

    Returns:
        list of human-readable differences, empty when the index is up to date.
    """
    diff = _diff(index, corpus_files(corpus_dir))
    return ([f"added {d}" for d in diff.added] + [f"changed {d}" for d in diff.changed]
            + [f"removed {d}" for d in diff.removed] + [f"unreadable {d}" for d in diff.newly_skipped])


@dataclass
class _Diff:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    touched: dict[str, dict] = field(default_factory=dict)  # same text, new size or mtime
    newly_skipped: list[str] = field(default_factory=list)  # were indexed or skipped for another reason


def _stat_entry(st: os.stat_result) -> dict:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _diff(index: Index, files: dict[str, Path]) -> _Diff:
    """What differs between the corpus files and the index, reading only files whose size or mtime moved.

    A document read by another extractor (or version) than the one that would read
    it now counts as changed, so it is extracted again.
    """
    diff = _Diff()
    skipped = index.manifest.get("skipped", {})
    for doc_id, path in files.items():
        st = _stat_entry(path.stat())
        entry = index.entries.get(doc_id) or skipped.get(doc_id)
        if entry is None:
            diff.added.append(doc_id)
        elif entry.get("extractor") != extractor_name(doc_id):
            (diff.changed if doc_id in index.entries else diff.added).append(doc_id)
        elif (entry.get("size"), entry.get("mtime_ns")) != (st["size"], st["mtime_ns"]):
            data = path.read_bytes()
            if entry.get("file_sha256") is not None and entry["file_sha256"] == hashlib.sha256(data).hexdigest():
                diff.touched[doc_id] = st
            else:
                (diff.changed if doc_id in index.entries else diff.added).append(doc_id)
    diff.removed = [d for d in list(index.entries) + list(skipped) if d not in files]
    return diff


def update_index(
    corpus_dir: str | os.PathLike,
    index_dir: str | os.PathLike,
    *,
    embedder: Embedder,
    params: IndexParams | None = None,
    layout: Layout | None = None,
    only: Iterable[str] | None = None,
    current: Index | None = None,
    show_progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[Index, UpdateReport]:
    """Build the index of a corpus, or bring an existing one up to date.

    Only documents that were added or changed are chunked and embedded; removed
    ones are dropped. An index built with another model or other parameters is
    rebuilt whole. A long build commits a segment every ``layout.batch_passages``
    passages; run again after a kill, it goes on from the last one.

    Args:
        only: look at just these doc_ids (a file that is gone is removed) instead
            of scanning the whole corpus folder.
        current: the index as the caller has it loaded; used instead of loading
            it again when it is still what is on disk (a big index takes seconds
            to load, an added document milliseconds to index).
        on_progress: called with (bytes of text indexed, bytes to index) as it goes.

    Returns:
        (the new Index, an UpdateReport of what changed).

    Raises:
        FileNotFoundError: the corpus folder does not exist.
        IndexBusyError: another process is updating the same index.
    """
    t0 = time.perf_counter()
    params = params or IndexParams()
    layout = layout or Layout()
    index_dir = Path(index_dir)
    if only is None:
        files = corpus_files(corpus_dir)  # raises before anything is touched
    elif not Path(corpus_dir).is_dir():
        raise FileNotFoundError(f"corpus folder not found: {corpus_dir}")
    else:
        files = {d: Path(corpus_dir) / d for d in sorted(set(only))
                 if (Path(corpus_dir) / d).is_file() and not (Path(corpus_dir) / d).is_symlink()}
    report = UpdateReport()
    with write_lock(index_dir):
        index = _open_for_update(index_dir, embedder, params, corpus_dir, report, current)
        if only is not None:
            wanted = set(only)
            known = {d for d in wanted if d in index.entries or d in index.manifest.get("skipped", {})}
            diff = _diff(_Restricted(index, wanted), files)
            diff.removed = sorted(d for d in known if d not in files)
        else:
            diff = _diff(index, files)
        report.added, report.changed, report.removed = diff.added, diff.changed, diff.removed
        if report.unchanged and not diff.touched:
            report.documents, report.passages = len(index.documents), len(index)
            report.seconds = time.perf_counter() - t0
            return index, report
        writer = _Writer(index_dir, index, embedder=embedder, params=params, layout=layout, report=report)
        index = writer.apply(files, diff, show_progress=show_progress, on_progress=on_progress)
    report.documents, report.passages, report.segments = len(index.documents), len(index), len(index.segments)
    report.seconds = time.perf_counter() - t0
    return index, report


class _Restricted:
    """An index seen through a few doc_ids only (for ``update_index(only=...)``)."""

    def __init__(self, index: Index, doc_ids: set[str]):
        self.entries = {d: e for d, e in index.entries.items() if d in doc_ids}
        self.manifest = {"skipped": {d: e for d, e in index.manifest.get("skipped", {}).items() if d in doc_ids}}


def _open_for_update(folder: Path, embedder: Embedder, params: IndexParams, corpus_dir, report: UpdateReport,
                     current: Index | None = None) -> Index:
    """The index to update: the one at ``folder``, or a new empty one when it is missing or unusable."""
    try:
        on_disk = _read_manifest(folder) if current is not None else None
        index = current if on_disk is not None and on_disk == current.manifest else Index.load(folder)
        why = compatibility(index.manifest, embedder, params)
    except FileNotFoundError:
        index, why = None, None
    except IndexFormatError as exc:
        index, why = None, str(exc)
    if index is not None and why is None:
        _collect_garbage(folder, index.manifest)
        return index
    if why:
        report.rebuilt = why
        logger.warning("rebuilding the index at %s: %s", folder, why)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _new_manifest(embedder, params, corpus_dir, folder)
    _commit(folder, manifest)
    for name in _OLD_FORMAT_FILES:
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    _collect_garbage(folder, manifest)
    return Index(manifest, [])


def _new_manifest(embedder: Embedder, params: IndexParams, corpus_dir, folder: Path) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "model": {"name": embedder.name, "sha256": embedder.sha256, "dim": embedder.dim,
                  "max_seq_length": MAX_SEQ_LENGTH, "backend": getattr(embedder, "backend", "torch")},
        "params": asdict(params),
        "chunking": {"version": CHUNKING_VERSION, "sentence_splitter": "blingfire + line breaks",
                     "tokenizer": "tiktoken cl100k_base", **asdict(params.chunk_params())},
        "vectors": {"metric": "inner_product", "normalized": True, "exact": "vectors.npy (float32)",
                    "approximate": "ann.faiss in segments above Layout.ann_above passages"},
        "sentence_vectors": {"file": "sentences.npy", "dtype": "float16",
                             "pooling": "mean of the passage's token states inside each sentence"},
        "bm25": {"formula": "Lucene (as bm25s)", "k1": K1, "b": B,
                 "statistics": "summed over all segments at query time",
                 "tokenizer": "lowercase, English stop words, Snowball stemmer"},
        "extractors": extractors(),
        "corpus": os.path.relpath(Path(corpus_dir).resolve(), folder.resolve().parent),
        "counts": {"documents": 0, "passages": 0},
        "segments": [],
        "next_segment": 1,
        "skipped": {},
        "restat": {},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class _Writer:
    """Applies a diff to an index: new documents in committed batches, then merges."""

    def __init__(self, folder: Path, index: Index, *, embedder: Embedder, params: IndexParams, layout: Layout,
                 report: UpdateReport):
        self.folder = folder
        self.index = index
        self.embedder = embedder
        self.params = params
        self.layout = layout
        self.report = report
        self.chunker = Chunker(params.chunk_params(), count_tokens=count_tiktokens,
                               count_wordpieces=embedder.count_wordpieces)

    def apply(self, files: dict[str, Path], diff: _Diff, *, show_progress: bool,
              on_progress: Callable[[int, int], None] | None) -> Index:
        manifest = json.loads(json.dumps(self.index.manifest))
        for d in diff.removed:
            manifest["skipped"].pop(d, None)
        for d, st in diff.touched.items():
            if d in manifest["skipped"]:
                manifest["skipped"][d].update(st)
            else:
                manifest["restat"][d] = st
        gone = set(diff.removed) | set(diff.changed)
        to_index = sorted(diff.added + diff.changed)
        live_before = len(self.index) - sum(self.index.doc_ranges[d][1] for d in gone if d in self.index.doc_ranges)
        added_passages = done = 0
        total = sum(files[d].stat().st_size for d in to_index)
        bar = _progress_bar(total, show_progress and total > 0)
        finished = False
        for piece, size, last in self._batches(files, to_index, manifest):
            added_passages += len(piece.table) if piece is not None else 0
            self.index = self._commit_step(manifest, piece, gone, last=last, grew=added_passages > live_before)
            gone, finished = set(), last
            done += size
            bar.update(size)
            bar.set_postfix(passages=added_passages)
            if on_progress:
                on_progress(done, total)
        if not finished:  # nothing to index: deletions, new mtimes or skipped files only
            self.index = self._commit_step(manifest, None, gone, last=True, grew=False)
        bar.close()
        return self.index

    def _batches(self, files: dict[str, Path], doc_ids: list[str], manifest: dict
                 ) -> Iterator[tuple[_Piece | None, int, bool]]:
        """(piece, bytes of the files it covers, whether it is the last) for about ``batch_passages`` passages
        at a time: read, chunked, embedded, tokenized. Unreadable files are recorded as skipped.
        """
        docs, entries, passages, size = [], [], [], 0
        for k, doc_id in enumerate(doc_ids):
            path = files[doc_id]
            st = {**_stat_entry(path.stat()), "extractor": extractor_name(doc_id)}
            size += st["size"]
            last = k == len(doc_ids) - 1
            try:
                data = read_file(doc_id, path)  # never through a symbolic link
                st["file_sha256"] = hashlib.sha256(data).hexdigest()
                doc = decode_document(doc_id, data)
            except DocumentError as exc:
                logger.warning("skipped %s", exc)
                self.report.skipped[doc_id] = str(exc)
                manifest["skipped"][doc_id] = {"reason": str(exc), **st}
            else:
                manifest["skipped"].pop(doc_id, None)
                manifest["restat"].pop(doc_id, None)
                docs.append(doc)
                entries.append(st)
                passages.extend(self.chunker.chunk(doc))
            if len(passages) >= self.layout.batch_passages or last:
                yield (self._embed(docs, entries, passages) if docs else None), size, last
                docs, entries, passages, size = [], [], [], 0

    def _embed(self, docs: list[Document], entries: list[dict], passages: list[Passage]) -> _Piece:
        by_id = {d.doc_id: i for i, d in enumerate(docs)}
        inputs = [embedding_input(docs[by_id[p.doc_id]], p, self.params, self.embedder) for p in passages]
        vectors, sentences = self.embedder.embed_passages([t for t, _ in inputs], [s for _, s in inputs])
        self.report.embedded += len(passages)
        tokens = [tokenize(_lexical_text(docs[by_id[p.doc_id]], p, self.params)) for p in passages]
        table = np.array([(by_id[p.doc_id], p.start, p.end) for p in passages], dtype=np.int32).reshape(-1, 3)
        counts = np.array([len(p.sentences) for p in passages], dtype=np.int64)
        sentence_rows = np.zeros(len(passages) + 1, dtype=np.int64)
        np.cumsum(counts, out=sentence_rows[1:])
        spans = np.array([s for p in passages for s in p.sentences], dtype=np.int32).reshape(-1, 2)
        # a document with no passage (only whitespace) still needs its row in the documents
        return _Piece(docs, entries, table, sentence_rows, spans, vectors, np.arange(len(passages)),
                      sentences.astype(np.float16), np.arange(len(spans)), Postings.build(tokens),
                      np.arange(len(passages)), (getattr(self.embedder, "backend", "torch"),))

    def _commit_step(self, manifest: dict, piece: _Piece | None, gone: set[str], *, last: bool, grew: bool) -> Index:
        """Write one change (a fresh piece and/or deletions) and the merges it calls for; commit."""
        segments = list(self.index.segments)
        infos = manifest["segments"]
        for info, seg in zip(infos, segments):
            mine = {d.doc_id for d in seg.documents} & gone
            info["deleted"] = sorted(set(info.get("deleted", ())) | mine)
        live = sum(info["passages"] - _deleted_rows(seg, info) for info, seg in zip(infos, segments))
        fresh = len(piece.table) if piece is not None else 0
        passages_change = piece is not None or bool(gone)  # not just new mtimes or skipped files
        if (passages_change and live + fresh <= self.layout.merge_below) or (last and grew):
            # Small, or the index at least doubled (a fresh build): one segment in doc_id order.
            pieces = self._live_pieces(segments, infos, manifest) + ([piece] if piece is not None else [])
            info, seg = self._write(manifest, _in_doc_order(pieces))
            kept_infos, kept_segments = [info], [seg]
        else:
            kept_infos, kept_segments = list(infos), list(segments)
            if piece is not None:
                info, seg = self._write(manifest, [piece])
                kept_infos.append(info)
                kept_segments.append(seg)
        kept_infos, kept_segments = self._merge(manifest, kept_infos, kept_segments)
        manifest["segments"] = kept_infos
        # Backends of one model agree to cosine 0.9999 (tests/test_backends.py), so an index
        # may mix them; each segment records its own, the model entry the latest writer's.
        manifest["model"]["backend"] = getattr(self.embedder, "backend", "torch")
        # Each document records the extractor that read it (a new one re-reads it);
        # this is what reads each kind now.
        manifest["extractors"] = extractors()
        manifest["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # The Index keeps its own copy: this manifest goes on changing with the next batch.
        index = Index(json.loads(json.dumps(manifest)), kept_segments)
        for d in list(manifest["restat"]):
            if d not in index.entries:
                del manifest["restat"][d]
        manifest["counts"] = {"documents": len(index.documents), "passages": len(index)}
        index.manifest["restat"], index.manifest["counts"] = dict(manifest["restat"]), dict(manifest["counts"])
        _commit(self.folder, manifest)
        _collect_garbage(self.folder, manifest)
        return index

    def _merge(self, manifest: dict, infos: list[dict], segments: list[Segment]) -> tuple[list[dict], list[Segment]]:
        """Rewrite segments with too many deletions, and merge full size tiers, until none is left to do."""
        while True:
            worn = [i for i, (info, seg) in enumerate(zip(infos, segments))
                    if info.get("deleted") and _deleted_rows(seg, info) > self.layout.max_deleted * max(len(seg), 1)]
            tiers: dict[int, list[int]] = {}
            for i, (info, seg) in enumerate(zip(infos, segments)):
                live = len(seg) - _deleted_rows(seg, info)
                tiers.setdefault(_tier(live, self.layout.merge_factor), []).append(i)
            full = next((ids for ids in tiers.values() if len(ids) >= self.layout.merge_factor), None)
            empty = [i for i, (info, seg) in enumerate(zip(infos, segments)) if _deleted_rows(seg, info) == len(seg)
                     and {d.doc_id for d in seg.documents} <= set(info.get("deleted", ()))]
            if empty:  # nothing left alive: dropped, not rewritten
                infos = [x for i, x in enumerate(infos) if i not in empty]
                segments = [x for i, x in enumerate(segments) if i not in empty]
                continue
            chosen = worn[:1] or full
            if not chosen:
                return infos, segments
            pieces = self._live_pieces([segments[i] for i in chosen], [infos[i] for i in chosen], manifest)
            info, seg = self._write(manifest, pieces)
            at = chosen[0]
            infos = [x for i, x in enumerate(infos) if i not in chosen]
            segments = [x for i, x in enumerate(segments) if i not in chosen]
            infos.insert(min(at, len(infos)), info)
            segments.insert(min(at, len(segments)), seg)

    def _live_pieces(self, segments: Sequence[Segment], infos: Sequence[dict], manifest: dict) -> list[_Piece]:
        restat = manifest.get("restat", {})
        pieces = []
        for seg, info in zip(segments, infos):
            deleted = set(info.get("deleted", ()))
            entries = [{**e, **restat.get(d.doc_id, {})} for d, e in zip(seg.documents, seg.entries)]
            piece = _Piece.of_segment(seg, entries)
            keep = [k for k, d in enumerate(seg.documents) if d.doc_id not in deleted]
            pieces.append(piece if len(keep) == len(seg.documents) else piece.select(keep))
        return pieces

    def _write(self, manifest: dict, pieces: list[_Piece]) -> tuple[dict, Segment]:
        name = f"s{manifest['next_segment']:06d}"
        manifest["next_segment"] += 1
        seg_dir = self.folder / SEGMENTS
        seg_dir.mkdir(parents=True, exist_ok=True)
        tmp = seg_dir / f".tmp-{os.getpid()}-{name}"
        try:
            meta = _write_segment(tmp, pieces, dim=self.embedder.dim, layout=self.layout)
            os.rename(tmp, seg_dir / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(seg_dir)
        info = {"name": name, "passages": meta["passages"], "documents": meta["documents"], "deleted": [],
                "ann": meta["ann"], "embedded_with": meta["embedded_with"]}
        return info, Segment.load(seg_dir / name)


def _tier(passages: int, factor: int) -> int:
    """The size tier of a segment: t where factor**t <= passages < factor**(t + 1) (0 for none)."""
    tier = 0
    while passages >= factor ** (tier + 1):
        tier += 1
    return tier


def _deleted_rows(seg: Segment, info: dict) -> int:
    deleted = set(info.get("deleted", ()))
    if not deleted:
        return 0
    return sum(seg.rows_of(k)[1] for k, d in enumerate(seg.documents) if d.doc_id in deleted)


def _in_doc_order(pieces: list[_Piece]) -> list[_Piece]:
    """The same documents as one piece per document, sorted by doc_id (the order of a fresh build)."""
    where = sorted((doc.doc_id, p, k) for p, piece in enumerate(pieces) for k, doc in enumerate(piece.documents))
    return [pieces[p].select([k]) for _, p, k in where]


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="Indexing documents", disable=not enabled)
