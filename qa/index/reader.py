"""``Index``: a loaded index, its segments seen as one list of live passages, and its searches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from qa.chunking import Passage
from qa.corpus import Document
from qa.index.manifest import _REBUILD, SEGMENTS, IndexFormatError, _read_manifest
from qa.index.params import IndexParams
from qa.index.segment import Segment
from qa.lexical import BM25


class PassageList(Sequence):
    """The live passages of an index (or of a shard set), in order, as Passage objects made on access.

    Args:
        owner: what holds them (its ``len`` is the number of passages).
        passage_at: the Passage at a position, 0 <= i < len(owner).
    """

    def __init__(self, owner, passage_at: Callable[[int], Passage]):
        self._owner, self._passage_at = owner, passage_at

    def __len__(self) -> int:
        return len(self._owner)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._passage_at(i)

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
        self.passages = PassageList(self, self._passage)

    @property
    def params(self) -> IndexParams:
        return IndexParams.from_dict(self.manifest["params"])

    def __len__(self) -> int:
        return len(self.live_to_raw)

    def _passage(self, i: int) -> Passage:
        seg, row = self.locate(i)
        return seg.passage(row)

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

    def sentence_cosines(self, i: int, qv: np.ndarray) -> np.ndarray:
        """Each sentence of passage ``i``'s cosine to unit vector ``qv`` (what a search needs of them)."""
        return self.sentence_vectors_of(i) @ qv

    def passage_cosine(self, i: int, qv: np.ndarray) -> float:
        return float(self.passage_vectors(i, 1)[0] @ qv)

    @property
    def dim(self) -> int:
        return int(self.manifest["model"]["dim"])

    # -- search --------------------------------------------------------------

    def dense_top(self, qv: np.ndarray, depth: int, allowed: np.ndarray | None = None, *,
                  probe_share: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` passages closest to unit vector ``qv``, best first, with their cosines.

        Args:
            allowed: a bool mask over passages; when given, only those are scored,
                exactly.
            probe_share: the share of each approximate index's lists to probe at most
                (``Segment.search``); None: each segment's own setting.
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
                rows, sc = seg.search(qv, depth, self._dead[s], probe_share=probe_share)
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
