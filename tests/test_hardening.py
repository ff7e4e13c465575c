"""The faults found by attacking the app (issue 11), each kept fixed.

1. no outbound traffic from ui.py, `qa index` and `qa ask` (strace records every connect());
2. undecodable bytes and lone surrogates: a message, and `qa ask -` goes on;
3. every endpoint and CLI command, thrown arbitrary values (hypothesis): a one-line
   message, never a trace, and the corpus and index unchanged;
4. history limited, and the largest accepted costs little;
5. every model file hash-checked (tokenizer and configs too);
6. uploads: a private folder, removed once read, never served;
7. symlinks in the corpus skipped; 8. /delete_document only deletes indexed documents;
9. with QA_AUTH, every API route asks for the login.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from conftest import OUTBOUND, ROOT, is_loopback, snapshot
from gradio_client import Client, handle_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ui
from qa import Collection, web_guard
from qa.backends import load_embedder
from qa.cli import main as cli_main
from qa.embedding import MODEL_FILES, Embedder, ModelError, bundled_model_path, open_tokenizer
from qa.retrieval import MAX_HISTORY_TURNS, MAX_QUESTION_CHARS

QUESTION = "Why were 17 soldiers imprisoned?"
FOLLOW_UP = "Where were they held?"
ENDPOINTS = ("ask", "documents", "document", "add_documents", "delete_document")


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
    """The app over a copy of the seed corpus, with a folder (sub/) and a hidden, unindexed file."""
    root = tmp_path_factory.mktemp("hardening")
    shutil.copytree(seed_build[0], root / "corpus")
    (root / "corpus" / "sub").mkdir()
    (root / "corpus" / "sub" / "inner.txt").write_text("Inner note\nThe inner station saw fog.\n", encoding="utf-8")
    (root / "corpus" / ".private").mkdir()
    (root / "corpus" / ".private" / "notes.txt").write_text("Private\nNot for the index.\n", encoding="utf-8")
    (root / "corpus" / "latin1.txt").write_bytes("Caf\xe9".encode("latin-1"))  # skipped: not UTF-8
    served = launch(root / "corpus", root / "index")
    yield served
    served.demo.close()


@pytest.fixture(scope="module")
def client(app):
    return Client(app.url, verbose=False)


def state(app) -> tuple[dict, dict]:
    return snapshot(app.corpus), snapshot(app.index)


def call_raw(url: str, api: str, data: list, *, timeout: float = 60) -> tuple[str, object]:
    """One call through Gradio's REST API with any JSON (NaN and Infinity included).

    Returns:
        ("complete", the output) or ("error", the message, None when it had none).
    """
    body = json.dumps({"data": data}, allow_nan=True)
    posted = httpx.post(f"{url}gradio_api/call/{api}", content=body, timeout=timeout,
                        headers={"content-type": "application/json"})
    assert posted.status_code == 200, posted.text
    stream = httpx.get(f"{url}gradio_api/call/{api}/{posted.json()['event_id']}", timeout=timeout).text
    event = re.search(r"^event: (\w+)\ndata: (.*)$", stream, re.M)
    assert event, stream
    payload = json.loads(event.group(2))
    if event.group(1) == "error":
        return "error", (payload or {}).get("error")
    return event.group(1), payload[0] if isinstance(payload, list) and payload else payload


def assert_clean_message(message) -> None:
    assert isinstance(message, str) and message.strip(), "an error without a message"
    assert "\n" not in message and "Traceback" not in message and 'File "' not in message, message


# -- 1. nothing leaves the machine ------------------------------------------------------------


def test_the_socket_guard_stops_and_records_outbound_attempts():
    """The guard conftest puts on this process (every test runs under it) is real."""
    before = len(OUTBOUND)
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(OSError):
        socket.getaddrinfo("www.google-analytics.com", 443)
    assert len(OUTBOUND) == before + 2
    del OUTBOUND[before:]


def test_importing_qa_blocks_openvino_telemetry_whatever_the_environment():
    code = ("import os; os.environ.update(GRADIO_ANALYTICS_ENABLED='True', HF_HUB_OFFLINE='0'); import qa\n"
            "try:\n    import openvino_telemetry\nexcept ImportError:\n    print('blocked')\n"
            "print(os.environ['GRADIO_ANALYTICS_ENABLED'], os.environ['HF_HUB_OFFLINE'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["blocked", "False", "1"], out.stderr


_CONNECT = re.compile(r"connect\(\d+, \{sa_family=(AF_INET6?), .*?(?:inet_addr\(\"([^\"]+)\"\)|"
                      r"inet_pton\(AF_INET6, \"([^\"]+)\")")


def connects(trace: Path) -> tuple[list[str], list[str]]:
    """(loopback, other) addresses of every AF_INET/AF_INET6 connect() in an strace log."""
    inside, outside = [], []
    for match in _CONNECT.finditer(trace.read_text(errors="replace")):
        address = match.group(2) or match.group(3)
        (inside if is_loopback(address) else outside).append(address)
    return inside, outside


def hostile_env(home: Path) -> dict:
    """As a user's shell might be: analytics asked for, hub online, no consent file anywhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DO_NOT_TRACK", "HF_HUB_DISABLE_TELEMETRY")}
    env.update(HOME=str(home), GRADIO_ANALYTICS_ENABLED="True", HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0")
    env.pop("QA_BACKEND", None)  # auto: OpenVINO is imported
    return env


def strace(trace: Path) -> list[str]:
    return ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace)]


