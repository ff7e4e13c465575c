"""SQuAD as a corpus: the split by article, documents with answer offsets, holes, judging a quote."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.squad import Article, Paragraph, holds_answer, load_squad, split_articles, write_corpus

SQUAD = Path(__file__).resolve().parent.parent.parent / "shared" / "bench" / "squad-train"


def _paragraph(a: int, p: int) -> Paragraph:
    context = f"Paragraph {p} of topic {a} says the answer is gold{a}x{p}. Nothing else here."
    answer = f"gold{a}x{p}"
    return Paragraph(context, ((f"What does paragraph {p} of topic {a} say?", answer, context.index(answer)),))


def _articles(n: int) -> list[Article]:
    return [Article(f"Topic_{a}", tuple(_paragraph(a, p) for p in range(4))) for a in range(n)]


def test_split_is_by_whole_article_and_the_same_every_time():
    articles = _articles(50)
    first, again = split_articles(articles, validation=5, test=5), split_articles(list(reversed(articles)),
                                                                                  validation=5, test=5)
    assert {k: [a.title for a in v] for k, v in first.items()} == {k: [a.title for a in v] for k, v in again.items()}
    titles = [set(a.title for a in first[k]) for k in ("train", "validation", "test")]
    assert not (titles[0] & titles[1] or titles[0] & titles[2] or titles[1] & titles[2])
    assert sum(map(len, titles)) == 50 and len(titles[1]) == len(titles[2]) == 5


def test_answer_offsets_point_at_the_answer_and_holes_are_cut_out(tmp_path):
    questions = write_corpus(_articles(3), tmp_path, holes_per_article=1)
    texts = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()}
    assert len(texts) == 3
    holes = [q for q in questions if q.is_hole]
    assert len(holes) == 3  # one paragraph cut from each article
    for q in questions:
        text = texts[q.doc_id]
        if q.is_hole:
            assert q.answer_text not in text  # its paragraph is gone
        else:
            assert text[q.answer[0] : q.answer[1]] == q.answer_text
            assert q.paragraph[0] <= q.answer[0] < q.answer[1] <= q.paragraph[1]


def test_a_quote_holds_the_answer_only_in_its_paragraph(tmp_path):
    q = next(q for q in write_corpus(_articles(1), tmp_path) if not q.is_hole)
    text = (tmp_path / q.doc_id).read_text(encoding="utf-8")
    a, b = q.paragraph
    assert holds_answer(q, q.doc_id, a, b, text[a:b])
    assert not holds_answer(q, "other.txt", a, b, text[a:b])
    assert not holds_answer(q, q.doc_id, a, q.answer[0], text[a : q.answer[0]])  # stops before the answer
    assert not holds_answer(q, q.doc_id, b + 2, len(text), text[a:b])  # another paragraph


@pytest.mark.skipif(not SQUAD.is_dir(), reason="../shared/bench/squad-train is not here")
def test_the_real_data_splits_into_442_articles():
    split = split_articles(load_squad(SQUAD))
    assert [len(split[k]) for k in ("train", "validation", "test")] == [402, 20, 20]
    assert sum(len(p.questions) for a in split["train"] + split["validation"] + split["test"]
               for p in a.paragraphs) == 87599
