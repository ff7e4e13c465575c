"""qa.chunking: sentence spans and sentence-aligned passages whose offsets quote the text exactly."""

from __future__ import annotations

from itertools import pairwise

import blingfire
import pytest
from conftest import SEEDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.chunking import Chunker, ChunkParams, Passage, _sentence_offsets, count_tiktokens, split_sentences
from qa.corpus import Document, load_corpus
from qa.embedding import MAX_SEQ_LENGTH
from qa.index import IndexParams

# Small enough that generated documents are split into many passages, and that
# long sentences must be cut at word boundaries.
SMALL = ChunkParams(max_tokens=24, overlap_tokens=6, max_wordpieces=20)


@pytest.fixture(scope="module")
def small_chunker(embedder):
    return Chunker(SMALL, count_tokens=count_tiktokens, count_wordpieces=embedder.count_wordpieces)


@pytest.fixture(scope="module")
def default_chunker(embedder):
    return Chunker(IndexParams().chunk_params(), count_tokens=count_tiktokens,
                   count_wordpieces=embedder.count_wordpieces)


def sentences_of(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def assert_spans_tile_non_whitespace(text: str, spans) -> None:
    """Spans are ordered, disjoint, trimmed, and together hold every non-space character."""
    covered = [False] * len(text)
    last = 0
    for s, e in spans:
        assert last <= s < e <= len(text), (spans, len(text))
        assert not text[s].isspace() and not text[e - 1].isspace(), repr(text[s:e])
        for i in range(s, e):
            covered[i] = True
        last = e
    missing = [i for i, c in enumerate(text) if not c.isspace() and not covered[i]]
    assert not missing, f"characters in no span: {[text[i] for i in missing]!r}"


def check_passages(text: str, passages: list[Passage], chunker: Chunker, embedder) -> None:
    """Every invariant a passage list must keep, whatever the document."""
    doc_sentences = split_sentences(text)
    if not text.strip():
        assert passages == []
        return
    assert passages, "a document with text must give at least one passage"
    for p in passages:
        quote = text[p.start : p.end]
        assert 0 <= p.start < p.end <= len(text)
        assert quote == quote.strip(), f"passage not trimmed: {quote!r}"
        # sentences lie within [start, end), in order, first and last at the edges
        assert p.sentences and p.sentences[0][0] == p.start and p.sentences[-1][1] == p.end
        for (s1, e1), (s2, e2) in pairwise(p.sentences):
            assert s1 < e1 <= s2 < e2
            assert text[e1:s2].strip() == "", "a passage skips text between its sentences"
        # each piece is a whole sentence, or a word-boundary cut of one over-budget sentence
        for s, e in p.sentences:
            host = next((h for h in doc_sentences if h[0] <= s and e <= h[1]), None)
            assert host is not None, f"{text[s:e]!r} crosses a sentence boundary"
            if (s, e) != host:
                for cut in (s, e):
                    if cut in host or text[cut - 1].isspace() or text[cut].isspace():
                        continue
                    # Inside a word only when that word alone is over the budget.
                    w0 = max(text.rfind(c, 0, cut) for c in " \t\n\r\u00a0\u2028") + 1
                    w1 = min((i for i in (text.find(c, cut) for c in " \t\n\r\u00a0\u2028") if i >= 0), default=len(text))
                    word = text[max(w0, host[0]) : min(w1, host[1])]
                    tokens, pieces = chunker._measure(word)
                    assert not chunker._fits(tokens, pieces), f"a long sentence was cut inside the word {word!r}"
        # nothing the embedder would truncate
        assert embedder.count_wordpieces([quote])[0] <= chunker.params.max_wordpieces
    # passages best read in document order
    for a, b in pairwise(passages):
        assert a.start < b.start and a.end < b.end, (
            f"passages out of order or one inside the other: {text[a.start:a.end]!r} then {text[b.start:b.end]!r}")
    assert_spans_tile_non_whitespace(
        text, sorted({s for p in passages for s in p.sentences}),
    )


# -- sentence splitting: the cases named in the issue ---------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("On Jan. 13, a 31-year-old soldier reportedly fled his unit. He was caught.",
         ["On Jan. 13, a 31-year-old soldier reportedly fled his unit.", "He was caught."]),
        ("Officials in the U.S. said nothing. Others disagreed.",
         ["Officials in the U.S. said nothing.", "Others disagreed."]),
        ("They were sent to the U.S. Army base. Then they left.",
         ["They were sent to the U.S. Army base.", "Then they left."]),
        ("He refused “senseless and suicidal orders.” The unit agreed.",
         ["He refused “senseless and suicidal orders.”", "The unit agreed."]),
        ('They face "certain death." They would rather go to jail.',
         ['They face "certain death."', "They would rather go to jail."]),
        ("“We will not go,” he said. “Never!” Then silence.",
         ["“We will not go,” he said.", "“Never!”", "Then silence."]),
        ("Dr. Smith met Mr. Jones at 9 a.m. on Monday. They talked.",
         ["Dr. Smith met Mr. Jones at 9 a.m. on Monday.", "They talked."]),
    ],
)
def test_sentence_boundaries_on_abbreviations_and_quotes(text, expected):
    assert sentences_of(text) == expected


