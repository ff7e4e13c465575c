"""Load a folder of documents: the texts every quote is cut from."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md")
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Document:
    """One document of the corpus.

    ``text`` is the file decoded as UTF-8 with a leading BOM dropped and line ends
    kept as they are; every offset in the index is a Python string index into it.
    """

    doc_id: str
    title: str
    text: str

    @property
    def sha256(self) -> str:
        return content_hash(self.text)


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
    """Turn the bytes of a file into a Document.

    Raises:
        DocumentError: the bytes are not UTF-8, or hold no text.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"{doc_id}: not valid UTF-8 (byte {exc.start}); save it as UTF-8 text"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise DocumentError(f"{doc_id}: the file is empty")
    return Document(doc_id=doc_id, title=title_of(text), text=text)


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
    """Every ``.txt`` and ``.md`` document under ``folder``, sorted by doc_id.

    A file that is not UTF-8 or is empty is skipped with a warning naming it.
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
            is hidden, or does not end in .txt or .md.
    """
    cleaned = name.replace("\\", "/").strip()
    parts = cleaned.split("/")
    if not cleaned or cleaned.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise DocumentError(f"{name!r}: not a valid document name (it must stay inside the corpus folder)")
    if any(p.startswith(".") for p in parts):
        raise DocumentError(f"{name!r}: hidden names are not allowed")
    if "\x00" in cleaned or not cleaned.lower().endswith(SUFFIXES):
        raise DocumentError(f"{name!r}: only .txt and .md files can be added")
    return cleaned
