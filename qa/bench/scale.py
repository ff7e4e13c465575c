"""The qa index end to end at N passages: what a user of a big corpus waits for.

For each N (the seed corpus, then 10k, 100k, 1M passages) an index is written with
qa.index's own segment writer from SciFact: its abstracts are chunked and embedded
once, then copied as new documents (the same text under new doc_ids) with small
Gaussian noise on every passage and sentence vector, so that approximate search
meets the near neighbours a large real corpus has. BM25 indexes the copies' real
tokens. A fresh process then loads the index as the app does and measures:

- load time, and process memory (RSS) with the index and the embedder loaded;
- one question at a time with real SciFact claims: ``Searcher.rank`` (embed,
  dense, BM25, fusion, best-sentence re-scoring) and ``Searcher.search`` (that,
  plus quotes, highlights and corroboration), p50 and p95;
- recall@10 of the index's dense search against exact search over the same vectors;
- adding one new document (chunk, embed, write a segment, commit) and deleting it.

Embedding time is not in "build s": at N = 1M it would be an hour. It is the
embedder's throughput from the embedder table, N / passages per second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from qa.bench.common import ROOT, load_average

logger = logging.getLogger(__name__)

SIGMA = 0.02  # noise per coordinate of a copy: cosine about 0.93 to its original


@dataclass
class IndexRun:
    """One N: the index as written, and what a fresh process measured on it."""

    corpus: str
    n: int
    segments: int
    ann: str
    build_s: float | None
    disk_mb: float
    load_s: float
    rss_mb: float
    rank_p50_ms: float
    rank_p95_ms: float
    search_p50_ms: float
    search_p95_ms: float
    reranked_p50_ms: float
    reranked_p95_ms: float
    recall10: float
    add_doc_s: float
    delete_doc_s: float
    queries: int
    load: str = ""


class _Noisy:
    """Rows of ``base`` with seeded Gaussian noise, renormalized; read like an array, block by block."""

    def __init__(self, base: np.ndarray, seed: int, dtype=np.float32):
        self.base, self.seed, self.dtype = base, seed, dtype
        self.shape = base.shape

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, rows):
        block = np.asarray(self.base[rows], dtype=np.float32)
        if self.seed:
            first = rows.start if isinstance(rows, slice) else int(np.asarray(rows).ravel()[0]) if np.size(rows) else 0
            rng = np.random.default_rng([self.seed, first or 0])
            block = block + rng.normal(0.0, SIGMA, size=block.shape).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        return block.astype(self.dtype)


@dataclass
class _Base:
    """SciFact chunked, embedded and tokenized once: the piece every copy repeats."""

    piece: object
    n: int


def _scifact_base(scifact: Path, embedder, *, max_docs: int | None, cache_dir: Path, show_progress: bool) -> _Base:
    from qa.bench.beir import load_beir, record_text
    from qa.chunking import Chunker, count_tiktokens
    from qa.corpus import Document
    from qa.index import IndexParams, _Piece, _lexical_text, embedding_input
    from qa.lexical import Postings, tokenize

    bench = load_beir(scifact)
    rows = bench.records[:max_docs] if max_docs else bench.records
    docs = [Document(str(r["_id"]), (r.get("title") or "").strip(), record_text(r)) for r in rows]
    params = IndexParams()
    chunker = Chunker(params.chunk_params(), count_tokens=count_tiktokens, count_wordpieces=embedder.count_wordpieces)
    passages = [p for d in docs for p in chunker.chunk(d)]
    by_id = {d.doc_id: i for i, d in enumerate(docs)}
    inputs = [embedding_input(docs[by_id[p.doc_id]], p, params, embedder) for p in passages]
    digest = hashlib.sha256("\x00".join(t for t, _ in inputs).encode()).hexdigest()[:16]
    path = cache_dir / f"passages-{embedder.backend}-{embedder.sha256[:12]}-{digest}.npz"
    if path.is_file():
        cached = np.load(path, allow_pickle=False)
        vectors, sentences = cached["vectors"], cached["sentences"]
    else:
        vectors, sentences = embedder.embed_passages([t for t, _ in inputs], [s for _, s in inputs],
                                                     show_progress=show_progress)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
        np.savez(tmp, vectors=vectors, sentences=sentences.astype(np.float16))
        os.replace(tmp, path)
    tokens = [tokenize(_lexical_text(docs[by_id[p.doc_id]], p, params)) for p in passages]
    table = np.array([(by_id[p.doc_id], p.start, p.end) for p in passages], dtype=np.int32)
    sentence_rows = np.zeros(len(passages) + 1, dtype=np.int64)
    np.cumsum([len(p.sentences) for p in passages], out=sentence_rows[1:])
    spans = np.array([s for p in passages for s in p.sentences], dtype=np.int32)
    entries = [{"size": len(d.text.encode()), "mtime_ns": 0} for d in docs]
    piece = _Piece(docs, entries, table, sentence_rows, spans, vectors, np.arange(len(passages)),
                   sentences.astype(np.float16), np.arange(len(spans)), Postings.build(tokens),
                   np.arange(len(passages)), (embedder.backend,))
    return _Base(piece, len(passages))


def write_replicated_index(folder: Path, base: _Base, n: int, embedder, *, layout=None) -> tuple[int, float]:
    """An index of about ``n`` passages: whole copies of the base, the first exact, the others noisy.

    Returns:
        (passages written, seconds).
    """
    from qa.corpus import Document
    from qa.index import (
        SEGMENTS, IndexParams, Layout, _commit, _new_manifest, _Piece, _write_segment,
    )
    from qa.lexical import Postings

    layout = layout or Layout()
    t0 = time.perf_counter()
    src = base.piece
    pieces, total, copy = [], 0, 0
    while total < n:
        docs = src.documents if copy == 0 else [Document(f"{d.doc_id}~{copy}", d.title, d.text) for d in src.documents]
        postings = Postings(src.postings.terms, src.postings.indptr, src.postings.rows, src.postings.tf,
                            src.postings.lengths)  # its own object: each copy's rows go to their own place
        piece = _Piece(docs, src.entries, src.table, src.sentence_rows, src.spans,
                       _Noisy(src.vectors, copy), src.vector_rows, _Noisy(src.sentences, copy, np.float16),
                       src.sentence_src, postings, src.postings_rows, src.embedded_with)
        if total + base.n > n:  # the last copy: only as many documents as reach n
            doc_col = np.asarray(src.table[:, 0])
            last_doc = int(doc_col[n - total - 1])
            piece = piece.select(list(range(last_doc + 1)))
        pieces.append(piece)
        total += len(piece.table)
        copy += 1
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    manifest = _new_manifest(embedder, IndexParams(), folder, folder)
    (folder / SEGMENTS).mkdir()
    meta = _write_segment(folder / SEGMENTS / "s000001", pieces, dim=embedder.dim, layout=layout)
    manifest["segments"] = [{"name": "s000001", "passages": meta["passages"], "documents": meta["documents"],
                             "deleted": [], "ann": meta["ann"], "embedded_with": meta["embedded_with"]}]
    manifest["next_segment"] = 2
    manifest["counts"] = {"documents": meta["documents"], "passages": meta["passages"]}
    _commit(folder, manifest)
    return total, time.perf_counter() - t0


def _disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


_CHILD = r"""
import json, os, sys, time, tempfile
from pathlib import Path
import numpy as np

