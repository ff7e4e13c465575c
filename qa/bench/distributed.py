"""Beyond one machine, measured on this one: Ray builds and sharded search.

``python -m qa.bench.distributed build --scifact DIR [--docs 1500]``: SciFact abstracts written
as files, built from nothing four ways, one after the other, each in a fresh process:
the local build (``update_index``), the Ray build with 1 and with 2 embedder workers on
a local Ray, and the Ray build on a two-node cluster simulated on this machine (``ray
start --head --num-cpus 1`` plus a second ``ray start --address ... --num-cpus 1``).
Ray's own start-up is timed apart from the build. Every Ray index is compared with the
local one (documents, passages, vectors' cosine, BM25 statistics).

``python -m qa.bench.distributed query --scifact DIR [--passages 1000000]``: an index of that
many passages written from SciFact copies with noise (``qa.bench.scale``), split into 2
and 4 shards; SciFact claims asked one at a time (``Searcher.search``, no relevance
model unless ``--rerank``, as the index table's *answer*). For each of 1, 2 and 4 shards,
one fresh process holds the one index, the shards in-process and the shards as Ray
actors, and asks each claim of all three in turn: p50 and p95, each against the one index
measured beside it, and each shard actor's memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qa.bench import beir, scale
from qa.bench.common import DEFAULT_SCIFACT, ROOT, default_bench_cache, load_average

logger = logging.getLogger(__name__)


def _run(code: str, args: dict, *, env: dict | None = None, timeout: float = 3600) -> dict:
    env = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                         env=env, timeout=timeout, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"benchmark step failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- builds -----------------------------------------------------------------------------

_LOCAL_BUILD = r"""
import json, sys, time
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
from qa.index import update_index
from qa.backends import default_embedder
embedder = default_embedder()
embedder.embed(["warm up"])
ready = time.perf_counter() - t0
t = time.perf_counter()
index, report = update_index(args["corpus"], args["index"], embedder=embedder, show_progress=False)
print(json.dumps({"start_s": ready, "build_s": time.perf_counter() - t, "passages": report.passages,
                  "documents": report.documents}))
"""

_RAY_BUILD = r"""
import json, sys, time
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
from qa.ray_engine import start_ray
ray = start_ray(args["address"], num_cpus=args["cpus"])
ready = time.perf_counter() - t0
from qa.distributed import ray_update_index
t = time.perf_counter()
index, report = ray_update_index(args["corpus"], args["index"], address=args["address"], workers=args["workers"],
                                 show_progress=False)
print(json.dumps({"start_s": ready, "build_s": time.perf_counter() - t, "passages": report.passages,
                  "documents": report.documents, "nodes": len(ray.nodes())}))
"""


def compare_indexes(a: Path, b: Path) -> dict:
    """How far index ``b`` is from ``a``: documents, passages, vectors, BM25 statistics."""
    from qa.index import Index

    x, y = Index.load(a), Index.load(b)
    same_docs = list(x.documents) == list(y.documents) and all(
        x.documents[d].text == y.documents[d].text for d in x.documents)
    cos = float((x.passage_vectors(0, len(x)) * y.passage_vectors(0, len(y))).sum(1).min()) if len(x) == len(y) else 0.0
    px, py = x.segments[0].postings, y.segments[0].postings
    same_bm25 = (px.terms == py.terms and np.array_equal(px.indptr, py.indptr)
                 and np.array_equal(np.asarray(px.lengths), np.asarray(py.lengths))
                 and x.bm25.avg_length == y.bm25.avg_length)
    return {"same_documents": same_docs, "same_passages": list(x.passages) == list(y.passages),
            "min_cosine": cos, "same_bm25": bool(same_bm25)}


def _ray_cli(*args: str, env: dict) -> None:
    done = subprocess.run([sys.executable, "-m", "qa.ray_engine", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"`ray {' '.join(args)}` exited with status {done.returncode}:\n{tail}")


def bench_builds(scifact: Path, *, docs: int, work: Path) -> list[dict]:
    from qa.ray_engine import ray_environment

    bench = beir.load_beir(scifact)
    bench.records = bench.records[:docs]
    corpus = work / "corpus"
    beir.write_corpus(bench, corpus)
    rows = []

    def row(name, m, folder):
        m.update(name=name, load=load_average(), passages_per_s=m["passages"] / m["build_s"])
        if folder != work / "local":
            m.update(compare_indexes(work / "local", folder))
        rows.append(m)
        logger.info("%s: %s", name, m)
        shutil.rmtree(folder, ignore_errors=True) if folder != work / "local" else None

    row("local build (update_index)", _run(_LOCAL_BUILD, {"corpus": str(corpus), "index": str(work / "local")}),
        work / "local")
    for workers in (1, 2):
        folder = work / f"ray-{workers}"
        m = _run(_RAY_BUILD, {"corpus": str(corpus), "index": str(folder), "address": None, "cpus": 2,
                              "workers": workers})
        row(f"Ray, local, {workers} worker{'s' * (workers > 1)}", m, folder)
    env = ray_environment(local=False)
    port = 6390
    try:
        _ray_cli("start", "--head", f"--port={port}", "--num-cpus=1", env=env)
        address = _cluster_address(port)
        _ray_cli("start", f"--address={address}", "--num-cpus=1", env=env)
        folder = work / "ray-cluster"
        m = _run(_RAY_BUILD, {"corpus": str(corpus), "index": str(folder), "address": address, "cpus": None,
                              "workers": 2}, env=env)
        row("Ray, two nodes of 1 CPU (simulated here)", m, folder)
    finally:
        subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], env=env,
                       capture_output=True, timeout=120)
    return rows


def _cluster_address(port: int) -> str:
    """The head's address as Ray announced it (its node address, or loopback)."""
    latest = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    if latest.is_file():
        return latest.read_text().strip()
    return f"127.0.0.1:{port}"


