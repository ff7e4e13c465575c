"""How the chat page looks: its style and scripts, and answers, sources and documents as HTML.

Everything taken from a question, a file name or a document is escaped here before it
reaches the page, so it shows as text; ``ui.py`` puts these pieces on the page.
"""

from __future__ import annotations

import html

from qa.citations import copy_text, describe_filters, format_date, relevance_words

# Below this width the two columns stack: the source viewer then opens over the page
# (fixed, so the page under it never scrolls) with a way back to the answer.
PHONE_WIDTH = 760

CSS = """
.qa-answer { line-height: 1.5; }
.qa-hit { margin: 0 0 0.9em 0; }
.qa-quote { border-left: 3px solid var(--color-accent); padding-left: 0.6em; }
.qa-rank { font-weight: 600; margin-right: 0.3em; user-select: none; -webkit-user-select: none; }
.qa-cite { font-size: 0.88em; opacity: 0.9; margin-top: 0.2em; padding-left: 0.9em; }
.qa-where { font-size: 0.9em; opacity: 0.75; }
.qa-also { font-size: 0.85em; opacity: 0.85; padding-left: 0.9em; }
.qa-filters { font-size: 0.85em; margin-bottom: 0.5em; padding: 0.2em 0.5em; border-radius: 4px;
  background: var(--background-fill-secondary); }
.qa-none { font-weight: 600; }
.qa-searching { opacity: 0.75; font-style: italic; }
button.qa-copy { font-size: 0.8em; margin-left: 0.5em; padding: 0 0.5em; border-radius: 4px; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--background-fill-primary); user-select: none; }
.qa-copy-text { display: none; }
a.qa-open { color: inherit; text-decoration: underline dotted; cursor: pointer; }
mark.qa-sentence { background: #ffd43b; color: #111; padding: 0 0.1em; border-radius: 2px; }
mark.qa-passage { background: #fff6d5; color: #111; }
#qa-side { position: sticky; top: 8px; align-self: flex-start; }
#qa-source .qa-doc { white-space: pre-wrap; max-height: calc(100vh - 380px); min-height: 8em; overflow-y: auto;
  padding: 0.8em; border: 1px solid var(--border-color-primary); border-radius: 6px; line-height: 1.55; }
#qa-source .qa-doc-head { font-size: 0.9em; opacity: 0.9; margin-bottom: 0.4em; }
#qa-source .qa-back { display: none; }
#qa-documents table { width: 100%; border-collapse: collapse; font-size: 0.92em; }
#qa-documents th, #qa-documents td { text-align: left; padding: 0.3em 0.5em; vertical-align: top;
  border-bottom: 1px solid var(--border-color-primary); overflow-wrap: anywhere; }
#qa-documents td.qa-num { text-align: right; white-space: nowrap; }
@media (max-width: PHONE_WIDTHpx) {
  #qa-side { position: static; }
  #qa-source.qa-overlay { position: fixed; inset: 0; z-index: 1000; margin: 0; padding: 0.6em;
    background: var(--body-background-fill); overflow: hidden; }
  #qa-source.qa-overlay .qa-doc { max-height: calc(100vh - 9em); }
  #qa-source.qa-overlay .qa-back { display: inline-block; margin-bottom: 0.5em; }
  #qa-documents thead { display: none; }
  #qa-documents tr { display: block; padding: 0.5em 0; border-bottom: 1px solid var(--border-color-primary); }
  #qa-documents td { display: block; border: none; padding: 0.1em 0.2em; text-align: left; }
  #qa-documents td.qa-num { display: inline-block; text-align: left; margin-right: 1em; }
  #qa-documents td[data-label]::before { content: attr(data-label) ": "; opacity: 0.7; }
}
""".replace("PHONE_WIDTH", str(PHONE_WIDTH))

# System fonts: the default theme would have every browser fetch its fonts from Google.
THEME_FONTS = {"font": ["ui-sans-serif", "system-ui", "sans-serif"], "font_mono": ["ui-monospace", "monospace"]}