def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024

args = json.loads(sys.argv[1])
from qa.backends import default_embedder
from qa.index import Index, update_index
from qa.reranker_backends import default_reranker
from qa.retrieval import Searcher
embedder = default_embedder()
reranker = default_reranker()
embedder.embed(["warm up"])
t0 = time.perf_counter()
index = Index.load(args["index"])
load_s = time.perf_counter() - t0
searcher = Searcher(index, embedder)
reranking = Searcher(index, embedder, reranker=reranker)
queries = args["queries"]
for q in queries[:5]:
    searcher.search(q, k=5)
    reranking.search(q, k=5)
rank_ms, search_ms, reranked_ms = [], [], []
for q in queries:
    t = time.perf_counter(); searcher.rank(q); rank_ms.append(1000 * (time.perf_counter() - t))
    t = time.perf_counter(); searcher.search(q, k=5); search_ms.append(1000 * (time.perf_counter() - t))
    t = time.perf_counter(); reranking.search(q, k=5); reranked_ms.append(1000 * (time.perf_counter() - t))
rss = rss_mb()

# recall@10 of dense search against exact search over the very same vectors
qv = embedder.embed(queries)
best = np.full((len(qv), 10), -np.inf, dtype=np.float32)
best_ids = np.zeros((len(qv), 10), dtype=np.int64)
for s, seg in enumerate(index.segments):
    off = index.raw_offsets[s]
    for lo in range(0, len(seg), 65536):
        block = np.asarray(seg.vectors[lo:lo + 65536], dtype=np.float32)
        sims = qv @ block.T
        live = index.raw_to_live[off + lo: off + lo + len(block)]
        sims[:, live < 0] = -np.inf
        ids = np.broadcast_to(live, sims.shape)
        allsims = np.concatenate([best, sims], axis=1)
        allids = np.concatenate([best_ids, ids], axis=1)
        top = np.argpartition(-allsims, 9, axis=1)[:, :10]
        best = np.take_along_axis(allsims, top, 1)
        best_ids = np.take_along_axis(allids, top, 1)
