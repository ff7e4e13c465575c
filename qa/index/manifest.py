"""The index folder's manifest: reading it, committing a new one atomically, the writer lock,
removing what no manifest names, and whether an index fits a model and parameters.

A change is committed by writing ``manifest.json`` aside and renaming it over the old
one, so a crash or a kill leaves the previous index or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from qa.chunking import CHUNKING_VERSION
from qa.embedding import MAX_SEQ_LENGTH, Embedder
from qa.extract import extractors
from qa.index.params import IndexParams
from qa.lexical import B, K1

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
SEGMENTS = "segments"
_REBUILD = "rebuild it with `python -m qa index`"
_OLD_FORMAT_FILES = ("documents.jsonl", "passages.jsonl", "vectors.faiss", "sentences.npy", "bm25")


class IndexFormatError(RuntimeError):
    """An index folder that cannot be read: another format, or corrupt."""


class IndexBusyError(RuntimeError):
    """Another process holds the index's writer lock."""


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
