"""``python -m qa bench``: how fast qa is, at the seed corpus and at a million passages.

One run prints these tables (``--quick`` a small version of each):

- **Embedders**, below.
- **Build**: a real build of SciFact (5,183 files) from nothing through
  ``update_index``: passages/s of the whole pipeline and peak memory.
- **Index end to end** at the seed corpus and N = 10k, 100k, 1M passages
  (``qa.bench_index``): query latency in-process, recall@10 of dense search against
  exact search, build time, disk, memory with the index loaded, adding and deleting
  one document.
- **Web app**: ``ui.py`` cold start to ready, and ``/ask`` through gradio_client
  against an empty endpoint on the same server (``scripts/bench_ui.py``).
- **Vector indexes** (``--ann-study``), below: the study that chose IVF-SQ8.

The studies behind the choices:

- **Embedders**: passages/s and tokens/s of each backend on the same ~128-token
  SciFact passages; cosine of its vectors to torch's; dense SciFact nDCG@10 and
  top-10 overlap with torch.
- **Vector indexes** at N = 10k, 100k, 1M: flat, HNSW and IVF built on real SciFact
  passage vectors replicated with small Gaussian noise (uniform random vectors make
  approximate indexes look far worse than real data does), queried with the real
  SciFact queries: p50/p95 latency of one query, recall@10 against exact search,
  build time, size on disk, process memory with the index loaded, and the time to
  add (and remove) one document's passages.

SciFact is read from ``../shared/bench/scifact`` (or ``--scifact``) at run time and
never copied; vectors are cached under ``.cache/bench``. Run ``python -m qa bench``
(``--quick`` for a small version).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from qa.bench.beir import ndcg_at
from qa.bench.common import DEFAULT_SCIFACT, ROOT, default_bench_cache, format_table, load_average, machine

logger = logging.getLogger(__name__)

# -- SciFact -----------------------------------------------------------------------


@dataclass
class SciFact:
    """SciFact cut into passages the way the index cuts documents.

    ``passages[i]`` belongs to document ``passage_docs[i]``; ``queries`` and
    ``qrels`` are the test split (300 claims).
    """

    passages: list[str]
    passage_docs: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    other_queries: list[str] = field(default_factory=list)


def load_scifact(folder: str | os.PathLike = DEFAULT_SCIFACT, *, max_docs: int | None = None,
                 show_progress: bool = True) -> SciFact:
    """Read SciFact and cut its abstracts into passages (title line, then abstract; 128-token budget).

    Args:
        max_docs: only the first documents of the corpus file (for ``--quick``).

    Raises:
        FileNotFoundError: a SciFact file is missing, naming it.
    """
    from qa.chunking import Chunker, count_tiktokens
    from qa.corpus import Document
    from qa.index import IndexParams

    from qa.bench.beir import load_beir, record_text
    from qa.embedding import bundled_model_path, open_tokenizer

    bench = load_beir(folder)
    counter = open_tokenizer(bundled_model_path())
    counter.no_truncation()
    counter.no_padding()

    def wordpieces(texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in counter.encode_batch(list(texts), add_special_tokens=False)]

    chunker = Chunker(IndexParams().chunk_params(), count_tokens=count_tiktokens, count_wordpieces=wordpieces)
    passages, docs = [], []
    rows = bench.records[:max_docs] if max_docs else bench.records
    iterator = rows
    if show_progress:
        from tqdm import tqdm

        iterator = tqdm(rows, desc="Chunking SciFact", unit="doc")
    for row in iterator:
        doc = Document(str(row["_id"]), (row.get("title") or "").strip(), record_text(row))
        for p in chunker.chunk(doc):
            passages.append(doc.text[p.start : p.end])
            docs.append(doc.doc_id)
    with open(Path(folder) / "queries.jsonl", encoding="utf-8") as f:
        others = [q["text"] for q in map(json.loads, filter(str.strip, f)) if str(q["_id"]) not in bench.queries]
    queries, qrels = bench.queries, bench.qrels
    return SciFact(passages, docs, queries, qrels, others)


def dense_rankings(passage_vectors: np.ndarray, passage_docs: Sequence[str], query_vectors: np.ndarray,
                   k: int = 10) -> list[list[str]]:
    """Documents ranked by their best passage's cosine, top ``k`` per query (exact search)."""
    scores = query_vectors @ passage_vectors.T
    docs = np.asarray(passage_docs)
    out = []
    for row in scores:
        ranked, seen = [], set()
        for i in np.argsort(-row, kind="stable"):
            if docs[i] not in seen:
                seen.add(docs[i])
                ranked.append(str(docs[i]))
                if len(ranked) == k:
                    break
        out.append(ranked)
    return out


