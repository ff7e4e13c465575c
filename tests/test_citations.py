"""qa.citations: no sentence quoted twice, the answering sentence, plain-text rendering."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from qa.chunking import Passage
from qa.citations import best_sentence, collapse_overlaps, render_text
from qa.lexical import tokenize
from qa.retrieval import Answer, Highlight, Hit

# Sentences of a document "a.txt" at these spans: s0..s5
S = [(0, 10), (11, 20), (21, 30), (31, 40), (41, 50), (51, 60)]


def _passage(doc_id: str, first: int, last: int) -> Passage:
    spans = tuple(S[first : last + 1])
    return Passage(doc_id, spans[0][0], spans[-1][1], spans)


def fake_index(*passages: Passage):
    return SimpleNamespace(passages=list(passages))


def test_overlapping_passage_is_trimmed_to_its_unseen_sentences():
    index = fake_index(_passage("a.txt", 0, 2), _passage("a.txt", 2, 4))
    assert list(collapse_overlaps(index, [0, 1], limit=5)) == [(0, (0, 30)), (1, (31, 50))]


def test_passage_already_shown_whole_is_dropped_and_the_next_one_counts():
    index = fake_index(_passage("a.txt", 0, 3), _passage("a.txt", 1, 2), _passage("a.txt", 4, 5))
    assert list(collapse_overlaps(index, [0, 1, 2], limit=2)) == [(0, (0, 40)), (2, (41, 60))]


def test_trimmed_passage_keeps_its_longest_unseen_run():
    # s2 was shown: of s0-s1 and s3-s5, the longer run s3-s5 is quoted
    index = fake_index(_passage("a.txt", 2, 2), _passage("a.txt", 0, 5))
    assert list(collapse_overlaps(index, [0, 1], limit=5)) == [(0, (21, 30)), (1, (31, 60))]


def test_same_offsets_in_other_documents_do_not_collide():
    index = fake_index(_passage("a.txt", 0, 2), _passage("b.txt", 0, 2))
    assert [i for i, _ in collapse_overlaps(index, [0, 1], limit=5)] == [0, 1]


def test_limit_is_respected_and_order_kept():
    index = fake_index(*[_passage("a.txt", i, i) for i in range(6)])
    assert [i for i, _ in collapse_overlaps(index, [5, 3, 1, 0, 2, 4], limit=3)] == [5, 3, 1]


def test_collapse_on_the_seed_index_never_repeats_a_sentence(seed_index):
    ranked = list(range(len(seed_index)))[::-1]
    shown: dict[str, list[tuple[int, int]]] = {}
    for i, (s, e) in collapse_overlaps(seed_index, ranked, limit=len(seed_index)):
        p = seed_index.passages[i]
        assert p.start <= s < e <= p.end
        assert any(sent[0] == s for sent in p.sentences) and any(sent[1] == e for sent in p.sentences)
        for a, b in shown.get(p.doc_id, []):
            assert e <= a or b <= s
        shown.setdefault(p.doc_id, []).append((s, e))
    # collapsing loses no text: every sentence of every passage is still shown once
    for p in seed_index.passages:
        for sent in p.sentences:
            assert any(a <= sent[0] and sent[1] <= b for a, b in shown[p.doc_id])


def test_best_sentence_prefers_the_rarest_shared_words():
    text = "Soldiers refused orders. The commander denied it. Soldiers marched home."
    sentences = [(0, 24), (25, 49), (50, 72)]
    idf = {t: 1.0 for t in tokenize("soldiers commander")}
    idf[tokenize("commander")[0]] = 5.0
    assert best_sentence(text, sentences, idf) == (25, 49)
    assert best_sentence(text, sentences, {tokenize("soldiers")[0]: 1.0}) == (0, 24)  # first of equals
    assert best_sentence(text, sentences, {"zebra": 3.0}) is None
    assert best_sentence(text, [], idf) is None


def _hit(rank, start, end, quote, highlight=None, doc_id="a.txt", title="A title"):
    return Hit(rank=rank, doc_id=doc_id, title=title, start=start, end=end, quote=quote, score=1.0 / rank,
               highlight=highlight)


def test_render_marks_the_answering_sentence_and_cites_the_source():
    quote = "First sentence. The answer is here.\nLast line."
    hit = _hit(1, 100, 100 + len(quote), quote, Highlight(116, 135))
    out = render_text(Answer("Where is it?", True, [hit]))
    assert out.startswith("Q: Where is it?\n")
    assert "[1] First sentence. »The answer is here.«" in out
    assert "\n   Last line." in out  # continuation lines are indented, not flush left
    assert f"— A title (a.txt, characters 100–{100 + len(quote)}), score 1.0000" in out
    assert "does not answer" not in out


def test_render_says_when_the_corpus_does_not_answer():
    hit = _hit(1, 0, 5, "Close")
    out = render_text(Answer("Who painted the Mona Lisa?", False, [hit], reason="best similarity 0.10"))
    assert "The corpus does not answer this question (best similarity 0.10)." in out
    assert "Closest passages:" in out and "[1] Close" in out and "»" not in out


def test_render_with_no_passages_gives_the_reason():
    out = render_text(Answer("Anything?", False, [], reason="the index holds no passages"))
    assert out == "Q: Anything?\nNo passage found. the index holds no passages"


# -- citations as a reporter writes them, copy text, export (issue 10) ----------------------------


def test_a_citation_reads_site_title_date_page_url():
    from qa.citations import cite, copy_text, format_date

    source = {"site": "VentureBeat", "date": "2019-11-18", "url": "https://venturebeat.com/x", "author": "Reuters"}
    assert format_date("2019-11-18") == "Nov. 18, 2019" and format_date("2020-03-05") == "March 5, 2020"
    assert cite("WeWork probe", source, 3) == 'VentureBeat, "WeWork probe", Nov. 18, 2019, p. 3, https://venturebeat.com/x'
    assert cite("A title", {}) == "A title" and cite("A title", {}, doc_id="a.txt") == "A title, a.txt"
    passage = {"quote": "The NYAG is\n  investigating WeWork.", "title": "WeWork probe", "doc_id": "w.html",
               "source": source, "page": None}
    assert copy_text(passage) == ('“The NYAG is investigating WeWork.” — VentureBeat, "WeWork probe", Nov. 18, 2019, '
                                  "https://venturebeat.com/x")


def test_export_markdown_and_json_carry_every_citation():
    import json

    from qa.export import export_conversation

    hit = {"rank": 1, "doc_id": "w.html", "title": "WeWork *probe*", "start": 10, "end": 40,
           "quote": "First part. The answer here.", "score": 0.5, "highlight": {"start": 22, "end": 38},
           "page": 4, "source": {"site": "VentureBeat", "date": "2019-11-18", "url": "https://v.example/x",
                                 "author": None},
           "also_in": [{"doc_id": "r.txt", "title": "Wire copy", "start": 0, "end": 16, "page": None, "source": {}}]}
    results = [{"question": "What is the NYAG examining?", "answered": True, "passages": [hit],
                "filters": {"sites": ["VentureBeat"]}},
               {"question": "Who painted it?", "answered": False, "reason": "no passage is close enough",
                "passages": []}]
    md = export_conversation(results, "markdown")
    assert "## 1. What is the NYAG examining?" in md and "*Filters: sites: VentureBeat*" in md
    assert "“First part. **The answer here.**”" in md
    assert 'VentureBeat, "[WeWork \\*probe\\*](<https://v.example/x>)", Nov. 18, 2019, p. 4' in md
    assert "also reported in: \"Wire copy\" (r.txt, characters 0–16)" in md
    assert "The corpus does not answer this question (no passage is close enough)." in md
    data = json.loads(export_conversation(results, "json"))
    p = data["turns"][0]["passages"][0]
    assert p["citation"] == 'VentureBeat, "WeWork *probe*", Nov. 18, 2019, p. 4, https://v.example/x'
    assert p["copy"].startswith("“First part. The answer here.” — VentureBeat")
    assert p["also_in"][0]["citation"] == "Wire copy, r.txt"
    assert data["turns"][1]["reason"] == "no passage is close enough"
    with pytest.raises(ValueError, match="unknown export format 'pdf'. Choose from 'markdown', 'json'"):
        export_conversation(results, "pdf")
    with pytest.raises(ValueError, match="result 1 of the conversation is not a result of /ask"):
        export_conversation([{"question": 3}], "json")
