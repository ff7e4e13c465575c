"""Keeping an index up to date: ``update_index`` reads, chunks, embeds and writes new documents in
committed batches, marks removed ones deleted, and merges segments (``Layout``).

A big build commits a segment every ``Layout.batch_passages`` passages, so a killed
build resumes where it stopped. Small indexes are rewritten as one segment on every
change, so they stay exactly what a fresh build gives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from qa.chunking import Chunker, Passage, count_tiktokens
from qa.corpus import Document, DocumentError, corpus_files, decode_document, read_file
from qa.embedding import Embedder, WordPieces
from qa.extract import extractor_name, extractors
from qa.index.changes import _diff, _Diff, _Restricted, _stat_entry
from qa.index.manifest import (
    _OLD_FORMAT_FILES, SEGMENTS, IndexFormatError, _collect_garbage, _commit, _fsync_dir, _new_manifest,
    _read_manifest, compatibility, write_lock,
)
from qa.index.params import IndexParams, Layout, _lexical_text, embedding_input
from qa.index.reader import Index
from qa.index.segment import Segment, _Piece, _write_segment
from qa.lexical import Postings, tokenize

logger = logging.getLogger(__name__)

# Passages per call of the embedder: enough that sorting them by length leaves little padding,
# few enough that the first call starts soon and reading keeps ahead of it.
_EMBED_PASSAGES = 512
# Documents read and chunked ahead of the embedder at most: bounds the memory of the queue.
_READ_AHEAD_DOCUMENTS = 64


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
    # Where the seconds went: "reading" (files read and extracted) and "chunking" (passages cut,
    # model inputs and BM25 tokens made) run in a thread beside "embedding"; "waiting" is the
    # embedder waiting for them, "writing" the segments made, written and committed (merges included).
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.removed or self.rebuilt)

    def to_dict(self) -> dict:
        return asdict(self)


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
    make_writer: Callable[[Index, "_Diff", UpdateReport], "_Writer"] | None = None,
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
        make_writer: builds the writer once there is work, from the opened index, what
            changed and the report (default: ``_Writer``, in this process;
            ``qa.distributed`` passes one that reads, chunks and embeds on Ray).

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
        if make_writer is None:
            writer = _Writer(index_dir, index, embedder=embedder, params=params, layout=layout, report=report)
        else:
            writer = make_writer(index, diff, report)
        index = writer.apply(files, diff, show_progress=show_progress, on_progress=on_progress)
    report.documents, report.passages, report.segments = len(index.documents), len(index), len(index.segments)
    report.seconds = time.perf_counter() - t0
    return index, report


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
        self.timings = report.timings
        for phase in ("reading", "chunking", "embedding", "waiting", "writing"):
            self.timings.setdefault(phase, 0.0)

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
            t0 = time.perf_counter()
            self.index = self._commit_step(manifest, piece, gone, last=last, grew=added_passages > live_before)
            self.timings["writing"] += time.perf_counter() - t0
            gone, finished = set(), last
            done += size
            bar.update(size)
            bar.set_postfix(passages=added_passages)
            if on_progress:
                on_progress(done, total)
        if not finished:  # nothing to index: deletions, new mtimes or skipped files only
            t0 = time.perf_counter()
            self.index = self._commit_step(manifest, None, gone, last=True, grew=False)
            self.timings["writing"] += time.perf_counter() - t0
        bar.close()
        return self.index

    def _batches(self, files: dict[str, Path], doc_ids: list[str], manifest: dict
                 ) -> Iterator[tuple[_Piece | None, int, bool]]:
        """(piece, bytes of the files it covers, whether it is the last) for about ``batch_passages`` passages
        at a time: read, chunked, embedded, tokenized. Unreadable files are recorded as skipped.

        Files are read, extracted, chunked and tokenized by a thread of their own (``_Reader``),
        a bounded number of documents ahead, while this one embeds: the model does not wait for
        them. Passages go to the model ``_EMBED_PASSAGES`` at a time, which it sorts by length.
        """
        chunk = max(1, min(_EMBED_PASSAGES, self.layout.batch_passages))
        docs, entries, passages, size = [], [], [], 0
        inputs, tokens, vectors, sentences = [], [], [], []

        def embed_pending() -> None:
            if len(inputs) > sum(len(v) for v in vectors):
                todo = inputs[sum(len(v) for v in vectors):]
                t0 = time.perf_counter()
                v, s = self.embedder.embed_passages([text for text, _ in todo], [spans for _, spans in todo])
                self.timings["embedding"] += time.perf_counter() - t0
                vectors.append(v)
                sentences.append(s)

        reader = _Reader(files, doc_ids, self._prepare, ahead=_READ_AHEAD_DOCUMENTS)
        with reader:
            for k, read in enumerate(reader):
                size += read.entry["size"]
                last = k == len(doc_ids) - 1
                if read.error is not None:
                    logger.warning("skipped %s", read.error)
                    self.report.skipped[read.doc_id] = read.error
                    manifest["skipped"][read.doc_id] = {"reason": read.error, **read.entry}
                else:
                    manifest["skipped"].pop(read.doc_id, None)
                    manifest["restat"].pop(read.doc_id, None)
                    docs.append(read.doc)
                    entries.append(read.entry)
                    passages.extend(read.passages)
                    inputs.extend(read.inputs)
                    tokens.extend(read.tokens)
                full = len(passages) >= self.layout.batch_passages
                if full or last or len(inputs) - sum(len(v) for v in vectors) >= chunk:
                    embed_pending()
                if full or last:
                    t0 = time.perf_counter()
                    piece = self._piece(docs, entries, passages, tokens, vectors, sentences) if docs else None
                    self.timings["writing"] += time.perf_counter() - t0  # the arrays and postings of the segment
                    yield piece, size, last
                    docs, entries, passages, size = [], [], [], 0
                    inputs, tokens, vectors, sentences = [], [], [], []
        self.timings["waiting"] += reader.waited

    def _prepare(self, doc_id: str, path: Path) -> "_Read":
        """One file made ready for the model (in the reading thread); see ``read_and_chunk``."""
        return read_and_chunk(doc_id, path, self.chunker, self.params, self.embedder, timings=self.timings)

    def _piece(self, docs: list[Document], entries: list[dict], passages: list[Passage], tokens: list[list[str]],
               vectors: list[np.ndarray], sentences: list[np.ndarray]) -> _Piece:
        by_id = {d.doc_id: i for i, d in enumerate(docs)}
        dim = self.embedder.dim
        vectors = np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
        sentences = np.concatenate(sentences) if sentences else np.zeros((0, dim), dtype=np.float32)
        self.report.embedded += len(passages)
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


@dataclass
class _Read:
    """A corpus file as the reading thread hands it over: its stat entry, then the document, its
    passages, their model inputs (text, sentence spans) and BM25 tokens, or why it cannot be read."""

    doc_id: str
    entry: dict
    doc: Document | None = None
    error: str | None = None
    passages: list[Passage] = field(default_factory=list)
    inputs: list[tuple[str, list[tuple[int, int]]]] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)


def read_and_chunk(doc_id: str, path: Path, chunker: Chunker, params: IndexParams, pieces: WordPieces, *,
                   timings: dict[str, float] | None = None) -> _Read:
    """One corpus file read, extracted and chunked, with its passages' model inputs and BM25 tokens;
    a file that cannot be read gives its stat entry and why.

    Args:
        pieces: counts the model's word pieces (the embedder, or its tokenizer alone).
        timings: if given, gains the seconds spent "reading" and "chunking".
    """
    t0 = time.perf_counter()
    entry = {**_stat_entry(path.stat()), "extractor": extractor_name(doc_id)}
    try:
        data = read_file(doc_id, path)  # never through a symbolic link
        entry["file_sha256"] = hashlib.sha256(data).hexdigest()
        doc = decode_document(doc_id, data)
    except DocumentError as exc:
        return _Read(doc_id, entry, error=str(exc))
    finally:
        t1 = time.perf_counter()
        if timings is not None:
            timings["reading"] += t1 - t0
    passages = chunker.chunk(doc)
    inputs = [embedding_input(doc, p, params, pieces) for p in passages]
    tokens = [tokenize(_lexical_text(doc, p, params)) for p in passages]
    if timings is not None:
        timings["chunking"] += time.perf_counter() - t1
    return _Read(doc_id, entry, doc, None, passages, inputs, tokens)


_DONE = object()


class _Reader:
    """``prepare(doc_id, path)`` of each file, in order, computed by a thread of its own at most
    ``ahead`` documents ahead of the one iterating (a bounded queue: memory stays bounded).

    An exception in the thread is raised where the iteration is; leaving the ``with`` block
    (done, failed or interrupted) stops the thread.
    """

    def __init__(self, files: dict[str, Path], doc_ids: Sequence[str], prepare: Callable[[str, Path], _Read], *,
                 ahead: int):
        self._files, self._doc_ids, self._prepare = files, list(doc_ids), prepare
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qa-read", daemon=True)
        self.waited = 0.0  # seconds the iterating thread waited for the next document

    def __enter__(self) -> "_Reader":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for doc_id in self._doc_ids:
                if not self._put(self._prepare(doc_id, self._files[doc_id])):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the iterating thread, which raises it
            self._put(exc)

    def __iter__(self) -> Iterator[_Read]:
        while True:
            t0 = time.perf_counter()
            item = self._queue.get()
            self.waited += time.perf_counter() - t0
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


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
    """The same documents sorted by doc_id (the order of a fresh build): one piece per document,
    or the pieces as they are when they already are in that order (a fresh build's own batch)."""
    ids = [doc.doc_id for piece in pieces for doc in piece.documents]
    if all(a < b for a, b in zip(ids, ids[1:])):
        return pieces
    where = sorted((doc.doc_id, p, k) for p, piece in enumerate(pieces) for k, doc in enumerate(piece.documents))
    return [pieces[p].select([k]) for _, p, k in where]


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="Indexing documents", disable=not enabled)
