"""Quotes and citations: overlap collapsing, the answering sentence, and plain-text rendering."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

from qa.lexical import tokenize

if TYPE_CHECKING:
    from qa.index import Index
    from qa.retrieval import Answer

Span = tuple[int, int]


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


def best_sentence(text: str, sentences: list[Span], idf: Mapping[str, float]) -> Span | None:
    """The sentence that shares the most informative words with the question.

    Args:
        text: the document text.
        sentences: candidate sentence spans.
        idf: the question's tokens with their inverse document frequency.

    Returns:
        the winning span, or None when no sentence shares a word with the question.
    """
    best, best_score = None, 0.0
    for span in sentences:
        words = set(tokenize(text[span[0] : span[1]]))
        score = sum(w for t, w in idf.items() if t in words)
        if score > best_score:
            best, best_score = span, score
    return best


def render_text(answer: "Answer") -> str:
    """Numbered quotes with citations, the answering sentence marked with »…«."""
    lines = [f"Q: {answer.question}"]
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
        body = "\n".join("   " + line for line in quote.splitlines())
        lines.append(f"[{hit.rank}] {body.lstrip()}")
        lines.append(f"    — {hit.title} ({hit.doc_id}, characters {hit.start}–{hit.end}), score {hit.score:.4f}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