# -- queries at scale ---------------------------------------------------------------------

_QUERIES = r"""
import json, os, sys, time
import numpy as np
args = json.loads(sys.argv[1])
from qa.retrieval import Searcher, SearchParams
from qa.backends import default_embedder
embedder = default_embedder()
embedder.embed(["warm up"])
reranker = None
if args["rerank"]:
    from qa.reranker_backends import load_reranker
    reranker = load_reranker("auto")
params = SearchParams() if reranker else SearchParams(rerank_depth=0)
# Every file read once first, so that the page cache holds all setups alike: otherwise the
# setup that happens to ask first for a page reads it from disk, and the next gets it free.
t = time.perf_counter()
for folder in {setup["folder"] for setup in args["setups"]}:
    for root, _, files in os.walk(folder, followlinks=True):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(1 << 24):
                    pass
cached_s = time.perf_counter() - t
searchers, opened, memory = [], [], []
for setup in args["setups"]:
    t = time.perf_counter()
    if setup["shards"] is None:
        from qa.index import Index
        searchers.append(Searcher(Index.load(setup["folder"]), embedder, params, reranker=reranker))
        memory.append([])
    else:
        from qa.shards import ShardedSearcher, open_shards
        index = open_shards(setup["folder"], engine=setup["engine"])
        searchers.append(ShardedSearcher(index, embedder, params, reranker=reranker))
        memory.append(index.shard_memory_mb() if setup["engine"] == "ray" else [])
    opened.append(time.perf_counter() - t)
for q in args["warm_up"]:  # other claims: the files' pages warm, no question vector cached
    for searcher in searchers:
        searcher.search(q, k=5)
ms = [[] for _ in searchers]
for i, q in enumerate(args["queries"]):
    # Each claim is asked of every setup in turn, the first one changing from claim to claim,
    # so a slow moment of the machine falls on all setups alike.
    for j in range(len(searchers)):
        s = (i + j) % len(searchers)
        t = time.perf_counter(); searchers[s].search(q, k=5); ms[s].append(1000 * (time.perf_counter() - t))
rss = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:"))
print(json.dumps([{"p50_ms": float(np.percentile(m, 50)), "p95_ms": float(np.percentile(m, 95)), "open_s": o,
                   "queries": len(m), "shard_rss_mb": mem} for m, o, mem in zip(ms, opened, memory)]
                 + [{"process_rss_mb": rss, "cached_s": cached_s}]))
"""


def prepare_scale(scifact: Path, *, passages: int, work: Path, max_docs: int | None) -> Path:
    """The index of ``passages`` passages and its 1-, 2- and 4-shard sets under ``work`` (kept between runs)."""
    from qa.backends import default_embedder
    from qa.shards import split_index

    folder = work / f"index-{passages}"
    if not (folder / "manifest.json").is_file():
        embedder = default_embedder()
        base = scale._scifact_base(scifact, embedder, max_docs=max_docs, cache_dir=default_bench_cache(),
                                     show_progress=False)
        written, seconds = scale.write_replicated_index(folder, base, passages, embedder)
        logger.info("wrote %d passages in %.0f s", written, seconds)
    one = work / "shards-1"
    if not (one / "shards.json").is_file():
        # One shard is the index itself: a link to it instead of a 5 GB copy (split_index(folder, one, 1)
        # writes the same files).
        one.mkdir(parents=True, exist_ok=True)
        if not (one / "shard-000").exists():
            (one / "shard-000").symlink_to(folder.resolve(), target_is_directory=True)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        counts = manifest["counts"]
        (one / "shards.json").write_text(json.dumps({"format": 1, "source": str(folder.resolve()),
                                                     "shards": ["shard-000"], "counts": [counts], **counts}))
    for n in (2, 4):
        if not (work / f"shards-{n}" / "shards.json").is_file():
            t = time.perf_counter()
            split_index(folder, work / f"shards-{n}", n)
            logger.info("split into %d shards in %.0f s", n, time.perf_counter() - t)
    return folder


