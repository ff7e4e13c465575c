"""Compare passage and fusion settings side by side, on the seed questions and (optionally) SciFact.

    python scripts/tune.py                       # seed questions only (about a minute)
    python scripts/tune.py --scifact ../shared/bench/scifact   # adds SciFact nDCG@10 (slow: ~4 min per passage setting)

Every passage setting builds its own index in a temporary folder (SciFact indexes
are kept under --keep DIR when given, so reruns only change search settings).
Prints one row per combination: seed hit@1/hit@5/MRR/highlight/abstention and SciFact
nDCG@10 / Recall@100 for hybrid.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa.bench.beir import load_beir, score_modes, write_corpus  # noqa: E402
from qa.backends import default_embedder  # noqa: E402
from qa.evaluation import evaluate, load_questions  # noqa: E402
from qa.index import IndexParams, update_index  # noqa: E402
from qa.retrieval import Searcher, SearchParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", default=str(ROOT.parent / "shared" / "eval" / "seed_questions.jsonl"))
    ap.add_argument("--scifact", default=None)
    ap.add_argument("--keep", default=None, help="folder to keep SciFact indexes in between runs")
    ap.add_argument("--budgets", default="96/24,128/0,128/32,192/48,256/64", help="max_tokens/overlap pairs")
    ap.add_argument("--titles", default="no", help="title prefix: no, yes or both")
    ap.add_argument("--fusions", default="rrf:0.5,rrf:0.6,rrf:0.4,linear:0.5,linear:0.7",
                    help="fusion:dense_weight pairs")
    args = ap.parse_args()

    embedder = default_embedder()
    questions = load_questions(args.questions)
    bench = load_beir(args.scifact) if args.scifact else None
    titles = {"no": [False], "yes": [True], "both": [False, True]}[args.titles]
    fusions = [(f, float(w)) for f, w in (x.split(":") for x in args.fusions.split(","))]
    print(f"{'budget':>7} {'overlap':>7} {'title':>5} {'fusion':>7} {'w':>4} | {'hit@1':>5} {'hit@5':>5} "
          f"{'MRR':>5} {'hl':>5} {'abst':>4} {'false':>5} | {'nDCG':>6} {'R@100':>6}", flush=True)
    with tempfile.TemporaryDirectory(prefix="qa-tune-") as tmp:
        sci_corpus = Path(tmp) / "scifact"
        if bench:
            write_corpus(bench, sci_corpus)
        for budget, title in itertools.product(args.budgets.split(","), titles):
            max_tokens, overlap = map(int, budget.split("/"))
            params = IndexParams(max_tokens=max_tokens, overlap_tokens=overlap, title_prefix=title)
            seed_index, _ = update_index(ROOT / "seeds", Path(tmp) / f"seeds-{budget.replace('/', '-')}-{title}",
                                         embedder=embedder, params=params, show_progress=False)
            sci_index = None
            if bench:
                where = Path(args.keep or tmp) / f"scifact-{max_tokens}-{overlap}-{int(title)}"
                sci_index, _ = update_index(sci_corpus, where, embedder=embedder, params=params, show_progress=True)
            for fusion, weight in fusions:
                sp = SearchParams(fusion=fusion, dense_weight=weight)
                seeds = Searcher(seed_index, embedder, sp)
                m = evaluate(questions, lambda q: seeds.search(q, k=5), lambda d: seed_index.documents[d].text).metrics()
                ndcg = recall = float("nan")
                if sci_index is not None:
                    hybrid = score_modes(Searcher(sci_index, embedder, sp), bench, modes=["hybrid"])[0]
                    ndcg, recall = hybrid.ndcg10, hybrid.recall100
                print(f"{max_tokens:>7} {overlap:>7} {'yes' if title else 'no':>5} {fusion:>7} {weight:>4} | "
                      f"{m['hit@1']:5.3f} {m['hit@5']:5.3f} {m['mrr']:5.3f} {m['highlight_on_evidence']:5.3f} "
                      f"{m['abstained']:>2}/{m['unanswerable']} {m['false_abstentions']:>5} | {ndcg:6.4f} {recall:6.4f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
