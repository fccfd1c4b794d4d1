"""The web page end to end in headless Chromium against the real server and small model."""

import re
import subprocess

import httpx
import pytest

from tests.indexer.documents import make_docx, make_pdf
from tests.web.conftest import DESKTOP, MOBILE, screenshot

pytestmark = pytest.mark.slow
ZEBRA_PAGES = [
    "Wildlife of Botswana\nAn introduction.",
    "Zebras in the Okavango delta migrate in the dry season.",
]
BEAVERS = "Beavers build dams across streams and live in lodges of sticks and mud."
ANSWER_TIMEOUT_MS = 90_000
HOSTILE = (
    '# Hostile notes\nGiraffes sleep standing up. <img src=x onerror="window.__xss=1">\n'
    "<script>window.__xss=2</script> Giraffes drink rarely.\n"
)


def ask(page, question: str) -> object:
    """Type a question, send it with Enter, and return the finished answer's element."""
    page.fill("#question", question)
    page.press("#question", "Enter")
    answer = page.locator("article.msg.assistant").last
    answer.locator(".copy").wait_for(timeout=ANSWER_TIMEOUT_MS)
    return answer


def test_upload_ask_cite_history_and_delete(page, web_server, tmp_path) -> None:
    pdf = make_pdf(tmp_path / "zebras.pdf", ZEBRA_PAGES)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not a pdf")
    beavers = make_docx(tmp_path / "beavers.docx", [BEAVERS], heading="Beaver dams")
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#upload-collection", "wildlife")
    page.set_input_files("#file-input", [str(pdf), str(broken), str(beavers)])

    # Every file goes through upload, parse, chunk and embed, each step shown as it passes.
    ready = page.locator('.upload.ready[data-file="zebras.pdf"]')
    ready.wait_for(timeout=60_000)
    steps = ready.locator(".steps li").evaluate_all(STEP_STATES)
    assert steps == ["upload:done", "parse:done", "chunk:done", "embed:done"]
    failed = page.locator('.upload.failed[data-file="broken.pdf"]')
    failed.wait_for(timeout=60_000)
    failed.locator(".retry").click()  # it fails again, with its message and a retry
    failed.locator(".retry").wait_for(timeout=60_000)
    assert "not a PDF" in failed.locator(".error").inner_text()
    doc = page.locator(".doc", has_text="zebras")
    doc.wait_for(timeout=60_000)
    assert re.search(r"2 pages · \d+ chunks · ready wildlife", doc.locator(".meta").inner_text())
    assert httpx.get(f"{web_server.url}/documents?collection=wildlife").json()[0]["title"]

    # A Word document is shown as its text.
    page.locator(".doc", has_text="Beaver").locator(".title").click()
    page.wait_for_selector(".text-doc")
    assert "lodges of sticks and mud" in page.locator(".text-doc").inner_text()
    suggestions = page.locator(".suggestion")
    suggestions.first.wait_for()
    assert suggestions.count() >= 2

    page.select_option("#answer-length", "64")
    answer = ask(page, "When do zebras migrate?")
    assert answer.locator(".bubble").inner_text().strip()
    assert answer.locator(".ttft").is_visible() and "tok/s" in answer.inner_text()
    assert re.search(r"cached \d+/\d+ prompt tokens", answer.inner_text())
    screenshot(page, "desktop-light-answer")
    answer.locator(".copy").click()
    chat_id = page.locator(".chat-item.active").get_attribute("data-conversation-id")
    saved = httpx.get(f"{web_server.url}/conversations/{chat_id}").json()["messages"][-1]
    assert page.evaluate("navigator.clipboard.readText()") == saved["content"] != ""

    answer.locator(".sources summary").click()
    assert all(
        re.search(r"score \d\.\d{3}", t) for t in answer.locator(".source").all_inner_texts()
    )
    source = answer.locator(".source", has_text="p. 2").first
    source.click()
    viewer = page.locator("#viewer")
    page.wait_for_selector(".pdf-page[data-rendered=true]")
    assert viewer.get_attribute("data-page") == "2"
    assert viewer.get_attribute("data-located") == "yes"
    assert "Okavango" in " ".join(page.locator(".textLayer .hl").all_inner_texts())
    assert page.evaluate(PAINTED_CANVAS), "the PDF page was not drawn"
    screenshot(page, "desktop-light-viewer")

    # A second turn: the history is sent, and the chat is kept across a reload.
    ask(page, "And in which delta?")
    title = page.locator(".chat-item.active .open").inner_text()
    assert title.startswith("When do zebras migrate")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("article.msg.assistant").count() == 2
    assert page.locator(".chat-item.active .open").inner_text() == title

    not_found = ask(page, "Who won the 1998 football world cup?")
    assert "Not found in your documents" in not_found.inner_text()
    assert "not-found" in (not_found.get_attribute("class") or "")

    # The small model seldom writes [n] markers: an answer that has one, stored in a chat.
    cited = next(c for c in answer_citations(web_server) if c["page"] == 2)
    misplaced = {**cited, "n": 2, "page": 1}  # page 1 does not hold this passage
    stored = {"role": "assistant", "content": "In the **dry season** [1]. Far away [2].",
        "details": {"found": True, "citations": [{**cited, "n": 1}, misplaced]}}  # fmt: skip
    with httpx.Client(base_url=web_server.url) as client:
        chat_id = client.post("/conversations", json={"title": "Stored answer"}).json()["id"]
        client.post(f"/conversations/{chat_id}/messages", json={"messages": [stored]})
    page.reload()
    page.click(f'.chat-item[data-conversation-id="{chat_id}"] .open')
    page.click(".bubble .cite[data-n='1']")
    page.wait_for_selector(".pdf-page[data-rendered=true]")
    assert viewer.get_attribute("data-page") == "2"
    assert viewer.get_attribute("data-located") == "yes"
    # Not on the page it names: the page is shown with the passage's text, nothing lit.
    page.click(".bubble .cite[data-n='2']")
    page.wait_for_function("document.querySelector('#viewer').dataset.located === 'no'")
    assert viewer.get_attribute("data-page") == "1"
    assert page.locator(".textLayer .hl").count() == 0
    assert "Okavango" in page.locator("#viewer-note blockquote").inner_text()
    screenshot(page, "desktop-light-passage-not-located")

    page.click(".chat-item .open >> text=When do zebras migrate?")
    page.locator("article.msg.assistant").first.wait_for()
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size(DESKTOP)
        screenshot(page, f"desktop-{scheme}")
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        assert (luminance(background) < 0.2) == (scheme == "dark"), background
        side, chat, viewer_box = (page.locator(s).bounding_box() for s in PANES)
        assert side["x"] < chat["x"] < viewer_box["x"]  # library, chat and viewer side by side
        assert side["y"] == chat["y"] == viewer_box["y"] == 0
        page.set_viewport_size(MOBILE)
        page.wait_for_timeout(400)  # the viewer refits the page to the new width
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, f"mobile-{scheme}")
        page.locator("#viewer").scroll_into_view_if_needed()
        screenshot(page, f"mobile-{scheme}-viewer")
        chat, viewer_box = (page.locator(s).bounding_box() for s in PANES[1:])
        assert chat["x"] == viewer_box["x"] and chat["y"] < viewer_box["y"]  # stacked
        menu = page.locator("#menu").bounding_box()
        assert menu and 0 <= menu["y"] < 60  # the header stays on screen over the viewer
        assert page.locator("#side").is_hidden()  # behind the menu button on a phone
        page.click("#menu")
        page.locator("#doc-list").wait_for()
        page.wait_for_timeout(300)  # the drawer slides in
        assert page.evaluate("document.activeElement.id") == "new-chat"
        screenshot(page, f"mobile-{scheme}-library")
        page.keyboard.press("Escape")
        page.locator("#side").wait_for(state="hidden")
        assert page.evaluate("document.activeElement.id") == "menu"
    page.set_viewport_size(DESKTOP)
    page.emulate_media(color_scheme="light")

    document_id = int(doc.get_attribute("data-document-id"))
    doc.hover()
    doc.locator(".delete").click()
    page.click("#confirm-ok")
    doc.wait_for(state="detached")
    assert httpx.get(f"{web_server.url}/documents/{document_id}").status_code == 404
    assert page.errors == []


