"""The web app's API through gradio_client, against an app launched in this test session.

Every endpoint, each bad input of the issue, the chat rendering (escaping, highlights,
abstention), concurrency while an upload is indexing, login and MCP.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shutil
import socket
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from gradio_client import Client, handle_file

import ui
from qa import Collection

FOLLOW_UP = ("Why were 17 soldiers imprisoned?", "Where were they held?", "003_5b9c610a72473fdf.txt")
RETREAT = ("Who claims he never gave the order to retreat?", "000_93644d6605fbd4ae.txt",
           "The commander, however, claimed he never gave the order")
UNANSWERABLE = "Who painted the Mona Lisa?"
ZEBRA = "Zebra migration notes\nThe zebra herd crossed the Mara river at dawn on the ninth of July.\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(corpus: Path, index: Path, **kwargs) -> SimpleNamespace:
    collection = Collection(corpus, index, show_progress=False).open()
    demo, url = ui.serve(collection, port=free_port(), prevent_thread_lock=True, quiet=True, **kwargs)
    return SimpleNamespace(demo=demo, url=url, corpus=corpus, index=index, collection=collection)


@pytest.fixture(scope="module")
def app(tmp_path_factory, seed_build):
    """The app over a copy of the seed corpus and its index (writable, shared by this module)."""
    root = tmp_path_factory.mktemp("ui")
    shutil.copytree(seed_build[0], root / "corpus")
    shutil.copytree(seed_build[1], root / "index")
    served = launch(root / "corpus", root / "index")
    served.root = root
    yield served
    served.demo.close()


@pytest.fixture(scope="module")
def client(app):
    return Client(app.url, verbose=False)


def corpus_state(app) -> dict[str, bytes]:
    return {p.relative_to(app.corpus).as_posix(): p.read_bytes() for p in sorted(app.corpus.rglob("*")) if p.is_file()}


def write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def error_of(call) -> str:
    """The message of the error a client call raises (it must raise)."""
    with pytest.raises(Exception) as caught:
        call()
    message = str(caught.value)
    assert "Traceback" not in message and 'File "' not in message, "a stack trace reached the client"
    return message


# -- the endpoints ----------------------------------------------------------------


def test_api_lists_exactly_the_documented_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(api) == {"/ask", "/documents", "/document", "/export", "/add_documents", "/delete_document"}
    assert [p["parameter_name"] for p in api["/ask"]["parameters"]] == [
        "question", "k", "history", "doc_ids", "sites", "since", "until"]
    assert [p["parameter_name"] for p in api["/export"]["parameters"]] == ["results", "format"]
    assert [p["parameter_name"] for p in api["/document"]["parameters"]] == ["doc_id"]


def test_ask_returns_the_result_contract_with_exact_quotes(client):
    question, doc_id, evidence = RETREAT
    result = client.predict(question, 5, api_name="/ask")
    assert set(result) >= {"question", "answered", "passages"}
    assert result["question"] == question and result["answered"] is True
    passages = result["passages"]
    assert [p["rank"] for p in passages] == list(range(1, len(passages) + 1)) and 1 <= len(passages) <= 5
    assert passages[0]["doc_id"] == doc_id and evidence in passages[0]["quote"]
    for p in passages:
        text = client.predict(p["doc_id"], api_name="/document")["text"]
        assert text[p["start"]:p["end"]] == p["quote"]
        if p["highlight"]:
            assert p["start"] <= p["highlight"]["start"] < p["highlight"]["end"] <= p["end"]
    top = passages[0]
    assert evidence in top["quote"][top["highlight"]["start"] - top["start"]:top["highlight"]["end"] - top["start"]]


def test_ask_says_when_the_corpus_does_not_answer(client):
    result = client.predict(UNANSWERABLE, 3, api_name="/ask")
    assert result["answered"] is False
    assert result["reason"]
    assert 1 <= len(result["passages"]) <= 3  # the closest passages are still given


def test_follow_up_question_uses_the_history(client):
    first, follow_up, doc_id = FOLLOW_UP
    result = client.predict(follow_up, 3, [first], None, api_name="/ask")
    assert result["question"] == follow_up
    assert result["passages"][0]["doc_id"] == doc_id


def test_k_and_doc_ids_shape_the_answer(client):
    question, doc_id, _ = RETREAT
    assert len(client.predict(question, 1, api_name="/ask")["passages"]) == 1
    other = "004_6faa4890d470160d.txt"
    only = client.predict(question, 5, None, [other], api_name="/ask")
    assert only["passages"] and {p["doc_id"] for p in only["passages"]} == {other}


@pytest.mark.parametrize("question, message", [
    ("", "the question is empty"),
    ("   \n\t ", "the question is empty"),
    ("x" * 2001, "the question is 2,001 characters long; the limit is 2,000"),
])
def test_ask_rejects_bad_questions_with_a_message(client, question, message):
    assert message in error_of(lambda: client.predict(question, 5, api_name="/ask"))


def test_ask_takes_a_question_of_exactly_the_limit(client):
    question = ("Who claims he never gave the order to retreat? " * 60)[:2000]
    assert client.predict(question, 1, api_name="/ask")["passages"]


@pytest.mark.parametrize("k", [0, -1, 21, 2.5])
def test_ask_rejects_k_out_of_range(client, k):
    assert "k must be a whole number from 1 to 20" in error_of(lambda: client.predict("soldiers", k, api_name="/ask"))


def test_ask_rejects_an_unknown_document_filter(client):
    message = error_of(lambda: client.predict("soldiers", 5, None, ["nope.txt"], api_name="/ask"))
    assert "not in the index: nope.txt" in message


def test_html_in_a_question_comes_back_as_plain_text(client):
    question = "<script>alert(1)</script> Who claims he never gave the order?"
    result = client.predict(question, 2, api_name="/ask")
    assert result["question"] == question  # the API returns data; escaping is the page's job


def test_documents_lists_every_document(app, client):
    docs = client.predict(api_name="/documents")
    assert [d["doc_id"] for d in docs] == sorted(p.name for p in app.corpus.iterdir() if p.suffix in (".txt", ".md"))
    for d in docs:
        assert set(d) == {"doc_id", "title", "source", "pages", "passages", "chars"} and d["passages"] >= 1
        assert d["source"] == {"url": None, "site": None, "author": None, "date": None} and d["pages"] is None
        doc = client.predict(d["doc_id"], api_name="/document")
        assert doc["doc_id"] == d["doc_id"] and doc["title"] == d["title"] and len(doc["text"]) == d["chars"]
        assert doc["source"] == d["source"]


@pytest.mark.parametrize("doc_id", ["nope.txt", "../seeds/000_93644d6605fbd4ae.txt", ""])
def test_document_unknown_is_a_message(client, doc_id):
    assert "no document" in error_of(lambda: client.predict(doc_id, api_name="/document"))


# -- adding and deleting ----------------------------------------------------------


def test_add_ask_delete_a_document(app, client, tmp_path):
    before = corpus_state(app)
    path = write(tmp_path, "zebra_notes.txt", ZEBRA)
    report = client.predict([handle_file(str(path))], False, api_name="/add_documents")
    assert report["added"] == ["zebra_notes.txt"] and report["embedded"] >= 1
    assert (app.corpus / "zebra_notes.txt").read_text(encoding="utf-8") == ZEBRA
    assert "zebra_notes.txt" in [d["doc_id"] for d in client.predict(api_name="/documents")]
    answer = client.predict("When did the zebra herd cross the Mara river?", 3, api_name="/ask")
    assert answer["answered"] and answer["passages"][0]["doc_id"] == "zebra_notes.txt"

    # Persists: a new process opening the same folders finds it without re-indexing.
    reopened = Collection(app.corpus, app.index, show_progress=False).open()
    assert "zebra_notes.txt" in [d.doc_id for d in reopened.documents()]

    report = client.predict("zebra_notes.txt", api_name="/delete_document")
    assert report["removed"] == ["zebra_notes.txt"]
    assert corpus_state(app) == before
    assert "zebra_notes.txt" not in [d["doc_id"] for d in client.predict(api_name="/documents")]


def test_add_several_files_at_once_and_replace(app, client, tmp_path):
    a = write(tmp_path, "alpha_note.md", "Alpha note\nThe alpha station logged a meteor shower.\n")
    b = write(tmp_path, "beta_note.txt", "Beta note\nThe beta station logged heavy snow.\n")
    report = client.predict([handle_file(str(a)), handle_file(str(b))], False, api_name="/add_documents")
    assert sorted(report["added"]) == ["alpha_note.md", "beta_note.txt"]

    write(tmp_path, "beta_note.txt", "Beta note\nThe beta station logged a sandstorm instead.\n")
    message = error_of(lambda: client.predict([handle_file(str(b))], False, api_name="/add_documents"))
    assert "beta_note.txt already exists" in message
    report = client.predict([handle_file(str(b))], True, api_name="/add_documents")
    assert report["changed"] == ["beta_note.txt"]
    assert "sandstorm" in client.predict("beta_note.txt", api_name="/document")["text"]
    for doc_id in ("alpha_note.md", "beta_note.txt"):
        client.predict(doc_id, api_name="/delete_document")


BAD_UPLOADS = [
    ("latin1.txt", "Caf\xe9 cr\xe8me".encode("latin-1"), "not valid UTF-8"),
    ("empty.txt", b"", "the file is empty"),
    ("blank.md", b"  \n\n\t \n", "the file is empty"),
    ("huge.txt", b"a" * (11 * 1024 * 1024), "over the 10 MB limit"),
    ("notes.pdf", b"%PDF-1.4 not a text file", "notes.pdf: not a readable PDF"),
    ("notes.exe", b"MZ", "only .txt, .md, .html, .htm, .pdf and .docx files can be added"),
    (".hidden.txt", b"Hidden\nA hidden file.\n", "hidden names are not allowed"),
    ("000_93644d6605fbd4ae.txt", b"Clash\nA file with a name already in the corpus.\n", "already exists"),
]


@pytest.mark.parametrize("name, data, message", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_upload_is_refused_and_changes_nothing(app, client, tmp_path, name, data, message):
    before, docs = corpus_state(app), client.predict(api_name="/documents")
    path = write(tmp_path, name, data)
    assert message in error_of(lambda: client.predict([handle_file(str(path))], False, api_name="/add_documents"))
    assert corpus_state(app) == before
    assert client.predict(api_name="/documents") == docs


def test_one_bad_file_refuses_the_whole_upload(app, client, tmp_path):
    before = corpus_state(app)
    good = write(tmp_path, "good_one.txt", "Good\nA perfectly good document.\n")
    bad = write(tmp_path, "bad_one.txt", b"\xff\xfe\x00bad")
    message = error_of(lambda: client.predict([handle_file(str(good)), handle_file(str(bad))], False,
                                              api_name="/add_documents"))
    assert "bad_one.txt: not valid UTF-8" in message
    assert corpus_state(app) == before


def test_add_documents_without_files_is_a_message(client):
    assert "no files given" in error_of(lambda: client.predict([], False, api_name="/add_documents"))


def test_an_upload_name_cannot_escape_the_corpus_folder(app, client):
    """A crafted multipart name: Gradio keeps only its base name, so the file stays inside the corpus."""
    import httpx

    outside = app.corpus.parent / "escaped.txt"
    uploaded = httpx.post(app.url + "gradio_api/upload",
                          files={"files": ("../escaped.txt", b"Escape\nTrying to get out.\n", "text/plain")}).json()
    assert Path(uploaded[0]).name == "escaped.txt"
    crafted = {"path": uploaded[0], "orig_name": "../escaped.txt", "meta": {"_type": "gradio.FileData"}}
    report = client.predict([crafted], False, api_name="/add_documents")
    assert report["added"] == ["escaped.txt"] and not outside.exists()
    client.predict("escaped.txt", api_name="/delete_document")


def test_a_server_path_that_was_not_uploaded_is_refused(app, tmp_path):
    """A raw request naming a file on the server: Gradio refuses it before ui.py sees it.

    (gradio_client would upload a local path itself, so this goes through the REST API.)
    """
    import httpx

    secret = write(tmp_path, "secret.txt", "Secret\nThe secret is 42.\n")
    before = corpus_state(app)
    data = {"data": [[{"path": str(secret), "meta": {"_type": "gradio.FileData"}}], False]}
    event = httpx.post(app.url + "gradio_api/call/add_documents", json=data).json()["event_id"]
    stream = httpx.get(app.url + f"gradio_api/call/add_documents/{event}", timeout=60).text
    assert "event: error" in stream and "42" not in stream
    assert corpus_state(app) == before


@pytest.mark.parametrize("doc_id, message", [
    ("nope.txt", "no document 'nope.txt' in the index"),
    ("", "choose a document to delete"),
    ("../seeds/000_93644d6605fbd4ae.txt", "no document '../seeds/000_93644d6605fbd4ae.txt' in the index"),
    ("/etc/passwd.txt", "no document '/etc/passwd.txt' in the index"),
])
def test_delete_bad_name_is_a_message(app, client, doc_id, message):
    before = corpus_state(app)
    assert message in error_of(lambda: client.predict(doc_id, api_name="/delete_document"))
    assert corpus_state(app) == before


def test_failed_indexing_leaves_corpus_and_index_unchanged(app, client, tmp_path, monkeypatch):
    """An upload interrupted while indexing: the files written are taken back, the old index still serves."""
    import qa.collection

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(qa.collection, "update_index", broken)
    before, docs = corpus_state(app), client.predict(api_name="/documents")
    path = write(tmp_path, "interrupted.txt", "Interrupted\nThis upload fails while indexing.\n")
    message = error_of(lambda: client.predict([handle_file(str(path))], False, api_name="/add_documents"))
    assert "updating the index failed" in message and "nothing was changed" in message
    assert corpus_state(app) == before
    assert client.predict(api_name="/documents") == docs
    assert client.predict(RETREAT[0], 1, api_name="/ask")["passages"][0]["doc_id"] == RETREAT[1]


# -- several users at once --------------------------------------------------------


def test_twenty_concurrent_questions_all_answered(client):
    questions = [RETREAT[0], FOLLOW_UP[0], UNANSWERABLE, "Why do soldiers hide their faces in the videos?"] * 5
    jobs = [client.submit(q, 3, api_name="/ask") for q in questions]
    results = [job.result(timeout=120) for job in jobs]
    assert [r["question"] for r in results] == questions
    assert all(r["passages"] for r in results)


def test_questions_are_answered_while_an_upload_is_indexing(app, client, tmp_path):
    """Readers are not held up by an upload, and see either the old index or the new one."""
    sentences = [f"Entry {i}: the lighthouse keeper recorded {i} ships passing the northern cape at night."
                 for i in range(900)]
    path = write(tmp_path, "lighthouse_log.txt", "Lighthouse log\n" + "\n".join(sentences) + "\n")
    seeds = {d["doc_id"] for d in client.predict(api_name="/documents")}
    upload = client.submit([handle_file(str(path))], False, api_name="/add_documents")
    answered_during_upload = 0
    results = []
    deadline = time.monotonic() + 120
    while not upload.done() and time.monotonic() < deadline:
        results.append(client.predict(RETREAT[0], 3, api_name="/ask"))
        answered_during_upload += not upload.done()
    report = upload.result(timeout=120)
    assert report["added"] == ["lighthouse_log.txt"]
    assert answered_during_upload >= 1, "no question was answered while the upload was indexing"
    for result in results:
        assert result["passages"][0]["doc_id"] == RETREAT[1]
        assert {p["doc_id"] for p in result["passages"]} <= seeds | {"lighthouse_log.txt"}
    after = client.predict("How many ships did the lighthouse keeper record passing the northern cape?", 1,
                           api_name="/ask")
    assert after["passages"][0]["doc_id"] == "lighthouse_log.txt"
    client.predict("lighthouse_log.txt", api_name="/delete_document")


# -- login, MCP, start-up -----------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("", None), ("alice:secret", ("alice", "secret")), ("alice:pa:ss", ("alice", "pa:ss")),
])
def test_auth_from_env_parses_user_password(value, expected):
    assert ui.auth_from_env(value) == expected


@pytest.mark.parametrize("value", ["alice", ":secret", "alice:"])
def test_auth_from_env_rejects_malformed_values(value):
    with pytest.raises(ValueError, match="user:password"):
        ui.auth_from_env(value)


def test_login_is_required_when_auth_is_set(app):
    served = launch(app.corpus, app.index, auth=("alice", "secret"))
    try:
        with pytest.raises(Exception):
            Client(served.url, verbose=False).predict(RETREAT[0], 1, api_name="/ask")
        with pytest.raises(Exception):
            Client(served.url, auth=("alice", "wrong"), verbose=False)
        authed = Client(served.url, auth=("alice", "secret"), verbose=False)
        assert authed.predict(RETREAT[0], 1, api_name="/ask")["passages"][0]["doc_id"] == RETREAT[1]
        assert not served.demo.mcp_server, "the MCP route does not ask for the login, so it must be off"
    finally:
        served.demo.close()


@pytest.mark.skipif(not ui.mcp_available(), reason="gradio[mcp] is not installed")
def test_ask_is_an_mcp_tool(app):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def call():
        async with streamablehttp_client(app.url + "gradio_api/mcp/") as (read, write_, _):
            async with ClientSession(read, write_) as session:
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                result = await session.call_tool("ask", {"question": RETREAT[0], "k": 2})
                return tools, result

    tools, result = asyncio.run(call())
    assert {"ask", "documents", "document", "export"} <= set(tools)
    assert set(tools["ask"].inputSchema["properties"]) >= {"question", "k", "doc_ids", "sites", "since", "until"}
    answer = ast.literal_eval(result.content[0].text)  # Gradio's MCP server sends str() of the dict
    assert answer["passages"][0]["doc_id"] == RETREAT[1]


def test_host_and_port_come_from_gradio_variables(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = ui._parse_args([])
    assert (args.host, args.port, args.corpus, args.index) == ("127.0.0.1", 7860, "seeds", "index")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    assert (ui._parse_args([]).host, ui._parse_args([]).port) == ("0.0.0.0", 7999)
    assert ui._parse_args(["--host", "127.0.0.2", "--port", "8001"]).port == 8001


def test_start_refuses_a_missing_corpus_with_a_message(tmp_path, capsys):
    assert ui.main(["--corpus", str(tmp_path / "missing"), "--index", str(tmp_path / "index")]) == 2
    assert "corpus folder not found" in capsys.readouterr().err


def test_start_refuses_a_malformed_login(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QA_AUTH", "nopassword")
    assert ui.main(["--corpus", str(tmp_path), "--index", str(tmp_path / "index")]) == 2
    assert "QA_AUTH must be user:password" in capsys.readouterr().err


# -- what the page shows ---------------------------------------------------------------


def passage(quote: str, *, start: int = 100, highlight: tuple[int, int] | None = None, **extra) -> dict:
    hl = {"start": start + highlight[0], "end": start + highlight[1]} if highlight else None
    return {"rank": 1, "doc_id": "a.txt", "title": "A title", "start": start, "end": start + len(quote),
            "quote": quote, "score": 0.0321, "highlight": hl, **extra}


def test_answer_marks_the_answering_sentence_and_cites_it():
    quote = "First sentence. The answering sentence. Last one."
    html = ui.render_answer({"question": "q", "answered": True,
                             "passages": [passage(quote, highlight=(16, 39))]}, turn=0)
    assert '<mark class="qa-sentence">The answering sentence.</mark>' in html
    assert "A title" in html and "a.txt" in html and "characters 100–149" in html and "score 0.0321" in html
    assert 'href="#qa-cite-0-0"' in html
    assert "\n" not in html  # one HTML block: Markdown never reaches inside


def test_unanswered_reply_says_so_and_folds_the_closest_passages():
    html = ui.render_answer({"question": "q", "answered": False, "reason": "no passage is close enough",
                             "passages": [passage("Something unrelated.")]})
    assert "The corpus does not answer this question." in html
    assert "No passage is close enough." in html
    assert "<details><summary>Closest passages (1)</summary>" in html


def test_markup_in_documents_and_questions_is_shown_as_text():
    quote = "Hi <script>alert(1)</script> <img src=x onerror=alert(2)> **bold** [a](http://x) $$x$$\n\nend"
    html = ui.render_answer({"question": "q", "answered": True, "passages": [
        passage(quote, highlight=(3, 29), title="<b>T</b>", doc_id="<i>.txt")]})
    assert "<script" not in html and "<img" not in html and "<b>T" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "**bold** [a](http://x) $$x$$<br><br>end" in html
    assert ui.render_question("<b>hi</b>\nthere") == '<div class="qa-question">&lt;b&gt;hi&lt;/b&gt;<br>there</div>'


def test_also_in_is_rendered_when_present():
    html = ui.render_answer({"question": "q", "answered": True, "passages": [passage("Same news.", also_in=[
        {"doc_id": "b.txt", "title": "Other <outlet>", "start": 5, "end": 15}])]})
    assert "also reported in: " in html and " (b.txt, characters 5–15)" in html
    assert '<a class="qa-open" href="#qa-cite-0-0-0"' not in html  # no turn: nothing to open
    html = ui.render_answer({"question": "q", "answered": True, "passages": [passage("Same news.", also_in=[
        {"doc_id": "b.txt", "title": "Other <outlet>", "start": 5, "end": 15}])]}, turn=2)
    assert ('<a class="qa-open" href="#qa-cite-2-0-0" title="Read it in its document"><strong>Other &lt;outlet&gt;'
            "</strong></a> (b.txt, characters 5–15)") in html


def test_source_viewer_shows_the_whole_document_with_passage_and_sentence_marked():
    text = "Title\n<b>Intro</b>. Cited start. The answer is here. Cited end. Outro."
    start, end = text.index("Cited start"), text.index(" Outro")
    hl = (text.index("The answer"), text.index(" Cited end"))
    html = ui.render_source({"doc_id": "a.txt", "title": "Title", "text": text},
                            {"rank": 2, "start": start, "end": end, "highlight": {"start": hl[0], "end": hl[1]}})
    body = re.sub(r"<mark[^>]*>|</mark>", "", html.split('<div class="qa-doc">', 1)[1].removesuffix("</div>"))
    assert body == text.replace("<", "&lt;").replace(">", "&gt;")
    assert ('<mark class="qa-passage">Cited start. <mark class="qa-sentence">The answer is here.</mark>'
            " Cited end.</mark>") in html
    assert "passage [2], characters" in html


def test_long_titles_are_shortened_in_citations():
    label = ui.citation_label(passage("q", title="word " * 40))
    assert len(label) < 130 and "…" in label


# -- issue 10: source details, pages, filters, copy, export ---------------------------------------


def test_a_citation_reads_like_a_reporter_wrote_it_with_a_copy_button():
    p = passage("First. The answer.", highlight=(7, 18), title="WeWork <probe>", page=12,
                source={"site": "VentureBeat", "date": "2019-11-18", "url": "https://venturebeat.com/x?a=1&b=2",
                        "author": "Reuters"})
    html = ui.render_answer({"question": "q", "answered": True, "passages": [p]}, turn=0)
    assert ('— VentureBeat, “<a class="qa-open" href="#qa-cite-0-0" title="Read it in its document"><strong>'
            "WeWork &lt;probe&gt;</strong></a>”, Nov. 18, 2019, p. 12, "
            '<a class="qa-url" href="https://venturebeat.com/x?a=1&amp;b=2" target="_blank"') in html
    assert ('<span class="qa-copy-text">“First. The answer.” — VentureBeat, "WeWork &lt;probe&gt;", Nov. 18, 2019, '
            "p. 12, https://venturebeat.com/x?a=1&amp;b=2</span>") in html
    assert '<span class="qa-rank">[1]</span> ' in html  # the number is not glued to a selected quote
    bad = ui.render_answer({"question": "q", "answered": True, "passages": [
        passage("x", source={"url": "javascript:alert(1)", "site": None, "date": None, "author": None})]})
    assert "javascript:" not in bad.split('class="qa-copy-text"')[0]


def test_filters_in_force_are_shown_above_the_answer():
    html = ui.render_answer({"question": "q", "answered": True, "filters": {"sites": ["CNN"], "since": "2019-11-01"},
                             "passages": [passage("Something.")]})
    assert html.startswith('<div class="qa-answer"><div class="qa-filters">Filters in force: sites: CNN; '
                           "dated Nov. 1, 2019 or later</div>")


def test_documents_table_shows_source_and_pages_escaped():
    table = ui.render_documents([{"doc_id": "r.pdf", "title": "<b>Report</b>", "passages": 3, "chars": 12000,
                                  "pages": 7, "source": {"site": "GAO", "date": "2023-06-26", "author": None,
                                                         "url": None}}])
    assert "&lt;b&gt;Report&lt;/b&gt;" in table and "GAO · June 26, 2023" in table
    assert '<td class="qa-num" data-label="Pages">7</td>' in table and "12,000" in table


def test_ask_filters_by_site_and_date_and_says_so(app, client, tmp_path):
    from makefiles import make_article_html
    from test_extract import ARTICLE

    path = write(tmp_path, "storm.html", make_article_html(ARTICLE))
    client.predict([handle_file(str(path))], False, api_name="/add_documents")
    try:
        result = client.predict("How high were the waves?", 3, None, None, ["The Harbour Gazette"], "2026-01-01",
                                None, api_name="/ask")
        assert result["filters"] == {"sites": ["The Harbour Gazette"], "since": "2026-01-01"}
        top = result["passages"][0]
        assert top["doc_id"] == "storm.html" and top["source"]["site"] == "The Harbour Gazette" and top["page"] is None
        listed = {d["doc_id"]: d for d in client.predict(api_name="/documents")}
        assert listed["storm.html"]["source"]["date"] == "2026-11-03"
        assert "until must be a date as YYYY-MM-DD" in error_of(
            lambda: client.predict("Waves?", 3, None, None, None, None, "soon", api_name="/ask"))
        assert "no document from 'Nowhere'" in error_of(
            lambda: client.predict("Waves?", 3, None, None, ["Nowhere"], None, None, api_name="/ask"))
    finally:
        client.predict("storm.html", api_name="/delete_document")


def test_export_gives_markdown_and_json_of_a_conversation(client):
    first = client.predict(RETREAT[0], 2, api_name="/ask")
    second = client.predict(UNANSWERABLE, 1, api_name="/ask")
    md = client.predict([first, second], "markdown", api_name="/export")
    assert f"## 1. {RETREAT[0]}" in md and "## 2. Who painted the Mona Lisa?" in md
    escaped = RETREAT[1].replace("_", "\\_")  # Markdown's escape
    assert f"({escaped}, characters" in md and "The corpus does not answer this question" in md
    data = __import__("json").loads(client.predict([first, second], "json", api_name="/export"))
    assert [t["question"] for t in data["turns"]] == [RETREAT[0], UNANSWERABLE]
    assert all("citation" in p and "copy" in p for p in data["turns"][0]["passages"])
    assert "Choose from 'markdown', 'json'" in error_of(lambda: client.predict([first], "pdf", api_name="/export"))
    assert "not a result of /ask" in error_of(lambda: client.predict([{"x": 1}], "json", api_name="/export"))


def test_upload_a_pdf_and_a_docx_then_ask_them(app, client, tmp_path):
    from makefiles import make_docx, make_pdf

    pdf = write(tmp_path, "trust.pdf", make_pdf(["Intro page.", "Some 41,500 visitors climbed the Skerry lighthouse."]))
    doc = write(tmp_path, "minutes.docx", make_docx(["The board voted to buy two new pilot boats."]))
    report = client.predict([handle_file(str(pdf)), handle_file(str(doc))], False, api_name="/add_documents")
    try:
        assert sorted(report["added"]) == ["minutes.docx", "trust.pdf"]
        top = client.predict("How many visitors climbed the Skerry lighthouse?", 1, api_name="/ask")["passages"][0]
        assert top["doc_id"] == "trust.pdf" and top["page"] == 2
        text = client.predict("trust.pdf", api_name="/document")["text"]
        assert text[top["start"]:top["end"]] == top["quote"]
    finally:
        for name in ("trust.pdf", "minutes.docx"):
            client.predict(name, api_name="/delete_document")


def test_a_question_that_fails_when_answered_leaves_the_chat_as_it_was(app):
    """The chat's two steps: pose shows the question at once; if answering then fails (a filter
    naming a document deleted since), the question and its "searching" reply go away again."""
    handlers = ui.QAApp(app.collection)
    before = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "answer"}]
    posed = handlers.pose("Who claims he never gave the order?", before, 3, "", "")
    assert posed[0] == "Who claims he never gave the order?" and posed[1][-1]["content"] == ui.SEARCHING
    out = handlers.respond(posed[0], posed[1], [], [], 3, ["deleted.txt"], None, None, None)
    assert len(out) == 7 and out[0] == before
    assert handlers.respond(None, before, [], [], 3, None, None, None, None) == (ui.gr.skip(),) * 7
    refused = handlers.pose("   ", before, 3, "", "")
    assert refused[0] is None and len(refused) == 3
