"""The result contract: an Answer holds Hits, best first, each a verbatim quote with its highlight
and the other documents that report the same (Citation); Filters say which documents were searched.

Its own module so that retrieval (which makes results) and citations (which render them)
both import it, and neither the other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Sequence

from qa.arguments import ArgumentError, check_text, check_text_list, describe

MAX_DOC_ID_CHARS = 4096  # a path relative to the corpus folder (PATH_MAX)


@dataclass
class Highlight:
    start: int
    end: int


@dataclass
class Citation:
    """Another document that reports the same passage: its sentence at ``start:end``."""

    doc_id: str
    title: str
    start: int
    end: int
    page: int | None = None
    source: dict = field(default_factory=dict)


@dataclass
class Hit:
    """One quoted passage: ``document.text[start:end] == quote``; offsets are into the whole document.

    ``score`` is the first-stage score (dense and BM25 fused, at most 1);
    ``relevance`` is the relevance model's calibrated probability that the passage
    answers the question (None when the search ran without it); ``cosine`` is the
    passage vector's cosine to the question's.
    """

    rank: int
    doc_id: str
    title: str
    start: int
    end: int
    quote: str
    score: float
    highlight: Highlight | None
    also_in: list[Citation] = field(default_factory=list)
    relevance: float | None = None
    cosine: float = field(default=0.0, repr=False)
    page: int | None = None  # the 1-based page where the quote starts (PDFs), else None
    source: dict = field(default_factory=dict)  # {url, site, author, date} of the document

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("cosine")
        return d


@dataclass(frozen=True)
class Filters:
    """Which documents a question searches: all of them unless one of these is given.

    A document passes when it is one of ``doc_ids``, its site is one of ``sites``
    (case-insensitive), and its date lies within ``since`` .. ``until`` (inclusive,
    YYYY-MM-DD); with a date bound, a document without a date does not pass.
    """

    doc_ids: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None

    @classmethod
    def of(cls, doc_ids: Sequence[str] | None = None, sites: Sequence[str] | None = None,
           since: str | None = None, until: str | None = None) -> "Filters":
        """Checked filters from loose input (None or empty means no filter).

        Raises:
            ArgumentError (a ValueError): a date that is not YYYY-MM-DD, ``since`` after
                ``until``, names that are not a list of text.
        """
        def names(values, what: str) -> tuple[str, ...]:
            checked = check_text_list(values, what, max_chars=MAX_DOC_ID_CHARS)
            return tuple(dict.fromkeys(v.strip() for v in checked if v.strip()))

        since, until = _check_date(since, "since"), _check_date(until, "until")
        if since and until and since > until:
            raise ArgumentError(f"since ({since}) is after until ({until})")
        return cls(names(doc_ids, "doc_ids"), names(sites, "sites"), since, until)

    @property
    def active(self) -> bool:
        return bool(self.doc_ids or self.sites or self.since or self.until)

    def to_dict(self) -> dict:
        """The filters in force, without the empty ones."""
        d = {"doc_ids": list(self.doc_ids), "sites": list(self.sites), "since": self.since, "until": self.until}
        return {k: v for k, v in d.items() if v}

    def admits(self, doc_id: str, source) -> bool:
        if self.doc_ids and doc_id not in self.doc_ids:
            return False
        if self.sites and (source.site or "").casefold() not in {s.casefold() for s in self.sites}:
            return False
        if self.since or self.until:
            if not source.date:
                return False
            if (self.since and source.date < self.since) or (self.until and source.date > self.until):
                return False
        return True


def _check_date(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    text = check_text(value, name, max_chars=64).strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ArgumentError(f"{name} must be a date as YYYY-MM-DD, got {describe(value)}") from None


@dataclass
class Answer:
    """The result contract: the question, whether the corpus answers it, the passages best first."""

    question: str
    answered: bool
    passages: list[Hit]
    reason: str | None = None
    filters: Filters = field(default_factory=Filters)

    def to_dict(self) -> dict:
        d = {"question": self.question, "answered": self.answered, "passages": [h.to_dict() for h in self.passages]}
        if self.reason:
            d["reason"] = self.reason
        if self.filters.active:
            d["filters"] = self.filters.to_dict()
        return d
