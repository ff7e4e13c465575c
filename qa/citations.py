"""Quotes and citations: overlap collapsing, the answering sentence, and plain-text rendering."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence

from qa.lexical import tokenize

if TYPE_CHECKING:
    from qa.index import Index
    from qa.results import Answer

Span = tuple[int, int]

# Weight of word overlap against sentence-vector cosine when choosing the answer
# sentence; measured on the seed questions (see README, "Answer sentence").
LEXICAL_WEIGHT = 0.1
# A "when" question is answered by a sentence with a date or time in it, a "how
# many" question by one with a number: a classic expected-answer-type cue.
ANSWER_TYPE_BONUS = 0.1
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DATE = re.compile(
    rf"\b(?:(?:{_MONTHS}|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)\.?\b|(?:1[89]|20)\d\d\b"
    r"|\d{1,2}:\d\d\b|(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|yesterday\b|today\b)",
    re.I,
)
_NUMBER = re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|dozens?|hundreds?|thousands?)\b", re.I)
_ASKS_WHEN = re.compile(r"^\s*(?:when\b|(?:in |on |at )?what (?:year|date|day|month|time)\b)", re.I)
_ASKS_COUNT = re.compile(r"^\s*how (?:many|much|long|old)\b", re.I)


def answer_type(question: str) -> re.Pattern | None:
    """The pattern an answering sentence is expected to contain, if the question says."""
    if _ASKS_WHEN.search(question):
        return _DATE
    if _ASKS_COUNT.search(question):
        return _NUMBER
    return None


# How a question opens: interrogatives and the auxiliaries of yes/no questions.
QUESTION_OPENERS = frozenset(
    "who whom whose what which when where why how "
    "is are was were am do does did can could will would shall should may might must has have had".split())


def reads_as_question(query: str) -> bool:
    """Whether a query is asked as a question: ends in "?" or opens like one.

    The model was trained on SQuAD's questions only. On statements (SciFact's claims,
    the only ones measured here) its order is worse than the first stage's, so a
    statement keeps the first stage's order (``Searcher._rerank``).
    """
    text = query.strip()
    if text.endswith(("?", "？")):
        return True
    words = text.split(maxsplit=1)
    return bool(words) and words[0].lower().strip("\"'“‘(¿¡") in QUESTION_OPENERS


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def collapse_overlaps(index: "Index", ranked: Iterable[int], *, limit: int) -> Iterator[tuple[int, Span]]:
    """Walk passages best first so that no sentence is quoted twice.

    A passage that shares sentences with a better one is trimmed to its longest run
    of sentences not yet shown, or dropped when none is left.

    Yields:
        (passage number, (start, end) of the part to quote), at most ``limit`` of them.
    """
    shown: dict[str, list[Span]] = {}
    given = 0
    for i in ranked:
        if given >= limit:
            return
        p = index.passages[i]
        taken = shown.setdefault(p.doc_id, [])
        fresh = [not any(_overlaps(s, t) for t in taken) for s in p.sentences]
        best, run = (0, 0), None
        for j, ok in enumerate(fresh + [False]):
            if ok and run is None:
                run = j
            elif not ok and run is not None:
                if j - run > best[1] - best[0]:
                    best = (run, j)
                run = None
        if best[1] == best[0]:
            continue
        span = (p.sentences[best[0]][0], p.sentences[best[1] - 1][1])
        taken.append(span)
        given += 1
        yield i, span


def best_sentence(
    text: str,
    sentences: list[Span],
    idf: Mapping[str, float],
    similarity: Sequence[float] | None = None,
    *,
    expects: re.Pattern | None = None,
    lexical_weight: float = LEXICAL_WEIGHT,
) -> Span | None:
    """The sentence that best answers the question.

    Each sentence scores its cosine similarity to the question (when given) plus
    ``lexical_weight`` times the share of the question's idf mass it contains.

    Args:
        text: the document text.
        sentences: candidate sentence spans.
        idf: the question's tokens with their inverse document frequency.
        similarity: cosine of each sentence's vector to the question, or None.
        expects: ``answer_type(question)``: sentences matching it gain ANSWER_TYPE_BONUS.

    Returns:
        the winning span, or None when there is nothing to choose from (or,
        without similarities, when no sentence shares a word with the question).
    """
    if not sentences:
        return None
    total = sum(idf.values()) or 1.0
    best, best_score = None, 0.0 if similarity is None else float("-inf")
    for n, span in enumerate(sentences):
        words = set(tokenize(text[span[0] : span[1]]))
        score = lexical_weight * sum(w for t, w in idf.items() if t in words) / total
        if similarity is not None:
            score += float(similarity[n])
        if expects is not None and expects.search(text, span[0], span[1]):
            score += ANSWER_TYPE_BONUS
        if score > best_score:
            best, best_score = span, score
    return best


# Two sentences from different documents "say the same thing" when they share most
# of their content words and their (standalone) embeddings are very close. Measured
# on the seed corpus: the closest related-but-different cross-document pairs reach
# cosine 0.75 and word containment 0.67 (e.g. "Several Russian soldiers were
# arrested for refusing to fight" / "Russian soldiers have refused to be sent to
# the frontline"), so both bars sit above that; wire copy and quotes repeated by
# several outlets clear them easily. See README, "Corroboration".
SAME_MIN_COSINE = 0.85
SAME_MIN_CONTAINMENT = 0.6
SAME_MIN_WORDS = 3


def word_containment(a: set[str], b: set[str]) -> float:
    """Share of the smaller word set found in the other."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def may_be_same(a: set[str], b: set[str]) -> bool:
    """Cheap lexical test before comparing embeddings."""
    return min(len(a), len(b)) >= SAME_MIN_WORDS and word_containment(a, b) >= SAME_MIN_CONTAINMENT