# -- embedders ---------------------------------------------------------------------


@dataclass
class EmbedderRow:
    """One backend on the benchmark passages."""

    backend: str
    passages: int
    seconds: float
    passages_per_s: float
    tokens_per_s: float
    speedup: float | None = None
    query_ms: float | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None
    ndcg10: float | None = None
    top10_overlap: float | None = None
    load: str = ""


def _open(backend: str, cache_dir: Path | None):
    """A backend with its default batch size, unchecked: fidelity is what is measured."""
    from qa import backends

    if backend == "torch":
        return backends.TorchEmbedder()
    return backends.open_backend(backend, cache_dir=cache_dir, min_cosine=None)


def _ms(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t0) * 1000


def measure_throughput(embedder, texts: Sequence[str], *, warmup: int = 32) -> tuple[float, np.ndarray]:
    """Seconds to embed ``texts`` (after a warm-up batch) and the vectors."""
    embedder.embed(list(texts[:warmup]))
    t0 = time.perf_counter()
    vectors = embedder.embed(list(texts))
    return time.perf_counter() - t0, vectors


def bench_embedders(
    data: SciFact, backends: Sequence[str] = ("torch", "openvino", "onnx", "onnx-int8"), *,
    throughput_passages: int = 512, rounds: int = 2, full: bool = True, cache_dir: Path | None = None,
    show_progress: bool = True, sample: Sequence[str] | None = None,
) -> list[EmbedderRow]:
    """Throughput and fidelity of each backend; the first backend is the reference.

    Args:
        throughput_passages: how many passages (spread over ``sample``) to time.
        rounds: timing rounds, the backends taking turns in each (so a burst of
            load elsewhere does not fall on one backend only); the best round counts.
        sample: the passages to spread over; default all of them.
        full: also embed every SciFact passage and the test queries with each
            backend, for nDCG@10 and top-10 overlap with the reference (cached).

    Returns:
        list of EmbedderRow, in the order of ``backends``; ``query_ms`` is the median
        time to embed one test query alone.
    """
    pool = list(sample or data.passages)
    sample = pool[:: max(1, len(pool) // throughput_passages)][:throughput_passages]
    query_texts = list(data.queries.values())
    embedders = [_open(name, cache_dir) for name in backends]
    tokens = sum(n + 2 for n in embedders[0].count_wordpieces(sample))  # as fed: [CLS] ... [SEP]
    best = [math.inf] * len(embedders)
    vectors: list[np.ndarray] = [np.empty(0)] * len(embedders)
    loads: list[list[str]] = [[] for _ in embedders]
    for _ in range(rounds):
        for i, embedder in enumerate(embedders):
            loads[i].append(load_average())
            seconds, vectors[i] = measure_throughput(embedder, sample)
            best[i] = min(best[i], seconds)
    rows, ref_rankings = [], None
    for i, embedder in enumerate(embedders):
        row = EmbedderRow(embedder.backend, len(sample), best[i], len(sample) / best[i], tokens / best[i],
                          speedup=best[0] / best[i], load=", ".join(loads[i]))
        for q in query_texts[:5]:  # warm up the one-text path
            embedder.embed([q])
        row.query_ms = float(np.median([_ms(embedder.embed, [q]) for q in query_texts[:100]]))
        cos = np.sum(vectors[i] * vectors[0], axis=1)
        row.cosine_min, row.cosine_mean = float(cos.min()), float(cos.mean())
        if full:
            pv = cached_vectors(embedder, data.passages, cache_dir=cache_dir, show_progress=show_progress)
            qv = embedder.embed(query_texts)
            rankings = dense_rankings(pv, data.passage_docs, qv)
            row.ndcg10 = float(np.mean([ndcg_at(r, data.qrels[q]) for q, r in zip(data.queries, rankings)]))
            if ref_rankings is None:
                ref_rankings = rankings
            row.top10_overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rankings, ref_rankings)]))
        rows.append(row)
        logger.info("%s", row)
    del embedders
    gc.collect()
    return rows