def _stop(tracer: subprocess.Popen) -> None:
    """SIGTERM the traced program (strace's child); strace ends with it."""
    children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children")
    for pid in children.read_text().split() if children.exists() else []:
        os.kill(int(pid), signal.SIGTERM)
    try:
        tracer.wait(timeout=60)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait()


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-qq", "-o", os.devnull, "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _strace_works(), reason="strace is not installed (make dev installs it) or may not trace here")
def test_no_outbound_connection_from_ui_py_qa_index_and_qa_ask(tmp_path, seed_build):
    """Every connect() of ui.py (asked, uploaded to, deleted from), `qa index` and `qa ask` is loopback.

    It used to look up www.google-analytics.com on every start: `import openvino` sent a
    telemetry event (openvino_telemetry takes a missing consent file for consent).
    """
    shutil.copytree(seed_build[0], tmp_path / "seeds")  # the index names its corpus "seeds", beside it
    shutil.copytree(seed_build[1], tmp_path / "index")
    (tmp_path / "home").mkdir()
    env = hostile_env(tmp_path / "home")
    trace = tmp_path / "ui.trace"
    port = free_port()
    log = open(tmp_path / "ui.log", "w")
    tracer = subprocess.Popen([*strace(trace), sys.executable, "ui.py", "--corpus", str(tmp_path / "seeds"),
                               "--index", str(tmp_path / "index"), "--port", str(port)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while "ready at" not in (tmp_path / "ui.log").read_text():
            assert tracer.poll() is None and time.monotonic() < deadline, (tmp_path / "ui.log").read_text()
            time.sleep(0.5)
        client = Client(url, verbose=False)
        assert client.predict(QUESTION, 2, api_name="/ask")["passages"]
        note = tmp_path / "strace_note.txt"
        note.write_text("Strace note\nThe tracer counted every connection.\n", encoding="utf-8")
        assert client.predict([handle_file(str(note))], False, api_name="/add_documents")["added"]
        assert client.predict("strace_note.txt", api_name="/delete_document")["removed"]
    finally:
        _stop(tracer)
        log.close()
    inside, outside = connects(trace)
    assert inside, "strace recorded no connection at all: the trace is not being read"
    assert outside == [], f"ui.py connected outside loopback: {outside}"

    for name, argv in (("index", ["index", "--corpus", str(tmp_path / "seeds"), "--index", str(tmp_path / "index")]),
                       ("ask", ["ask", "--index", str(tmp_path / "index"), "-q", QUESTION])):
        trace = tmp_path / f"{name}.trace"
        done = subprocess.run([*strace(trace), sys.executable, "-m", "qa", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert connects(trace)[1] == [], f"qa {name} connected outside loopback: {connects(trace)[1]}"


# -- 2. undecodable bytes ----------------------------------------------------------------------


def test_an_undecodable_byte_on_the_command_line_and_in_a_batch(cli_build):
    """It used to end `qa ask` with a traceback (exit 1), and `qa ask -` at the bad line.

    Python hands an undecodable byte of argv over as a lone surrogate (surrogateescape).
    """
    index = str(cli_build / "index")
    code, out, err = _cli(["ask", "--index", index, "-q", "Why were \udcff\udcfe soldiers imprisoned?"])
    message = "the question is not valid text: character 10 is an undecodable byte or a lone surrogate; send UTF-8"
    assert (code, out, err) == (2, "", f"error: {message}\n")
    code, out, err = _cli(["ask", "--index", index, "-q", "-"],
                          stdin=b"Why were \xff\xfe soldiers imprisoned?\n" + QUESTION.encode() + b"\n")
    assert code == 1, err
    first, second = (json.loads(line) for line in out.splitlines())
    assert first == {"question": "Why were \ufffd\ufffd soldiers imprisoned?", "error": message}
    assert second["question"] == QUESTION and second["passages"]


@pytest.mark.parametrize("data, message", [
    (["Why \ud800 soldiers?", 3], "the question is not valid text: character 5"),
    ([QUESTION, 3, ["fine", "bad \udcff"]], "history[1] is not valid text"),
    ([QUESTION, 3, None, ["\udcff.txt"]], "doc_ids[0] is not valid text"),
])
def test_lone_surrogates_through_ask_are_a_message(app, data, message):
    kind, got = call_raw(app.url, "ask", data)
    assert kind == "error" and message in got


# -- 3. every endpoint, arbitrary input ----------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    ([QUESTION, float("nan")], "k must be a whole number from 1 to 20, got nan"),
    ([QUESTION, float("inf")], "k must be a whole number from 1 to 20, got inf"),
    ([QUESTION, 1e300], "k must be a whole number from 1 to 20"),
    ([QUESTION, True], "k must be a whole number from 1 to 20, got True"),
    ([], "/ask: missing argument question"),
    ([QUESTION, 3, None, [1, 2]], "doc_ids[0] must be text, got 1"),
    ([QUESTION, 3, None, [["a"]]], "doc_ids[0] must be text, got a list of 1"),
    ([QUESTION, 3, None, "000_93644d6605fbd4ae.txt"], "doc_ids must be a list, got '000_93644d6605fbd4ae.txt'"),
    ([QUESTION, 3, None, None, None, None, None, "extra"], "/ask takes at most 7 arguments"),
])
def test_ask_inputs_that_used_to_get_no_message(app, data, message):
    kind, got = call_raw(app.url, "ask", data)
    assert kind == "error" and message in got
    assert_clean_message(got)


def test_1e400_as_json_text_is_a_message(app):
    """1e400 is valid JSON; Python reads it as infinity."""
    body = '{"data": ["soldiers", 1e400]}'
    posted = httpx.post(f"{app.url}gradio_api/call/ask", content=body, headers={"content-type": "application/json"})
    stream = httpx.get(f"{app.url}gradio_api/call/ask/{posted.json()['event_id']}", timeout=60).text
    assert "k must be a whole number from 1 to 20, got inf" in stream


def test_the_client_gets_app_error_with_the_message(client):
    from gradio_client.exceptions import AppError

    for args, message in (((QUESTION, 3, None, "000_93644d6605fbd4ae.txt"), "doc_ids must be a list"),
                          ((QUESTION, 3, "not a list"), "history must be a list, got 'not a list'"),
                          ((QUESTION, 3.5), "k must be a whole number from 1 to 20, got 3.5")):
        with pytest.raises(AppError, match=re.escape(message)):
            client.predict(*args, api_name="/ask")


JSON_LEAVES = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
               | st.floats(allow_nan=True, allow_infinity=True)
               | st.text(alphabet=st.characters(blacklist_categories=()), max_size=30)
               | st.sampled_from(["", " ", "sub", "sub/", "../seeds", "/etc/passwd", ".private/notes.txt",
                                  "latin1.txt", "x" * 5000, "\udcff\udcfe", "000_93644d6605fbd4ae.txt"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(["path", "meta", "role", "content", "orig_name", "x"]),
                                             inner, max_size=3), max_leaves=8)
FILE_LIKE = st.fixed_dictionaries({"path": st.sampled_from(["/etc/passwd", "x.txt", "../seeds/a.txt", ""]),
                                   "meta": st.sampled_from([{"_type": "gradio.FileData"}, {}, None])})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(api=st.sampled_from(ENDPOINTS),
       data=st.lists(JSON_VALUES | st.lists(FILE_LIKE, max_size=2), max_size=5))
def test_every_endpoint_answers_arbitrary_values_with_a_result_or_a_clean_message(app, api, data):
    """Whatever the values: a result or a one-line message, and the corpus and index unchanged."""
    before = state(app)
    if api == "delete_document" and data and isinstance(data[0], str) and data[0] in app.collection.index.documents:
        data[0] += ".not-it"  # deleting a real document is a valid request
    kind, got = call_raw(app.url, api, data)
    if kind == "error":
        assert_clean_message(got)
    else:
        assert kind == "complete" and api in ("ask", "documents", "document"), (api, data, got)
        if api == "ask":
            assert set(got) >= {"question", "answered", "passages"}
    assert state(app) == before


def _cli(argv: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    real_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli_main(argv)
            except SystemExit as exc:  # argparse: --help, or a usage error
                code = exc.code
    finally:
        sys.stdin = real_stdin
    return code, out.getvalue(), err.getvalue()


ARGV_WORDS = (st.sampled_from(["-k", "--index", "--corpus", "--json", "-q", "-", "--allow-empty", "--depth",
                               "--fusion", "--dense-weight", "--modes", "0", "-1", "nan", "1e400", "3", "20",
                               "missing", ".", "..", "\udcff"])
              | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF) | st.sampled_from(
                  [chr(c) for c in range(0xDC80, 0xDD00)]), max_size=12))


@pytest.fixture(scope="module")
def cli_build(tmp_path_factory, seed_build):
    root = tmp_path_factory.mktemp("cli")
    shutil.copytree(seed_build[0], root / "seeds")  # the index names its corpus "seeds", beside it
    shutil.copytree(seed_build[1], root / "index")
    (root / "work").mkdir()
    assert _cli(["ask", "--index", str(root / "index"), "-q", QUESTION])[0] == 0
    return root


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["index", "ask", "eval", "bench-quality", "nope"]),
       words=st.lists(ARGV_WORDS, max_size=6), on_index=st.booleans())
