"""Where to put the abstention threshold: best-passage cosine for questions that the
corpus answers and for questions it cannot answer.

Distributions (best dense cosine of the question to any passage):
  seed answerable     seed questions with an answering document, against seeds/
  seed unanswerable   seed questions with doc null, against seeds/
  scifact -> seeds    SciFact test claims against seeds/ (unrelated corpus: must abstain)
  seeds -> scifact    seed questions against the SciFact index (unrelated: must abstain)
  scifact answerable  SciFact test claims against SciFact (every claim has a relevant abstract)

Usage: python scripts/calibrate_abstention.py [--scifact ../shared/bench/scifact] [--scifact-index DIR]
The SciFact index is built in a temporary folder unless --scifact-index names one to reuse.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa.bench.beir import load_beir, write_corpus  # noqa: E402
from qa.backends import default_embedder  # noqa: E402
from qa.evaluation import load_questions  # noqa: E402
from qa.index import update_index  # noqa: E402
from qa.retrieval import SearchParams  # noqa: E402


def best_cosines(index, embedder, questions: list[str]) -> np.ndarray:
    return np.array([index.dense_top(v, 1)[1][0] for v in embedder.embed(questions)])


def describe(name: str, values: np.ndarray) -> str:
    q = np.percentile(values, [0, 5, 50, 95, 100])
    return f"{name:20} n={len(values):4}  min {q[0]:.3f}  p5 {q[1]:.3f}  median {q[2]:.3f}  p95 {q[3]:.3f}  max {q[4]:.3f}"


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scifact", default=str(root.parent / "shared" / "bench" / "scifact"))
    ap.add_argument("--questions", default=str(root.parent / "shared" / "eval" / "seed_questions.jsonl"))
    ap.add_argument("--scifact-index", default=None)
    args = ap.parse_args()

    embedder = default_embedder()
    seeds_index, _ = update_index(root / "seeds", Path(tempfile.mkdtemp(prefix="qa-cal-")) / "index",
                                  embedder=embedder, show_progress=False)
    questions = load_questions(args.questions)
    answerable = [q.question for q in questions if q.doc]
    unanswerable = [q.question for q in questions if not q.doc]
    bench = load_beir(args.scifact)
    claims = list(bench.queries.values())
    with tempfile.TemporaryDirectory(prefix="qa-cal-") as tmp:
        corpus = Path(tmp) / "corpus"
        write_corpus(bench, corpus)
        sci_dir = Path(args.scifact_index) if args.scifact_index else Path(tmp) / "index"
        sci_index, _ = update_index(corpus, sci_dir, embedder=embedder, show_progress=True)
        dists = {
            "seed answerable": best_cosines(seeds_index, embedder, answerable),
            "seed unanswerable": best_cosines(seeds_index, embedder, unanswerable),
            "scifact -> seeds": best_cosines(seeds_index, embedder, claims),
            "seeds -> scifact": best_cosines(sci_index, embedder, answerable + unanswerable),
            "scifact answerable": best_cosines(sci_index, embedder, claims),
        }
    for name, values in dists.items():
        print(describe(name, values))
    positives = np.concatenate([dists["seed answerable"], dists["scifact answerable"]])
    negatives = np.concatenate([dists["seed unanswerable"], dists["scifact -> seeds"], dists["seeds -> scifact"]])
    print("\nthreshold  answerable kept  unrelated abstained")
    for t in np.arange(0.10, 0.41, 0.02):
        print(f"  {t:.2f}      {np.mean(positives >= t):6.3f}          {np.mean(negatives < t):6.3f}")
    current = SearchParams().min_relevance
    print(f"\ncurrent min_relevance {current:.2f}: answerable kept {np.mean(positives >= current):.3f}, "
          f"unrelated abstained {np.mean(negatives < current):.3f}")
    print(json.dumps({k: [round(float(x), 4) for x in np.percentile(v, [0, 5, 50, 95, 100])] for k, v in dists.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