hits = 0
for i, v in enumerate(qv):
    found, _ = index.dense_top(v, 10)
    hits += len(set(found.tolist()) & set(best_ids[i].tolist()))
recall = hits / (10 * len(qv))

corpus = Path(tempfile.mkdtemp())
(corpus / "added.txt").write_text(args["new_doc"], encoding="utf-8")
t = time.perf_counter()
index, report = update_index(corpus, args["index"], embedder=embedder, only=["added.txt"], current=index,
                             show_progress=False)
add_s = time.perf_counter() - t
assert report.added == ["added.txt"] and "added.txt" in index.documents, report
(corpus / "added.txt").unlink()
t = time.perf_counter()
index, report = update_index(corpus, args["index"], embedder=embedder, only=["added.txt"], current=index,
                             show_progress=False)
delete_s = time.perf_counter() - t
assert report.removed == ["added.txt"] and "added.txt" not in index.documents, report
print(json.dumps({"load_s": load_s, "rss_mb": rss, "rank_ms": rank_ms, "search_ms": search_ms, "reranked_ms": reranked_ms,
                  "recall10": recall,
                  "add_doc_s": add_s, "delete_doc_s": delete_s, "segments": len(index.segments)}))
"""


def measure(index_dir: Path, queries: Sequence[str], new_doc: str) -> dict:
    """Load the index in a fresh process and time questions, recall, one added and deleted document."""
    args = json.dumps({"index": str(index_dir), "queries": list(queries), "new_doc": new_doc})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _CHILD, args], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"measuring {index_dir} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q))


def run(*, scifact: Path, sizes: Sequence[int], queries: Sequence[str], seeds: Path | None, embedder,
        workdir: Path | None = None, max_docs: int | None = None, cache_dir: Path, show_progress: bool = True,
        keep: bool = False) -> list[IndexRun]:
    """Write and measure an index at each size (and of the seed corpus when ``seeds`` is given)."""
    from qa.bench.beir import load_beir, record_text
    from qa.index import update_index

    rows: list[IndexRun] = []
    work = Path(workdir or tempfile.mkdtemp(prefix="qa-bench-index-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = load_beir(scifact)
    new_doc = record_text(bench.records[-1]) + "\n\n(added by the benchmark)"
    try:
        if seeds is not None:
            folder = work / "seeds-index"
            t0 = time.perf_counter()
            index, _ = update_index(seeds, folder, embedder=embedder, show_progress=False)
            build_s = time.perf_counter() - t0
            rows.append(_row("seed corpus", folder, build_s, measure(folder, queries, new_doc)))
        base = _scifact_base(scifact, embedder, max_docs=max_docs, cache_dir=cache_dir, show_progress=show_progress)
        for n in sizes:
            folder = work / f"index-{n}"
            written, build_s = write_replicated_index(folder, base, n, embedder)
            logger.info("wrote %d passages in %.1f s", written, build_s)
            rows.append(_row(f"SciFact x{-(-written // base.n)}", folder, build_s, measure(folder, queries, new_doc)))
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def _row(corpus: str, folder: Path, build_s: float, m: dict) -> IndexRun:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    anns = [s["ann"] for s in manifest["segments"] if s.get("ann")]
    ann = ", ".join(f"{a['type']} nlist {a['nlist']} nprobe {a['nprobe']}" for a in anns) or "exact (flat)"
    return IndexRun(
        corpus=corpus, n=manifest["counts"]["passages"], segments=m["segments"], ann=ann, build_s=build_s,
        disk_mb=_disk_mb(folder), load_s=m["load_s"], rss_mb=m["rss_mb"],
        rank_p50_ms=_pct(m["rank_ms"], 50), rank_p95_ms=_pct(m["rank_ms"], 95),
        search_p50_ms=_pct(m["search_ms"], 50), search_p95_ms=_pct(m["search_ms"], 95),
        reranked_p50_ms=_pct(m["reranked_ms"], 50), reranked_p95_ms=_pct(m["reranked_ms"], 95),
        recall10=m["recall10"], add_doc_s=m["add_doc_s"], delete_doc_s=m["delete_doc_s"],
        queries=len(m["rank_ms"]), load=load_average(),
    )


COLUMNS = [
    ("corpus", "corpus"), ("n", "passages"), ("ann", "dense search"), ("build_s", "build s", ".1f"),
    ("disk_mb", "disk MB", ".0f"), ("load_s", "load s", ".2f"), ("rss_mb", "RSS MB", ".0f"),
    ("rank_p50_ms", "rank p50 ms", ".2f"), ("rank_p95_ms", "rank p95 ms", ".2f"),
    ("search_p50_ms", "answer p50 ms", ".2f"), ("search_p95_ms", "answer p95 ms", ".2f"),
    ("reranked_p50_ms", "reranked p50 ms", ".1f"), ("reranked_p95_ms", "reranked p95 ms", ".1f"),
    ("recall10", "recall@10", ".4f"), ("add_doc_s", "add doc s", ".3f"), ("delete_doc_s", "delete doc s", ".3f"),
    ("load", "load avg"),
]


@dataclass
class BuildRun:
    """A real build of a corpus folder through ``update_index``: chunk, embed, tokenize, write, merge."""

    corpus: str
    documents: int
    passages: int
    seconds: float
    passages_per_s: float
    peak_rss_mb: float
    segments: int
    backend: str
    load: str = ""


_BUILD_CHILD = r"""
import json, sys, time
args = json.loads(sys.argv[1])
from qa.backends import default_embedder
from qa.index import update_index
embedder = default_embedder()
embedder.embed(["warm up"])
t = time.perf_counter()
index, report = update_index(args["corpus"], args["index"], embedder=embedder, show_progress=False)
seconds = time.perf_counter() - t
peak = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"documents": report.documents, "passages": report.passages, "seconds": seconds,
                  "peak_rss_mb": peak, "segments": report.segments, "backend": embedder.backend}))
