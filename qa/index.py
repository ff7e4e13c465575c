"""The persistent index: passages, their vectors (FAISS) and BM25, as a folder of files.

Layout of an index folder (all inspectable, no pickles)::

    manifest.json     format version, model and its hash, passage parameters,
                      a content hash per document, counts
    documents.jsonl   {"doc_id", "title", "sha256", "text"} per document
    passages.jsonl    {"doc_id", "start", "end", "sentences", "quote"} per passage,
                      in vector order
    vectors.faiss     FAISS inner-product index over unit vectors
    sentences.npy     float16 unit vector per sentence of each passage, passages in
                      order (pooled from the passage's own forward pass)
    bm25/             bm25s's files (.npy arrays and .json vocabulary)

Writes build a sibling temporary folder and rename it into place, so a crash or
a kill leaves either the old index or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from qa.chunking import CHUNKING_VERSION, Chunker, ChunkParams, Passage, count_tiktokens
from qa.corpus import Document, DocumentError, content_hash, corpus_files, read_document
from qa.embedding import MAX_SEQ_LENGTH, Embedder
from qa.lexical import BM25, tokenize

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TITLE_WORDPIECES = 32


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
    seconds: float = 0.0

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.removed or self.rebuilt)

    def to_dict(self) -> dict:
        return asdict(self)


class Index:
    """A loaded index: documents, passages in vector order, FAISS and BM25."""

    def __init__(
        self, manifest: dict, documents: dict[str, Document], passages: list[Passage], vectors, bm25: BM25,
        sentence_vectors: np.ndarray,
    ):
        self.manifest = manifest
        self.documents = documents
        self.passages = passages
        self.vectors = vectors
        self.bm25 = bm25
        self.sentence_vectors = sentence_vectors
        self.sentence_rows = np.zeros(len(passages) + 1, dtype=np.int64)
        np.cumsum([len(p.sentences) for p in passages], out=self.sentence_rows[1:])
        self.doc_ranges: dict[str, tuple[int, int]] = {}
        for i, p in enumerate(passages):
            first, count = self.doc_ranges.get(p.doc_id, (i, 0))
            self.doc_ranges[p.doc_id] = (first, count + 1)

    @property
    def params(self) -> IndexParams:
        return IndexParams.from_dict(self.manifest["params"])

    def __len__(self) -> int:
        return len(self.passages)

    def quote(self, i: int) -> str:
        p = self.passages[i]
        return self.documents[p.doc_id].text[p.start : p.end]

    def sentence_vectors_of(self, first: int, count: int = 1) -> np.ndarray:
        """Sentence vectors of passages ``first`` .. ``first + count - 1``, in order (float32)."""
        lo, hi = self.sentence_rows[first], self.sentence_rows[first + count]
        return np.asarray(self.sentence_vectors[lo:hi], dtype=np.float32)

    def passage_vectors(self, first: int, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros((0, self.vectors.d), dtype=np.float32)
        return self.vectors.reconstruct_n(first, count)

    # -- persistence -------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> None:
        """Write the index to ``folder`` atomically (temporary folder, then rename)."""
        import faiss

        dest = Path(folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
        tmp.mkdir()
        try:
            with open(tmp / "documents.jsonl", "w", encoding="utf-8") as f:
                for doc in self.documents.values():
                    row = {"doc_id": doc.doc_id, "title": doc.title, "sha256": doc.sha256, "text": doc.text}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            with open(tmp / "passages.jsonl", "w", encoding="utf-8") as f:
                for i, p in enumerate(self.passages):
                    row = {"doc_id": p.doc_id, "start": p.start, "end": p.end,
                           "sentences": [list(s) for s in p.sentences], "quote": self.quote(i)}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            faiss.write_index(self.vectors, str(tmp / "vectors.faiss"))
            np.save(tmp / "sentences.npy", np.asarray(self.sentence_vectors, dtype=np.float16), allow_pickle=False)
            self.bm25.save(tmp / "bm25")
            _write_json(tmp / MANIFEST, self.manifest)
            _fsync_tree(tmp)
            _swap_into_place(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Index":
        """Load an index folder written by ``save``.

        Raises:
            FileNotFoundError: there is no index at ``folder``.
            IndexFormatError: the folder is not a readable index of this format.
        """
        import faiss

        folder = Path(folder)
        _recover(folder)
        if not (folder / MANIFEST).is_file():
            raise FileNotFoundError(f"no index at {folder}: build one with `python -m qa index --index {folder}`")
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            if manifest.get("format_version") != FORMAT_VERSION:
                raise IndexFormatError(
                    f"{folder} has index format {manifest.get('format_version')!r}, this version reads "
                    f"{FORMAT_VERSION}; rebuild it with `python -m qa index`"
                )
            documents = {}
            for row in _read_jsonl(folder / "documents.jsonl"):
                documents[row["doc_id"]] = Document(row["doc_id"], row["title"], row["text"])
            passages = []
            for row in _read_jsonl(folder / "passages.jsonl"):
                p = Passage(row["doc_id"], row["start"], row["end"], tuple(tuple(s) for s in row["sentences"]))
                if documents[p.doc_id].text[p.start : p.end] != row["quote"]:
                    raise IndexFormatError(f"{folder}: a passage of {p.doc_id} no longer matches its document text")
                passages.append(p)
            vectors = faiss.read_index(str(folder / "vectors.faiss"))
            sentence_vectors = np.load(folder / "sentences.npy", mmap_mode="r", allow_pickle=False)
            bm25 = BM25.load(folder / "bm25")
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            if isinstance(exc, IndexFormatError):
                raise
            raise IndexFormatError(f"{folder} is not a readable index ({exc}); rebuild it with `python -m qa index`") from exc
        if vectors.ntotal != len(passages):
            raise IndexFormatError(f"{folder}: {vectors.ntotal} vectors for {len(passages)} passages; rebuild it")
        if len(sentence_vectors) != sum(len(p.sentences) for p in passages):
            raise IndexFormatError(f"{folder}: sentence vectors do not match the passages; rebuild it")
        return cls(manifest, documents, passages, vectors, bm25, sentence_vectors)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; an existing ``dest`` is set aside, then removed.

    Between the two renames ``dest`` is briefly absent; ``_recover`` restores the
    set-aside copy if the process dies exactly there.
    """
    old = dest.with_name(f".{dest.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        os.rename(dest, old)
    os.rename(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def _recover(dest: Path) -> None:
    old = dest.with_name(f".{dest.name}.old")
    if not (dest / MANIFEST).exists() and (old / MANIFEST).exists():
        logger.warning("restoring the previous index at %s (an update was interrupted)", dest)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(old, dest)
    for tmp in dest.parent.glob(f".{dest.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 2)[-2]
        if not (pid.isdigit() and _alive(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)


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
            raise IndexBusyError(f"{folder} is being updated by another process; try again when it has finished") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# -- building and updating ---------------------------------------------------


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


def corpus_changes(manifest: dict, corpus_dir: str | os.PathLike) -> list[str]:
    """Cheap check of a corpus against the manifest: names, sizes and mtimes, then hashes.

    Returns:
        list of human-readable differences, empty when the index is up to date.
    """
    files = corpus_files(corpus_dir)
    known = manifest.get("documents", {})
    skipped = manifest.get("skipped", {})
    diffs = []
    for doc_id, path in files.items():
        st = path.stat()
        entry = known.get(doc_id) or skipped.get(doc_id)
        if entry is None:
            diffs.append(f"added {doc_id}")
        elif (entry.get("size"), entry.get("mtime_ns")) != (st.st_size, st.st_mtime_ns):
            data = path.read_bytes()
            text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
            if entry.get("sha256") != content_hash(text):
                diffs.append(f"changed {doc_id}")
    diffs.extend(f"removed {d}" for d in list(known) + list(skipped) if d not in files)
    return diffs


def update_index(
    corpus_dir: str | os.PathLike,
    index_dir: str | os.PathLike,
    *,
    embedder: Embedder,
    params: IndexParams | None = None,
    show_progress: bool = True,
) -> tuple[Index, UpdateReport]:
    """Build the index of a corpus, or bring an existing one up to date.

    Only documents that were added or changed are chunked and embedded; removed
    ones are dropped; the result equals a fresh build. An index built with another
    model or other parameters is rebuilt whole.

    Returns:
        (the new Index, an UpdateReport of what changed).

    Raises:
        FileNotFoundError: the corpus folder does not exist.
        IndexBusyError: another process is updating the same index.
    """
    t0 = time.perf_counter()
    params = params or IndexParams()
    files = corpus_files(corpus_dir)  # raises before anything is touched
    report = UpdateReport()
    with write_lock(index_dir):
        old = None
        try:
            old = Index.load(index_dir)
        except FileNotFoundError:
            pass
        except IndexFormatError as exc:
            report.rebuilt = str(exc)
        if old is not None and (why := compatibility(old.manifest, embedder, params)):
            report.rebuilt = why
            old = None
        if report.rebuilt:
            logger.warning("rebuilding the index at %s: %s", index_dir, report.rebuilt)

        docs: dict[str, Document] = {}
        stats: dict[str, os.stat_result] = {}
        for doc_id, path in files.items():
            stats[doc_id] = path.stat()
            try:
                docs[doc_id] = read_document(doc_id, path)
            except DocumentError as exc:
                logger.warning("skipped %s", exc)
                report.skipped[doc_id] = str(exc)

        old_docs = old.documents if old else {}
        reuse = {d for d, doc in docs.items() if d in old_docs and old_docs[d].text == doc.text}
        report.added = [d for d in docs if d not in old_docs]
        report.changed = [d for d in docs if d in old_docs and d not in reuse]
        report.removed = [d for d in old_docs if d not in docs]
        if old is not None and report.unchanged and not _stats_differ(old.manifest, stats, report.skipped):
            report.documents, report.passages = len(docs), len(old)
            report.seconds = time.perf_counter() - t0
            return old, report

        chunker = Chunker(params.chunk_params(), count_tokens=count_tiktokens, count_wordpieces=embedder.count_wordpieces)
        new_passages: dict[str, list[Passage]] = {d: chunker.chunk(docs[d]) for d in docs if d not in reuse}
        inputs = [embedding_input(docs[p.doc_id], p, params, embedder) for ps in new_passages.values() for p in ps]
        if inputs:
            logger.info("embedding %d passages of %d documents", len(inputs), len(new_passages))
        fresh, fresh_sent = embedder.embed_passages([t for t, _ in inputs], [s for _, s in inputs],
                                                    show_progress=show_progress)
        report.embedded = len(inputs)

        passages: list[Passage] = []
        blocks: list[np.ndarray] = []
        sent_blocks: list[np.ndarray] = []
        cursor = sent_cursor = 0
        for doc_id in docs:  # sorted by doc_id: the same order as a fresh build
            if doc_id in reuse:
                first, count = old.doc_ranges.get(doc_id, (0, 0))
                passages.extend(old.passages[first : first + count])
                blocks.append(old.passage_vectors(first, count))
                sent_blocks.append(old.sentence_vectors_of(first, count) if count else np.zeros((0, embedder.dim)))
            else:
                ps = new_passages[doc_id]
                n_sent = sum(len(p.sentences) for p in ps)
                passages.extend(ps)
                blocks.append(fresh[cursor : cursor + len(ps)])
                sent_blocks.append(fresh_sent[sent_cursor : sent_cursor + n_sent])
                cursor += len(ps)
                sent_cursor += n_sent
        index = _assemble(docs, passages, blocks, sent_blocks, stats, report.skipped, embedder, params,
                          corpus_dir, index_dir)
        index.save(index_dir)
    report.documents, report.passages = len(docs), len(passages)
    report.seconds = time.perf_counter() - t0
    return index, report


def _stats_differ(manifest: dict, stats: dict[str, os.stat_result], skipped: dict[str, str]) -> bool:
    recorded = {**manifest.get("documents", {}), **manifest.get("skipped", {})}
    if set(recorded) != set(stats) or set(manifest.get("skipped", {})) != set(skipped):
        return True
    return any((recorded[d].get("size"), recorded[d].get("mtime_ns")) != (s.st_size, s.st_mtime_ns) for d, s in stats.items())


def _assemble(docs, passages, blocks, sent_blocks, stats, skipped, embedder, params, corpus_dir, index_dir) -> Index:
    import faiss

    vectors = faiss.IndexFlatIP(embedder.dim)
    if passages:
        vectors.add(np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32))
    bm25 = BM25.build([tokenize(_lexical_text(docs[p.doc_id], p, params)) for p in passages])
    counts: dict[str, int] = {}
    for p in passages:
        counts[p.doc_id] = counts.get(p.doc_id, 0) + 1
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": {"name": embedder.name, "sha256": embedder.sha256, "dim": embedder.dim,
                  "max_seq_length": MAX_SEQ_LENGTH, "backend": getattr(embedder, "backend", "torch")},
        "params": asdict(params),
        "chunking": {"version": CHUNKING_VERSION, "sentence_splitter": "blingfire + line breaks",
                     "tokenizer": "tiktoken cl100k_base",
                     **asdict(params.chunk_params())},
        "vectors": {"type": "IndexFlatIP", "metric": "inner_product", "normalized": True},
        "sentence_vectors": {"file": "sentences.npy", "dtype": "float16",
                             "pooling": "mean of the passage's token states inside each sentence"},
        "bm25": {"library": "bm25s", "method": "lucene", "k1": 1.5, "b": 0.75,
                 "tokenizer": "lowercase, English stop words, Snowball stemmer"},
        "corpus": os.path.relpath(Path(corpus_dir).resolve(), Path(index_dir).resolve().parent),
        "counts": {"documents": len(docs), "passages": len(passages)},
        "documents": {
            d: {"sha256": doc.sha256, "title": doc.title, "chars": len(doc.text), "passages": counts.get(d, 0),
                "size": stats[d].st_size, "mtime_ns": stats[d].st_mtime_ns}
            for d, doc in docs.items()
        },
        "skipped": {d: {"reason": r, "size": stats[d].st_size, "mtime_ns": stats[d].st_mtime_ns}
                    for d, r in skipped.items()},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    sentence_vectors = (np.concatenate(sent_blocks) if sent_blocks else np.zeros((0, embedder.dim))).astype(np.float16)
    return Index(manifest, docs, passages, vectors, bm25, sentence_vectors)
