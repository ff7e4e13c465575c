"""qa.evaluation: the question format, what counts as a hit, the metrics, and the issue's targets."""

from __future__ import annotations

import json

import pytest
from conftest import SEED_QUESTIONS

from qa.evaluation import Question, evaluate, is_hit, load_questions, normalize_ws
from qa.retrieval import Answer, Highlight, Hit

DOC = "Title\n\nThe commander, however,\nclaimed he never gave the order. Other text follows here."
DOCS = {"a.txt": DOC, "b.txt": "Unrelated text about something else entirely."}


def test_load_questions_reads_the_shared_format(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"question": "Who?", "doc": "a.txt", "evidence": ["he never gave"]}\n'
        "\n"
        '{"question": "Unanswerable?", "doc": null, "evidence": []}\n',
        encoding="utf-8",
    )
    assert load_questions(path) == [Question("Who?", "a.txt", ("he never gave",)),
                                    Question("Unanswerable?", None, ())]


@pytest.mark.parametrize("line", ["not json", '{"doc": "a.txt"}', "[1, 2]"])
def test_load_questions_names_the_bad_line(tmp_path, line):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok?", "doc": null}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"q\.jsonl:2: not a question object"):
        load_questions(path)


def test_load_questions_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_questions(tmp_path / "none.jsonl")


def test_is_hit_normalizes_whitespace_and_needs_the_right_document():
    q = Question("Who?", "a.txt", ("The commander, however, claimed he never gave the order",))
    assert normalize_ws(" a \n\t b ") == "a b"
    assert is_hit(q, "a.txt", DOC)
    assert not is_hit(q, "b.txt", DOC)
    assert not is_hit(q, "a.txt", "The commander, however,")
    assert not is_hit(Question("Unanswerable?", None, ()), "a.txt", DOC)


def _hit(rank, doc_id, start, end, highlight=None):
    return Hit(rank=rank, doc_id=doc_id, title="t", start=start, end=end, quote=DOCS[doc_id][start:end],
               score=1.0 / rank, highlight=Highlight(*highlight) if highlight else None)


EVIDENCE_START = DOC.index("The commander")
EVIDENCE_END = DOC.index("order.") + len("order.")
OTHER = (0, len(DOCS["b.txt"]))


def test_metrics_on_known_answers():
    questions = [
        Question("at one", "a.txt", ("he never gave the order",)),
        Question("at three", "a.txt", ("he never gave the order",)),
        Question("missed", "a.txt", ("Other text follows",)),
        Question("abstained wrongly", "a.txt", ("he never gave the order",)),
        Question("no answer, abstains", None, ()),
        Question("no answer, answers", None, ()),
    ]
    ev = (EVIDENCE_START, EVIDENCE_END)
    answers = {
        "at one": Answer("at one", True, [_hit(1, "a.txt", *ev, highlight=ev), _hit(2, "b.txt", *OTHER)]),
        "at three": Answer("at three", True, [_hit(1, "b.txt", *OTHER), _hit(2, "a.txt", 0, 5),
                                             _hit(3, "a.txt", *ev)]),
        "missed": Answer("missed", True, [_hit(1, "a.txt", *ev)]),
        "abstained wrongly": Answer("abstained wrongly", False, [_hit(1, "a.txt", *ev, highlight=(0, 5))]),
        "no answer, abstains": Answer("no answer, abstains", False, [_hit(1, "b.txt", *OTHER)]),
        "no answer, answers": Answer("no answer, answers", True, [_hit(1, "b.txt", *OTHER)]),
    }
    report = evaluate(questions, lambda q: answers[q], DOCS.__getitem__)
    m = report.metrics()
    assert m["answerable"] == 4 and m["unanswerable"] == 2
    assert m["hit@1"] == pytest.approx(2 / 4)
    assert m["hit@3"] == m["hit@5"] == pytest.approx(3 / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 0 + 1) / 4)
    assert m["abstained"] == 1 and report.answered_unanswerable == ["no answer, answers"]
    assert m["false_abstentions"] == 1 and report.false_abstentions == ["abstained wrongly"]
    # the highlight counts only where it falls on the evidence: "at one" yes, "abstained wrongly" no
    assert m["highlight_on_evidence"] == pytest.approx(1 / 4)
    assert [(x["question"], x["rank"]) for x in report.missed] == [("at three", 3), ("missed", None)]
    assert m["quotes_exact"] is True


def test_a_quote_that_is_not_the_document_text_is_caught():
    q = Question("q", "a.txt", ("he never gave the order",))
    bad = Hit(rank=1, doc_id="a.txt", title="t", start=0, end=5, quote="Tit1e", score=1.0, highlight=None)
    report = evaluate([q], lambda _: Answer("q", True, [bad]), DOCS.__getitem__)
    assert report.metrics()["quotes_exact"] is False


def test_no_passages_counts_as_a_miss():
    q = Question("q", "a.txt", ("he never gave the order",))
    report = evaluate([q], lambda _: Answer("q", False, [], reason="empty index"), DOCS.__getitem__)
    m = report.metrics()
    assert m["hit@5"] == 0 and m["mrr"] == 0 and report.missed[0]["got"] is None


@pytest.mark.skipif(not SEED_QUESTIONS.is_file(), reason="the shared seed questions are not present")
def test_seed_questions_meet_the_issue_targets(searcher, seed_index):
    """The issue's targets on ../shared/eval/seed_questions.jsonl: hit@1 >= 0.90, hit@5 = 1.00,
    every unanswerable question abstains, no answerable one does, every quote exact."""
    questions = load_questions(SEED_QUESTIONS)
    report = evaluate(questions, lambda q: searcher.search(q, k=5), lambda d: seed_index.documents[d].text)
    m = report.metrics()
    summary = json.dumps({**m, "missed": report.missed, "false_abstentions": report.false_abstentions,
                          "answered_unanswerable": report.answered_unanswerable}, indent=1)
    assert m["quotes_exact"], summary
    assert m["hit@5"] == 1.0, summary
    assert m["hit@1"] >= 0.90, summary
    assert m["abstained"] == m["unanswerable"], summary
    assert m["false_abstentions"] == 0, summary
