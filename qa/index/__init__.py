"""The persistent index: documents, passages, their vectors and BM25, as segments on disk.

Layout of an index folder (all inspectable, no pickles)::

    manifest.json           format version, model and its hash, passage parameters,
                            the segments in order, with the documents deleted from each
    segments/<name>/        one immutable segment, written once (see qa.index.segment)

Why segments: adding one document to a million-passage index writes one small
segment and a new manifest instead of rewriting a gigabyte, and removing one marks
it deleted in the manifest. Small indexes are rewritten as a single segment on
every change, so they stay exactly what a fresh build gives. Big ones merge their
segments now and then (``Layout``). Every change commits by renaming a new
manifest into place, so a crash or a kill leaves the previous index or the new
one, and a big build commits a segment every ``Layout.batch_passages`` passages,
so a killed build resumes where it stopped.

The modules, from the bottom up (each imports only those above it):

    params.py     IndexParams (what shapes an index), Layout (how it is stored), the text embedded
    manifest.py   the manifest: format version, read, atomic commit, writer lock, garbage collection
    ann.py        IVF-SQ8 for big segments
    segment.py    one segment folder: read, search, write (Segment, _Piece, _write_segment)
    reader.py     Index: the segments seen as one list of live passages; dense and BM25 search
    changes.py    what differs between a corpus folder and its index
    writer.py     update_index: batches read, chunked, embedded and committed; deletions; merges
"""

from __future__ import annotations

from qa.index.ann import ANN_RESCORE, _ann_params, _build_ann
from qa.index.changes import _diff, _Diff, _Restricted, _stat_entry, corpus_changes
from qa.index.manifest import (
    _OLD_FORMAT_FILES, _REBUILD, FORMAT_VERSION, MANIFEST, SEGMENTS, IndexBusyError, IndexFormatError, _alive,
    _collect_garbage, _commit, _fsync_dir, _fsync_tree, _new_manifest, _read_manifest, _write_json,
    compatibility, write_lock,
)
from qa.index.params import TITLE_WORDPIECES, IndexParams, Layout, _lexical_text, embedding_input, embedding_text
from qa.index.reader import Index, PassageList, _best
from qa.index.segment import _COPY_ROWS, Segment, _copy_rows, _Piece, _ranges, _write_segment
from qa.index.writer import (
    UpdateReport, _deleted_rows, _in_doc_order, _open_for_update, _progress_bar, _tier, _Writer, read_and_chunk,
    update_index,
)

__all__ = [
    # params
    "IndexParams", "Layout", "TITLE_WORDPIECES", "embedding_input", "embedding_text",
    # manifest
    "FORMAT_VERSION", "MANIFEST", "SEGMENTS", "IndexBusyError", "IndexFormatError", "compatibility", "write_lock",
    # ann
    "ANN_RESCORE",
    # segment
    "Segment",
    # reader
    "Index", "PassageList",
    # changes
    "corpus_changes",
    # writer
    "UpdateReport", "read_and_chunk", "update_index",
]
