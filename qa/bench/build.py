"""``python -m qa bench-build``: a whole ``qa index`` against a plain torch encode of the same passages.

The first ``--docs`` SciFact abstracts (default 1,500) are written as files into a
temporary folder, then, one after the other in the same run, each in a fresh process:

1. ``python -m qa index --json`` builds their index from nothing. Its wall time, from
   the process's start to its exit, is the figure: imports, loading and checking the
   model, reading, chunking, embedding, writing. The index reports where its own
   seconds went (``UpdateReport.timings``); start-up is the rest.
2. sentence-transformers (torch) encodes the very passages that index holds (the text
   the model was given for each), batch size 32, as a user would with
   ``SentenceTransformer.encode``: only the encode is timed, not loading the model.

The ratio is torch's encode seconds over ``qa index``'s whole seconds (issue 12's target:
at least 3.5). Timings only mean something on a quiet machine: the load average is in
every row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from qa.bench.common import DEFAULT_SCIFACT, ROOT, format_table, load_average, machine

DEFAULT_DOCS = 1_500


@dataclass
class BuildRow:
    """One ``qa index`` against torch: whole seconds, the ratio, and where ``qa index``'s time went."""

    documents: int
    passages: int
    backend: str
    qa_index_s: float
    torch_encode_s: float
    ratio: float
    startup_s: float
    reading_s: float
    chunking_s: float
    embedding_s: float
    waiting_s: float
    writing_s: float
    load_before: str = ""
    load_after: str = ""


COLUMNS = [
    ("documents", "documents"), ("passages", "passages"), ("backend", "embedder"),
    ("qa_index_s", "qa index s", ".1f"), ("torch_encode_s", "torch encode s", ".1f"), ("ratio", "torch ÷ qa index", ".2f"),
    ("startup_s", "start-up s", ".1f"), ("reading_s", "reading s*", ".1f"), ("chunking_s", "chunking s*", ".1f"),
    ("embedding_s", "embedding s", ".1f"), ("waiting_s", "waiting s", ".2f"), ("writing_s", "writing s", ".1f"),
    ("load_before", "load avg before"), ("load_after", "load avg after"),
]

_TORCH_CHILD = r"""
import json, sys, time
args = json.loads(sys.argv[1])
from qa.embedding import Embedder
from qa.index import Index, embedding_input
index = Index.load(args["index"])
params = index.params
embedder = Embedder()
texts = [embedding_input(index.documents[p.doc_id], p, params, embedder)[0] for p in index.passages]
model = embedder.model  # loaded before the clock starts
model.encode(texts[:32], batch_size=32)  # and warmed up
t = time.perf_counter()
vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                       show_progress_bar=False)
seconds = time.perf_counter() - t
import numpy as np
ours = index.passage_vectors(0, len(index))
print(json.dumps({"passages": len(texts), "seconds": seconds,
                  "cosine_min": float(np.min(np.sum(ours * vectors, axis=1)))}))
"""


def _child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def write_scifact_corpus(scifact: Path, folder: Path, docs: int) -> int:
    """The first ``docs`` SciFact records as files in ``folder`` (read from ``scifact``, never copied into the repo)."""
    from qa.bench.beir import load_beir, write_corpus

    bench = load_beir(scifact)
    bench.records = bench.records[:docs]
    write_corpus(bench, folder)
    return len(bench.records)


def run_qa_index(corpus: Path, index: Path) -> tuple[float, dict]:
    """``python -m qa index --json`` from nothing in a fresh process: (wall seconds, its report)."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "qa", "index", "--corpus", str(corpus), "--index", str(index),
                           "-q", "--json"], capture_output=True, text=True, env=_child_env(), cwd=ROOT)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise RuntimeError(f"qa index failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def run_torch_encode(index: Path) -> dict:
    """sentence-transformers' encode of the index's passages in a fresh process: {passages, seconds, cosine_min}."""
    done = subprocess.run([sys.executable, "-c", _TORCH_CHILD, json.dumps({"index": str(index)})],
                          capture_output=True, text=True, env=_child_env(), cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"the torch encode failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(scifact: Path = DEFAULT_SCIFACT, *, docs: int = DEFAULT_DOCS, workdir: Path | None = None) -> BuildRow:
    """Write the corpus, build its index with ``qa index``, then encode its passages with torch."""
    work = Path(tempfile.mkdtemp(prefix="qa-bench-build-", dir=workdir))
    try:
        write_scifact_corpus(Path(scifact), work / "corpus", docs)
        before = load_average()
        qa_s, report = run_qa_index(work / "corpus", work / "index")
        torch = run_torch_encode(work / "index")
        after = load_average()
        manifest = json.loads((work / "index" / "manifest.json").read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings = report.get("timings", {})
    if torch["passages"] != report["passages"]:
        raise RuntimeError(f"torch encoded {torch['passages']} passages, the index holds {report['passages']}")
    if torch["cosine_min"] < 0.999:
        raise RuntimeError(f"the index's vectors are not torch's: cosine {torch['cosine_min']:.5f}")
    return BuildRow(
        documents=report["documents"], passages=report["passages"], backend=manifest["model"]["backend"],
        qa_index_s=qa_s, torch_encode_s=torch["seconds"], ratio=torch["seconds"] / qa_s,
        startup_s=qa_s - report["seconds"], reading_s=timings.get("reading", 0.0),
        chunking_s=timings.get("chunking", 0.0), embedding_s=timings.get("embedding", 0.0),
        waiting_s=timings.get("waiting", 0.0), writing_s=timings.get("writing", 0.0),
        load_before=before, load_after=after,
    )


def report(rows: Sequence[BuildRow]) -> str:
    return "\n".join([
        "qa index (whole process) against a plain sentence-transformers encode of the same passages "
        "(fresh processes, one after the other).",
        format_table(rows, COLUMNS),
        "* in the reading thread, beside the embedder: not added to the whole. start-up: the process's "
        "seconds outside update_index (imports, loading and checking the model, exit).",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa bench-build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", default=str(DEFAULT_SCIFACT), help="a BEIR SciFact folder")
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS, help="abstracts indexed (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs, one row each")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = [measure(Path(args.scifact), docs=args.docs) for _ in range(args.repeats)]
    print(machine())
    print(report(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