# When a question is sent, and again when its answer arrives, show it from the question
# down (not scrolled to its end); a source left open over the page on a phone is closed.
SCROLL_TO_ANSWER = """
() => {
  const source = document.querySelector('#qa-source');
  if (source) source.classList.remove('qa-overlay');
  setTimeout(() => {
    const asked = document.querySelectorAll('#qa-chat .qa-question');
    const chat = document.querySelector('#qa-chat .bubble-wrap') || document.querySelector('#qa-chat [role=log]');
    if (!asked.length) return;
    const q = asked[asked.length - 1];
    // Scroll the chat's own box, never the page.
    let box = q.parentElement;
    while (box && box !== document.body && !(box.scrollHeight > box.clientHeight + 2
           && getComputedStyle(box).overflowY.match(/auto|scroll/))) box = box.parentElement;
    if (box && box !== document.body) box.scrollTop += q.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
  }, 60);
}
"""

# Clicks in chat messages (Gradio has no event for them), handled once for the page:
# a citation asks the server for its source through a hidden textbox and button; a copy
# button puts its quote and citation on the clipboard; "back" closes a source opened
# over the page on a phone.
CITE_PREFIX = "qa-cite-"
PAGE_JS = """
<script>
document.addEventListener('click', (event) => {
  const target = event.target.closest ? event.target : null;
  if (!target) return;
  const copy = target.closest('button.qa-copy');
  if (copy) {
    event.preventDefault();
    event.stopPropagation();
    const holder = copy.parentElement && copy.parentElement.querySelector('.qa-copy-text');
    const text = holder ? holder.textContent : '';
    const done = () => { copy.textContent = 'Copied'; setTimeout(() => { copy.textContent = 'Copy'; }, 1500); };
    const fallback = () => {
      const area = document.createElement('textarea');
      area.value = text; area.style.position = 'fixed'; area.style.opacity = '0';
      document.body.appendChild(area); area.select();
      try { document.execCommand('copy'); done(); } finally { area.remove(); }
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
    return;
  }
  if (target.closest('button.qa-back')) {
    event.preventDefault();
    const source = document.querySelector('#qa-source');
    if (source) source.classList.remove('qa-overlay');
    return;
  }
  const link = target.closest('a[href^="#%(prefix)s"]');
  if (!link) return;
  event.preventDefault();
  event.stopPropagation();
  const box = document.querySelector('#qa-open-target textarea, #qa-open-target input');
  const button = document.querySelector('#qa-open-button');
  if (!box || !button) return;
  box.value = link.getAttribute('href').slice(%(skip)d);
  box.dispatchEvent(new Event('input', {bubbles: true}));
  setTimeout(() => button.click(), 0);
}, true);
</script>
""" % {"prefix": CITE_PREFIX, "skip": len(CITE_PREFIX) + 1}

# After the source viewer is filled, bring the answering sentence (or the passage) into
# view inside the viewer's own box, never by scrolling the page. ``open`` also shows it
# over the page on a phone (CSS does nothing with the class on a wide screen).
_SCROLL_SOURCE = """
(open) => {
  setTimeout(() => {
    const root = document.querySelector('#qa-source');
    if (!root) return;
    if (open) root.classList.add('qa-overlay');
    const doc = root.querySelector('.qa-doc');
    const el = root.querySelector('mark.qa-sentence') || root.querySelector('mark.qa-passage');
    if (doc && el) doc.scrollTop += el.getBoundingClientRect().top - doc.getBoundingClientRect().top - doc.clientHeight / 3;
  }, 60);
}
"""
SCROLL_TO_CITATION = f"() => ({_SCROLL_SOURCE})(true)"
SCROLL_TO_LATEST_SOURCE = f"() => ({_SCROLL_SOURCE})(false)"


def escape_text(text: str) -> str:
    """Text as HTML that shows it verbatim: markup escaped, line breaks kept."""
    return html.escape(text, quote=False).replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def _escape_pre(text: str) -> str:
    return html.escape(text, quote=False)


