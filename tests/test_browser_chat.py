"""The chat's behaviours of issue 10 in a real browser, at desktop (1366x900) and phone (390x844) sizes.

An example question is asked when clicked; the question shows at once with a "searching"
state; the source viewer follows the latest answer and opens beside the chat on a wide
screen, over the page on a phone with a way back, and never scrolls the page away; "also
reported in" opens its source; the copy button puts the quote and its citation on the
clipboard; the filters in force show above the answer and "New conversation" clears them;
the conversation downloads as Markdown and JSON; the documents table reads on a phone; the
file picker offers the new formats; a PDF quote cites its page.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from makefiles import make_article_html, make_pdf
from test_browser import CHROMIUM, pytestmark  # noqa: F401 - the same skips: no Chromium, no playwright
from test_extract import ARTICLE

sync_api = pytest.importorskip("playwright.sync_api")

import ui  # noqa: E402
from qa import Collection  # noqa: E402

SIZES = {"desktop": (1366, 900), "phone": (390, 844)}
TIMEOUT = 30_000
WIRE = "The port authority said the new breakwater will be finished in March next year at a cost of 12 million."
WIRE_A = f"Coastal news digest\nStorms battered the coast again this week.\n{WIRE}\nFishermen welcomed the plan.\n"
WIRE_B = f"Harbour weekly\nLocal traders met on Monday to discuss parking.\n{WIRE}\nThe mayor did not comment.\n"
PDF_PAGES = ["Lighthouse trust annual report. Introduction to the trust and its work.",
             "Repairs. The lantern room of the Skerry lighthouse was rebuilt in the spring.",
             "Visitors. Some 41,500 visitors climbed the Skerry lighthouse in the summer, a record for the trust."]
DELAY = {"seconds": 0.0}  # how long each question waits before it is answered (to see "searching")


@pytest.fixture(scope="module")
def served(tmp_path_factory, seed_build):
    root = tmp_path_factory.mktemp("browser_chat")
    corpus = root / "corpus"
    shutil.copytree(seed_build[0], corpus)
    shutil.copytree(seed_build[1], root / "index")
    (corpus / "wire_a.txt").write_text(WIRE_A, encoding="utf-8")
    (corpus / "wire_b.txt").write_text(WIRE_B, encoding="utf-8")
    (corpus / "storm.html").write_bytes(make_article_html(ARTICLE))
    (corpus / "trust.pdf").write_bytes(make_pdf(PDF_PAGES, info={"Title": "Lighthouse trust annual report"}))
    collection = Collection(corpus, root / "index", show_progress=False).open()
    ask = collection.ask

    def slow_ask(*args, **kwargs):
        time.sleep(DELAY["seconds"])
        return ask(*args, **kwargs)

    collection.ask = slow_ask
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo, url = ui.serve(collection, port=port, prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module", params=list(SIZES))
def size(request):
    return request.param


@pytest.fixture
def page(browser, served, size):
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(served)
    page.wait_for_selector("#qa-question textarea")
    yield page
    context.close()


def ask(page, question: str):
    before = page.locator(".qa-answer").count()
    page.fill("#qa-question textarea", question)
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelectorAll('.qa-answer').length > {before}")
    return page.locator(".qa-answer").nth(before)


def scroll_y(page) -> float:
    return page.evaluate("window.scrollY")


def in_viewport(page, selector: str) -> bool:
    return page.evaluate("""(sel) => {
        const r = document.querySelector(sel).getBoundingClientRect();
        return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth;
    }""", selector)


def open_settings(page):
    page.locator("#qa-settings").get_by_text("Search settings").click()
    page.locator("#qa-sites").wait_for()


def test_an_example_question_is_asked_when_clicked(page):
    page.get_by_text("Who claims he never gave the order to retreat?").first.click()
    page.wait_for_selector(".qa-answer")
    assert "The commander, however, claimed he never gave the order" in page.locator(
        ".qa-answer mark.qa-sentence").first.inner_text()
    assert page.locator(".qa-question").last.inner_text() == "Who claims he never gave the order to retreat?"


def test_the_question_shows_at_once_with_a_searching_state(page):
    DELAY["seconds"] = 4.0  # the answer takes at least this long; the question must show well before
    try:
        page.fill("#qa-question textarea", "Why were 17 soldiers imprisoned?")
        page.keyboard.press("Enter")
        page.locator(".qa-searching").wait_for(timeout=3000)
        assert page.locator(".qa-question").last.inner_text() == "Why were 17 soldiers imprisoned?"
        assert page.locator(".qa-answer").count() == 0
        assert page.input_value("#qa-question textarea") == ""
        page.wait_for_selector(".qa-answer")
        assert page.locator(".qa-searching").count() == 0
        assert page.locator(".qa-question").count() == 1
    finally:
        DELAY["seconds"] = 0.0


def test_the_source_viewer_follows_the_latest_answer(page):
    ask(page, "Who claims he never gave the order to retreat?")
    page.wait_for_function("document.querySelector('#qa-source .qa-doc-head')?.innerText.includes('000_93644d6605fbd4ae.txt')")
    ask(page, "How many visitors climbed the Skerry lighthouse?")
    page.wait_for_function("document.querySelector('#qa-source .qa-doc-head')?.innerText.includes('trust.pdf')")
    assert "41,500 visitors" in page.locator("#qa-source mark.qa-passage").inner_text()


def test_a_pdf_quote_cites_its_page(page):
    answer = ask(page, "How many visitors climbed the Skerry lighthouse?")
    cite = answer.locator(".qa-cite").first.inner_text()
    assert "Lighthouse trust annual report" in cite and "p. 3" in cite and "trust.pdf" in cite


def test_opening_a_source_never_scrolls_the_page_away(page, size):
    answer = ask(page, "Who claims he never gave the order to retreat?")
    link = answer.locator("a.qa-open").first
    link.scroll_into_view_if_needed()
    before = scroll_y(page)
    link.click()
    page.wait_for_function("document.querySelector('#qa-source mark.qa-sentence')")
    time.sleep(0.4)  # the viewer scrolls its own box after 60 ms
    assert abs(scroll_y(page) - before) <= 2
    assert in_viewport(page, "#qa-source mark.qa-sentence")
    if size == "desktop":
        chat = page.locator("#qa-chat").bounding_box()
        viewer = page.locator("#qa-source .qa-doc").bounding_box()
        assert viewer["x"] >= chat["x"] + chat["width"] - 1  # beside the chat
        assert not page.locator("#qa-source .qa-back").is_visible()
    else:
        assert page.evaluate("getComputedStyle(document.querySelector('#qa-source')).position") == "fixed"
        back = page.locator("#qa-source .qa-back")
        assert back.is_visible()
        back.click()
        page.wait_for_function("getComputedStyle(document.querySelector('#qa-source')).position !== 'fixed'")
        assert abs(scroll_y(page) - before) <= 2
        box = link.bounding_box()
        assert 0 <= box["y"] and box["y"] + box["height"] <= SIZES["phone"][1]  # back at the answer


def test_also_reported_in_opens_its_source(page):
    answer = ask(page, "When will the new breakwater be finished and what will it cost?")
    also = answer.locator(".qa-also a.qa-open").first
    also.wait_for()
    first_doc = answer.locator(".qa-where").first.inner_text().split(" · ")[0]
    other = ({"wire_a.txt", "wire_b.txt"} - {first_doc}).pop()
    also.click()
    page.wait_for_function(f"document.querySelector('#qa-source .qa-doc-head')?.innerText.includes('{other}')")
    assert page.locator("#qa-source mark.qa-sentence").inner_text() == WIRE


def test_the_copy_button_copies_the_quote_and_its_citation(page):
    answer = ask(page, "How many visitors climbed the Skerry lighthouse?")
    quote = answer.locator(".qa-quote").first.inner_text()
    answer.locator("button.qa-copy").first.click()
    answer.get_by_text("Copied").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    words = " ".join(quote.split()[1:])  # without the number [1]
    assert copied == f'“{words}” — "Lighthouse trust annual report", p. 3'


def test_filters_show_above_the_answer_and_new_conversation_clears_them(page):
    open_settings(page)
    page.click("#qa-sites input")
    page.get_by_role("option", name="The Harbour Gazette").click()
    page.locator("#qa-since textarea, #qa-since input").first.fill("2026-01-01")
    page.keyboard.press("Escape")
    answer = ask(page, "How high were the waves at the harbour?")
    shown = answer.locator(".qa-filters").inner_text()
    assert "sites: The Harbour Gazette" in shown and "dated Jan. 1, 2026 or later" in shown
    assert "storm.html" in answer.locator(".qa-where").first.inner_text()
    page.locator("#qa-new").click()
    page.wait_for_function("document.querySelectorAll('.qa-answer').length === 0")
    assert page.locator("#qa-since textarea, #qa-since input").first.input_value() == ""
    assert page.locator("#qa-sites .token").count() == 0
    answer = ask(page, "How high were the waves at the harbour?")
    assert answer.locator(".qa-filters").count() == 0


def test_the_conversation_downloads_as_markdown_and_json(page, tmp_path):
    ask(page, "Who claims he never gave the order to retreat?")
    ask(page, "How many visitors climbed the Skerry lighthouse?")
    with page.expect_download() as got:
        page.locator("#qa-export-md").click()
    md = Path(got.value.path()).read_text(encoding="utf-8")
    assert "## 1. Who claims he never gave the order to retreat?" in md and "## 2. How many visitors" in md
    assert '"Lighthouse trust annual report", p. 3' in md
    with page.expect_download() as got:
        page.locator("#qa-export-json").click()
    data = json.loads(Path(got.value.path()).read_text(encoding="utf-8"))
    assert [t["question"] for t in data["turns"]][-2:] == ["Who claims he never gave the order to retreat?",
                                                          "How many visitors climbed the Skerry lighthouse?"]
    assert data["turns"][-1]["passages"][0]["page"] == 3


def test_the_documents_table_reads_and_the_picker_offers_the_new_formats(page, size):
    page.get_by_role("tab", name="Documents").click()
    cell = page.locator("#qa-documents td", has_text="000_93644d6605fbd4ae.txt").first
    cell.wait_for()
    box = cell.bounding_box()
    line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#qa-documents td')).lineHeight) || 20")
    assert box["width"] >= 150 and box["height"] <= 2.5 * line  # no letter-per-line wrapping
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size][0] + 1
    assert "The Harbour Gazette" in page.locator("#qa-documents").inner_text()
    accept = page.locator("#qa-upload input[type=file]").get_attribute("accept") or ""
    for suffix in (".txt", ".md", ".html", ".htm", ".pdf", ".docx"):
        assert suffix in accept