def test_headline_and_byline_without_full_stop_are_their_own_sentences():
    text = ("Mutiny for Putin: Footage emerges of Russian troops\n\n"
            "9 March 2023, 11:21\n"
            "By Will Taylor\n"
            "Footage has emerged of mobilised Russian troops refusing to fight. They declare it.")
    assert sentences_of(text) == [
        "Mutiny for Putin: Footage emerges of Russian troops",
        "9 March 2023, 11:21",
        "By Will Taylor",
        "Footage has emerged of mobilised Russian troops refusing to fight.",
        "They declare it.",
    ]


def test_title_line_then_body_on_the_next_line():
    assert sentences_of("Russian soldiers in Mariupol\nTwo soldiers patrol the theatre. It was bombed.") == [
        "Russian soldiers in Mariupol", "Two soldiers patrol the theatre.", "It was bombed."]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_hard_wrapped_line_starting_lowercase_stays_one_sentence(newline):
    text = f"The soldiers said that they would{newline}rather be thrown in jail than go.{newline}Next sentence here."
    assert sentences_of(text) == [
        f"The soldiers said that they would{newline}rather be thrown in jail than go.",
        "Next sentence here.",
    ]


def test_bullets_are_separate_sentences():
    text = "KEY POINTS\n\n  • Soldiers are accused of fleeing\n  • Deserters may receive 10 years\n"
    assert sentences_of(text) == ["KEY POINTS", "• Soldiers are accused of fleeing", "• Deserters may receive 10 years"]


def test_seed_documents_keep_the_named_cases_whole():
    docs = {d.doc_id: d for d in load_corpus(SEEDS)}
    s000 = sentences_of(docs["000_93644d6605fbd4ae.txt"].text)
    assert any(s.startswith("On Jan. 13, a 31-year-old soldier reportedly fled") for s in s000)
    assert not any(s.endswith("Jan.") for s in s000)
    s004 = sentences_of(docs["004_6faa4890d470160d.txt"].text)
    assert "By Will Taylor" in s004


def test_document_without_sentence_end_is_one_sentence():
    text = "a line with no full stop and no capital at all"
    assert split_sentences(text) == [(0, len(text))]


@pytest.mark.parametrize("text", ["", " ", "\n\n\r\n\t \u00a0\u2028"])
def test_blank_text_has_no_sentences(text):
    assert split_sentences(text) == []


def test_offsets_are_string_indices_with_emoji_and_combining_marks():
    text = "  Emoji 😀👍🏽 first. Cafe\u0301 «second» — yes.\u2028Third “one”.  "
    spans = split_sentences(text)
    assert_spans_tile_non_whitespace(text, spans)
    assert text[spans[0][0] : spans[0][1]] == "Emoji 😀👍🏽 first."


# -- generated documents ------------------------------------------------------------

_WORDS = st.sampled_from([
    "soldier", "Russian", "war", "a", "I", "the", "31-year-old", "Jan.", "U.S.", "Dr.", "Mr.", "e.g.", "No.",
    "a.m.", "St.", "café", "naïve", "Ünïcödé", "1,234", "9:30", "2022", "😀", "👍🏽", "🇺🇦", "Bakhmut",
    "it's", "Russia’s", "mobilised", "—", "–", "-", "...", "(yes)", "&", "#1", "x", "Ω", "ß",
])
_WRAPPED = st.tuples(st.sampled_from(["“", "‘", "«", '"', "'", "(", ""]), _WORDS,
                     st.sampled_from(["”", "’", "»", '"', "'", ")", ",", ";", ":", ""])).map("".join)