def test_every_cli_command_answers_arbitrary_arguments_cleanly(cli_build, monkeypatch, command, words, on_index):
    """A clean exit, or one `error: ...` line with status 2; the corpus and index unchanged."""
    monkeypatch.chdir(cli_build / "work")  # a relative path given as --index or --corpus lands here
    corpus, index = cli_build / "seeds", cli_build / "index"
    before = snapshot(corpus), snapshot(index)
    if "--help" in words or "-h" in words:
        return
    if command == "bench-quality" and words[:1] and not words[0].startswith("-"):
        words = ["missing-beir", *words[1:]]  # never a real benchmark: it would embed a corpus
    argv = [command, *words] + (["--index", str(index)] if on_index and command in ("ask", "eval") else [])
    if command == "index":
        argv += ["--corpus", str(corpus), "--index", str(index)]  # the last wins: a real, up-to-date index
    code, out, err = _cli(argv, stdin=b"Who fled?\n\xff\n")
    assert "Traceback" not in err, err
    assert code in (0, 1, 2), (argv, code, err)
    if code == 2:
        assert err.splitlines()[-1].startswith("error: "), (argv, err)
    assert (snapshot(corpus), snapshot(index)) == before


@settings(max_examples=25, deadline=None)
@given(lines=st.lists(st.binary(max_size=60).filter(lambda b: b"\n" not in b and b"\r" not in b),
                      min_size=1, max_size=6))
