"""The page in a real browser: headless Chromium driven by Playwright.

Opens the app, asks a seed question and sees a quote with its citation (the screenshot
of that chat is saved to artifacts/chat_answered.png), opens the source viewer and sees
the highlighted sentence scrolled into view, follows up on a question, checks that
markup is shown as text, uploads a document and finds it answered, then deletes it.

Debian's chromium is used (``playwright install`` cannot download a browser here);
set QA_CHROMIUM to use another binary.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

CHROMIUM = os.environ.get("QA_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                       reason=f"no Chromium at {CHROMIUM}: `make dev` installs Debian's chromium (or set QA_CHROMIUM)"),
]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed: pip install -r requirements-dev.txt")

import ui  # noqa: E402
from qa import Collection  # noqa: E402

RETREAT = ("Who claims he never gave the order to retreat?", "000_93644d6605fbd4ae.txt",
           "The commander, however, claimed he never gave the order")
MARKUP_DOC = (
    "Markup notes\n"
    "The harbour master wrote <script>window.__pwned = 1</script> in the log of the lighthouse.\n"
    "An image tag <img src=x onerror=\"window.__pwned = 2\"> and **stars** stay as typed in the lighthouse log.\n"
)
UPLOAD_DOC = "Glacier survey\nThe survey team measured the Aletsch glacier retreating forty metres in one year.\n"
TIMEOUT = 30_000  # ms; a question takes well under a second, an upload a few


@pytest.fixture(scope="module")
def served(tmp_path_factory, seed_build):
    root = tmp_path_factory.mktemp("browser")
    corpus = root / "corpus"
    shutil.copytree(seed_build[0], corpus)
    shutil.copytree(seed_build[1], root / "index")
    (corpus / "markup_notes.md").write_text(MARKUP_DOC, encoding="utf-8")
    collection = Collection(corpus, root / "index", show_progress=False).open()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo, url = ui.serve(collection, port=port, prevent_thread_lock=True, quiet=True)
    yield url, root
    demo.close()


@pytest.fixture(scope="module")
def page(served):
    url, _ = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        page.requested_hosts = set()
        page.on("request", lambda r: page.requested_hosts.add(r.url.split("/")[2]))
        page.goto(url)
        page.wait_for_selector("#qa-question textarea")
        yield page
        context.close()
        browser.close()


def ask(page, question: str):
    """Type a question, send it, and return the locator of its answer."""
    before = page.locator(".qa-answer").count()
    page.fill("#qa-question textarea", question)
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelectorAll('.qa-answer').length > {before}")
    return page.locator(".qa-answer").nth(before)


def open_tab(page, name: str):
    page.get_by_role("tab", name=name).click()


def test_question_is_answered_with_a_cited_quote(page):
    question, doc_id, evidence = RETREAT
    answer = ask(page, question)
    first = answer.locator(".qa-hit").first
    assert evidence in first.locator("mark.qa-sentence").inner_text()
    cite = first.locator(".qa-cite").inner_text()
    assert doc_id in cite and "characters" in cite and "answers the question (" in cite  # relevance in words
    assert page.locator(".qa-question").last.inner_text() == question
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".qa-question").last.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "chat_answered.png"), full_page=True)
    assert (ARTIFACTS / "chat_answered.png").stat().st_size > 10_000


def test_citation_opens_the_source_with_the_sentence_in_view(page, served):
    _, doc_id, evidence = RETREAT
    page.locator(".qa-answer").last.locator("a.qa-open").first.click()
    sentence = page.locator("#qa-source mark.qa-sentence")
    sentence.wait_for()
    assert evidence in sentence.inner_text()
    assert evidence in page.locator("#qa-source mark.qa-passage").inner_text()
    text = (served[1] / "corpus" / doc_id).read_text(encoding="utf-8")
    shown = page.locator("#qa-source .qa-doc").inner_text()
    assert shown.split() == text.split()  # the whole document, word for word
    page.wait_for_function("""() => {
        const m = document.querySelector('#qa-source mark.qa-sentence').getBoundingClientRect();
        const box = document.querySelector('#qa-source .qa-doc').getBoundingClientRect();
        return m.top >= box.top && m.bottom <= box.bottom && m.top >= 0 && m.bottom <= window.innerHeight;
    }""")


def test_choosing_a_citation_from_the_list_switches_the_source(page):
    page.locator("#qa-sources label").nth(1).click()
    page.wait_for_function("document.querySelector('#qa-source .qa-doc-head').innerText.includes('passage [2]')")
    assert page.locator("#qa-source mark.qa-passage").count() == 1


def test_follow_up_question_uses_the_conversation(page):
    ask(page, "Why were 17 soldiers imprisoned?")
    answer = ask(page, "Where were they held?")
    assert "003_5b9c610a72473fdf.txt" in answer.locator(".qa-cite").first.inner_text()


def test_new_conversation_clears_the_chat_and_its_sources(page):
    page.get_by_role("button", name="New conversation").click()
    page.wait_for_function("document.querySelectorAll('.qa-answer').length === 0")
    assert not page.locator("#qa-sources").is_visible()
    assert page.locator("#qa-source mark").count() == 0


def test_markup_in_questions_and_documents_is_shown_as_text(page):
    question = '<img src=x onerror="window.__pwned = 3"> What did the harbour master write in the lighthouse log?'
    answer = ask(page, question)
    assert page.locator(".qa-question").last.inner_text() == question
    quote = answer.locator(".qa-hit").first.locator(".qa-quote").inner_text()
    assert "<script>window.__pwned = 1</script>" in quote
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#qa-chat img[src='x']").count() == 0 and page.locator("#qa-chat script").count() == 0


@pytest.mark.parametrize("question, message", [
    ("   ", "the question is empty"),
    ("x" * 2001, "the question is 2,001 characters long; the limit is 2,000"),
])
def test_bad_question_gets_a_message_and_the_chat_stays(page, question, message):
    """Regression: a raised gr.Error used to cover the whole chat with an "Error" badge."""
    before = page.locator(".qa-answer").count()
    page.fill("#qa-question textarea", question)
    page.keyboard.press("Enter")
    page.get_by_text(message).filter(visible=True).first.wait_for()
    assert page.locator(".qa-answer").count() == before
    assert page.evaluate("""() => {
        const chat = document.querySelector('#qa-chat');
        chat.scrollIntoView({block: 'center'});
        const box = chat.getBoundingClientRect();
        for (let i = 1; i < 10; i++) {  // any point of the chat showing a message, not an overlay
            const seen = document.elementFromPoint(box.left + box.width / 2, box.top + box.height * i / 10);
            if (seen && seen.closest('.qa-answer, .qa-question')) return true;
        }
        return false;
    }"""), "the chat is covered"


def test_upload_a_document_then_ask_it_then_delete_it(page, served, tmp_path):
    open_tab(page, "Documents")
    page.locator("#qa-documents").get_by_text("000_93644d6605fbd4ae.txt").filter(visible=True).first.wait_for()
    path = tmp_path / "glacier_survey.txt"
    path.write_text(UPLOAD_DOC, encoding="utf-8")
    page.set_input_files("#qa-upload input[type=file]", str(path))
    page.locator("#qa-upload").get_by_text("glacier_survey.txt").wait_for()
    page.click("#qa-add")
    page.locator("#qa-status").get_by_text("Added glacier_survey.txt").wait_for()
    page.locator("#qa-documents").get_by_text("glacier_survey.txt").filter(visible=True).first.wait_for()
    assert (served[1] / "corpus" / "glacier_survey.txt").read_text(encoding="utf-8") == UPLOAD_DOC

    open_tab(page, "Chat")
    answer = ask(page, "How far did the Aletsch glacier retreat in one year?")
    assert "glacier_survey.txt" in answer.locator(".qa-cite").first.inner_text()
    assert "forty metres" in answer.locator("mark.qa-sentence").first.inner_text()

    open_tab(page, "Documents")
    page.click("#qa-delete-choice input")
    page.get_by_role("option", name="Glacier survey (glacier_survey.txt)").click()
    page.click("#qa-delete")
    page.click("#qa-delete-confirm")
    page.locator("#qa-status").get_by_text("Deleted glacier_survey.txt").wait_for()
    assert page.locator("#qa-documents").get_by_text("glacier_survey.txt").filter(visible=True).count() == 0
    assert not (served[1] / "corpus" / "glacier_survey.txt").exists()


def choose_file(page, path: Path, tries: int = 3) -> None:
    """Put a file in the upload box and wait until the box shows it.

    Seen once in a full CI-like run on a busy machine: the box never showed the file
    (the same steps pass on their own and under synthetic load), so the choice is
    made again, and a screenshot is kept if it still fails.
    """
    for attempt in range(tries):
        page.set_input_files("#qa-upload input[type=file]", str(path))
        try:
            page.locator("#qa-upload").get_by_text(path.name).wait_for(timeout=TIMEOUT // tries)
            return
        except Exception:
            if attempt == tries - 1:
                Path("artifacts").mkdir(exist_ok=True)
                page.screenshot(path=f"artifacts/upload_failure_{path.stem}.png", full_page=True)
                raise


def test_bad_upload_shows_why_and_changes_nothing(page, served, tmp_path):
    corpus = served[1] / "corpus"
    before = sorted(p.name for p in corpus.iterdir())
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    page.reload()  # a fresh page: nothing left from the previous test
    page.wait_for_selector("#qa-question textarea")
    open_tab(page, "Documents")
    choose_file(page, path)
    page.click("#qa-add")
    page.get_by_text("latin1.txt: not valid UTF-8").filter(visible=True).first.wait_for()
    assert sorted(p.name for p in corpus.iterdir()) == before


def test_the_page_fetches_nothing_from_elsewhere(page, served):
    url, _ = served
    assert page.requested_hosts == {url.split("/")[2]}
