"""Inline citations in a live answer of the default model, opened in the viewer."""

import httpx
import pytest

from tests.web.conftest import screenshot

pytestmark = pytest.mark.slow
LYNX = (
    "The Eurasian lynx lives in the forests of northern Europe and Siberia. "
    "It hunts roe deer at dusk and can leap several metres."
)
OWLS = "Barn owls hunt at night and find mice by sound alone."


def test_a_live_answer_links_its_sentences_to_their_passages(default_model_server, default_page):
    page = default_page
    documents = [{"title": "Lynx", "text": LYNX}, {"title": "Owls", "text": OWLS}]
    httpx.post(f"{default_model_server.url}/ingest", json={"documents": documents}, timeout=60)
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#answer-length", "64")
    page.fill("#question", "What does the Eurasian lynx hunt?")
    page.press("#question", "Enter")
    answer = page.locator("article.msg.assistant").last
    answer.locator(".copy").wait_for(timeout=120_000)
    assert "deer" in answer.locator(".bubble").inner_text().lower()
    marker = answer.locator(".bubble .cite").first
    marker.wait_for()
    screenshot(page, "desktop-light-cited-answer")
    marker.click()
    page.wait_for_selector(".text-doc mark")
    assert page.locator("#viewer-title").inner_text() == "Lynx"
    assert "roe deer" in page.locator(".text-doc mark").inner_text()
    assert page.locator("#viewer").get_attribute("data-located") == "yes"