_WORD_GAP = st.sampled_from([" ", " ", " ", "\u00a0", "\t", "  ", " — ", " – ", "\n", "\r\n"])
_SENTENCE_END = st.sampled_from([".", ".", "!", "?", "…", ".”", '."', "?”", ".’", "»", ""])
_SENTENCE_GAP = st.sampled_from([" ", " ", "\n", "\r\n", "\r", "\n\n\n", "\r\n\r\n", "\u2028", "\u00a0",
                                 " \t\n", "\n\t", "\n   \n"])


@st.composite
def documents(draw) -> str:
    parts = [draw(st.sampled_from(["", "", "\n", "  ", "\r\n\t"]))]
    for _ in range(draw(st.integers(1, 12))):
        words = draw(st.lists(st.one_of(_WORDS, _WRAPPED), min_size=1, max_size=30))
        sentence = words[0]
        for w in words[1:]:
            sentence += draw(_WORD_GAP) + w
        parts.append(sentence + draw(_SENTENCE_END))
        parts.append(draw(_SENTENCE_GAP))
    return "".join(parts)


_PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(text=documents())
def test_split_sentences_invariants(text):
    spans = split_sentences(text)
    assert_spans_tile_non_whitespace(text, spans)
    # the text between two sentences is whitespace only: nothing falls out of a quote
    for (_, e1), (s2, _) in pairwise(spans):
        assert text[e1:s2].strip() == ""


@_PROPERTY
@given(text=documents())
def test_sentence_offsets_are_blingfires_own(text):
    # blingfire's Python wrapper maps offsets byte by byte; ours does it in one sum and must agree
    for block in (text.strip(), text.replace("\n", " ").strip()):
        if block:
            assert _sentence_offsets(block) == [tuple(span) for span in blingfire.text_to_sentences_and_offsets(block)[1]]


@_PROPERTY
@given(text=documents())
def test_passages_quote_exactly_cover_everything_and_fit(text, small_chunker, embedder):
    doc = Document("gen.txt", "gen", text)
    passages = small_chunker.chunk(doc)
    assert all(p.doc_id == "gen.txt" for p in passages)
    check_passages(text, passages, small_chunker, embedder)


# -- budget, cutting and overlap --------------------------------------------------------


def _sentences(n: int) -> str:
    return " ".join(f"Sentence number {i} tells of soldier {i} refusing orders." for i in range(n))


def test_passages_never_cut_a_sentence_that_fits(default_chunker, embedder):
    text = _sentences(60)
    passages = default_chunker.chunk(Document("d.txt", "d", text))
    assert len(passages) > 1
    bounds = split_sentences(text)
    starts, ends = {s for s, _ in bounds}, {e for _, e in bounds}
    for p in passages:
        assert p.start in starts and p.end in ends
        assert set(p.sentences) <= set(bounds)
    check_passages(text, passages, default_chunker, embedder)


def test_only_an_over_budget_sentence_is_cut_at_word_boundaries_and_pieces_fit(default_chunker, embedder):
    params = default_chunker.params
    long_sentence = "The " + " ".join(f"word{i}" for i in range(3 * params.max_tokens)) + "."
    text = f"A short opening sentence. {long_sentence} A short closing sentence."
    passages = default_chunker.chunk(Document("d.txt", "d", text))
    check_passages(text, passages, default_chunker, embedder)
    long_start = text.index("The word0")
    long_end = long_start + len(long_sentence)
    pieces = sorted({s for p in passages for s in p.sentences if long_start <= s[0] and s[1] <= long_end})
    assert len(pieces) >= 3
    assert pieces[0][0] == long_start and pieces[-1][1] == long_end
    for s, e in pieces:
        assert count_tiktokens([text[s:e]])[0] <= params.max_tokens
        assert embedder.count_wordpieces([text[s:e]])[0] <= params.max_wordpieces
    # the two short sentences are never cut
    all_spans = {s for p in passages for s in p.sentences}
    assert (0, len("A short opening sentence.")) in all_spans
    assert (len(text) - len("A short closing sentence."), len(text)) in all_spans


def test_passages_stay_within_the_token_budget(default_chunker):
    text = _sentences(60)
    for p in default_chunker.chunk(Document("d.txt", "d", text)):
        assert count_tiktokens([text[p.start : p.end]])[0] <= default_chunker.params.max_tokens


