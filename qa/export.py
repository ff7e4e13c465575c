"""A conversation (the results of its questions) as Markdown or JSON, every quote with its citation."""

from __future__ import annotations

import json
import re
import time
from typing import Mapping, Sequence

from qa.citations import cite, copy_text, describe_filters, format_date

FORMATS = ("markdown", "json")


def check_results(results: object) -> list[dict]:
    """The results of a conversation, checked: a list of result-contract dicts, oldest first.

    Raises:
        ValueError: not a list of results with a question and passages.
    """
    if not isinstance(results, (list, tuple)):
        raise ValueError("the conversation must be a list of results of /ask")
    for n, r in enumerate(results, 1):
        if not (isinstance(r, Mapping) and isinstance(r.get("question"), str) and isinstance(r.get("passages"), list)
                and all(isinstance(p, Mapping) and isinstance(p.get("quote"), str) and "doc_id" in p
                        for p in r["passages"])):
            raise ValueError(f"result {n} of the conversation is not a result of /ask (question, answered, passages)")
    return [dict(r) for r in results]


def export_conversation(results: Sequence[Mapping], fmt: str = "markdown") -> str:
    """The conversation in one of FORMATS.

    Raises:
        ValueError: an unknown format (naming the valid ones) or results that are not results of /ask.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}. Choose from {', '.join(map(repr, FORMATS))}")
    results = check_results(results)
    return conversation_markdown(results) if fmt == "markdown" else conversation_json(results)


def conversation_json(results: Sequence[Mapping]) -> str:
    """``{"exported", "turns": [result, ...]}``; each passage and "also in" citation gains
    ``citation`` (as a reporter writes it), and each passage ``copy`` (quote and citation)."""
    turns = []
    for r in results:
        passages = []
        for p in r["passages"]:
            also = [{**o, "citation": cite(o.get("title"), o.get("source"), o.get("page"), doc_id=o.get("doc_id"))}
                    for o in p.get("also_in") or []]
            passages.append({**p, "also_in": also, "citation": _cite(p), "copy": copy_text(p)})
        turns.append({**r, "passages": passages})
    return json.dumps({"exported": _now(), "turns": turns}, ensure_ascii=False, indent=2) + "\n"


def conversation_markdown(results: Sequence[Mapping]) -> str:
    """Each question as a heading, the filters in force, then the numbered quotes (the answering
    sentence in bold) with their citations, the URL as a link."""
    lines = ["# Questions and quotes", "", f"Exported {_now()}.", ""]
    for n, r in enumerate(results, 1):
        lines += [f"## {n}. {_inline(r['question'])}", ""]
        if r.get("filters"):
            lines += [f"*Filters: {_inline(describe_filters(r['filters']))}*", ""]
        if not r.get("answered", True):
            reason = f" ({_inline(r['reason'])})" if r.get("reason") else ""
            lines += [f"The corpus does not answer this question{reason}."
                      + (" The closest passages:" if r["passages"] else ""), ""]
        for p in r["passages"]:
            lines.append(f"{p.get('rank', '-')}. {_quote_markdown(p)}")
            lines.append(f"   — {_cite_markdown(p)}")
            for o in p.get("also_in") or []:
                lines.append(f"   — also reported in: {_cite_markdown(o)}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _cite(p: Mapping) -> str:
    return cite(p.get("title"), p.get("source"), p.get("page"), doc_id=p.get("doc_id"))


def _quote_markdown(p: Mapping) -> str:
    quote, hl, start = p["quote"], p.get("highlight"), p.get("start", 0)
    if hl:
        a, b = hl["start"] - start, hl["end"] - start
        text = f"{_escape(quote[:a])}**{_escape(quote[a:b])}**{_escape(quote[b:])}"
    else:
        text = _escape(quote)
    return f"“{text.strip()}”"


def _cite_markdown(p: Mapping) -> str:
    source = p.get("source") or {}
    title = _inline(p.get("title") or p.get("doc_id") or "")
    url = source.get("url")
    parts = [_inline(source.get("site") or "") or None,
             f'"[{title}](<{url}>)"' if url else f'"{title}"', _inline(format_date(source.get("date")) or "") or None,
             f"p. {p['page']}" if p.get("page") else None]
    where = f"{p['doc_id']}, characters {p['start']:,}–{p['end']:,}" if "start" in p and "end" in p else p["doc_id"]
    return ", ".join(x for x in parts if x) + f" ({_inline(where)})"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>#|~])")


def _escape(text: str) -> str:
    """Text that Markdown shows as it is: its markup characters escaped, whitespace runs one space."""
    return _MARKDOWN.sub(r"\\\1", re.sub(r"\s+", " ", str(text)))


def _inline(text: str) -> str:
    return _escape(text).strip()


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