def cached_vectors(embedder, texts: Sequence[str], *, cache_dir: Path | None = None,
                   show_progress: bool = True) -> np.ndarray:
    """The embedder's vectors of ``texts``, from ``.cache/bench`` when already computed."""
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
    folder = Path(cache_dir).parent / "bench" if cache_dir else default_bench_cache()
    path = folder / f"vectors-{embedder.backend}-{embedder.sha256[:12]}-{digest}.npy"
    if path.is_file():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape == (len(texts), embedder.dim):
            return vectors
    vectors = embedder.embed(list(texts), show_progress=show_progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npy")
    np.save(tmp, vectors, allow_pickle=False)
    os.replace(tmp, path)
    return vectors


# -- vector indexes ----------------------------------------------------------------

INDEX_KINDS = ("flat", "hnsw", "hnsw-sq8", "ivf", "ivf-sq8")


def replicate(base: np.ndarray, n: int, *, sigma: float = 0.02, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors: ``base`` itself, then noisy copies of its rows, renormalized.

    A copy of a 384-d unit vector with per-coordinate noise ``sigma`` = 0.02 keeps a
    cosine of about 1 / sqrt(1 + 384 sigma^2) = 0.93 to its original: closer than
    most real neighbours, so each passage gains a cluster of near neighbours as a
    large real corpus would.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    first = min(n, len(base))
    out[:first] = base[:first]
    for start in range(first, n, 65536):
        stop = min(n, start + 65536)
        rows = base[np.arange(start, stop) % len(base)]
        block = rows + rng.normal(0.0, sigma, size=rows.shape).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def make_index(kind: str, dim: int, *, m: int = 32, ef_construction: int = 80, nlist: int = 1024):
    """An empty FAISS inner-product index of one kind.

    Args:
        kind: "flat" (exact), "hnsw" (graph over full vectors), "hnsw-sq8" (graph over
            8-bit vectors), "ivf" (inverted lists of full vectors) or "ivf-sq8".
        m: HNSW neighbours per node.
        ef_construction: HNSW candidate list while building.
        nlist: IVF lists (k-means centroids).

    Raises:
        ValueError: an unknown kind, naming the valid ones.
    """
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind in ("hnsw", "hnsw-sq8"):
        index = (faiss.IndexHNSWFlat(dim, m, ip) if kind == "hnsw"
                 else faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, ip))
        index.hnsw.efConstruction = ef_construction
        return index
    if kind == "ivf":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, ip)
    if kind == "ivf-sq8":
        return faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
    raise ValueError(f"unknown index kind {kind!r}; choose from {', '.join(map(repr, INDEX_KINDS))}")


def set_search_param(index, kind: str, value: int | None) -> str:
    """Set efSearch (HNSW) or nprobe (IVF); returns the setting as text."""
    if kind.startswith("hnsw"):
        index.hnsw.efSearch = value
        return f"efSearch={value}"
    if kind.startswith("ivf"):
        index.nprobe = value
        return f"nprobe={value}"
    return ""


@dataclass
class IndexRow:
    """One index kind, build parameters and search setting, at one size N."""

    n: int
    index: str
    build: str
    search: str
    recall10: float
    p50_ms: float
    p95_ms: float
    build_s: float
    size_mb: float
    rss_mb: float
    load_s: float
    save_s: float
    add_ms: float
    remove_ms: float | None
    load: str = ""


@contextmanager
def omp_threads(n: int):
    """FAISS's OpenMP threads inside the block.

    One query at a time has little to share out, and on a loaded 2-core machine an
    OpenMP barrier waiting for a descheduled thread cost a flat search of 10k vectors
    32 ms instead of 0.3 ms; searches and small adds are timed with one thread.
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _time_queries(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, k: int = 10
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ids of each query searched alone (as a user's question is), and each search's ms."""
    ids = np.empty((len(queries), k), dtype=np.int64)
    ms = np.empty(len(queries))
    for i in range(len(queries)):
        t0 = time.perf_counter()
        ids[i] = search(queries[i : i + 1])
        ms[i] = (time.perf_counter() - t0) * 1000
    return ids, ms