def test_neighbours_overlap_by_whole_sentences_within_the_overlap_budget(embedder):
    params = ChunkParams(max_tokens=60, overlap_tokens=20, max_wordpieces=254)
    chunker = Chunker(params, count_tokens=count_tiktokens, count_wordpieces=embedder.count_wordpieces)
    text = _sentences(30)
    passages = chunker.chunk(Document("d.txt", "d", text))
    shared_counts = []
    for a, b in pairwise(passages):
        shared = [s for s in a.sentences if s in b.sentences]
        # what is shared is whole sentences: the tail of one, the head of the next
        assert shared == list(a.sentences[len(a.sentences) - len(shared):])
        assert shared == list(b.sentences[: len(shared)])
        assert sum(count_tiktokens([text[s:e] for s, e in shared])) <= params.overlap_tokens
        assert b.start >= a.start and b.sentences[-1] not in a.sentences
        shared_counts.append(len(shared))
    assert any(shared_counts), "with room for overlap, neighbours should share a sentence"


def test_overlap_never_makes_a_passage_of_already_quoted_sentences_only(embedder):
    """Regression: when the carried-over sentence and the next one did not fit
    together, the carried-over sentence became a passage of its own, wholly inside
    the previous passage (a duplicate in the index)."""
    a = ("The first sentence tells a long story about soldiers who walked for many days "
         "across the frozen fields of the east.")
    b = "Nobody came back."
    c = ("The third sentence is much longer than the others because it has to fill nearly "
         "the whole budget of the passage by itself alone, on every single day.")
    params = ChunkParams(max_tokens=32, overlap_tokens=8, max_wordpieces=254)
    ta, tb, tc = count_tiktokens([a, b, c])
    # a and b fit together, b fits in the overlap, but b and c do not fit together
    assert ta + tb + 1 <= params.max_tokens and tb <= params.overlap_tokens
    assert tc <= params.max_tokens < tb + tc + 1
    chunker = Chunker(params, count_tokens=count_tiktokens, count_wordpieces=embedder.count_wordpieces)
    text = f"{a} {b} {c}"
    passages = chunker.chunk(Document("d.txt", "d", text))
    for x, y in pairwise(passages):
        assert not (x.start <= y.start and y.end <= x.end), f"{text[y.start:y.end]!r} repeats the passage before it"
    check_passages(text, passages, chunker, embedder)


def test_no_overlap_when_overlap_is_zero(embedder):
    params = ChunkParams(max_tokens=60, overlap_tokens=0, max_wordpieces=254)
    chunker = Chunker(params, count_tokens=count_tiktokens, count_wordpieces=embedder.count_wordpieces)
    passages = chunker.chunk(Document("d.txt", "d", _sentences(30)))
    for a, b in pairwise(passages):
        assert a.end < b.start


def test_seed_passages_fit_the_model(seed_index, embedder):
    cap = MAX_SEQ_LENGTH - 2
    quotes = [seed_index.quote(i) for i in range(len(seed_index))]
    assert quotes and max(embedder.count_wordpieces(quotes)) <= cap


@pytest.mark.parametrize(
    "name, body",
    [
        ("cjk", "俄罗斯士兵拒绝作战" * 60 + "。这是第二句话。"),
        ("rule", "=" * 400),
        ("table", "|" + "|".join(str(i) for i in range(200)) + "|"),
    ],
)
def test_unspaced_text_over_the_wordpiece_cap_is_still_cut(default_chunker, embedder, name, body):
    """Regression: a run without spaces (CJK text, a ===== rule, a markdown table row)
    is one "word" to the cutter, so its passage went over the model's 256 word pieces
    and the embedder silently truncated it."""
    text = f"Title line\n\n{body}\n\nA closing sentence."
    passages = default_chunker.chunk(Document("d.txt", "d", text))
    counts = embedder.count_wordpieces([text[p.start : p.end] for p in passages])
    assert max(counts) <= default_chunker.params.max_wordpieces, counts
    check_passages(text, passages, default_chunker, embedder)


# -- parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_tokens": 4}, "max_tokens must be at least 8"),
        ({"max_tokens": 32, "overlap_tokens": 32}, "overlap_tokens"),
        ({"overlap_tokens": -1}, "overlap_tokens"),
        ({"max_wordpieces": 2}, "max_wordpieces must be at least 8"),
    ],
)
def test_chunk_params_refuse_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ChunkParams(**kwargs)


def test_index_params_leave_room_for_special_tokens_and_title():
    assert IndexParams().chunk_params().max_wordpieces <= MAX_SEQ_LENGTH - 2
    titled = IndexParams(title_prefix=True).chunk_params().max_wordpieces
    assert titled < IndexParams().chunk_params().max_wordpieces

