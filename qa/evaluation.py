"""Evaluation on the shared question format: hit@k, MRR, abstention, highlight on evidence."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from qa.arguments import ArgumentError, check_text
from qa.results import Answer

_SPACE = re.compile(r"\s+")


def normalize_ws(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Question:
    question: str
    doc: str | None
    evidence: tuple[str, ...]


def load_questions(path: str | Path) -> list[Question]:
    """Questions in the shared JSONL format: {"question", "doc" (null: unanswerable), "evidence"}.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not a question object, naming its line number.
    """
    out = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{path}:{n}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out.append(Question(check_text(row["question"], "question"), row.get("doc"),
                                    tuple(row.get("evidence") or ())))
            except (json.JSONDecodeError, KeyError, TypeError, ArgumentError) as exc:
                raise ValueError(f"{path}:{n}: not a question object ({exc})") from None
    return out


def is_hit(q: Question, doc_id: str, text: str) -> bool:
    """A passage from the answering document whose text holds an evidence string (whitespace-normalized)."""
    if doc_id != q.doc:
        return False
    norm = normalize_ws(text)
    return any(normalize_ws(e) in norm for e in q.evidence)


@dataclass
class EvalReport:
    answerable: int = 0
    unanswerable: int = 0
    hits_at: dict[int, int] = field(default_factory=lambda: {1: 0, 3: 0, 5: 0})
    reciprocal_ranks: float = 0.0
    highlight_on_evidence: int = 0
    abstained: int = 0
    false_abstentions: list[str] = field(default_factory=list)
    answered_unanswerable: list[str] = field(default_factory=list)
    missed: list[dict] = field(default_factory=list)
    quotes_exact: bool = True

    def metrics(self) -> dict:
        n = max(self.answerable, 1)
        return {
            "answerable": self.answerable,
            "hit@1": self.hits_at[1] / n,
            "hit@3": self.hits_at[3] / n,
            "hit@5": self.hits_at[5] / n,
            "mrr": self.reciprocal_ranks / n,
            "highlight_on_evidence": self.highlight_on_evidence / n,
            "unanswerable": self.unanswerable,
            "abstained": self.abstained,
            "false_abstentions": len(self.false_abstentions),
            "quotes_exact": self.quotes_exact,
        }


def evaluate(
    questions: list[Question], ask: Callable[[str], Answer], document_text: Callable[[str], str]
) -> EvalReport:
    """Run every question through ``ask`` (which should return at least 5 passages) and score it."""
    report = EvalReport()
    for q in questions:
        answer = ask(q.question)
        for h in answer.passages:
            if document_text(h.doc_id)[h.start : h.end] != h.quote:
                report.quotes_exact = False
        if q.doc is None:
            report.unanswerable += 1
            if answer.answered:
                report.answered_unanswerable.append(q.question)
            else:
                report.abstained += 1
            continue
        report.answerable += 1
        if not answer.answered:
            report.false_abstentions.append(q.question)
        rank = next((h.rank for h in answer.passages if is_hit(q, h.doc_id, h.quote)), None)
        for k in report.hits_at:
            report.hits_at[k] += rank is not None and rank <= k
        if rank is not None:
            report.reciprocal_ranks += 1.0 / rank
        first = answer.passages[rank - 1] if rank else None
        if first is not None and first.highlight is not None:
            marked = first.quote[first.highlight.start - first.start : first.highlight.end - first.start]
            report.highlight_on_evidence += is_hit(q, first.doc_id, marked)
        if rank != 1:
            report.missed.append({"question": q.question, "doc": q.doc, "rank": rank,
                                  "got": answer.passages[0].doc_id if answer.passages else None})
    return report
