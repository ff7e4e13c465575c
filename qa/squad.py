"""SQuAD v1.1 as a corpus: articles split by article, written as documents, questions with answer offsets.

Each article becomes one document: its title on the first line, then its paragraphs
separated by blank lines. Every question keeps where its answer lies in that
document, so a passage can be judged by offsets, not by guessing. "Holes" are
paragraphs cut out of their article: their questions have no answer in the corpus.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

SPLIT_SEED = 13
VALIDATION_ARTICLES = 20
TEST_ARTICLES = 20


@dataclass(frozen=True)
class Paragraph:
    context: str
    questions: tuple[tuple[str, str, int], ...]  # (question, answer text, answer start in context)


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[Paragraph, ...]


@dataclass(frozen=True)
class SquadQuestion:
    """A question against a written corpus.

    ``paragraph`` and ``answer`` are (start, end) offsets into document ``doc_id``'s
    text; both are None for a hole (the paragraph was cut out of the document).
    """

    question: str
    doc_id: str
    answer_text: str
    paragraph: tuple[int, int] | None
    answer: tuple[int, int] | None

    @property
    def is_hole(self) -> bool:
        return self.paragraph is None


def load_squad(folder: str | Path) -> list[Article]:
    """The articles of ``train-v1.1.json`` in ``folder``.

    Raises:
        FileNotFoundError: the file is missing (named).
    """
    path = Path(folder) / "train-v1.1.json"
    if not path.is_file():
        raise FileNotFoundError(f"not a SQuAD folder: {path} is missing")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [
        Article(a["title"], tuple(
            Paragraph(p["context"], tuple((q["question"], q["answers"][0]["text"], q["answers"][0]["answer_start"])
                                          for q in p["qas"] if q.get("answers")))
            for p in a["paragraphs"]))
        for a in data
    ]


def split_articles(articles: Sequence[Article], *, seed: int = SPLIT_SEED, validation: int = VALIDATION_ARTICLES,
                   test: int = TEST_ARTICLES) -> dict[str, list[Article]]:
    """Whole articles into "train", "validation" and "test", the same way every time."""
    order = sorted(articles, key=lambda a: a.title)
    random.Random(seed).shuffle(order)
    return {"test": order[:test], "validation": order[test : test + validation], "train": order[test + validation :]}


def doc_name(n: int) -> str:
    return f"squad_{n:03d}.txt"


def write_corpus(articles: Sequence[Article], folder: str | Path, *, holes_per_article: int = 0,
                 seed: int = SPLIT_SEED) -> list[SquadQuestion]:
    """Write one document per article into ``folder``; return every question with its offsets.

    Args:
        holes_per_article: cut this many paragraphs (chosen with ``seed``) out of
            each article; their questions come back as holes.

    Returns:
        the questions, article by article, paragraphs in order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    out: list[SquadQuestion] = []
    for n, article in enumerate(articles):
        doc_id = doc_name(n)
        cut = set(rng.sample(range(len(article.paragraphs)), min(holes_per_article, len(article.paragraphs) - 1)))
        text = article.title.replace("_", " ")
        for p_no, paragraph in enumerate(article.paragraphs):
            start = None
            if p_no not in cut:
                text += "\n\n"
                start = len(text)
                text += paragraph.context
            for question, answer, at in paragraph.questions:
                if start is None:
                    out.append(SquadQuestion(question, doc_id, answer, None, None))
                else:
                    out.append(SquadQuestion(question, doc_id, answer, (start, start + len(paragraph.context)),
                                             (start + at, start + at + len(answer))))
        (folder / doc_id).write_text(text + "\n", encoding="utf-8")
    return out


def holds_answer(q: SquadQuestion, doc_id: str, start: int, end: int, text: str) -> bool:
    """A quote (``text`` at ``start:end`` of ``doc_id``) holds the answer: it overlaps the
    answer's paragraph and contains the answer text. (SQuAD's offset is the first
    occurrence in the paragraph, not always the one meant, so the text decides.)"""
    if q.paragraph is None or doc_id != q.doc_id:
        return False
    return start < q.paragraph[1] and q.paragraph[0] < end and q.answer_text in text