_MONTHS_AP = ("Jan.", "Feb.", "March", "April", "May", "June", "July", "Aug.", "Sept.", "Oct.", "Nov.", "Dec.")


def format_date(iso: str | None) -> str | None:
    """A YYYY-MM-DD date as a reporter writes it ("Nov. 18, 2019"); None stays None."""
    match = re.match(r"^(\d{4})-(\d{2})-(\d{2})$", iso or "")
    if not match or not 1 <= int(match.group(2)) <= 12:
        return iso or None
    return f"{_MONTHS_AP[int(match.group(2)) - 1]} {int(match.group(3))}, {match.group(1)}"


def cite(title: str, source: Mapping | None = None, page: int | None = None, *, doc_id: str | None = None) -> str:
    """A citation as a reporter writes it: site, "title", date, page, URL (what is known of them).

    A document with no source details is cited by its title alone, or with
    ``doc_id`` after it (the file to look in) when given.
    """
    source = source or {}
    date = format_date(source.get("date"))
    details = [source.get("site"), date, f"p. {page}" if page else None, source.get("url")]
    if not any(details):
        return f"{title}, {doc_id}" if doc_id and title else (title or doc_id or "")
    parts = [source.get("site"), f'"{title}"' if title else doc_id, date, f"p. {page}" if page else None,
             source.get("url")]
    return ", ".join(p for p in parts if p)


def copy_text(passage: Mapping) -> str:
    """A passage of the result contract as plain text to paste: “quote” — Site, "Title", date, p. N, URL.

    The quote's line breaks and runs of spaces become single spaces; its words are the document's.
    """
    quote = " ".join(passage["quote"].split())
    return f"“{quote}” — {cite(passage.get('title'), passage.get('source'), passage.get('page'), doc_id=passage['doc_id'])}"


# How a reader is told the relevance model's probability that a passage answers.
_RELEVANCE_WORDS = ((0.75, "very likely answers the question"), (0.4, "likely answers the question"),
                    (0.15, "may answer the question"), (0.0, "probably does not answer the question"))


def relevance_words(relevance: float | None) -> str:
    """The relevance probability in words with its percentage, e.g. "likely answers the question (62%)"."""
    if relevance is None:
        return ""
    words = next(w for floor, w in _RELEVANCE_WORDS if relevance >= floor)
    return f"{words} ({relevance:.0%})"


def render_text(answer: "Answer") -> str:
    """Numbered quotes with citations, the answering sentence marked with »…«."""
    lines = [f"Q: {answer.question}"]
    if answer.filters.active:
        lines.append(f"Filters: {describe_filters(answer.filters.to_dict())}")
    if not answer.passages:
        lines.append(f"No passage found. {answer.reason or ''}".rstrip())
        return "\n".join(lines)
    if not answer.answered:
        lines.append(f"The corpus does not answer this question ({answer.reason}).")
        lines.append("Closest passages:")
    lines.append("")
    for hit in answer.passages:
        quote = hit.quote
        if hit.highlight:
            a, b = hit.highlight.start - hit.start, hit.highlight.end - hit.start
            quote = f"{quote[:a]}»{quote[a:b]}«{quote[b:]}"
        body = "\n".join("   " + line if line.strip() else "" for line in quote.splitlines())
        lines.append(f"[{hit.rank}] {body.lstrip()}")
        judged = relevance_words(hit.relevance) if hit.relevance is not None else f"score {hit.score:.4f}"
        lines.append(f"    — {cite(hit.title, hit.source, hit.page)} ({hit.doc_id}, characters {hit.start}–{hit.end}), "
                     f"{judged}")
        for other in hit.also_in:
            lines.append(f"    also reported in: {cite(other.title, other.source, other.page)} "
                         f"({other.doc_id}, characters {other.start}–{other.end})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def describe_filters(filters: Mapping) -> str:
    """The filters of a result (its "filters" entry) in words: 'sites: CNN, Vox; from Nov. 1, 2019'."""
    parts = []
    if filters.get("doc_ids"):
        parts.append(f"documents: {', '.join(filters['doc_ids'])}")
    if filters.get("sites"):
        parts.append(f"sites: {', '.join(filters['sites'])}")
    since, until = format_date(filters.get("since")), format_date(filters.get("until"))
    if since and until:
        parts.append(f"dated {since} to {until}")
    elif since:
        parts.append(f"dated {since} or later")
    elif until:
        parts.append(f"dated {until} or earlier")
    return "; ".join(parts)