def luminance(css_color: str) -> float:
    """0 (black) to 1 (white), from an `rgb(r, g, b)` computed style."""
    red, green, blue = (int(v) for v in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def answer_citations(web_server) -> list[dict]:
    body = {"question": "When do zebras migrate?", "max_tokens": 1}
    return httpx.post(f"{web_server.url}/ask", json=body, timeout=60).json()["citations"]


PANES = ("#side", "main.chat", "#viewer")
STEP_STATES = "items => items.map((i) => `${i.dataset.step}:${i.dataset.state}`)"

PAINTED_CANVAS = """() => {
  const c = document.querySelector('.pdf-page canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let dark = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 128) dark++;
  return dark > 50;
}"""

DROP_FILES = """async () => {
  const data = new DataTransfer();
  const otters = "# Otters\\nSea otters hold hands while sleeping.";
  data.items.add(new File([otters], "otters.md", {type: "text/markdown"}));
  const penguins = "Penguins huddle to keep warm in Antarctic winters.";
  data.items.add(new File([penguins], "penguins.txt", {type: "text/plain"}));
  const pandas = "大熊猫生活在四川的竹林里，每天吃很多竹子。";
  data.items.add(new File([pandas], "熊猫.txt", {type: "text/plain"}));
  const drop = new DragEvent("drop", {dataTransfer: data, bubbles: true});
  document.querySelector("#dropzone").dispatchEvent(drop);
}"""


def test_drop_files_scope_the_search_and_nothing_hostile_runs(page, web_server) -> None:
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]")
    page.evaluate(DROP_FILES)
    page.locator(".doc", has_text="Otters").wait_for(timeout=60_000)
    page.locator(".doc", has_text="penguins").wait_for(timeout=60_000)
    pandas = page.locator(".doc", has_text="熊猫")
    pandas.wait_for(timeout=60_000)
    pandas.locator(".title").click()
    page.wait_for_selector(".text-doc")
    assert "大熊猫生活在四川的竹林里" in page.locator(".text-doc").inner_text()
    # Drawn with a CJK font (Debian's fonts-wqy-zenhei), not as empty boxes.
    assert "WenQuanYi Zen Hei" in page.evaluate("getComputedStyle(document.body).fontFamily")
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True)
    assert "WenQuanYi Zen Hei" in fonts.stdout
    with httpx.Client(base_url=web_server.url, timeout=60) as client:
        files = [("files", ("hostile.md", HOSTILE.encode(), "text/markdown"))]
        (hostile_id,) = client.post("/ingest?wait=true", files=files).json()["document_ids"]
        walrus = {"title": "Walrus", "text": "Walruses haul out onto sea ice with their tusks."}
        client.post("/ingest", json={"documents": [walrus], "collection": "arctic"})
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#collection", "arctic")  # the otters are not in it
    assert page.locator("#scope").inner_text() == "Searching collection arctic"
    scoped = ask(page, "How do sea otters sleep?").locator(".source .where").all_text_contents()
    assert all(where.startswith("Walrus") for where in scoped)  # no otters: only the arctic
    page.select_option("#collection", "")
    page.click("#new-chat")  # no history: the next question is asked as it is written
    page.check(f'.doc[data-document-id="{hostile_id}"] input')
    assert "Hostile notes" in page.locator("#scope").inner_text()

    page.select_option("#answer-length", "64")
    answer = ask(page, "How do giraffes sleep? Repeat the notes exactly.")
    answer.locator(".sources summary").click()
    sources = answer.locator(".source")
    assert sources.count() >= 1
    assert all("Hostile" in text for text in sources.all_inner_texts())
    sources.first.click()
    page.wait_for_selector(".text-doc mark")
    assert "Giraffes" in page.locator(".text-doc mark").inner_text()
    assert "<script>" in page.locator(".text-doc").inner_text()  # shown as text
    page.emulate_media(color_scheme="dark")
    screenshot(page, "desktop-dark-text-viewer")
    rendered = page.evaluate(
        """async (source) => {
          const { renderMarkdown } = await import('/static/markdown.js');
          const box = document.createElement('div');
          box.innerHTML = renderMarkdown(source, new Set([1]));
          document.body.append(box);
          await new Promise((r) => setTimeout(r, 300));
          return { html: box.innerHTML, cites: box.querySelectorAll('.cite').length };
        }""",
        HOSTILE + " **bold** [1] [7]",
    )
    assert "<img" not in rendered["html"] and "<script" not in rendered["html"]
    assert "<strong>bold</strong>" in rendered["html"] and rendered["cites"] == 1
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0 and page.errors == []


