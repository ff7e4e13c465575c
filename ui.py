"""The web app: a chat that answers with cited quotes, a source viewer, a documents panel, and an API.

    python ui.py [--corpus seeds] [--index index] [--host 127.0.0.1] [--port 7860]

A thin boundary over ``qa``: it validates input, calls the library and turns its
errors into ``gr.Error`` messages. Everything taken from a question, a file name
or a document is escaped before it reaches the page, so it shows as text: the page's
pieces are made in ``qa/chat_page.py``, and what Gradio's routes leave open is closed by
``qa/web_guard.py``.

API endpoints (through ``gradio_client``): ``/ask``, ``/documents``, ``/document``,
``/export``, ``/add_documents``, ``/delete_document``. ``QA_AUTH=user:password`` turns on login.
"""

# No `from __future__ import annotations` here: gr.api reads the endpoints' type
# hints from inspect.signature, which leaves postponed annotations as strings.

import argparse
import functools
import html
import inspect
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

_STARTED = time.monotonic()

# Nothing here may reach the network (no analytics, no model hub, no OpenVINO telemetry):
# qa switches every library's off before Gradio or the model is imported.
from qa.offline import stay_offline  # noqa: E402

stay_offline()


def _load_model() -> None:
    """Import and load the embedding model: the slowest part of starting."""
    try:
        from qa.backends import default_embedder

        default_embedder().embed(["warm up"])
    except Exception:  # noqa: BLE001 - main() asks for the model again and reports the error
        pass


# Started as a program, load the model while Gradio imports (each takes seconds, and
# there are two cores); main() waits for it before opening the collection.
_MODEL_LOADING = threading.Thread(target=_load_model, name="load-model", daemon=True)
if __name__ == "__main__":
    _MODEL_LOADING.start()

import gradio as gr  # noqa: E402

from qa import Collection, IndexBusyError, IndexFormatError, ModelError  # noqa: E402
from qa.arguments import check_count, check_flag, check_list, check_text_list  # noqa: E402
from qa.chat_page import (  # noqa: E402
    CSS, PAGE_JS, SCROLL_TO_ANSWER, SCROLL_TO_CITATION, SCROLL_TO_LATEST_SOURCE, SEARCHING, THEME_FONTS, citation_label,
    escape_text, render_answer, render_documents, render_question, render_source, short_title)
from qa.export import export_conversation  # noqa: E402
from qa.extract import SUFFIXES  # noqa: E402
from qa.ray_engine import RayUnavailableError  # noqa: E402
from qa.retrieval import MAX_HISTORY_TURNS, MAX_QUESTION_CHARS, Filters, check_question  # noqa: E402
from qa.shards import ShardError  # noqa: E402
from qa.web_guard import (  # noqa: E402
    RequestGuard, discard_uploads, export_folder, sweep_exports, sweep_uploads, upload_folder)

logger = logging.getLogger("ui")

DEFAULT_CORPUS = "seeds"
DEFAULT_INDEX = "index"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MAX_K = 20
# Questions run side by side; uploads and deletions one at a time, in their own
# group so that they never hold up a question.
ASK_CONCURRENCY = 8
WRITE_GROUP = "write"
# Gradio refuses bigger uploads outright; below it the library's check explains its 10 MB limit.
MAX_UPLOAD = "50mb"

EXAMPLES = [
    "Who claims he never gave the order to retreat?",
    "Why were 17 soldiers imprisoned?",
    "When did Putin sign the law with harsher punishments for desertion?",
    "Why do soldiers hide their faces in the videos?",
    "Which foreign minister was ridiculed by a crowd?",
]


# -- the boundary: check input, call qa, turn its errors into messages ----------


def _user_error(exc: BaseException | str) -> gr.Error:
    """A gr.Error for the user, on one line; its text is escaped because Gradio renders it as HTML."""
    if isinstance(exc, KeyError) and exc.args:
        msg = str(exc.args[0])
    else:
        msg = str(exc)
    return gr.Error(html.escape(" ".join(msg.split("\n")), quote=False), print_exception=False)


def _endpoint(fn):
    """An API function whose every error reaches the client as a one-line gr.Error.

    The library raises ValueError (ArgumentError, DocumentError) and KeyError for bad
    input; anything else is a fault here, logged with its trace and told in one line.
    """

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, KeyError, IndexBusyError) as exc:
            raise _user_error(exc) from None
        except Exception as exc:
            logger.exception("%s failed", fn.__name__)
            raise _user_error(f"{fn.__name__} failed ({type(exc).__name__}: {exc})") from None

    return call