def test_qa_ask_batch_answers_every_line_whatever_its_bytes(cli_build, lines):
    """One JSON line out per question line in, valid and printable, even after a bad line."""
    code, out, err = _cli(["ask", "--index", str(cli_build / "index"), "-q", "-"], stdin=b"\n".join(lines) + b"\n")
    assert code in (0, 1) and "Traceback" not in err
    wanted = [line for i, line in enumerate(lines)
              if (line.removeprefix(b"\xef\xbb\xbf") if i == 0 else line).decode("utf-8", "replace").strip()]
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == len(wanted)
    assert all(("error" in r) != ("passages" in r) for r in results)


# -- 4. history ----------------------------------------------------------------------------------


def test_history_is_limited_in_turns_and_characters(app):
    kind, got = call_raw(app.url, "ask", [FOLLOW_UP, 3, [QUESTION] * (MAX_HISTORY_TURNS + 1)])
    assert kind == "error" and got == f"history holds {MAX_HISTORY_TURNS + 1} items; the limit is {MAX_HISTORY_TURNS}"
    kind, got = call_raw(app.url, "ask", [FOLLOW_UP, 3, ["x" * (MAX_QUESTION_CHARS + 1)]])
    assert kind == "error" and got == "history[0] is 2,001 characters long; the limit is 2,000"
    kind, got = call_raw(app.url, "ask", [FOLLOW_UP, 3, [QUESTION] * MAX_HISTORY_TURNS])
    assert kind == "complete" and got["passages"][0]["doc_id"] == "003_5b9c610a72473fdf.txt"


