"""Retrieval quality on a BEIR-format benchmark (corpus.jsonl, queries.jsonl, qrels/test.tsv)."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from qa.embedding import Embedder
from qa.index import IndexParams, update_index
from qa.retrieval import MODES, Searcher, SearchParams

logger = logging.getLogger(__name__)


@dataclass
class Benchmark:
    """A BEIR test split: records to index, test queries, relevance judgments."""

    records: list[dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: str | Path, *, split: str = "test") -> Benchmark:
    """Read a BEIR folder.

    Raises:
        FileNotFoundError: a required file is missing (named).
    """
    folder = Path(folder)
    needed = [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"]
    for path in needed:
        if not path.is_file():
            raise FileNotFoundError(f"not a BEIR folder: {path} is missing")
    with open(needed[0], encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    qrels: dict[str, dict[str, int]] = {}
    with open(needed[2], encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows, None)  # header
        for row in rows:
            if len(row) >= 3 and int(row[2]) > 0:
                qrels.setdefault(row[0].strip(), {})[row[1].strip()] = int(row[2])
    with open(needed[1], encoding="utf-8") as f:
        all_queries = {str(q["_id"]): q["text"] for q in map(json.loads, filter(str.strip, f))}
    queries = {qid: all_queries[qid] for qid in qrels if qid in all_queries}
    return Benchmark(records, queries, qrels)


def record_text(record: dict) -> str:
    title = (record.get("title") or "").strip()
    text = (record.get("text") or "").strip()
    return f"{title}\n{text}" if title else text


def write_corpus(bench: Benchmark, folder: Path) -> None:
    """One document per record, named by a hash of its id (ids may hold any character)."""
    folder.mkdir(parents=True, exist_ok=True)
    for r in bench.records:
        text = record_text(r)
        if text.strip():
            (folder / _doc_name(str(r["_id"]))).write_text(text, encoding="utf-8")


def _doc_name(record_id: str) -> str:
    return hashlib.sha1(record_id.encode()).hexdigest()[:20] + ".txt"


def ndcg_at(ranked: Sequence[str], rels: dict[str, int], k: int = 10) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(rels.values(), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], rels: dict[str, int], k: int = 100) -> float:
    return len(set(ranked[:k]) & set(rels)) / len(rels) if rels else 0.0


def mrr_at(ranked: Sequence[str], rels: dict[str, int], k: int = 10) -> float:
    return next((1.0 / (i + 1) for i, d in enumerate(ranked[:k]) if d in rels), 0.0)


@dataclass
class ModeScores:
    mode: str
    ndcg10: float
    recall100: float
    mrr10: float
    seconds: float
    per_query: dict[str, float] = field(default_factory=dict, repr=False)


def documents_ranked(searcher: Searcher, query: str, mode: str, depth: int) -> list[str]:
    """Document ids ranked by their best passage."""
    ranked, _ = searcher.rank(query, mode=mode, depth=depth)
    seen, out = set(), []
    for i in ranked:
        d = searcher.index.doc_id_of(i)
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def score_modes(
    searcher: Searcher, bench: Benchmark, *, modes: Sequence[str] = MODES, depth: int = 1000
) -> list[ModeScores]:
    """nDCG@10, Recall@100 and MRR@10 of each mode, with the seconds the queries took."""
    name_to_id = {_doc_name(str(r["_id"])): str(r["_id"]) for r in bench.records}
    out = []
    for mode in modes:
        t0 = time.perf_counter()
        per_query, totals = {}, np.zeros(3)
        for qid, text in bench.queries.items():
            ranked = [name_to_id[d] for d in documents_ranked(searcher, text, mode, depth)]
            rels = bench.qrels[qid]
            m = (ndcg_at(ranked, rels), recall_at(ranked, rels), mrr_at(ranked, rels))
            per_query[qid] = m[0]
            totals += m
        n = max(len(bench.queries), 1)
        out.append(ModeScores(mode, *(totals / n), time.perf_counter() - t0, per_query))
    return out


def run_benchmark(
    folder: str | Path,
    *,
    embedder: Embedder,
    index_params: IndexParams | None = None,
    search_params: SearchParams | None = None,
    index_dir: str | Path | None = None,
    modes: Sequence[str] = MODES,
    depth: int = 1000,
    show_progress: bool = True,
) -> dict:
    """Index a BEIR corpus (into ``index_dir`` or a temporary folder) and score each mode.

    Returns:
        dict with "index" (documents, passages, seconds) and "modes" (list of ModeScores).
    """
    bench = load_beir(folder)
    with tempfile.TemporaryDirectory(prefix="qa-beir-") as tmp:
        corpus_dir = Path(tmp) / "corpus"
        write_corpus(bench, corpus_dir)
        target = Path(index_dir) if index_dir else Path(tmp) / "index"
        index, report = update_index(corpus_dir, target, embedder=embedder, params=index_params,
                                     show_progress=show_progress)
        searcher = Searcher(index, embedder, search_params)
        scores = score_modes(searcher, bench, modes=modes, depth=depth)
    return {"index": {"documents": report.documents, "passages": report.passages, "embedded": report.embedded,
                      "seconds": report.seconds}, "queries": len(bench.queries), "modes": scores}