def short_title(title: str, doc_id: str, limit: int = 90) -> str:
    """A document's title for a citation line; the first line of some documents is a whole paragraph."""
    title = title or doc_id
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def _where(passage: dict) -> str:
    return f"characters {passage['start']:,}–{passage['end']:,}"


def _url(source: dict | None) -> str | None:
    url = (source or {}).get("url")
    return url if isinstance(url, str) and url.lower().startswith(("http://", "https://")) else None


def _citation_html(p: dict, link: str | None = None) -> str:
    """Site, "title", date, page, URL (as a link), as a reporter writes it; the title opens ``link``."""
    source = p.get("source") or {}
    title = f"<strong>{escape_text(short_title(p.get('title'), p['doc_id']))}</strong>"
    if link:
        title = f'<a class="qa-open" href="#{link}" title="Read it in its document">{title}</a>'
    date = format_date(source.get("date"))
    details = [source.get("site"), date, f"p. {p['page']}" if p.get("page") else None]
    if not any(details) and not _url(source):
        return title
    parts = [escape_text(source["site"])] if source.get("site") else []
    parts.append(f"“{title}”")
    parts += [escape_text(x) for x in details[1:] if x]
    url = _url(source)
    if url:
        parts.append(f'<a class="qa-url" href="{html.escape(url, quote=True)}" target="_blank" '
                     f'rel="noopener noreferrer">{escape_text(url)}</a>')
    return ", ".join(parts)


def _quote_html(passage: dict) -> str:
    quote, start, hl = passage["quote"], passage["start"], passage.get("highlight")
    if not hl:
        return escape_text(quote)
    a, b = hl["start"] - start, hl["end"] - start
    return f'{escape_text(quote[:a])}<mark class="qa-sentence">{escape_text(quote[a:b])}</mark>{escape_text(quote[b:])}'


def _also_in_html(passage: dict, turn: int | None, i: int) -> str:
    others = passage.get("also_in") or []
    if not others:
        return ""
    cites = "; ".join(
        _citation_html(o, f"{CITE_PREFIX}{turn}-{i}-{j}" if turn is not None else None)
        + f" ({escape_text(o['doc_id'])}" + (f", {_where(o)})" if "start" in o and "end" in o else ")")
        for j, o in enumerate(others)
    )
    return f'<div class="qa-also">also reported in: {cites}</div>'


def _judged(p: dict) -> str:
    """The relevance model's verdict in words, or the first-stage score when it did not run."""
    if p.get("relevance") is None:
        return f"score {p['score']:.4f}"
    return relevance_words(p["relevance"])


def render_passages(passages: list[dict], turn: int | None = None) -> str:
    """Numbered quotes, the answering sentence marked, each with its citation, a copy button and its place.

    With ``turn`` (the answer's number in the chat) each title links to the source
    viewer: PAGE_JS turns a click on ``#qa-cite-<turn>-<i>`` (or ``-<i>-<j>`` for the
    j-th "also reported in") into a request.
    """
    out = []
    for i, p in enumerate(passages):
        link = f"{CITE_PREFIX}{turn}-{i}" if turn is not None else None
        # The chat's sanitizer drops data- attributes: the text to copy rides in a hidden span.
        copy = _escape_pre(copy_text(p))
        out.append(
            f'<div class="qa-hit"><div class="qa-quote"><span class="qa-rank">[{p["rank"]}]</span> '
            f"{_quote_html(p)}</div>"
            f'<div class="qa-cite"><div class="qa-ref">— {_citation_html(p, link)}'
            f'<button class="qa-copy" type="button" title="Copy the quote and its citation">Copy</button>'
            f'<span class="qa-copy-text">{copy}</span></div>'
            f'<div class="qa-where">{escape_text(p["doc_id"])} · {_where(p)} · {escape_text(_judged(p))}</div></div>'
            f"{_also_in_html(p, turn, i)}</div>"
        )
    return "".join(out)


def render_filters(filters: dict | None) -> str:
    """The filters a question was asked with, shown above its answer."""
    if not filters:
        return ""
    return f'<div class="qa-filters">Filters in force: {escape_text(describe_filters(filters))}</div>'