"""


def measure_build(scifact: Path, *, max_docs: int | None = None, workdir: Path | None = None) -> BuildRun:
    """Write SciFact as a folder of files and index it from nothing in a fresh process."""
    from qa.bench.beir import load_beir, write_corpus

    bench = load_beir(scifact)
    if max_docs:
        bench.records = bench.records[:max_docs]
    work = Path(tempfile.mkdtemp(prefix="qa-bench-build-", dir=workdir))
    try:
        write_corpus(bench, work / "corpus")
        args = json.dumps({"corpus": str(work / "corpus"), "index": str(work / "index")})
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", _BUILD_CHILD, args], capture_output=True, text=True, env=env)
        if out.returncode:
            raise RuntimeError(f"building SciFact failed:\n{out.stderr[-3000:]}")
        m = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BuildRun(corpus="SciFact" if not max_docs else f"SciFact, first {max_docs} documents",
                    documents=m["documents"], passages=m["passages"], seconds=m["seconds"],
                    passages_per_s=m["passages"] / m["seconds"], peak_rss_mb=m["peak_rss_mb"],
                    segments=m["segments"], backend=m["backend"], load=load_average())


BUILD_COLUMNS = [
    ("corpus", "corpus"), ("documents", "documents"), ("passages", "passages"), ("backend", "embedder"),
    ("seconds", "build s", ".1f"), ("passages_per_s", "passages/s", ".1f"), ("peak_rss_mb", "peak RSS MB", ".0f"),
    ("segments", "segments"), ("load", "load avg"),
]
