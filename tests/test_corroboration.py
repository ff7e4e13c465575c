"""Corroboration: passages from different reports that say the same thing are shown once."""

from __future__ import annotations

from qa.citations import may_be_same, word_containment
from qa.index import update_index
from qa.lexical import tokenize
from qa.retrieval import Highlight, Hit, Searcher

WIRE = "Seventeen servicemen were imprisoned in the city of Alchevsk after they refused to keep fighting."

DOCS = {
    "a_wire.txt": (
        "Outlet A reports on detained soldiers\n\n"
        "The regional court met on Monday to hear an unrelated case about farm subsidies.\n\n"
        f"{WIRE} Their lawyer said the men had asked to end their contracts.\n\n"
        "The weather in the region was unusually warm for the season."
    ),
    "b_copy.txt": (
        "Outlet B: soldiers held after refusing orders\n\n"
        "A local football club won its third match in a row on Saturday.\n\n"
        "According to the lawyer, seventeen servicemen were imprisoned in the city of Alchevsk after they "
        "refused to keep fighting.\n\n"
        "Tickets for the next concert went on sale at noon."
    ),
    "c_related.txt": (
        "Outlet C: arrests at the front\n\n"
        "Several soldiers were arrested for refusing to fight near the front line, according to their relatives.\n\n"
        "Bakeries in the capital raised bread prices again this week."
    ),
}


def _build(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    index, _ = update_index(corpus, tmp_path / "index", embedder=embedder, show_progress=False)
    return Searcher(index, embedder)


def test_repeated_statement_is_shown_once_with_the_other_report_cited(tmp_path, embedder):
    searcher = _build(tmp_path, embedder)
    answer = searcher.search("Where were the seventeen servicemen imprisoned?", k=3)
    top = answer.passages[0]
    assert top.doc_id in ("a_wire.txt", "b_copy.txt")
    other = "b_copy.txt" if top.doc_id == "a_wire.txt" else "a_wire.txt"
    assert [c.doc_id for c in top.also_in] == [other]
    cited = top.also_in[0]
    text = searcher.index.documents[other].text
    assert "imprisoned in the city of Alchevsk" in text[cited.start : cited.end]
    assert cited.title == searcher.index.documents[other].title
    # The repeating report does not take a place of its own.
    assert other not in [h.doc_id for h in answer.passages]
    assert answer.to_dict()["passages"][0]["also_in"] == [
        {"doc_id": other, "title": cited.title, "start": cited.start, "end": cited.end, "page": None,
         "source": {"url": None, "site": None, "author": None, "date": None}}  # issue 10: where, and whose
    ]


def test_related_but_different_report_is_not_merged(tmp_path, embedder):
    searcher = _build(tmp_path, embedder)
    answer = searcher.search("Were soldiers arrested or imprisoned for refusing to fight?", k=3)
    docs = [h.doc_id for h in answer.passages]
    assert "c_related.txt" in docs, "the related report is listed as its own passage"
    for hit in answer.passages:
        assert all(c.doc_id != "c_related.txt" for c in hit.also_in)
        if hit.doc_id == "c_related.txt":
            assert hit.also_in == []


def _hit(searcher, doc_id, sentence):
    text = searcher.index.documents[doc_id].text
    start = text.index(sentence)
    return Hit(1, doc_id, "", start, start + len(sentence), sentence, 1.0, Highlight(start, start + len(sentence)))


def test_closest_related_seed_sentences_are_not_the_same_statement(searcher):
    """The closest cross-document pair on the seed corpus that is *not* the same
    statement (cosine 0.75, containment 0.67 when measured) must stay apart."""
    a = _hit(searcher, "003_5b9c610a72473fdf.txt", "Several Russian soldiers were arrested for refusing to fight")
    b_text = "Russian soldiers have refused to be sent to the frontline"
    b = _hit(searcher, "004_6faa4890d470160d.txt", b_text)
    assert searcher._corroboration(a, b, [(b.start, b.end)]) is None


def test_word_containment_and_prefilter():
    a = set(tokenize("Seventeen servicemen were imprisoned in Alchevsk"))
    b = set(tokenize("According to the lawyer, seventeen servicemen were imprisoned in Alchevsk"))
    assert word_containment(a, b) == 1.0
    assert may_be_same(a, b)
    assert not may_be_same(set(tokenize("We are sent")), set(tokenize("We are sent")))  # too few words
    assert word_containment(set(), b) == 0.0