def searcher(index, vectors: np.ndarray | None = None, *, k: int = 10, rerank: int = 0):
    """One query's top-k ids; with ``rerank``, that many candidates re-scored exactly on ``vectors``.

    Re-scoring undoes the error of 8-bit codes; in an index the full vectors can stay
    on disk (a memory-mapped .npy) since only ``rerank`` rows are read per query.
    """
    if not rerank:
        return lambda q: index.search(q, k)[1][0]

    def search(q: np.ndarray) -> np.ndarray:
        cand = index.search(q, rerank)[1][0]
        cand = cand[cand >= 0]
        scores = vectors[cand] @ q[0]
        top = cand[np.argsort(-scores, kind="stable")[:k]]
        return np.pad(top, (0, k - len(top)), constant_values=-1)

    return search


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)]))


_RSS_PROBE = """
import json, sys, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
import faiss
before = rss()
t0 = time.perf_counter()
index = faiss.read_index(sys.argv[1])
print(json.dumps({"load_s": time.perf_counter() - t0, "rss_mb": rss(), "index_mb": rss() - before}))
"""


def loaded_rss(path: Path) -> dict:
    """Load an index file in a fresh process: its RSS (MB) and load time."""
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_index(
    kind: str, vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray, *, build: dict | None = None,
    search_values: Sequence[int | None] = (None,), train_size: int = 100_000, workdir: Path,
    seed: int = 0, search_threads: int = 1, reranks: Sequence[int] = (0,),
) -> list[IndexRow]:
    """Build one index over ``vectors`` and measure it at each search setting.

    Args:
        exact: the exact top-10 ids of ``queries`` (from a flat index).
        build: keyword arguments of ``make_index``.
        search_values: efSearch or nprobe values to try (None for flat).
        train_size: vectors sampled to train IVF centroids or SQ8 ranges.
        workdir: where the index file is written to measure size, save and load.
        search_threads: FAISS threads while searching and adding one document
            (building uses all cores).
        reranks: for each, re-score that many candidates exactly (for 8-bit indexes); 0: none.

    Returns:
        list of IndexRow, one per rerank and search value.
    """
    import faiss

    build = build or {}
    n, dim = vectors.shape
    index = make_index(kind, dim, **build)
    t0 = time.perf_counter()
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(n, size=min(n, train_size), replace=False))]
        index.train(sample)
    index.add(vectors)
    build_s = time.perf_counter() - t0
    path = workdir / f"{kind}-{n}.faiss"
    t0 = time.perf_counter()
    faiss.write_index(index, str(path))
    save_s = time.perf_counter() - t0
    size_mb = path.stat().st_size / 2**20
    loaded = loaded_rss(path)
    path.unlink()
    build_text = " ".join(f"{k}={v}" for k, v in build.items())
    rows = []
    with omp_threads(search_threads):
        for rerank, value in [(r, v) for r in reranks for v in search_values]:
            setting = set_search_param(index, kind, value)
            if rerank:
                setting += f" rerank={rerank}"
            search = searcher(index, vectors, rerank=rerank)
            _time_queries(search, queries[:20])  # warm caches
            load = load_average()
            found, ms = _time_queries(search, queries)
            rows.append(IndexRow(n, kind, build_text, setting, _recall(found, exact), float(np.percentile(ms, 50)),
                                 float(np.percentile(ms, 95)), build_s, size_mb, loaded["rss_mb"],
                                 loaded["load_s"], save_s, 0.0, None, load))
        # One new document of five passages, then its removal where the index supports it.
        doc = replicate(vectors[:5], 10, sigma=0.02, seed=seed + 1)[5:]
        t0 = time.perf_counter()
        index.add(doc)  # FAISS appends, so the ids are n .. n + 4
        add_ms = (time.perf_counter() - t0) * 1000
        remove_ms = None
        if not kind.startswith("hnsw"):  # HNSW graphs cannot drop nodes: tombstones instead
            t0 = time.perf_counter()
            index.remove_ids(faiss.IDSelectorRange(n, n + 5))
            remove_ms = (time.perf_counter() - t0) * 1000
    for row in rows:
        row.add_ms, row.remove_ms = add_ms, remove_ms
    return rows


