"""What differs between a corpus folder and its index: added, changed, removed and touched files."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from qa.corpus import corpus_files
from qa.extract import extractor_name
from qa.index.reader import Index


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


class _Restricted:
    """An index seen through a few doc_ids only (for ``update_index(only=...)``)."""

    def __init__(self, index: Index, doc_ids: set[str]):
        self.entries = {d: e for d, e in index.entries.items() if d in doc_ids}
        self.manifest = {"skipped": {d: e for d, e in index.manifest.get("skipped", {}).items() if d in doc_ids}}
