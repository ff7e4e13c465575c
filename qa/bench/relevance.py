"""Answer quality on held-out SQuAD articles, without and with the relevance model, side by side.

``python -m qa bench-relevance --data ../shared/bench/squad-train`` indexes the test
articles (never seen in training or calibration; ``qa.squad.split_articles``) with
``holes_per_article`` paragraphs cut out, and asks:

- answerable questions (their paragraph is in the corpus): hit@1 and hit@5 (a quote
  holds the answer, ``qa.squad.holds_answer``), highlight@1 (the first quote's
  highlighted sentence holds it), and false abstentions (``answered`` false);
- holes (their paragraph was cut out): the share abstained; and the share among the holes
  whose answer text appears nowhere else in their article (about a quarter of the holes
  have it in another paragraph, and some of those are answerable there);
- filtered out: answerable questions asked with a document filter that leaves their
  article out: the share abstained;

then, optionally, the seed questions (``qa eval``'s figures) and SciFact nDCG@10, and
the latency of a whole answer. Each row is one searcher setting over the same index.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from qa.squad import SquadQuestion, holds_answer, load_squad, split_articles, write_corpus

HOLES_PER_ARTICLE = 3


@dataclass
class QualityRow:
    setting: str
    hit1: float = 0.0
    hit5: float = 0.0
    highlight1: float = 0.0
    false_abstention: float = 0.0
    holes_abstained: float = 0.0
    # among the holes whose answer text is nowhere in what is left of their article
    strict_holes_abstained: float = 0.0
    filtered_abstained: float = 0.0
    p50_ms: float = 0.0
    extra: dict = field(default_factory=dict)


def squad_test_corpus(data: str | Path, folder: Path, *, show_progress: bool = True):
    """The test articles written and indexed in ``folder`` (reused when already built)."""
    from qa.backends import default_embedder
    from qa.index import update_index

    split = split_articles(load_squad(data))
    questions = write_corpus(split["test"], folder / "corpus", holes_per_article=HOLES_PER_ARTICLE)
    index, _ = update_index(folder / "corpus", folder / "index", embedder=default_embedder(),
                            show_progress=show_progress)
    return index, questions


def score_squad(searcher, questions: Sequence[SquadQuestion], setting: str, *, answerable: int = 1000,
                filtered: int = 200, seed: int = 0, show_progress: bool = True) -> QualityRow:
    """One row of figures for one searcher over the test corpus."""
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    kept = [q for q in questions if not q.is_hole]
    asked = rng.sample(kept, min(answerable, len(kept)))
    holes = [q for q in questions if q.is_hole]
    doc_ids = sorted(searcher.index.documents)
    row, times = QualityRow(setting), []
    bar = tqdm(total=len(asked) + len(holes) + min(filtered, len(asked)), desc=f"Asking ({setting})",
               unit="question", disable=not show_progress)
    for q in asked:
        bar.update(1)
        t0 = time.perf_counter()
        answer = searcher.search(q.question, k=5)
        times.append(time.perf_counter() - t0)
        hit = [holds_answer(q, h.doc_id, h.start, h.end, h.quote) for h in answer.passages]
        row.hit1 += bool(hit[:1] and hit[0])
        row.hit5 += any(hit)
        first = answer.passages[0] if answer.passages else None
        if first is not None and first.highlight is not None and hit[0]:
            a, b = first.highlight.start, first.highlight.end
            row.highlight1 += holds_answer(q, first.doc_id, a, b, first.quote[a - first.start : b - first.start])
        row.false_abstention += not answer.answered
    strict_holes = 0
    for q in holes:
        bar.update(1)
        abstained = not searcher.search(q.question, k=5).answered
        row.holes_abstained += abstained
        if q.answer_text not in searcher.index.documents[q.doc_id].text:
            strict_holes += 1
            row.strict_holes_abstained += abstained
    for q in asked[:filtered]:
        bar.update(1)
        others = [d for d in doc_ids if d != q.doc_id]
        row.filtered_abstained += not searcher.search(q.question, k=5, doc_ids=others).answered
    bar.close()
    n = max(len(asked), 1)
    row.hit1, row.hit5, row.highlight1, row.false_abstention = (row.hit1 / n, row.hit5 / n, row.highlight1 / n,
                                                                row.false_abstention / n)
    row.holes_abstained /= max(len(holes), 1)
    row.strict_holes_abstained /= max(strict_holes, 1)
    row.filtered_abstained /= max(min(filtered, len(asked)), 1)
    row.p50_ms = 1000 * statistics.median(times) if times else 0.0
    row.extra = {"answerable": len(asked), "holes": len(holes), "strict_holes": strict_holes,
                 "filtered": min(filtered, len(asked))}
    return row


def seed_figures(searcher, questions_file: str | Path) -> dict:
    """``qa eval``'s figures for one searcher over the seed index, with the answer's p50 latency."""
    from qa.evaluation import evaluate, load_questions

    questions = load_questions(questions_file)
    times = []

    def ask(q):
        t0 = time.perf_counter()
        answer = searcher.search(q, k=5)
        times.append(time.perf_counter() - t0)
        return answer

    m = evaluate(questions, ask, lambda d: searcher.index.documents[d].text).metrics()
    for q in questions:  # latency once warm
        ask(q.question)
    return {**m, "p50_ms": 1000 * statistics.median(times[len(questions):])}


def scifact_ndcg(searcher_of, folder: str | Path, index_dir: Path, *, show_progress: bool = True) -> dict[str, float]:
    """SciFact nDCG@10 of each setting (``searcher_of(index) -> {setting: (searcher, rerank)}``)."""
    from qa.bench.beir import _doc_name, load_beir, ndcg_at, write_corpus as write_beir
    from qa.backends import default_embedder
    from qa.index import update_index

    bench = load_beir(folder)
    corpus = index_dir / "corpus"
    if not corpus.is_dir():
        write_beir(bench, corpus)
    index, _ = update_index(corpus, index_dir / "index", embedder=default_embedder(), show_progress=show_progress)
    name_to_id = {_doc_name(str(r["_id"])): str(r["_id"]) for r in bench.records}
    out = {}
    for setting, (searcher, rerank) in searcher_of(index).items():
        total = 0.0
        for qid, text in bench.queries.items():
            ranked, _ = searcher.rank(text, depth=1000, rerank=rerank)
            seen, docs = set(), []
            for i in ranked:
                d = name_to_id[index.doc_id_of(i)]
                if d not in seen:
                    seen.add(d)
                    docs.append(d)
            total += ndcg_at(docs, bench.qrels[qid])
        out[setting] = total / max(len(bench.queries), 1)
    return out