def default_index_grid(n: int) -> list[tuple[str, dict, tuple, tuple]]:
    """(kind, build parameters, search values, reranks) to try at size ``n``."""
    nlist = max(64, 1 << int(round(math.log2(2 * math.sqrt(n)))))  # about 2 sqrt(N), a power of two
    ef = (16, 32, 64, 128) if n < 500_000 else (64, 128, 256, 512, 1024)
    return [
        ("flat", {}, (None,), (0,)),
        ("hnsw", {"m": 32, "ef_construction": 80}, ef, (0,)),
        ("hnsw-sq8", {"m": 32, "ef_construction": 80}, ef[2:], (0, 40)),
        ("ivf", {"nlist": nlist}, (16, 32, 64, 128, 256) if n >= 500_000 else (16, 32, 64, 128), (0,)),
        ("ivf-sq8", {"nlist": nlist}, (64, 128, 256) if n >= 500_000 else (32, 64, 128), (40,)),
    ]


def bench_indexes(
    base: np.ndarray, queries: np.ndarray, sizes: Sequence[int] = (10_000, 100_000, 1_000_000), *,
    grid: Callable[[int], list[tuple[str, dict, tuple, tuple]]] = default_index_grid, sigma: float = 0.02,
    workdir: Path | None = None,
) -> list[IndexRow]:
    """Every index of ``grid(n)`` at every size, on ``base`` replicated with noise.

    Returns:
        list of IndexRow, by size, then as the grid lists them.
    """
    import faiss

    rows: list[IndexRow] = []
    with tempfile.TemporaryDirectory(prefix="qa-bench-", dir=workdir) as tmp:
        for n in sizes:
            vectors = replicate(base, n, sigma=sigma)
            exact_index = faiss.IndexFlatIP(vectors.shape[1])
            exact_index.add(vectors)
            _, exact = exact_index.search(queries, 10)
            del exact_index
            for kind, build, values, reranks in grid(n):
                logger.info("N=%d %s %s", n, kind, build)
                found = bench_index(kind, vectors, queries, exact, build=build, search_values=values,
                                    workdir=Path(tmp), reranks=reranks)
                for row in found:
                    logger.info("%s", row)
                rows.extend(found)
                gc.collect()
            del vectors
            gc.collect()
    return rows


# -- the report --------------------------------------------------------------------


EMBEDDER_COLUMNS = [
    ("backend", "backend"), ("passages_per_s", "passages/s", ".1f"), ("tokens_per_s", "tokens/s", ".0f"),
    ("speedup", "x torch", ".2f"), ("query_ms", "query ms", ".2f"), ("cosine_min", "cos min", ".5f"),
    ("cosine_mean", "cos mean", ".5f"), ("ndcg10", "nDCG@10", ".4f"), ("top10_overlap", "top-10 overlap", ".4f"),
    ("load", "load avg"),
]
INDEX_COLUMNS = [
    ("n", "N"), ("index", "index"), ("build", "build params"), ("search", "search"),
    ("recall10", "recall@10", ".4f"), ("p50_ms", "p50 ms", ".3f"), ("p95_ms", "p95 ms", ".3f"),
    ("build_s", "build s", ".1f"), ("size_mb", "disk MB", ".0f"), ("rss_mb", "RSS MB", ".0f"),
    ("load_s", "load s", ".2f"), ("save_s", "save s", ".2f"), ("add_ms", "add doc ms", ".2f"),
    ("remove_ms", "remove doc ms", ".2f"), ("load", "load avg"),
]


@dataclass
class UIRun:
    """``scripts/bench_ui.py`` over the seed corpus: start-up, and /ask against an empty endpoint."""

    ready_s: float
    first_ask_ms: float
    ask_p50_ms: float
    noop_p50_ms: float
    ratio: float
    concurrent: str
    errors: int
    load: str = ""


UI_COLUMNS = [
    ("ready_s", "ui.py start to ready s (median)", ".2f"), ("first_ask_ms", "first /ask ms", ".0f"),
    ("ask_p50_ms", "/ask p50 ms", ".1f"), ("noop_p50_ms", "empty endpoint p50 ms", ".1f"),
    ("ratio", "/ask ÷ empty", ".2f"), ("concurrent", "concurrent clients x questions"), ("errors", "errors"),
    ("load", "load avg"),
]