def render_answer(result: dict, turn: int | None = None) -> str:
    """The chat reply for a result of ``/ask``, as one block of HTML.

    It is kept on one line on purpose: Markdown leaves an HTML block alone up to
    the first blank line, so no Markdown syntax in a quote is ever interpreted.
    """
    passages = result["passages"]
    head = render_filters(result.get("filters"))
    if result["answered"]:
        return f'<div class="qa-answer">{head}{render_passages(passages, turn)}</div>'
    head += '<p class="qa-none">The corpus does not answer this question.</p>'
    if result.get("reason"):
        head += f"<p>{escape_text(result['reason'][0].upper() + result['reason'][1:])}.</p>"
    if not passages:
        return f'<div class="qa-answer">{head}</div>'
    return (
        f'<div class="qa-answer">{head}<details><summary>Closest passages ({len(passages)})</summary>'
        f"{render_passages(passages, turn)}</details></div>"
    )


def render_question(question: str) -> str:
    return f'<div class="qa-question">{escape_text(question)}</div>'


SEARCHING = '<div class="qa-searching">Searching the documents…</div>'


def render_source(doc: dict, passage: dict | None = None) -> str:
    """The whole document, the cited passage and its answering sentence highlighted.

    The text keeps its line breaks through CSS (white-space: pre-wrap), so it is
    escaped without turning them into <br>. A "back" button (shown on a phone,
    where the viewer opens over the page) leads back to the answer.
    """
    text, esc = doc["text"], _escape_pre
    cited = {"title": doc["title"], "doc_id": doc["doc_id"], "source": doc.get("source"),
             "page": (passage or {}).get("page")}
    back = '<button class="qa-back" type="button">← Back to the answer</button>'
    head = f'{back}<div class="qa-doc-head">{_citation_html(cited)} · {escape_text(doc["doc_id"])}'
    if passage is None:
        return f'{head}</div><div class="qa-doc">{esc(text)}</div>'
    start, end, hl = passage["start"], passage["end"], passage.get("highlight")
    if hl:
        a, b = hl["start"], hl["end"]
        inner = f'{esc(text[start:a])}<mark class="qa-sentence">{esc(text[a:b])}</mark>{esc(text[b:end])}'
    else:
        inner = esc(text[start:end])
    return (
        f"{head} · passage [{passage['rank']}], {_where(passage)}</div>"
        f'<div class="qa-doc">{esc(text[:start])}<mark class="qa-passage">{inner}</mark>{esc(text[end:])}</div>'
    )


def citation_label(passage: dict) -> str:
    """A citation as plain text, for the list of the last answer's sources."""
    title = short_title(passage["title"], passage["doc_id"], 70)
    page = f", p. {passage['page']}" if passage.get("page") else ""
    return f"[{passage['rank']}] {title}{page} — {passage['doc_id']}, {_where(passage)}"


def render_documents(docs: list[dict]) -> str:
    """The documents table: title, source (site, date, author), document, pages, passages, characters.

    On a phone each row reads as a short card (CSS), so no column is squeezed to a letter a line.
    """
    rows = []
    for d in docs:
        s = d.get("source") or {}
        source = " · ".join(escape_text(x) for x in (s.get("site"), format_date(s.get("date")), s.get("author")) if x)
        pages = f"{d['pages']:,}" if d.get("pages") else "–"
        rows.append(
            f'<tr><td data-label="Title"><strong>{escape_text(short_title(d["title"], d["doc_id"]))}</strong></td>'
            f'<td data-label="Source">{source or "–"}</td><td data-label="Document">{escape_text(d["doc_id"])}</td>'
            f'<td class="qa-num" data-label="Pages">{pages}</td>'
            f'<td class="qa-num" data-label="Passages">{d["passages"]:,}</td>'
            f'<td class="qa-num" data-label="Characters">{d["chars"]:,}</td></tr>'
        )
    return ("<table><thead><tr><th>Title</th><th>Source</th><th>Document</th><th>Pages</th><th>Passages</th>"
            f"<th>Characters</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