def test_an_8_mb_body_is_refused_before_it_is_read(app):
    """It used to be parsed and searched: 17 s for one call, and eight held a question for 109 s."""
    body = json.dumps({"data": [FOLLOW_UP, 3, ["x" * (8 * 1024 * 1024)]]})
    t0 = time.perf_counter()
    refused = httpx.post(f"{app.url}gradio_api/call/ask", content=body, headers={"content-type": "application/json"},
                         timeout=60)
    assert refused.status_code == 413 and "2 MB limit" in refused.text
    assert time.perf_counter() - t0 < 5


def _largest_history(i: int) -> list[str]:
    """MAX_HISTORY_TURNS questions of the longest length allowed; the last one new each time (no cache)."""
    turn = (f"Call {i}: why were the 17 soldiers imprisoned, and by whom? " * 50)[:MAX_QUESTION_CHARS]
    return [turn] * MAX_HISTORY_TURNS


def _short_history(i: int) -> list[str]:
    """One short earlier question, new each time (no cache)."""
    return [f"Call {i}: why were the 17 soldiers imprisoned, and by whom?"]


@pytest.mark.slow
def test_the_largest_history_accepted_costs_little(app):
    """The issue's targets: within 2x of no history, and 8 such calls at once delay a normal
    question by at most 1 s. The delay is measured beside that of 8 follow-ups with a short
    history (a busy 2-core machine is slow for both): the size of the history may add at
    most 1 s to it. A follow-up itself costs more than a question without history, whatever
    its size (its model input carries the turn before), so that is the first target's, not this one's.
    """

    def timed(data) -> float:
        t0 = time.perf_counter()
        kind, got = call_raw(app.url, "ask", data)
        assert kind == "complete", got
        return time.perf_counter() - t0

    plain, largest = [], []
    for i in range(8):  # interleaved, so load on the machine hits both alike
        plain.append(timed([FOLLOW_UP, 3]))
        largest.append(timed([FOLLOW_UP, 3, _largest_history(i)]))
    assert statistics.median(largest) <= 2 * statistics.median(plain), (plain, largest)

    def took_beside(histories: list) -> float:
        threads = [threading.Thread(target=timed, args=([FOLLOW_UP, 3, *h],)) for h in histories]
        for t in threads:
            t.start()
        time.sleep(0.05)
        took = timed([QUESTION, 3])
        for t in threads:
            t.join()
        return took

    with_history, without = [], []
    for n in range(3):  # the best of three each: a busy machine may stall any one
        with_history.append(took_beside([[_largest_history(100 + 8 * n + j)] for j in range(8)]))
        without.append(took_beside([[_short_history(100 + 8 * n + j)] for j in range(8)]))
    assert min(with_history) <= min(without) + 1.0, (with_history, without)


# -- 5. model files ------------------------------------------------------------------------------


@pytest.fixture
def model_copy(tmp_path):
    """A copy of the bundled model folder (the weights linked, not copied)."""
    src, dest = bundled_model_path(), tmp_path / "model"
    for name in MODEL_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        if name == "model.safetensors":
            (dest / name).symlink_to(src / name)
        else:
            shutil.copy(src / name, dest / name)
    return dest