def bench_ui(*, quick: bool = False) -> UIRun:
    """Run scripts/bench_ui.py (it starts and stops its own servers) and read its figures."""
    script = ROOT / "scripts" / "bench_ui.py"
    with tempfile.TemporaryDirectory(prefix="qa-bench-ui-") as tmp:
        out = Path(tmp) / "ui.json"
        sizes = ["--starts", "1", "--requests", "50", "--clients", "5"] if quick else []
        done = subprocess.run([sys.executable, str(script), "--json", str(out), *sizes], capture_output=True, text=True)
        if not out.is_file():
            raise RuntimeError(f"scripts/bench_ui.py failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        r = json.loads(out.read_text(encoding="utf-8"))
    con = r["concurrent"]
    return UIRun(ready_s=r["start"]["ready_median_s"], first_ask_ms=float(np.median(r["start"]["first_ask_ms"])),
                 ask_p50_ms=r["latency"]["ask"]["p50_ms"], noop_p50_ms=r["latency"]["noop"]["p50_ms"],
                 ratio=r["latency"]["p50_ratio"], concurrent=f"{con['clients']} x {con['requests'] // con['clients']}",
                 errors=con["errors"], load=load_average())


def run(
    *, quick: bool = False, scifact: str | os.PathLike = DEFAULT_SCIFACT,
    backends: Sequence[str] = ("torch", "openvino", "onnx", "onnx-int8"), sizes: Sequence[int] | None = None,
    quality: bool = True, queries: int | None = None, cache_dir: Path | None = None, show_progress: bool = True,
    ann_study: bool = False, ui: bool = True, formats: bool = True,
) -> dict:
    """Every table; returns {"machine", "date", "embedders", "build", "system", "ui", "indexes"}.

    Args:
        quick: 600 SciFact documents, 128 passages timed once, no nDCG, N = 10k only.
        backends: embedder backends to compare; the first is the reference.
        sizes: index sizes; default 10k, 100k, 1M (10k with ``quick``).
        quality: embed all of SciFact with each backend for nDCG@10 and top-10 overlap.
        queries: how many SciFact queries to time against each index.
        ann_study: also compare flat, HNSW and IVF FAISS indexes at each size.
        ui: also measure ui.py (start-up and /ask).
        formats: also measure extraction on the formats fixtures and a 100-page PDF against
            the same text as .txt (qa.bench_formats).
    """
    from qa.bench import scale as bench_index
    from qa import backends as qb

    started = time.strftime("%Y-%m-%d %H:%M")
    data = load_scifact(scifact, max_docs=600 if quick else None, show_progress=show_progress)
    counts = np.asarray(qb.TorchEmbedder().count_wordpieces(data.passages))
    full_passages = [p for p, n in zip(data.passages, counts) if n >= 96]  # near the 128-token budget
    embed_rows = bench_embedders(
        data, backends, throughput_passages=128 if quick else 512, rounds=1 if quick else 2,
        full=quality and not quick,
        cache_dir=cache_dir, show_progress=show_progress, sample=full_passages,
    )
    embedder = qb.load_embedder("auto", cache_dir=cache_dir)
    base = cached_vectors(embedder, data.passages, cache_dir=cache_dir, show_progress=show_progress)
    query_texts = list(data.queries.values()) + data.other_queries
    query_texts = query_texts[: queries or (200 if quick else 1000)]
    sizes = sizes or ((10_000,) if quick else (10_000, 100_000, 1_000_000))
    build_rows = [bench_index.measure_build(Path(scifact), max_docs=600 if quick else None)]
    system_rows = bench_index.run(
        scifact=Path(scifact), sizes=sizes, queries=query_texts, seeds=ROOT / "seeds",
        embedder=embedder, max_docs=600 if quick else None,
        cache_dir=Path(cache_dir).parent / "bench" if cache_dir else default_bench_cache(), show_progress=show_progress,
    )
    index_rows = []
    if ann_study:
        query_vectors = embedder.embed(query_texts)
        del embedder
        gc.collect()
        index_rows = bench_indexes(base, query_vectors, sizes)
    ui_rows = [bench_ui(quick=quick)] if ui else []
    extraction_rows, pdf_rows = [], []
    if formats:
        from qa.bench import formats as bench_formats

        extraction_rows = bench_formats.measure_extraction()
        pdf_rows = [bench_formats.measure_pdf_vs_txt(pages=100, repeats=1 if quick else 3, scifact=Path(scifact))]
    return {"machine": machine(), "date": started, "embedders": embed_rows, "build": build_rows,
            "system": system_rows, "ui": ui_rows, "indexes": index_rows,
            "extraction": extraction_rows, "pdf": pdf_rows,
            "passages": len(data.passages), "queries": len(query_texts)}


def report(result: dict) -> str:
    """The run as Markdown: machine, then the two tables."""
    emb = result["embedders"]
    lengths = ""
    if emb:
        pieces = emb[0].tokens_per_s / emb[0].passages_per_s
        lengths = f"{emb[0].passages} SciFact passages of ~{pieces:.0f} word pieces"
    from qa.bench import scale as bench_index

    parts = [
        f"{result['date']} on {result['machine']}",
        f"Embedding: {lengths}; cosine to {emb[0].backend if emb else '-'} on those passages; nDCG@10 and top-10 "
        "overlap from dense search of all SciFact passages (300 test queries).",
        format_table(emb, EMBEDDER_COLUMNS),
        "Build: a folder of SciFact files indexed from nothing by `update_index` in a fresh process "
        "(read, chunk, embed, tokenize, write segments, merge).",
        format_table(result["build"], bench_index.BUILD_COLUMNS),
        f"Index end to end: {result['queries']} SciFact claims asked one at a time in a fresh process that loaded "
        "the index and the embedder. rank = embed + dense + BM25 + fusion + best-sentence re-scoring; answer = "
        "rank + quotes, highlights, corroboration without the relevance model; reranked = the answer /ask "
        "returns, with the relevance model reading the best first-stage passages. Copies of SciFact beyond the first carry "
        "noisy vectors; build s is writing the index from vectors (embedding them is the build table's rate). "
        "RSS after the questions, with the embedder loaded.",
        format_table(result["system"], bench_index.COLUMNS),
    ]
    if result["ui"]:
        parts += ["Web app over the seed corpus (scripts/bench_ui.py).", format_table(result["ui"], UI_COLUMNS)]
    if result.get("extraction") or result.get("pdf"):
        from qa.bench import formats as bench_formats

        parts.append(bench_formats.report(result.get("extraction", []), result.get("pdf", [])))
    if result["indexes"]:
        parts += [
            f"Vector search study: SciFact passage vectors ({result['passages']}) replicated with noise to N; "
            f"{result['queries']} real SciFact queries searched one at a time; recall@10 against exact search; "
            "RSS of a fresh process with only the index loaded.",
            format_table(result["indexes"], INDEX_COLUMNS),
        ]
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small version (a few minutes)")
    parser.add_argument("--scifact", default=str(DEFAULT_SCIFACT), help="the SciFact folder (BEIR format)")
    parser.add_argument("--backends", default="torch,openvino,onnx,onnx-int8",
                        help="embedder backends, the reference first (default: %(default)s)")
    parser.add_argument("--sizes", default=None, help="index sizes, e.g. 10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=None, help="queries timed per index")
    parser.add_argument("--no-quality", action="store_true", help="skip nDCG@10 (embedding all of SciFact per backend)")
    parser.add_argument("--ann-study", action="store_true", help="also compare flat, HNSW and IVF FAISS indexes")
    parser.add_argument("--no-ui", action="store_true", help="skip the ui.py start-up and /ask measurement")
    parser.add_argument("--no-formats", action="store_true",
                        help="skip extraction on the formats fixtures and the PDF against .txt indexing time")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    result = run(quick=args.quick, scifact=args.scifact, backends=args.backends.split(","), sizes=sizes,
                 quality=not args.no_quality, queries=args.queries, ann_study=args.ann_study, ui=not args.no_ui,
                 formats=not args.no_formats)
    print(report(result))
    if args.json:
        data = {**result, **{key: [asdict(r) for r in result[key]]
                             for key in ("embedders", "build", "system", "ui", "indexes", "extraction", "pdf")}}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