WARM_UP = 100  # claims asked before the measured ones, in each process


def bench_queries(scifact: Path, *, passages: int, work: Path, queries: int, max_docs: int | None,
                  engines=("local", "ray"), rerank: bool = False) -> list[dict]:
    """Answer latency at ``passages`` passages: one index beside 1, 2 and 4 shards per engine.

    Each number of shards is measured in one fresh process that holds the one index and
    those shards through each engine, and asks every claim of each of them in turn. So each
    row's ratio to one index (``vs_one_index``) and the Ray rows' cost over in-process
    (``vs_local_ms``) compare figures taken in the same moments, which separate processes
    one after the other do not on a shared, noisy machine. Before it opens them, the process
    reads every file of the index and the shards once (``cached_s``), so that whichever setup
    asks first for a page does not pay the disk read that the others then get free.

    ``rerank``: also every process again with the relevance model reading the top candidates
    (the app's default).

    Returns:
        list, in the order measured, of dicts with name, shards, engine, reranked, p50_ms,
        p95_ms, open_s, queries, shard_rss_mb (each Ray actor's), process_rss_mb (the
        asking process's, all setups of its run together), cached_s (the time to read all
        their files first), vs_one_index, vs_local_ms (Ray rows), passages, load.
    """
    folder = prepare_scale(scifact, passages=passages, work=work, max_docs=max_docs)
    bench = beir.load_beir(scifact)
    every = [bench.queries[q] for q in sorted(bench.queries)]
    claims = every[:queries]
    warm_up = every[queries : queries + WARM_UP] or claims[:10]
    rows = []
    for reranked in (False, True) if rerank else (False,):
        for n in (1, 2, 4):
            setups = [{"name": "one index", "folder": str(folder), "shards": None, "engine": "local"}]
            setups += [{"name": f"{n} shard{'s' * (n > 1)}, {engine}", "folder": str(work / f"shards-{n}"),
                        "shards": n, "engine": engine} for engine in engines]
            *measured, process = _run(_QUERIES, {"setups": setups, "queries": claims, "warm_up": warm_up,
                                                 "rerank": reranked})
            for m in paired_rows(setups, measured, reranked=reranked):
                m.update(passages=passages, load=load_average(), **process)
                rows.append(m)
                logger.info("%s: %s", m["name"], m)
    return rows


def paired_rows(setups: list[dict], measured: list[dict], *, reranked: bool) -> list[dict]:
    """One process's figures as rows: each against the one index (first) and, for Ray, the in-process shards."""
    one = measured[0]
    local = next((m for setup, m in zip(setups, measured) if setup["shards"] and setup["engine"] == "local"), None)
    rows = []
    for setup, m in zip(setups, measured):
        row = {**m, "name": setup["name"] + (", reranked" if reranked else ""), "shards": setup["shards"],
               "engine": setup["engine"], "reranked": reranked, "vs_one_index": m["p50_ms"] / one["p50_ms"]}
        if setup["engine"] == "ray" and local is not None:
            row["vs_local_ms"] = m["p50_ms"] - local["p50_ms"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    from qa.offline import stay_offline

    stay_offline()
    parser = argparse.ArgumentParser(prog="python -m qa.bench.distributed", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("build")
    b.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    b.add_argument("--docs", type=int, default=1500)
    b.add_argument("--work", type=Path, default=None)
    q = sub.add_parser("query")
    q.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    q.add_argument("--passages", type=int, default=1_000_000)
    q.add_argument("--queries", type=int, default=300)
    q.add_argument("--max-docs", type=int, default=2000, help="SciFact abstracts embedded, then copied")
    q.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench-scale")
    q.add_argument("--engines", nargs="+", default=["local", "ray"])
    q.add_argument("--rerank", action="store_true", help="also each row with the relevance model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.what == "build":
        work = Path(args.work or tempfile.mkdtemp(prefix="qa-bench-scale-"))
        work.mkdir(parents=True, exist_ok=True)
        rows = bench_builds(args.scifact, docs=args.docs, work=work)
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        rows = bench_queries(args.scifact, passages=args.passages, work=args.work, queries=args.queries,
                             max_docs=args.max_docs, engines=tuple(args.engines), rerank=args.rerank)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