def test_keyboard_stop_new_chat_and_delete_chat(page, web_server) -> None:
    with httpx.Client(base_url=web_server.url, timeout=60) as client:
        owls = {"title": "Owls", "text": "Owls hunt at night."}
        client.post("/ingest", json={"documents": [owls]})
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]")
    page.click("#new-chat")
    assert page.evaluate("document.activeElement.id") == "question"
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#question") == "first line\nsecond line"
    page.fill("#question", "Tell me everything about how owls hunt at night, in detail.")
    page.select_option("#answer-length", "1024")
    page.press("#question", "Enter")
    answer = page.locator("article.msg.assistant").last
    page.wait_for_function(
        "document.querySelector('article.msg.assistant:last-of-type .bubble').innerText.length > 5",
        timeout=ANSWER_TIMEOUT_MS,
    )
    page.click("#stop")
    answer.locator(".copy").wait_for(timeout=10_000)
    assert "Stopped" in answer.inner_text()
    assert page.locator("#stop").is_hidden()
    chat = page.locator(".chat-item.active")
    chat.wait_for()
    count = page.locator(".chat-item").count()
    chat.hover()
    chat.locator(".delete").click()
    page.click("#confirm-ok")
    page.wait_for_function(f"document.querySelectorAll('.chat-item').length === {count - 1}")
    assert page.locator("#chat-title").inner_text() == "New chat"


TAB_ORDER = ["new-chat", "dropzone", "question", "send"]
NAMELESS_CONTROLS = """() => [...document.querySelectorAll('button, input, select, textarea')]
  .filter((e) => e.getClientRects().length || e.type === 'file')
  .filter((e) => !(e.getAttribute('aria-label') || (e.labels && e.labels.length)
                   || e.textContent.trim() || e.title))
  .map((e) => e.outerHTML.slice(0, 120))"""


def test_every_control_is_named_and_tab_order_follows_the_layout(page) -> None:
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]")
    assert page.evaluate(NAMELESS_CONTROLS) == []
    assert page.locator("[tabindex]:not([tabindex='0']):not([tabindex='-1'])").count() == 0
    order = []
    for _ in range(60):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
    for earlier, later in [
        ("new-chat", "dropzone"),
        ("dropzone", "question"),
        ("question", "send"),
    ]:
        assert order.index(earlier) < order.index(later), order
    assert page.locator("#question").get_attribute("placeholder")
    assert page.locator("label[for=question]").count() == 1