def _swap_token_ids(model: Path) -> None:
    tokenizer = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tokenizer["model"]["vocab"]
    vocab["soldier"], vocab["general"] = vocab["general"], vocab["soldier"]
    (model / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")


def test_a_tampered_tokenizer_is_refused_by_every_backend(model_copy, tmp_path):
    """It used to pass: the fast backends failed their probe and torch embedded with it."""
    _swap_token_ids(model_copy)
    with pytest.raises(ModelError, match=r"tokenizer\.json has sha256 \w+, not the recorded"):
        Embedder(model_copy)
    with pytest.raises(ModelError, match=r"tokenizer\.json"):
        load_embedder("auto", model_dir=model_copy, cache_dir=tmp_path / "cache")
    with pytest.raises(ModelError, match=r"tokenizer\.json"):
        open_tokenizer(model_copy)
    assert not (tmp_path / "cache").exists()  # refused before anything was exported


@pytest.mark.parametrize("name", ["config.json", "1_Pooling/config.json", "modules.json", "vocab.txt",
                                  "tokenizer_config.json", "special_tokens_map.json"])
def test_an_altered_config_is_refused(model_copy, name):
    with open(model_copy / name, "a", encoding="utf-8") as f:
        f.write(" ")
    with pytest.raises(ModelError, match=re.escape(f"{name} has sha256")):
        Embedder(model_copy)


def test_a_missing_or_added_model_file_is_refused(model_copy):
    (model_copy / "added_tokens.json").write_text('{"soldier": 1}', encoding="utf-8")
    with pytest.raises(ModelError, match="added_tokens.json is not part of"):
        Embedder(model_copy)
    (model_copy / "added_tokens.json").unlink()
    (model_copy / "vocab.txt").unlink()
    with pytest.raises(ModelError, match="model file not found: .*vocab.txt"):
        Embedder(model_copy)


# -- 6. uploads ----------------------------------------------------------------------------------


def _fetch(app, path: str) -> int:
    return httpx.get(f"{app.url}gradio_api/file={path}", timeout=30).status_code


def test_uploads_go_to_the_apps_own_folder_and_are_never_served(app, client, tmp_path):
    """A deleted upload used to stay in /tmp/gradio and be served, to anyone, by any Gradio app."""
    folder = web_guard.upload_folder()
    assert os.environ["GRADIO_TEMP_DIR"] == str(folder) and folder != Path(tempfile.gettempdir()) / "gradio"
    assert (folder.stat().st_mode & 0o077) == 0  # this user's only
    note = tmp_path / "upload_note.txt"
    note.write_text("Upload note\nThe upload station logged hail.\n", encoding="utf-8")
    uploaded = httpx.post(f"{app.url}gradio_api/upload",
                          files={"files": ("upload_note.txt", note.read_bytes(), "text/plain")}).json()[0]
    assert Path(uploaded).is_relative_to(folder)
    assert _fetch(app, uploaded) == 403  # not even before it is added
    assert _fetch(app, f"{folder}/x/..{uploaded[len(str(folder)):]}") == 403  # nor by another spelling
    report = client.predict([handle_file(str(note))], False, api_name="/add_documents")
    assert report["added"] == ["upload_note.txt"]
    assert not Path(uploaded).exists()  # read, then removed
    assert client.predict("upload_note.txt", api_name="/delete_document")["removed"] == ["upload_note.txt"]
    assert _fetch(app, uploaded) in (403, 404)
    assert list(folder.rglob("upload_note.txt")) == []
    assert list((Path(tempfile.gettempdir()) / "gradio").rglob("upload_note.txt")) == []


def test_an_upload_never_added_is_swept_after_an_hour():
    folder = web_guard.upload_folder()
    old, new = folder / "abandoned" / "old.txt", folder / "abandoned" / "new.txt"
    old.parent.mkdir(exist_ok=True)
    old.write_text("old"), new.write_text("new")
    os.utime(old, (time.time() - web_guard.UPLOAD_MAX_AGE_S - 60,) * 2)
    web_guard.sweep_uploads()
    assert not old.exists() and new.exists()
    web_guard.discard_uploads([new])
    assert not old.parent.exists()


def test_a_refused_upload_is_removed_too(app, tmp_path):
    bad = tmp_path / "refused.txt"
    bad.write_bytes("Caf\xe9".encode("latin-1"))
    before = state(app)
    uploaded = httpx.post(f"{app.url}gradio_api/upload",
                          files={"files": ("refused.txt", bad.read_bytes(), "text/plain")}).json()[0]
    kind, message = call_raw(app.url, "add_documents", [[{"path": uploaded, "meta": {"_type": "gradio.FileData"}}],
                                                        False])
    assert kind == "error" and "refused.txt: not valid UTF-8" in message
    assert not Path(uploaded).exists() and state(app) == before


def test_an_upload_to_one_instance_cannot_be_read_through_another(app, tmp_path):
    locked = launch(app.corpus, app.index, auth=("alice", "secret"))
    try:
        cookies = httpx.post(f"{locked.url}login", data={"username": "alice", "password": "secret"}).cookies
        path = httpx.post(f"{locked.url}gradio_api/upload", cookies=cookies,
                          files={"files": ("secret_note.txt", b"Secret\nThe code is 4711.\n", "text/plain")}).json()[0]
        assert _fetch(app, path) == 403  # the open instance does not serve it
        assert httpx.get(f"{locked.url}gradio_api/file={path}", cookies=cookies).status_code == 403  # nor its own
    finally:
        locked.demo.close()


# -- 7. symlinks ---------------------------------------------------------------------------------


def test_symlinks_in_the_corpus_are_skipped_with_a_warning_naming_them(tmp_path, corpus_copy, embedder, caplog):
    """`passwd.txt -> /etc/passwd` used to be indexed and served by /document."""
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("Outside\nThe vault code is 4711.\n", encoding="utf-8")
    (corpus_copy / "passwd.txt").symlink_to(secret)
    (corpus_copy / "linked").symlink_to(secret.parent, target_is_directory=True)
    with caplog.at_level("WARNING", logger="qa.corpus"):
        col = Collection(corpus_copy, tmp_path / "index", embedder=embedder, show_progress=False).open()
    assert "passwd.txt" not in col.index.documents and not any(d.startswith("linked") for d in col.index.documents)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped passwd.txt: a symbolic link" in warned and "skipped linked: a symbolic link" in warned
    with pytest.raises(KeyError, match="no document 'passwd.txt' in the index"):
        col.document("passwd.txt")
    assert all("4711" not in d.text for d in col.index.documents.values())
    from qa.corpus import DocumentError

    with pytest.raises(DocumentError, match="passwd.txt in the corpus folder is a symbolic link"):
        col.add_documents([("passwd.txt", b"Replaced\nThrough the link.\n")], replace=True)
    assert secret.read_text(encoding="utf-8") == "Outside\nThe vault code is 4711.\n"


# -- 8. deleting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("doc_id, message", [
    (".private/notes.txt", "no document '.private/notes.txt' in the index"),
    ("latin1.txt", "no document 'latin1.txt' in the index"),
    ("sub", "'sub' is a folder, not a document; its 1 documents are deleted one at a time"),
    ("sub/", "'sub/' is a folder, not a document"),
])
def test_delete_only_deletes_a_document_of_the_index(app, doc_id, message):
    """It used to delete any .txt/.md under the corpus folder, and call a folder "not .txt or .md"."""
    before = state(app)
    kind, got = call_raw(app.url, "delete_document", [doc_id])
    assert kind == "error" and message in got
    assert state(app) == before


