"""Load a folder of documents: the texts every quote is cut from."""

from __future__ import annotations

import bisect
import errno
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from qa.extract import SUFFIXES, ExtractionError, Source, extract

logger = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
# PDFs and Word files carry fonts and pictures besides their text.
MAX_BINARY_BYTES = 40 * 1024 * 1024
_SUFFIX_LIST = ", ".join(SUFFIXES[:-1]) + f" and {SUFFIXES[-1]}"


@dataclass(frozen=True)
class Document:
    """One document of the corpus.

    ``text`` is the text extracted from the file (qa.extract): for .txt and .md the
    file decoded as UTF-8 with a leading BOM (and any front matter) dropped and line
    ends kept as they are. Every offset in the index is a Python string index into it.
    ``pages`` (PDFs) holds the offset where each page starts; ``source`` the url,
    site, author and date found in the file.
    """

    doc_id: str
    title: str
    text: str
    source: Source = field(default_factory=Source)
    pages: tuple[int, ...] | None = None

    @property
    def sha256(self) -> str:
        return content_hash(self.text)

    def page_of(self, offset: int) -> int | None:
        """The 1-based page that holds ``offset``, or None for a document without pages."""
        if not self.pages:
            return None
        return max(1, bisect.bisect_right(self.pages, offset))


class DocumentError(ValueError):
    """A file that cannot be a document (not UTF-8, empty, too big, bad name)."""


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def title_of(text: str) -> str:
    """The first non-empty line, stripped."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def decode_document(doc_id: str, data: bytes) -> Document:
    """Turn the bytes of a file into a Document, by the file's suffix (see qa.extract).

    Raises:
        DocumentError: the file is empty, or cannot be read as what its suffix says
            (not UTF-8, a corrupt PDF or one without a text layer, a page with no
            article, a .docx that is not one), naming the document.
    """
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise DocumentError(f"{doc_id}: the file is empty")
    try:
        found = extract(doc_id, data)
    except ExtractionError as exc:
        raise DocumentError(f"{doc_id}: {exc}") from None
    return Document(doc_id=doc_id, title=found.title or title_of(found.text), text=found.text,
                    source=found.source, pages=found.pages)


def max_document_bytes(doc_id: str) -> int:
    """The largest file accepted for a document of this name."""
    return MAX_BINARY_BYTES if doc_id.lower().endswith((".pdf", ".docx")) else MAX_DOCUMENT_BYTES


_warned_links: set[str] = set()
_warned_lock = threading.Lock()


def _skip_link(path: Path, root: Path) -> None:
    """Warn, once per process, that a symbolic link in the corpus is not followed."""
    name = path.relative_to(root).as_posix()
    with _warned_lock:
        if str(path) in _warned_links:
            return
        _warned_links.add(str(path))
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    logger.warning("skipped %s: a symbolic link (to %s); links in the corpus folder are not followed", name, target)


def corpus_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The documents under a folder, recursively.

    Symbolic links (to files or folders) are skipped with a warning naming them: a
    link could bring any file of the machine (``passwd.txt -> /etc/passwd``) into the
    index and onto the page.

    Returns:
        dict from doc_id (the path relative to ``folder`` with ``/`` separators)
        to the file's path, sorted by doc_id. Hidden files and folders are left out.

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"corpus folder not found: {root}")
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):  # does not descend into linked folders
        for d in dirnames:
            if not d.startswith(".") and (Path(dirpath) / d).is_symlink():
                _skip_link(Path(dirpath) / d, root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (Path(dirpath) / d).is_symlink())
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(SUFFIXES):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                _skip_link(path, root)
                continue
            found[path.relative_to(root).as_posix()] = path
    return dict(sorted(found.items()))


def read_file(doc_id: str, path: Path) -> bytes:
    """The bytes of a corpus file, never through a symbolic link (one swapped in after listing included).

    Raises:
        DocumentError: ``path`` is a symbolic link.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DocumentError(f"{doc_id}: a symbolic link; links in the corpus folder are not followed") from None
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()


def read_document(doc_id: str, path: Path) -> Document:
    return decode_document(doc_id, read_file(doc_id, path))


def load_corpus(folder: str | os.PathLike) -> list[Document]:
    """Every document under ``folder`` (.txt, .md, .html, .htm, .pdf, .docx), sorted by doc_id.

    A file that cannot be read (not UTF-8, empty, no text layer, ...) is skipped with a warning naming it.
    """
    docs = []
    for doc_id, path in corpus_files(folder).items():
        try:
            docs.append(read_document(doc_id, path))
        except DocumentError as exc:
            logger.warning("skipped %s", exc)
    return docs


def safe_doc_id(name: str) -> str:
    """Check a document name supplied by a user; return it as a doc_id.

    Raises:
        DocumentError: the name is empty, absolute, escapes the corpus folder,
            is hidden, or does not end in a suffix qa.extract reads.
    """
    cleaned = name.replace("\\", "/").strip()
    parts = cleaned.split("/")
    if not cleaned or cleaned.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise DocumentError(f"{name!r}: not a valid document name (it must stay inside the corpus folder)")
    if any(p.startswith(".") for p in parts):
        raise DocumentError(f"{name!r}: hidden names are not allowed")
    if "\x00" in cleaned or not cleaned.lower().endswith(SUFFIXES):
        raise DocumentError(f"{name!r}: only {_SUFFIX_LIST} files can be added")
    return cleaned
