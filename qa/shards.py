"""An index split into shards by document, and one search over all of them that merges exactly.

``split_index`` cuts an index into N shard indexes (each a normal index folder, written
by ``qa.index``'s segment writer) of contiguous runs of its documents, balanced by
passages, and lists them in ``shards.json``. Laid end to end, the shards' passages are
the index's passages in the index's own order, so a passage keeps its number.

``ShardedIndex`` reads like a ``qa.index.Index`` over all the shards: the unchanged
``Searcher`` (as ``ShardedSearcher``) fuses, re-scores, collapses and reranks on top of
it, so answers equal one index's:

- BM25: each shard scores with the statistics of all shards (passage count, document
  frequencies and average length, summed when the set is opened), so its scores are
  bit for bit those of one index; the best of each shard are merged.
- Dense: cosines are exact and comparable across shards; the best of each are merged
  (ties broken by passage number, as in one index). A shard with an approximate index
  probes the share of its lists that one index over all the shards would probe
  (``qa.index.ann.probe_share``), so the set does one index's work, not more.
- The relevance model reranks after the merge, over the merged first stage.
- What a question reads of its passages (the passages, their documents, and each
  sentence's cosine to the question) is fetched with one call per shard; the shard
  computes the cosines, so vectors never leave it.

A shard lives in this process (``engine="local"``: its searches run in a pool of threads,
what a question fetches in the asking thread) or in a Ray actor (``engine="ray"``) that
may run on another node and holds only its shard. A shard that does not answer (its
folder gone, its actor dead) raises ``ShardError`` naming it: never a partial answer
passed off as whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qa.arguments import ArgumentError, check_text
from qa.backends import default_embedder
from qa.chunking import Passage
from qa.corpus import Document, DocumentError
from qa.extract import Source
from qa.index import (
    MANIFEST, SEGMENTS, Index, IndexFormatError, Layout, PassageList, _best, _commit, _fsync_dir, _Piece,
    _write_segment,
)
from qa.index.ann import probe_share
from qa.lexical import B, BM25, K1
from qa.retrieval import MAX_DOC_ID_CHARS, Filters, Searcher, SearchParams

logger = logging.getLogger(__name__)

SHARDS_FILE = "shards.json"
SHARDS_FORMAT = 1
ENGINES = ("local", "ray")
CALL_TIMEOUT_S = 60.0  # a shard that has not answered by then is taken for dead
_PREFETCH = 40  # passages fetched ahead, per question, from the top of the ranking
_CACHE_PASSAGES = 8192
_CACHE_DOCUMENTS = 1024


class ShardError(RuntimeError):
    """A shard that cannot be searched: its folder is missing or unreadable, or its actor does not answer."""


# -- splitting ------------------------------------------------------------------------


def is_shard_set(folder: str | os.PathLike) -> bool:
    return (Path(folder) / SHARDS_FILE).is_file()


def _shard_of_documents(index: Index, shards: int) -> list[list[str]]:
    """doc_ids of each shard: contiguous runs in index order, cut where the passages are balanced.

    A document goes to the shard whose share of the passages holds its middle passage;
    the cuts are then moved, if need be, so that no shard is empty.
    """
    order = sorted(index.doc_ranges.items(), key=lambda kv: kv[1][0])
    total, n = max(len(index), 1), len(order)
    shard_of = [min(shards - 1, int((first + count / 2) * shards / total)) for _, (first, count) in order]
    cuts = [0] + [next((k for k, s in enumerate(shard_of) if s >= t), n) for t in range(1, shards)] + [n]
    for t in range(1, shards):
        cuts[t] = min(max(cuts[t], cuts[t - 1] + 1), n - (shards - t))
    return [[doc_id for doc_id, _ in order[cuts[t] : cuts[t + 1]]] for t in range(shards)]


def split_index(index_dir: str | os.PathLike, out_dir: str | os.PathLike, shards: int, *,
                layout: Layout | None = None) -> list[Path]:
    """Split an index into ``shards`` shard indexes under ``out_dir`` (replacing a shard set there).

    Each shard is a normal index folder (``shard-000``, ...) holding contiguous documents
    of the index, about ``len(index) / shards`` passages each; ``out_dir/shards.json``
    lists them. Nothing is embedded: vectors and postings are copied.

    Returns:
        the shard folders, in order.

    Raises:
        FileNotFoundError: no index at ``index_dir``.
        ValueError: ``shards`` below 1 or above the number of documents; ``out_dir`` is a
            folder that is not a shard set.
    """
    index_dir, out_dir = Path(index_dir), Path(out_dir)
    index = Index.load(index_dir)
    if not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a whole number >= 1, got {shards!r}")
    if shards > len(index.documents):
        raise ValueError(f"cannot split {len(index.documents)} documents into {shards} shards")
    if out_dir.exists() and not is_shard_set(out_dir) and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} exists and is not a shard set; give an empty or new folder")
    layout = layout or Layout()
    groups = _shard_of_documents(index, shards)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names, counts = [], []
    try:
        for s, doc_ids in enumerate(groups):
            name = f"shard-{s:03d}"
            passages = _write_shard(index, set(doc_ids), tmp / name, layout=layout,
                                    shard={"number": s, "of": shards, "source": os.path.relpath(
                                        index_dir.resolve(), out_dir.resolve())})
            names.append(name)
            counts.append({"documents": len(doc_ids), "passages": passages})
        info = {"format": SHARDS_FORMAT, "source": os.path.relpath(index_dir.resolve(), out_dir.resolve()),
                "source_built_at": index.manifest.get("built_at"), "shards": names, "counts": counts,
                "documents": len(index.documents), "passages": len(index)}
        (tmp / SHARDS_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        _fsync_dir(tmp)
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("split %s into %d shards: %s passages", index_dir, shards, [c["passages"] for c in counts])
    return [out_dir / n for n in names]


def _write_shard(index: Index, doc_ids: set[str], folder: Path, *, layout: Layout, shard: dict) -> int:
    """One shard: the live documents ``doc_ids`` of ``index``, in index order, as a one-segment index."""
    restat = index.manifest.get("restat", {})
    pieces = []
    for seg, info in zip(index.segments, index.manifest["segments"]):
        deleted = set(info.get("deleted", ()))
        keep = [k for k, d in enumerate(seg.documents) if d.doc_id in doc_ids and d.doc_id not in deleted]
        if keep:
            entries = [{**e, **restat.get(d.doc_id, {})} for d, e in zip(seg.documents, seg.entries)]
            pieces.append(_Piece.of_segment(seg, entries).select(keep))
    (folder / SEGMENTS).mkdir(parents=True)
    meta = _write_segment(folder / SEGMENTS / "s000001", pieces, dim=index.dim, layout=layout)
    manifest = json.loads(json.dumps(index.manifest))
    manifest.update({
        "segments": [{"name": "s000001", "passages": meta["passages"], "documents": meta["documents"],
                      "deleted": [], "ann": meta["ann"], "embedded_with": meta["embedded_with"]}],
        "next_segment": 2, "skipped": {}, "restat": {}, "shard": shard,
        "counts": {"documents": meta["documents"], "passages": meta["passages"]},
    })
    _commit(folder, manifest)
    return meta["passages"]


# -- one shard, where it lives ------------------------------------------------------------


class _GlobalBM25(BM25):
    """A shard's BM25 scored with the statistics of the whole shard set: one index's scores."""

    def __init__(self, base: BM25, *, live: int, avg_length: float, df: dict[str, int]):
        self.parts, self.dead, self.offsets, self.n = base.parts, base.dead, base.offsets, base.n
        self.live, self.avg_length, self._df = live, avg_length, df
        # the same expression as BM25's, with the set's average length
        self._norms = [(K1 * ((1 - B) + B * np.asarray(p.lengths, dtype=np.int64).astype(np.float32)
                              / max(self.avg_length, 1e-9))).astype(np.float32) for p in self.parts]

    def _columns(self, token: str) -> tuple[float, list]:
        df = self._df.get(token, 0)
        if not df:
            return 0.0, []
        found = []
        for offset, part, norms in zip(self.offsets, self.parts, self._norms):
            column = part.column(token)
            if column is not None:
                found.append((offset, column[0], column[1], norms))
        return float(np.log(1 + (self.live - df + 0.5) / (df + 0.5))), found


class ShardCore:
    """One shard's index and what a search asks of it; the same object in-process or as a Ray actor.

    Passage numbers here are the shard's own (0 .. its passages - 1).
    """

    def __init__(self, folder: str):
        self.folder = str(folder)
        self.index = Index.load(folder)

    def statistics(self) -> dict:
        """Passages, documents, their summed token length and each term's live document frequency."""
        bm25 = self.index.bm25
        df: Counter = Counter()
        total = 0
        for part, dead in zip(bm25.parts, bm25.dead):
            counts = np.diff(np.asarray(part.indptr))
            if dead is not None:  # a deleted passage's terms do not count
                term_of = np.repeat(np.arange(len(part.terms)), counts)
                counts = counts - np.bincount(term_of[dead[np.asarray(part.rows)]], minlength=len(part.terms))
            for term, c in zip(part.terms, counts.tolist()):
                if c:
                    df[term] += c
            lengths = np.asarray(part.lengths, dtype=np.int64)
            total += int(lengths.sum() if dead is None else lengths[~dead].sum())
        return {"passages": len(self.index), "documents": len(self.index.documents), "length": total,
                "df": dict(df), "dim": self.index.dim}

    def use_statistics(self, live: int, avg_length: float, df: dict[str, int]) -> int:
        self.index.bm25 = _GlobalBM25(self.index.bm25, live=live, avg_length=avg_length, df=df)
        return len(self.index)

    def dense(self, qv: np.ndarray, depth: int, allowed: np.ndarray | None, probe_share: float | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        faiss.omp_set_num_threads(1)  # one query: threads only spin (qa.retrieval)
        return self.index.dense_top(qv, depth, allowed, probe_share=probe_share)

    def lexical(self, tokens: list[str], depth: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.index.lexical_top(tokens, depth, allowed)

    def fetch(self, ids: Sequence[int], qv: np.ndarray | None = None, sentences: Sequence[int] = (),
              passages: Sequence[int] = ()) -> tuple[list, dict[str, tuple], list[np.ndarray], list[float]]:
        """Passages ``ids`` and their documents; the cosines to ``qv`` of the sentences of passages
        ``sentences`` and of passages ``passages`` themselves.

        The cosines are all a question needs of the vectors, and a few floats a passage
        instead of its sentence vectors (about 0.5 MB a question over Ray).

        Returns:
            ([Passage], {doc_id: document fields}, [each sentence's cosine, per passage of
            ``sentences``], [the cosine of each passage of ``passages``]).
        """
        rows, docs = [], {}
        for i in ids:
            p = self.index.passages[int(i)]
            rows.append(p)
            if p.doc_id not in docs:
                docs[p.doc_id] = _document_fields(self.index.documents[p.doc_id])
        return (rows, docs, [self.index.sentence_cosines(int(i), qv) for i in sentences],
                [self.index.passage_cosine(int(i), qv) for i in passages])

    def document(self, doc_id: str) -> tuple | None:
        doc = self.index.documents.get(doc_id)
        return _document_fields(doc) if doc is not None else None

    def select(self, filters: Filters) -> tuple[np.ndarray, list[str], dict[str, str]]:
        """(mask of the passages ``filters`` let through, which of its doc_ids are here, sites here)."""
        documents = self.index.documents
        known = [d for d in filters.doc_ids if d in documents]
        sites = {(doc.source.site or "").casefold(): doc.source.site for doc in documents.values()} \
            if filters.sites else {}
        mask = np.zeros(len(self.index), dtype=bool)
        for d in (known if filters.doc_ids else documents):
            if filters.admits(d, documents[d].source):
                first, count = self.index.doc_ranges.get(d, (0, 0))
                mask[first : first + count] = True
        return mask, known, sites

    def catalogue(self) -> list[tuple]:
        """(doc_id, title, passages, characters, source, pages) of every document."""
        index = self.index
        return [(d, doc.title, index.doc_ranges.get(d, (0, 0))[1], len(doc.text), doc.source.to_dict(),
                 len(doc.pages) if doc.pages is not None else None) for d, doc in index.documents.items()]

    def memory_mb(self) -> float:
        """This process's resident memory (for the benchmark: a shard actor holds its share)."""
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def ping(self) -> str:
        return self.folder


def _vector_key(qv: np.ndarray) -> bytes:
    """A short key for a question's vector (cosines are cached per question)."""
    return hashlib.blake2b(np.ascontiguousarray(qv, dtype=np.float32).tobytes(), digest_size=16).digest()


def _document_fields(doc: Document) -> tuple:
    return (doc.doc_id, doc.title, doc.text, doc.source.to_dict(), doc.pages)


def _document(fields: tuple) -> Document:
    doc_id, title, text, source, pages = fields
    return Document(doc_id, title, text, Source.from_dict(source), tuple(pages) if pages is not None else None)


# -- reaching a shard -----------------------------------------------------------------


class _Call:
    """A call on a shard under way; ``result()`` gives its value or raises ShardError."""

    def __init__(self, shard: "_Shard", pending):
        self.shard, self.pending = shard, pending

    def result(self):
        try:
            return self.shard._wait(self.pending)
        except ShardError:
            raise
        except (OSError, IndexFormatError) as exc:
            raise ShardError(f"shard {self.shard.name} ({self.shard.folder}) cannot be read: {exc}") from exc


class _Shard:
    name: str
    folder: str

    def call(self, method: str, *args, inline: bool = False) -> _Call:
        raise NotImplementedError

    def _wait(self, pending):
        raise NotImplementedError


class _LocalShard(_Shard):
    # Only the searches release the GIL for long (FAISS, numpy over the postings), so only they
    # gain from a pool thread. The rest (fetching passages, documents, cosines) is Python that
    # holds the GIL; in a pool thread it only waits for it. At 1M passages in 4 shards, answers
    # took 1.15x one index's time with fetches in the pool, 1.11x with them in the asking thread
    # (one process asking all three in turn, twice; README, "Running across machines").
    _IN_PARALLEL = frozenset({"dense", "lexical"})

    def __init__(self, name: str, folder: Path, pool: ThreadPoolExecutor):
        self.name, self.folder, self.pool = name, str(folder), pool
        try:
            self.core = ShardCore(self.folder)
        except FileNotFoundError as exc:
            raise ShardError(f"shard {name} is missing: {exc}") from exc
        except IndexFormatError as exc:
            raise ShardError(f"shard {name} ({folder}) cannot be read: {exc}") from exc

    def call(self, method: str, *args, inline: bool = False) -> _Call:
        if inline or method not in self._IN_PARALLEL:  # in the caller's thread: no hand-over to a pool thread
            done: Future = Future()
            try:
                done.set_result(getattr(self.core, method)(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
                done.set_exception(exc)
            return _Call(self, done)
        return _Call(self, self.pool.submit(getattr(self.core, method), *args))

    def _wait(self, pending):
        return pending.result()


class _RayShard(_Shard):
    def __init__(self, name: str, folder: Path, actor, ray):
        self.name, self.folder, self.actor, self.ray = name, str(folder), actor, ray

    def call(self, method: str, *args, inline: bool = False) -> _Call:
        return _Call(self, getattr(self.actor, method).remote(*args))

    def _wait(self, pending):
        from ray import exceptions

        try:
            return self.ray.get(pending, timeout=CALL_TIMEOUT_S)
        except exceptions.GetTimeoutError:
            raise ShardError(f"shard {self.name} ({self.folder}) did not answer within {CALL_TIMEOUT_S:.0f} s; "
                             "no answer is given without it") from None
        except (exceptions.RayActorError, exceptions.ActorUnavailableError) as exc:
            raise ShardError(f"shard {self.name} ({self.folder}) does not answer: its Ray actor is gone "
                             f"({type(exc).__name__}); no answer is given without it") from None
        except exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            if isinstance(cause, FileNotFoundError):
                raise ShardError(f"shard {self.name} is missing: {cause}") from None
            if isinstance(cause, (OSError, IndexFormatError)):
                raise ShardError(f"shard {self.name} ({self.folder}) cannot be read: {cause}") from None
            raise cause from None


def _shard_folders(folder: Path) -> list[tuple[str, Path]]:
    try:
        info = json.loads((folder / SHARDS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no shard set at {folder} (no {SHARDS_FILE}): make one with "
                                f"`python -m qa shard --index INDEX --shards N --out {folder}`") from None
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{folder / SHARDS_FILE} is not readable ({exc})") from exc
    if info.get("format") != SHARDS_FORMAT:
        raise IndexFormatError(f"{folder} has shard set format {info.get('format')!r}, this version reads "
                               f"{SHARDS_FORMAT}; split the index again with `python -m qa shard`")
    return [(name, folder / name) for name in info["shards"]]


def open_shards(folder: str | os.PathLike, *, engine: str = "local", address: str | None = None) -> "ShardedIndex":
    """The shard set at ``folder``, each shard in this process or in a Ray actor.

    Args:
        engine: "local" (shards loaded here, searched by a pool of threads) or "ray" (a Ray
            actor per shard, spread over the cluster's nodes; each loads its shard
            folder, at the same path, on its node).
        address: with engine "ray", the cluster to join (None: a local Ray).

    Raises:
        ValueError: an unknown engine, naming the valid ones.
        FileNotFoundError: no shard set at ``folder``.
        ShardError: a shard folder is missing or unreadable, or its actor cannot start.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}. Choose from {', '.join(map(repr, ENGINES))}")
    folder = Path(folder).resolve()
    listed = _shard_folders(folder)
    missing = [name for name, path in listed if not (path / MANIFEST).is_file()]
    if missing:
        raise ShardError(f"{len(missing)} of {len(listed)} shards of {folder} are missing: {', '.join(missing)}; "
                         "no answer is given without them")
    if engine == "local":
        # The first shard runs in the caller's thread; more pool threads than cores only
        # contend for them (4 shards at 1M: 29-32 ms with 4 threads, 25-28 ms with 2).
        pool = ThreadPoolExecutor(max_workers=max(1, min(len(listed) - 1, os.cpu_count() or 1)),
                                  thread_name_prefix="qa-shard")
        return ShardedIndex([_LocalShard(name, path, pool) for name, path in listed])
    from qa.ray_engine import start_ray

    ray = start_ray(address)
    remote = ray.remote(ShardCore).options(num_cpus=0, scheduling_strategy="SPREAD", max_restarts=0,
                                           max_concurrency=4)
    shards = [_RayShard(name, path, remote.remote(str(path)), ray) for name, path in listed]
    return ShardedIndex(shards)


# -- all shards as one index ------------------------------------------------------------------


class _Documents(Mapping):
    """The documents of all shards, fetched from their shard when first read (then cached)."""

    def __init__(self, owner: "ShardedIndex"):
        self._owner = owner

    def __getitem__(self, doc_id: str) -> Document:
        doc = self._owner._document(doc_id)
        if doc is None:
            raise KeyError(doc_id)
        return doc

    def __contains__(self, doc_id) -> bool:
        return isinstance(doc_id, str) and self._owner._document(doc_id) is not None

    def __iter__(self):
        for shard in self._owner.shards:
            yield from (row[0] for row in shard.call("catalogue").result())

    def __len__(self) -> int:
        return self._owner.document_count


class ShardedIndex:
    """Several shard indexes read as one ``Index``: passages numbered over the shards in order.

    Args:
        shards: the shards, in order (``open_shards`` makes them).
    """

    def __init__(self, shards: list[_Shard]):
        self.shards = shards
        stats = [c.result() for c in [s.call("statistics") for s in shards]]
        counts = [st["passages"] for st in stats]
        self.offsets = np.zeros(len(shards) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        self.document_count = sum(st["documents"] for st in stats)
        live = int(self.offsets[-1])
        self.avg_length = sum(st["length"] for st in stats) / live if live else 0.0
        df: Counter = Counter()
        for st in stats:
            df.update(st["df"])
        self._df, self._live = dict(df), live
        # Each shard probes the share of its lists one index over all of them would.
        self.probe_share: float | None = probe_share(live) if live else None
        self.dim = stats[0]["dim"] if stats else 384
        for c in [s.call("use_statistics", live, self.avg_length, {t: df[t] for t in st["df"]})
                  for s, st in zip(shards, stats)]:
            c.result()
        self.passages = PassageList(self, lambda i: self._entry(int(i)))
        self.documents = _Documents(self)
        self._entries: OrderedDict[int, Passage] = OrderedDict()
        # (question vector's key, passage) -> its sentences' cosines; its own cosine
        self._cosines: OrderedDict[tuple[bytes, int], np.ndarray] = OrderedDict()
        self._passage_cosines: OrderedDict[tuple[bytes, int], float] = OrderedDict()
        self._docs: OrderedDict[str, Document] = OrderedDict()
        self._doc_shard: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _where(self, i: int) -> tuple[int, int]:
        s = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return s, i - int(self.offsets[s])

    def _slices(self, allowed: np.ndarray | None) -> list[np.ndarray | None]:
        if allowed is None:
            return [None] * len(self.shards)
        return [allowed[self.offsets[s] : self.offsets[s + 1]] for s in range(len(self.shards))]

    # -- search: every shard, merged ---------------------------------------------

    def _each(self, method: str, args: list[tuple]) -> list[_Call]:
        """``method`` on every shard at once: the first in this thread once the others are under way."""
        calls: list[_Call | None] = [None] * len(self.shards)
        for s in range(len(self.shards) - 1, -1, -1):
            calls[s] = self.shards[s].call(method, *args[s], inline=s == 0)
        return calls

    def dense_top(self, qv: np.ndarray, depth: int, allowed: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        calls = self._each("dense", [(qv, depth, a, self.probe_share) for a in self._slices(allowed)])
        ids, scores = [], []
        for s, c in enumerate(calls):
            local, sc = c.result()
            ids.append(np.asarray(local, dtype=np.int64) + self.offsets[s])
            scores.append(sc)
        return _best(ids, scores, depth)

    def lexical_top(self, tokens: Sequence[str], depth: int, allowed: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        calls = self._each("lexical", [(list(tokens), depth, a) for a in self._slices(allowed)])
        ids, scores = [], []
        for s, c in enumerate(calls):
            local, sc = c.result()
            ids.append(np.asarray(local, dtype=np.int64) + self.offsets[s])
            scores.append(np.asarray(sc))
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        ids, scores = np.concatenate(ids), np.concatenate(scores)
        order = np.lexsort((ids, -scores))[:depth]
        return ids[order], scores[order]

    def idf(self, token: str) -> float:
        df = self._df.get(token, 0)
        return float(np.log(1 + (self._live - df + 0.5) / (df + 0.5))) if df else 0.0

    # -- what a question reads of its passages --------------------------------------

    def prefetch(self, ids, qv: np.ndarray | None = None, *, sentences=(), passages=()) -> None:
        """Fetch what is not cached of passages ``ids`` (and their documents) and, with ``qv``, the
        cosines to it of the sentences of passages ``sentences`` and of passages ``passages``
        themselves: one call per shard, all at once.

        A question asks for the cosines it will read: its sentences' for the passages it re-scores,
        a passage's own only where the dense search did not give it.
        """
        key = _vector_key(qv) if qv is not None else None
        with self._lock:
            # membership tests, not `set - keys()`: that walks the whole cache on every call
            rows = [i for i in sorted({int(i) for i in ids}) if i not in self._entries]
            scored = [i for i in sorted({int(i) for i in sentences}) if (key, i) not in self._cosines] if key else []
            own = [i for i in sorted({int(i) for i in passages}) if (key, i) not in self._passage_cosines] if key else []
        by_shard: dict[int, tuple[list[int], list[int], list[int]]] = {}
        for kind, numbers in enumerate((rows, scored, own)):
            for i in numbers:
                s, local = self._where(i)
                by_shard.setdefault(s, ([], [], []))[kind].append(local)
        # In process a fetch runs in this thread (``_LocalShard``); over Ray all are under way at once.
        calls = {s: self.shards[s].call("fetch", rows, qv if scored or own else None, scored, own)
                 for s, (rows, scored, own) in by_shard.items()}
        for s, call in calls.items():
            rows, docs, sentence_cosines, passage_cosines = call.result()
            self._store(s, by_shard[s][0], rows, docs)
            self._store_cosines(s, key, by_shard[s][1], sentence_cosines, by_shard[s][2], passage_cosines)

    def _store(self, s: int, local_ids: list[int], rows: list, docs: dict[str, tuple]) -> None:
        with self._lock:
            for doc_id, fields in docs.items():
                self._docs[doc_id] = _document(fields)
                self._doc_shard[doc_id] = s
            for local, row in zip(local_ids, rows):
                self._entries[int(self.offsets[s]) + local] = row
            while len(self._entries) > _CACHE_PASSAGES:
                self._entries.popitem(last=False)
            while len(self._docs) > _CACHE_DOCUMENTS:
                self._docs.popitem(last=False)

    def _store_cosines(self, s: int, key: bytes | None, sentence_ids: list[int], sentence_cosines: list,
                       passage_ids: list[int], passage_cosines: list) -> None:
        first = int(self.offsets[s])
        with self._lock:
            for cache, local_ids, values in ((self._cosines, sentence_ids, sentence_cosines),
                                             (self._passage_cosines, passage_ids, passage_cosines)):
                for local, value in zip(local_ids, values):
                    cache[key, first + local] = value
                while len(cache) > _CACHE_PASSAGES:
                    cache.popitem(last=False)

    def _entry(self, i: int):
        with self._lock:
            row = self._entries.get(i)
            if row is not None:
                self._entries.move_to_end(i)
                return row
        self.prefetch([i])
        with self._lock:
            return self._entries[i]

    def _cosine(self, cache: OrderedDict, i: int, qv: np.ndarray, **wanted):
        key = (_vector_key(qv), int(i))
        with self._lock:
            value = cache.get(key)
        if value is None:
            self.prefetch([i], qv, **wanted)
            with self._lock:
                value = cache[key]
        return value

    def _document(self, doc_id: str) -> Document | None:
        with self._lock:
            doc = self._docs.get(doc_id)
            if doc is not None:
                self._docs.move_to_end(doc_id)
                return doc
            known = self._doc_shard.get(doc_id)
        order = [known] if known is not None else range(len(self.shards))
        for s in order:
            fields = self.shards[s].call("document", doc_id).result()
            if fields is not None:
                self._store(s, [], [], {doc_id: fields})
                return self._docs.get(doc_id) or _document(fields)
        return None

    def quote(self, i: int) -> str:
        p = self.passages[i]
        return self.documents[p.doc_id].text[p.start : p.end]

    def doc_id_of(self, i: int) -> str:
        return self.passages[i].doc_id

    def sentence_cosines(self, i: int, qv: np.ndarray) -> np.ndarray:
        """Each sentence of passage ``i``'s cosine to ``qv``, computed by its shard (``Index.sentence_cosines``)."""
        return self._cosine(self._cosines, i, qv, sentences=[i])

    def passage_cosine(self, i: int, qv: np.ndarray) -> float:
        return self._cosine(self._passage_cosines, i, qv, passages=[i])

    # -- filters -----------------------------------------------------------------

    def select(self, filters: Filters) -> np.ndarray | None:
        """The passages ``filters`` let through, over all shards, as a bool mask (None: no filter).

        Raises:
            ArgumentError: an unknown doc_id, or a site no document comes from (as ``Searcher``).
        """
        if not filters.active:
            return None
        results = [c.result() for c in [s.call("select", filters) for s in self.shards]]
        known = {d for _, k, _ in results for d in k}
        unknown = [d for d in filters.doc_ids if d not in known]
        if unknown:
            more = f" and {len(unknown) - 10:,} more" if len(unknown) > 10 else ""
            raise ArgumentError(f"not in the index: {', '.join(unknown[:10])}{more}")
        if filters.sites:
            sites = {k: v for _, _, here in results for k, v in here.items()}
            missing = [s for s in filters.sites if s.casefold() not in sites]
            if missing:
                names = sorted(v for v in sites.values() if v)
                raise ArgumentError(f"no document from {', '.join(map(repr, missing))}; the sites in the index are "
                                    f"{', '.join(map(repr, names)) if names else 'none (no document has a site)'}")
        return np.concatenate([m for m, _, _ in results]) if results else np.zeros(0, dtype=bool)

    def catalogue(self) -> list[tuple]:
        return [row for c in [s.call("catalogue") for s in self.shards] for row in c.result()]

    def shard_memory_mb(self) -> list[float]:
        return [c.result() for c in [s.call("memory_mb") for s in self.shards]]


class ShardedSearcher(Searcher):
    """``Searcher`` over a ShardedIndex: the same search, with what it reads fetched a shard at a time."""

    def _candidate_mask(self, filters) -> np.ndarray | None:
        if not isinstance(filters, Filters):
            filters = Filters.of(doc_ids=filters)
        return self.index.select(filters)

    def _read_ahead(self, fused: dict[int, float], cosine: dict[int, float], qv: np.ndarray | None) -> None:
        # One round to the shards: the best passages and their documents, the sentences'
        # cosines of those re-scored by their best sentence, and a passage's own cosine where
        # the dense search did not give it (one BM25 alone found), for its quote.
        top = sorted(fused, key=lambda i: (-fused[i], i))[:_PREFETCH]
        self.index.prefetch(top, qv, sentences=top[: self.params.rescore_depth] if self.params.sentence_weight else (),
                            passages=[i for i in top if i not in cosine])

    def _rerank(self, query, ranked, fused, depth, *, reorder):
        self.index.prefetch(ranked[:depth])
        return super()._rerank(query, ranked, fused, depth, reorder=reorder)


# -- the collection over a shard set ---------------------------------------------------------


class ShardedCollection:
    """The read side of ``qa.collection.Collection`` over a shard set: ask, documents, document.

    A shard set is read-only: it is made from an index with ``split_index``; adding or
    deleting a document is done on that index, which is then split again.
    """

    def __init__(self, folder: str | os.PathLike, *, engine: str = "local", address: str | None = None,
                 embedder=None, search_params: SearchParams | None = None, reranker=None):
        self.folder = Path(folder)
        self.engine, self.address = engine, address
        self.embedder = embedder or default_embedder()
        self.search_params = search_params or SearchParams()
        if reranker is None and self.search_params.rerank_depth:
            from qa.reranker_backends import default_reranker

            reranker = default_reranker()
        self.reranker = reranker
        self._searcher: ShardedSearcher | None = None

    def open(self) -> "ShardedCollection":
        index = open_shards(self.folder, engine=self.engine, address=self.address)
        self._searcher = ShardedSearcher(index, self.embedder, self.search_params, reranker=self.reranker)
        return self

    @property
    def index(self) -> ShardedIndex:
        if self._searcher is None:
            self.open()
        return self._searcher.index

    def ask(self, question: str, *, k: int = 5, **kwargs):
        """See ``Searcher.search``."""
        if self._searcher is None:
            self.open()
        return self._searcher.search(question, k=k, **kwargs)

    def documents(self):
        from qa.collection import DocumentInfo

        return [DocumentInfo(d, title, passages, chars, Source.from_dict(source), pages)
                for d, title, passages, chars, source, pages in self.index.catalogue()]

    def document(self, doc_id: str) -> Document:
        doc_id = check_text(doc_id, "doc_id", max_chars=MAX_DOC_ID_CHARS)
        try:
            return self.index.documents[doc_id]
        except KeyError:
            raise KeyError(f"no document {doc_id!r} in the index") from None

    def _read_only(self, *args, **kwargs):
        raise DocumentError(f"{self.folder} is a shard set, which is read-only: add or delete documents in the "
                            "index it was split from, then split it again with `python -m qa shard`")

    add_documents = delete_document = update = _read_only