def _toast(error: gr.Error, title: str, *, outputs: int) -> tuple:
    """Show an error of the page as a notice and leave every output as it was.

    Raising it instead would put each output in an error state that covers the
    chat or the documents table until dismissed.
    """
    gr.Warning(error.message, title=title)
    return (gr.skip(),) * outputs


def _file_path(f) -> Path:
    """The local path of an uploaded file, as Gradio hands it over (str, NamedString or a dict)."""
    if isinstance(f, dict):
        f = f.get("path") or ""
    return Path(str(f))




class _Blocks(gr.Blocks):
    """gr.Blocks whose API calls get a message for every bad request, Gradio's own checks included.

    Gradio refuses a call with too few values, or a value a component cannot read (a
    file that is not one), with an error that carries no message to the client. Here
    missing trailing arguments take their defaults, a missing required one or one too
    many is named, and anything Gradio raises is told in one line.
    """

    async def process_api(self, block_fn, inputs, *args, **kwargs):
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        name = f"/{fn.api_name}" if fn.api_name else getattr(fn.fn, "__name__", "this event")
        inputs = self._complete(fn, name, list(inputs))
        try:
            return await super().process_api(fn, inputs, *args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            logger.info("%s: refused: %s", name, exc)
            raise _user_error(f"{name}: {_first_problem(exc)}") from None

    @staticmethod
    def _complete(fn, name: str, inputs: list) -> list:
        if fn.fn is None or len(inputs) == len(fn.inputs):
            return inputs
        params = [p for p in inspect.signature(fn.fn).parameters.values()
                  if not isinstance(p.default, gr.Progress)][: len(fn.inputs)]
        names = ", ".join(p.name for p in params)
        if len(inputs) > len(params):
            takes = f"at most {len(params)} arguments ({names})" if params else "no arguments"
            raise _user_error(f"{name} takes {takes}, got {len(inputs)}")
        for p in params[len(inputs):]:
            if p.default is inspect.Parameter.empty:
                raise _user_error(f"{name}: missing argument {p.name} (it takes {names})")
            inputs.append(p.default)
        return inputs


def _first_problem(exc: BaseException) -> str:
    """One line on what Gradio found wrong: a pydantic error's first complaint, else the first line."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            return f"not a valid file{' (' + where + ')' if where else ''}: {first.get('msg', exc)}"
        except (TypeError, IndexError, KeyError, AttributeError):
            pass
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class QAApp:
    """The handlers behind the page and the API, over one open Collection."""

    def __init__(self, collection: Collection):
        self.collection = collection

    # -- API ------------------------------------------------------------------

    @_endpoint
    def ask(self, question: str, k: int = 5, history: list[str] | None = None,
            doc_ids: list[str] | None = None, sites: list[str] | None = None, since: str | None = None,
            until: str | None = None) -> dict:
        """Answer a question with verbatim, cited passages from the corpus.

        Args:
            question: the question, at most 2,000 characters.
            k: how many passages to return, from 1 to 20.
            history: the earlier questions of this conversation, oldest first, for follow-ups that refer back.
            doc_ids: search only these documents (doc_ids from /documents); empty or null for all.
            sites: search only documents from these sites (source.site from /documents, any case); empty or null for all.
            since: search only documents dated on or after this day (YYYY-MM-DD); empty or null for no bound.
            until: search only documents dated on or before this day (YYYY-MM-DD); empty or null for no bound.

        Returns:
            {question, answered, reason (when not answered), filters (when any), passages: best first, each {rank, doc_id, title, source {url, site, author, date}, page, start, end, quote, score, relevance, highlight, also_in}}
        """
        k = check_count(k, "k", low=1, high=MAX_K)
        history = check_text_list(history, "history", max_items=MAX_HISTORY_TURNS, max_chars=MAX_QUESTION_CHARS)
        return self.collection.ask(question, k=k, history=history, doc_ids=doc_ids, sites=sites, since=since,
                                   until=until).to_dict()

    @_endpoint
    def documents(self) -> list[dict]:
        """List the indexed documents.

        Returns:
            list of {doc_id, title, source {url, site, author, date}, pages (PDFs, else null), passages (how many), chars (length of the text)}, sorted by doc_id
        """
        return [
            {"doc_id": d.doc_id, "title": d.title, "source": d.source.to_dict(), "pages": d.pages,
             "passages": d.passages, "chars": d.chars}
            for d in self.collection.documents()
        ]

    @_endpoint
    def document(self, doc_id: str) -> dict:
        """The whole text of one document, the text every quote's offsets point into.

        Args:
            doc_id: a doc_id from /documents or from a passage of /ask.

        Returns:
            {doc_id, title, text, source {url, site, author, date}}: text is the text extracted from the file, and the offsets of /ask's passages are indexes into it
        """
        doc = self.collection.document(doc_id)
        return {"doc_id": doc.doc_id, "title": doc.title, "text": doc.text, "source": doc.source.to_dict()}

    @_endpoint
    def export(self, results: list[dict], format: str = "markdown") -> str:
        """A conversation as Markdown or JSON, every quote with its citation (site, title, date, page, URL).

        Args:
            results: the results of /ask of the conversation, oldest first.
            format: "markdown" or "json".

        Returns:
            the document: Markdown (each question, the filters in force, the numbered quotes with citations) or JSON ({exported, turns: the results, each passage with "citation" and "copy"})
        """
        return export_conversation(results, format)

    @_endpoint
    def add_documents(self, files: list | None, replace: bool = False, progress=gr.Progress(track_tqdm=True)) -> dict:
        """Save documents (.txt, .md, .html, .htm, .pdf, .docx) into the corpus folder and add them to the index.

        Every file is checked first (readable as its kind: UTF-8 text, a PDF with a text
        layer, a page with an article, a real .docx; not empty; at most 10 MB, 40 MB for
        .pdf/.docx; a plain name; not already present unless replace); if one fails
        nothing is written. If indexing fails the corpus and the index stay as they were.
        The uploaded copies are removed once read, whatever happens next.

        Args:
            files: the documents to add.
            replace: overwrite documents of the same name instead of refusing them.

        Returns:
            {added, changed, removed (lists of doc_id), documents, passages (totals now), embedded, seconds}
        """
        sweep_uploads()
        paths = [_file_path(f) for f in check_list(files, "files")]
        try:
            replace = check_flag(replace, "replace")
            if not paths:
                raise _user_error(f"no files given: choose one or more {', '.join(SUFFIXES)} files")
            progress(0.0, desc="Checking files")
            # Gradio keeps only the base name of an upload, so no name can point outside the corpus.
            uploads = [(path.name, path.read_bytes()) for path in paths]
        finally:
            discard_uploads(paths)
        progress(0.1, desc="Indexing")
        return self._write(lambda: self.collection.add_documents(uploads, replace=replace))

    @_endpoint
    def delete_document(self, doc_id: str) -> dict:
        """Remove a document from the corpus folder and the index.

        Args:
            doc_id: the document to remove, as listed by /documents.

        Returns:
            {added, changed, removed (lists of doc_id), documents, passages (totals now), embedded, seconds}
        """
        if isinstance(doc_id, str) and not doc_id.strip():
            raise _user_error("choose a document to delete")
        return self._write(lambda: self.collection.delete_document(doc_id))

    def _write(self, change) -> dict:
        try:
            return change().to_dict()
        except (ValueError, KeyError, IndexBusyError) as exc:  # bad input (DocumentError is a ValueError)
            raise _user_error(exc) from None
        except Exception as exc:
            # The library has put the corpus folder back and never swapped in a half-built index.
            logger.exception("updating the index failed")
            raise _user_error(f"updating the index failed ({type(exc).__name__}: {exc}); nothing was changed") from None

    # -- page -----------------------------------------------------------------

    def pose(self, question: str, chat: list, k, since: str | None, until: str | None):
        """Show the question in the chat at once, with a "searching" reply, and hand it to ``respond``.

        A question that cannot be asked (empty, too long, a bad date) is refused here
        with a notice, and the chat stays as it was.
        """
        try:
            check_question(question)
            check_count(k, "k", low=1, high=MAX_K)
            Filters.of(since=since, until=until)
        except ValueError as exc:
            return (None, *_toast(_user_error(exc), "Cannot ask that", outputs=2))
        except gr.Error as exc:
            return (None, *_toast(exc, "Cannot ask that", outputs=2))
        chat = [*chat, {"role": "user", "content": render_question(question.strip())},
                {"role": "assistant", "content": SEARCHING}]
        return question, chat, ""

    def respond(self, question: str | None, chat: list, questions: list[str], results: list[dict], k,
                doc_ids: list[str] | None, sites: list[str] | None, since: str | None, until: str | None):
        """Ask the question ``pose`` put in the chat, and put its answer in place of "searching".

        ``questions`` (the raw questions, for follow-ups) and ``results`` (every answer, for
        the source viewer and the export) grow with the chat. The source viewer and the list
        of citations follow the latest answer; the downloads hold the conversation so far.
        """
        if question is None:
            return (gr.skip(),) * 7
        pending = chat[:-2]  # without the question and the "searching" reply that pose added
        try:
            result = self.ask(question, k, questions[-MAX_HISTORY_TURNS:], doc_ids, sites, since, until)
        except gr.Error as exc:
            return (pending, *_toast(exc, "Cannot ask that", outputs=6))
        passages = result["passages"]
        chat = [*pending, {"role": "user", "content": render_question(result["question"])},
                {"role": "assistant", "content": render_answer(result, turn=len(results))}]
        results = [*results, result]
        choices = [(citation_label(p), i) for i, p in enumerate(passages)]
        sources = gr.update(choices=choices, value=0 if choices else None, visible=bool(choices))
        source = self._source(passages, 0) if passages else ""
        markdown, json_file = self._export_files(results)
        return (chat, [*questions, result["question"]], results, sources, source,
                gr.update(value=markdown, visible=True), gr.update(value=json_file, visible=True))

    def _export_files(self, results: list[dict]) -> tuple[str, str]:
        """The conversation written as a Markdown and a JSON file, for the chat's downloads."""
        sweep_exports()
        folder = Path(tempfile.mkdtemp(dir=export_folder()))
        paths = (folder / "conversation.md", folder / "conversation.json")
        for path, fmt in zip(paths, ("markdown", "json")):
            path.write_text(export_conversation(results, fmt), encoding="utf-8")
        return str(paths[0]), str(paths[1])

    def open_latest(self, choice: int | None, results: list[dict]) -> str:
        """The source viewer for a citation of the last answer, chosen in the list beside the chat."""
        if choice is None or not results:
            return gr.skip()
        return self._source(results[-1]["passages"], int(choice))

    def open_cited(self, target: str, results: list[dict]) -> str:
        """The source viewer for a citation clicked in the chat: ``target`` is "<turn>-<i>", or
        "<turn>-<i>-<j>" for the j-th "also reported in" of passage i."""
        parts = (target or "").split("-")
        if not (2 <= len(parts) <= 3 and all(p.isdigit() for p in parts) and int(parts[0]) < len(results)):
            return gr.skip()
        passages = results[int(parts[0])]["passages"]
        i = int(parts[1])
        if len(parts) == 3:
            if not 0 <= i < len(passages) or not 0 <= int(parts[2]) < len(passages[i].get("also_in") or []):
                return gr.skip()
            other = passages[i]["also_in"][int(parts[2])]
            sentence = {"start": other["start"], "end": other["end"]}
            return self._source([{**other, "rank": passages[i]["rank"], "highlight": sentence}], 0)
        return self._source(passages, i)

    def _source(self, passages: list[dict], i: int) -> str:
        if not 0 <= i < len(passages):
            return gr.skip()
        passage = passages[i]
        try:
            return render_source(self.document(passage["doc_id"]), passage)
        except gr.Error as exc:  # deleted since it was cited
            return _toast(exc, "Cannot open the source", outputs=1)[0]

    def refresh(self, filter_ids: list[str] | None = None, filter_sites: list[str] | None = None):
        """The documents table and every document and site picker, from the index as it is now."""
        docs = self.documents()
        choices = [(f"{short_title(d['title'], d['doc_id'], 60)} ({d['doc_id']})", d["doc_id"]) for d in docs]
        known = {d["doc_id"] for d in docs}
        kept = [d for d in filter_ids or [] if d in known]
        sites = sorted({d["source"]["site"] for d in docs if d["source"]["site"]}, key=str.casefold)
        kept_sites = [s for s in filter_sites or [] if s in sites]
        summary = f"{len(docs)} documents, {sum(d['passages'] for d in docs):,} passages"
        return (render_documents(docs), gr.update(choices=choices, value=kept),
                gr.update(choices=sites, value=kept_sites), gr.update(choices=choices, value=None), summary)

    def upload(self, files: list | None, replace: bool, filter_ids: list[str] | None,
               filter_sites: list[str] | None, progress=gr.Progress(track_tqdm=True)):
        try:
            report = self.add_documents(files, replace, progress)
        except gr.Error as exc:  # the uploads are removed: the box is emptied too
            return (f"Nothing was added: {exc.message}", None, *_toast(exc, "Nothing was added", outputs=5))
        done = report["added"] + report["changed"]
        message = f"Added {', '.join(done)}: {report['embedded']} passages indexed in {report['seconds']:.1f} s."
        return (escape_text(message), None, *self.refresh(filter_ids, filter_sites))

    def ask_delete(self, doc_id: str | None):
        if not doc_id:
            return _toast(_user_error("choose a document to delete"), "Nothing to delete", outputs=2)
        prompt = f"Delete <strong>{escape_text(doc_id)}</strong> from the corpus folder and the index?"
        return gr.update(visible=True), prompt

    def delete(self, doc_id: str | None, filter_ids: list[str] | None, filter_sites: list[str] | None):
        try:
            report = self.delete_document(doc_id or "")
        except gr.Error as exc:
            return (gr.skip(), f"Nothing was deleted: {exc.message}", *_toast(exc, "Nothing was deleted", outputs=5))
        message = f"Deleted {', '.join(report['removed']) or doc_id}."
        return (gr.update(visible=False), escape_text(message), *self.refresh(filter_ids, filter_sites))


def build_app(collection: Collection) -> gr.Blocks:
    """The page and the API over an open collection (not yet launched)."""
    app = QAApp(collection)
    upload_folder()  # before any component: Gradio reads its folder from the environment
    export_folder()
    with _Blocks(title="Ask the corpus", analytics_enabled=False) as demo:
        questions = gr.State([])  # raw questions of this chat, for follow-ups
        results = gr.State([])  # the result of each answer: for the source viewer and the export
        pending = gr.State(None)  # the question being answered

        gr.Markdown(
            "# Ask the corpus\n"
            "Answers are the passages of the documents that answer your question, quoted word for word; "
            "the answering sentence is highlighted. Choose a citation to read it in its document."
        )
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chat = gr.Chatbot(
                        label="Chat", height=520, elem_id="qa-chat", latex_delimiters=[], autoscroll=False,
                        buttons=[], feedback_options=None,
                        placeholder="Ask a question about the documents.",
                    )
                    with gr.Row():
                        question = gr.Textbox(
                            show_label=False, scale=5, elem_id="qa-question", autofocus=True, max_lines=6,
                            placeholder=f"Ask a question (Enter to send, at most {MAX_QUESTION_CHARS:,} characters)",
                        )
                        send = gr.Button("Ask", variant="primary", scale=1, elem_id="qa-send")
                    examples = gr.Examples(EXAMPLES, inputs=question, label="Examples from the seed corpus")
                    with gr.Row():
                        clear = gr.Button("New conversation", size="sm", elem_id="qa-new")
                        export_md = gr.DownloadButton("Download Markdown", size="sm", visible=False,
                                                      elem_id="qa-export-md")
                        export_json = gr.DownloadButton("Download JSON", size="sm", visible=False,
                                                        elem_id="qa-export-json")
                with gr.Column(scale=2, elem_id="qa-side"):
                    with gr.Accordion("Search settings: passages, documents, sites, dates", open=False,
                                      elem_id="qa-settings"):
                        k = gr.Slider(1, MAX_K, value=5, step=1, label="Passages (k)")
                        only = gr.Dropdown(
                            [], multiselect=True, label="Only these documents",
                            info="Leave empty to search them all.", elem_id="qa-only",
                        )
                        sites = gr.Dropdown([], multiselect=True, label="Only these sites", elem_id="qa-sites")
                        with gr.Row():
                            since = gr.Textbox(label="Dated from", placeholder="YYYY-MM-DD", elem_id="qa-since")
                            until = gr.Textbox(label="Dated until", placeholder="YYYY-MM-DD", elem_id="qa-until")
                    source = gr.HTML("", elem_id="qa-source")
                    sources = gr.Radio(
                        [], label="Citations of the last answer: choose one to read it in its document",
                        visible=False, elem_id="qa-sources",
                    )
                    # Filled by PAGE_JS when a citation in the chat is clicked.
                    open_target = gr.Textbox(visible="hidden", elem_id="qa-open-target")
                    open_button = gr.Button(visible="hidden", elem_id="qa-open-button")
        with gr.Tab("Documents"):
            # gr.HTML, not gr.Markdown, for anything holding a name: it is escaped, and
            # Markdown would still read * and _ in it.
            summary = gr.HTML(elem_id="qa-summary")
            table = gr.HTML(elem_id="qa-documents")
            with gr.Row():
                with gr.Column():
                    files = gr.File(
                        label=f"Add documents ({', '.join(SUFFIXES)})", file_count="multiple",
                        file_types=list(SUFFIXES), elem_id="qa-upload",
                    )
                    replace = gr.Checkbox(False, label="Replace documents that have the same name")
                    add = gr.Button("Add to the index", variant="primary", elem_id="qa-add")
                with gr.Column():
                    victim = gr.Dropdown([], label="Delete a document", elem_id="qa-delete-choice")
                    remove = gr.Button("Delete…", variant="stop", elem_id="qa-delete")
                    with gr.Group(visible=False) as confirm_box:
                        confirm_text = gr.HTML()
                        with gr.Row():
                            confirm = gr.Button("Delete it", variant="stop", elem_id="qa-delete-confirm")
                            cancel = gr.Button("Keep it")
            status = gr.HTML(elem_id="qa-status")

        # The page's own events are private: clients use the API endpoints below.
        private = {"api_visibility": "private"}
        listing = [table, only, sites, victim, summary]

        def answer_after(posed) -> None:
            """Once ``pose`` has put the question in the chat, answer it."""
            posed.then(None, js=SCROLL_TO_ANSWER, **private).then(
                app.respond, [pending, chat, questions, results, k, only, sites, since, until],
                [chat, questions, results, sources, source, export_md, export_json], **private).then(
                None, js=SCROLL_TO_ANSWER, **private).then(None, js=SCROLL_TO_LATEST_SOURCE, **private)

        # Enter, "Ask" and a click on an example show the question at once, then answer it.
        pose = (app.pose, [question, chat, k, since, until], [pending, chat, question])
        answer_after(gr.on([question.submit, send.click], *pose, **private))
        answer_after(examples.load_input_event.then(*pose, **private))
        hidden = gr.update(value=None, visible=False)
        forget = (lambda: ([], [], [], None, gr.update(choices=[], value=None, visible=False), "", hidden, hidden,
                           [], [], "", ""),
                  None, [chat, questions, results, pending, sources, source, export_md, export_json,
                         only, sites, since, until])
        clear.click(*forget, **private)
        chat.clear(*forget, **private)  # the chat's own bin button
        sources.input(app.open_latest, [sources, results], source, **private).then(
            None, js=SCROLL_TO_CITATION, **private)
        open_button.click(app.open_cited, [open_target, results], source, **private).then(
            None, js=SCROLL_TO_CITATION, **private)
        add.click(app.upload, [files, replace, only, sites], [status, files, *listing], show_progress_on=status,
                  concurrency_id=WRITE_GROUP, concurrency_limit=1, **private)
        remove.click(app.ask_delete, victim, [confirm_box, confirm_text], **private)
        cancel.click(lambda: gr.update(visible=False), None, confirm_box, **private)
        confirm.click(app.delete, [victim, only, sites], [confirm_box, status, *listing], show_progress_on=status,
                      concurrency_id=WRITE_GROUP, concurrency_limit=1, **private)
        demo.load(app.refresh, [only, sites], listing, **private)

        # The API (and, with gradio[mcp], the same functions as MCP tools).
        gr.api(app.ask, api_name="ask")
        gr.api(app.documents, api_name="documents")
        gr.api(app.document, api_name="document")
        gr.api(app.export, api_name="export")
        api_files = gr.File(file_count="multiple", visible=False)
        api_replace = gr.Checkbox(False, visible=False)
        api_report = gr.JSON(visible=False)
        api_trigger = gr.Button(visible=False)
        api_trigger.click(app.add_documents, [api_files, api_replace], api_report,
                          api_name="add_documents", concurrency_id=WRITE_GROUP, concurrency_limit=1)
        gr.api(app.delete_document, api_name="delete_document",
               concurrency_id=WRITE_GROUP, concurrency_limit=1)
    return demo


# -- starting the server --------------------------------------------------------


def auth_from_env(value: str | None = None) -> tuple[str, str] | None:
    """``QA_AUTH=user:password`` as Gradio's auth pair; None when unset.

    Raises:
        ValueError: the value is not user:password.
    """
    value = os.environ.get("QA_AUTH", "") if value is None else value
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("QA_AUTH must be user:password, both non-empty")
    return user, password


def mcp_available() -> bool:
    try:
        import mcp  # noqa: F401
    except ImportError:
        return False
    return True


def launch(
    demo: gr.Blocks,
    *,
    host: str = DEFAULT_HOST,
    port: int | None = DEFAULT_PORT,
    auth: tuple[str, str] | None = None,
    mcp: bool | None = None,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> str:
    """Serve an app made by ``build_app``.

    Args:
        demo: the app.
        host, port: where to listen.
        auth: a (user, password) pair to require a login.
        mcp: serve the API endpoints as MCP tools too (default: when the gradio[mcp]
            extra is installed and there is no login, since Gradio's MCP route does
            not ask for one).
        prevent_thread_lock: return at once, serving from a background thread.
        quiet: print nothing.

    Returns:
        the local URL.
    """
    from starlette.middleware import Middleware

    if mcp is None:
        mcp = mcp_available() and auth is None
    demo.queue(default_concurrency_limit=ASK_CONCURRENCY)
    _, url, _ = demo.launch(
        server_name=host, server_port=port, auth=auth, mcp_server=mcp, prevent_thread_lock=prevent_thread_lock,
        show_error=False, quiet=quiet, max_file_size=MAX_UPLOAD, css=CSS, theme=gr.themes.Default(**THEME_FONTS),
        footer_links=["api", "settings"], head=PAGE_JS,
        run_history=False, enable_monitoring=False, ssr_mode=False,
        app_kwargs={"middleware": [Middleware(RequestGuard)]},
    )
    return url


def serve(collection: Collection, **kwargs) -> tuple[gr.Blocks, str]:
    """Build the app over an opened Collection and serve it (``launch``'s keywords).

    Returns:
        (the running Blocks, its local URL).
    """
    demo = build_app(collection)
    return demo, launch(demo, **kwargs)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the question-answering web app and its API.")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS,
                        help="folder of documents: .txt, .md, .html, .htm, .pdf, .docx (default: seeds)")
    parser.add_argument("--index", default=DEFAULT_INDEX, help="index folder (default: index)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
                        help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
                        help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--no-mcp", action="store_true", help="do not expose the MCP server")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="with --index a shard set (python -m qa shard): search its shards here (local) or "
                             "as Ray actors (ray)")
    parser.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                        help="with --engine ray: the Ray cluster to join (default: a local Ray)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    handler = logging.StreamHandler()
    handler.setLevel(logging.DEBUG if args.verbose else logging.INFO)  # bm25s sets its own logger to DEBUG
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    logger.setLevel(logging.INFO)
    if not args.verbose:
        for noisy in ("faiss", "sentence_transformers", "httpx"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        _quiet_transformers()
    if _MODEL_LOADING.is_alive():
        _MODEL_LOADING.join()
    try:
        auth = auth_from_env()
        collection = _open_collection(args)
        collection.ask("warm up the model")  # the first question should not pay for it
    except (ValueError, FileNotFoundError, ModelError, IndexFormatError, IndexBusyError, ImportError, ShardError,
            RayUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if auth and not args.no_mcp and mcp_available():
        logger.warning("MCP is off: QA_AUTH is set and Gradio's MCP route does not ask for the login")
    info = collection.documents()
    logger.info("%d documents, %d passages from %s; index %s", len(info), sum(d.passages for d in info),
                args.corpus, args.index)
    demo, url = serve(collection, host=args.host, port=args.port, auth=auth,
                      mcp=False if args.no_mcp else None, prevent_thread_lock=True)
    logger.info("ready at %s in %.1f s", url, time.monotonic() - _STARTED)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as gracefully on `kill` as on Ctrl-C
    demo.block_thread()  # until interrupted; it then closes the server
    return 0


def _open_collection(args):
    """The corpus and its index, or a shard set (read-only) searched here or on Ray actors."""
    from qa.shards import ShardedCollection, is_shard_set

    if is_shard_set(args.index):
        return ShardedCollection(args.index, engine=args.engine, address=args.ray_address).open()
    if args.engine != "local":
        raise ValueError(f"--engine {args.engine} serves a shard set; {args.index} is an index: "
                         f"split it with `python -m qa shard --index {args.index} --shards N`")
    return Collection(args.corpus, args.index).open()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
