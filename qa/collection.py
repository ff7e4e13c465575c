"""A corpus folder and its index, kept in step: the object the CLI and the web app use."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from qa.arguments import ArgumentError, check_flag, check_list, check_text, describe
from qa.corpus import Document, DocumentError, decode_document, max_document_bytes, safe_doc_id
from qa.backends import default_embedder
from qa.embedding import Embedder
from qa.extract import Source
from qa.index import (
    Index, IndexFormatError, IndexParams, Layout, UpdateReport, compatibility, corpus_changes, update_index,
)
from qa.reranker import Reranker
from qa.results import MAX_DOC_ID_CHARS, Answer
from qa.retrieval import Searcher, SearchParams

logger = logging.getLogger(__name__)


def _load_token_counter_aside() -> None:
    """Load the chunker's token counter (tiktoken) in a thread, beside the model's load."""
    from qa.chunking import tiktoken_encoding

    def load() -> None:
        try:
            tiktoken_encoding()
        except ImportError:
            pass  # raised again, with its install hint, where the counter is used

    threading.Thread(target=load, name="qa-load-tiktoken", daemon=True).start()


@dataclass(frozen=True)
class DocumentInfo:
    """One indexed document: its passages, the length of its text, its source details and page count (PDFs)."""

    doc_id: str
    title: str
    passages: int
    chars: int
    source: Source = Source()
    pages: int | None = None


class Collection:
    """The documents of a corpus folder, searchable through an up-to-date index.

    Opening checks the index against the corpus, the model and the parameters and
    brings it up to date (never silently serving a stale one). Questions can be
    asked from many threads at once; an update builds the new index aside and
    swaps it in, so readers see either the old index or the new one.

    Args:
        corpus_dir: the folder of documents (.txt, .md, .html, .htm, .pdf, .docx).
        index_dir: where the index lives.
        embedder: the embedding model (default: one shared per process).
        index_params: passage parameters; an index built otherwise is rebuilt.
        layout: how the index is split into segments and searched (qa.index.Layout).
        search_params: fusion and abstention settings.
        reranker: the relevance model (default: the shipped one, shared per process,
            loaded with the first question: building an index never needs it; not
            loaded at all when ``search_params.rerank_depth`` is 0).
        show_progress: progress bars while embedding.

    Raises (from the first question):
        RerankerError: the shipped relevance model is missing or altered.
    """

    def __init__(
        self,
        corpus_dir: str | os.PathLike,
        index_dir: str | os.PathLike,
        *,
        embedder: Embedder | None = None,
        index_params: IndexParams | None = None,
        layout: Layout | None = None,
        search_params: SearchParams | None = None,
        reranker: Reranker | None = None,
        show_progress: bool = True,
    ):
        self.corpus_dir = Path(corpus_dir)
        self.index_dir = Path(index_dir)
        if embedder is None:
            _load_token_counter_aside()  # it takes a second or two: while the model loads
        self.embedder = embedder or default_embedder()
        self.index_params = index_params or IndexParams()
        self.layout = layout or Layout()
        self.search_params = search_params or SearchParams()
        self._reranker = reranker
        self.show_progress = show_progress
        self._write = threading.Lock()
        self._current: Index | None = None  # the index questions are asked of
        self._searcher: Searcher | None = None  # made over it at the first question
        self._searcher_lock = threading.Lock()
        self.last_report: UpdateReport | None = None

    # -- keeping the index in step -------------------------------------------

    def open(self) -> "Collection":
        """Load the index, updating it first if it is missing or out of date.

        Raises:
            FileNotFoundError: the corpus folder does not exist.
        """
        try:
            index = Index.load(self.index_dir)
        except (FileNotFoundError, IndexFormatError) as exc:
            logger.info("%s", exc)
            index = None
        stale = self.staleness(index) if index is not None else ["no usable index"]
        if stale:
            logger.warning("index at %s is out of date (%s): updating it", self.index_dir, "; ".join(stale[:5]))
            self.update()
        else:
            self._current = index
        return self

    @property
    def reranker(self) -> Reranker | None:
        """The relevance model, loaded on first use (None when ``rerank_depth`` is 0)."""
        if self._reranker is None and self.search_params.rerank_depth:
            from qa.reranker_backends import default_reranker

            self._reranker = default_reranker()
        return self._reranker

    def _searcher_now(self) -> Searcher:
        """The searcher over the current index (made, with the relevance model, on the first question)."""
        if self._current is None:
            self.open()
        with self._searcher_lock:
            index = self._current
            if self._searcher is None or self._searcher.index is not index:
                self._searcher = Searcher(index, self.embedder, self.search_params, reranker=self.reranker)
            return self._searcher

    def staleness(self, index: Index) -> list[str]:
        """Why ``index`` does not match this corpus, model and parameters (empty when it does)."""
        why = compatibility(index.manifest, self.embedder, self.index_params)
        if why:
            return [why]
        return corpus_changes(index, self.corpus_dir)

    def update(self, *, show_progress: bool | None = None) -> UpdateReport:
        """Bring the index up to date with the corpus folder (incremental)."""
        with self._write:
            return self._update_locked(show_progress)

    @property
    def index(self) -> Index:
        if self._current is None:
            self.open()
        return self._current

    # -- questions -----------------------------------------------------------

    def ask(
        self, question: str, *, k: int = 5, history: Sequence | None = None, doc_ids: Sequence[str] | None = None,
        sites: Sequence[str] | None = None, since: str | None = None, until: str | None = None,
    ) -> Answer:
        """See ``Searcher.search``: ``doc_ids``, ``sites``, ``since`` and ``until`` filter the documents."""
        return self._searcher_now().search(question, k=k, history=history, doc_ids=doc_ids, sites=sites,
                                           since=since, until=until)

    # -- documents -----------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        index = self.index
        return [
            DocumentInfo(d, doc.title, index.doc_ranges.get(d, (0, 0))[1], len(doc.text), doc.source,
                         len(doc.pages) if doc.pages is not None else None)
            for d, doc in index.documents.items()
        ]

    def document(self, doc_id: str) -> Document:
        """Raises: KeyError naming the unknown doc_id; ArgumentError when it is not text."""
        doc_id = check_text(doc_id, "doc_id", max_chars=MAX_DOC_ID_CHARS)
        try:
            return self.index.documents[doc_id]
        except KeyError:
            raise KeyError(f"no document {doc_id!r} in the index") from None

    def check_upload(self, name: str, data: bytes, *, replace: bool = False) -> Document:
        """Validate one file to add; return it as a Document without writing anything.

        Raises:
            DocumentError: a bad name, too big, unreadable (not UTF-8, a corrupt PDF or one
                without text, a page with no article, not really a .docx), empty, already
                present, or a symbolic link in the corpus folder in its way.
        """
        name = check_text(name, "the file name", max_chars=MAX_DOC_ID_CHARS)
        if not isinstance(data, (bytes, bytearray)):
            raise ArgumentError(f"{name}: the content must be bytes, got {describe(data)}")
        doc_id = safe_doc_id(os.path.basename(name.replace("\\", "/")) if "/" not in name else name)
        limit = max_document_bytes(doc_id)
        if len(data) > limit:
            raise DocumentError(f"{doc_id}: {len(data) / 1e6:.1f} MB is over the {limit // 2**20} MB limit")
        doc = decode_document(doc_id, bytes(data))
        self._refuse_links(doc_id)
        if not replace and (self.corpus_dir / doc_id).exists():
            raise DocumentError(f"{doc_id} already exists; replace it or choose another name")
        return doc

    def _refuse_links(self, doc_id: str) -> None:
        """A document is never written through a symbolic link (its own path or a folder on the way)."""
        path = self.corpus_dir
        for part in doc_id.split("/"):
            path = path / part
            if path.is_symlink():
                raise DocumentError(f"{doc_id}: {path.relative_to(self.corpus_dir).as_posix()} in the corpus "
                                    "folder is a symbolic link; nothing is written through one")

    def add_documents(self, files: Iterable[tuple[str, bytes]], *, replace: bool = False) -> UpdateReport:
        """Save files into the corpus folder and index them.

        Every file is checked before any is written; if indexing fails, the corpus
        folder is put back as it was, so a bad upload changes nothing.

        Args:
            files: (file name, content) pairs.
            replace: overwrite documents that already exist instead of refusing.

        Raises:
            DocumentError: a file fails a check (nothing was written).
            ArgumentError: files is not a list of (name, bytes) pairs, or replace not a bool.
        """
        replace = check_flag(replace, "replace")
        checked, seen = [], set()
        for i, pair in enumerate(check_list(files, "files")):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ArgumentError(f"files[{i}] must be a (name, content) pair, got {describe(pair)}")
            name, data = pair
            doc = self.check_upload(name, data, replace=replace)
            if doc.doc_id in seen:
                raise DocumentError(f"{doc.doc_id} is given twice")
            seen.add(doc.doc_id)
            checked.append((doc.doc_id, data))
        if not checked:
            raise DocumentError("no files given")
        with self._write:
            backups = self._write_files(checked)
            try:
                return self._update_locked(only=[doc_id for doc_id, _ in checked])
            except BaseException:
                self._restore(backups)
                raise

    def delete_document(self, doc_id: str) -> UpdateReport:
        """Remove a document of the index from the corpus folder and the index.

        Only a document the index holds is deleted: any other file under the corpus
        folder, a folder, or a name reaching outside it is refused.

        Raises:
            KeyError: the index holds no such document (saying so when it names a folder).
            ArgumentError: doc_id is not text.
        """
        doc_id = check_text(doc_id, "doc_id", max_chars=MAX_DOC_ID_CHARS)
        if doc_id not in self.index.documents:
            inside = [d for d in self.index.documents if d.startswith(doc_id.rstrip("/") + "/")]
            if doc_id.strip("/") and inside:
                raise KeyError(f"{doc_id!r} is a folder, not a document; its {len(inside):,} documents "
                               "are deleted one at a time")
            raise KeyError(f"no document {doc_id!r} in the index")
        path = self.corpus_dir / doc_id
        with self._write:
            # Gone from the folder already (or replaced by a link): the index still drops it.
            backup = {doc_id: path.read_bytes()} if path.is_file() and not path.is_symlink() else {}
            path.unlink(missing_ok=True)
            try:
                return self._update_locked(only=[doc_id])
            except BaseException:
                self._restore(backup)
                raise

    def _update_locked(self, show_progress: bool | None = None, only: list[str] | None = None) -> UpdateReport:
        index, report = update_index(
            self.corpus_dir, self.index_dir, embedder=self.embedder, params=self.index_params, layout=self.layout,
            only=only, current=self._current,
            show_progress=self.show_progress if show_progress is None else show_progress,
        )
        self._current = index
        self.last_report = report
        return report

    def _write_files(self, files: list[tuple[str, bytes]]) -> dict[str, bytes | None]:
        backups: dict[str, bytes | None] = {}
        try:
            for doc_id, data in files:
                path = self.corpus_dir / doc_id
                backups[doc_id] = path.read_bytes() if path.exists() else None
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.upload-{os.getpid()}")
                tmp.write_bytes(data)
                os.replace(tmp, path)
        except BaseException:
            self._restore(backups)
            raise
        return backups

    def _restore(self, backups: dict[str, bytes | None]) -> None:
        for doc_id, data in backups.items():
            path = self.corpus_dir / doc_id
            if data is None:
                path.unlink(missing_ok=True)
            else:
                tmp = path.with_name(f".{path.name}.restore-{os.getpid()}")
                tmp.write_bytes(data)
                os.replace(tmp, path)