# -- 9. login ---------------------------------------------------------------------------------------


def test_with_a_login_every_api_route_asks_for_it(app):
    """/gradio_api/reset and /cancel used to answer without one."""
    locked = launch(app.corpus, app.index, auth=("alice", "secret"))
    try:
        routes = [("post", "gradio_api/reset", {"event_id": "x"}),
                  ("post", "gradio_api/cancel", {"session_hash": "s", "fn_index": 0, "event_id": "x"}),
                  ("post", "gradio_api/stream/x", {}), ("get", "gradio_api/heartbeat/s", None),
                  ("post", "gradio_api/upload", None), ("get", "gradio_api/info", None)]
        for method, route, body in routes:
            answer = getattr(httpx, method)(f"{locked.url}{route}", **({"json": body} if method == "post" else {}))
            assert answer.status_code == 401, (route, answer.status_code)
        cookies = httpx.post(f"{locked.url}login", data={"username": "alice", "password": "secret"}).cookies
        assert httpx.post(f"{locked.url}gradio_api/reset", json={"event_id": "x"}, cookies=cookies).status_code == 200
        authed = Client(locked.url, auth=("alice", "secret"), verbose=False)
        assert authed.predict(QUESTION, 1, api_name="/ask")["passages"]
    finally:
        locked.demo.close()


def test_without_a_login_the_page_and_its_config_still_load(app):
    assert httpx.get(app.url).status_code == 200
    assert httpx.get(f"{app.url}config").json()["components"]
