"""Inline citations in a live answer of the default model, opened in the viewer."""

from collections.abc import Iterator

import httpx
import pytest

from api.server.settings import ServerSettings
from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from rag import RAG
from tests.api.conftest import LiveServer, serve_in_thread
from tests.web.conftest import screenshot

pytestmark = pytest.mark.slow
LYNX = (
    "The Eurasian lynx lives in the forests of northern Europe and Siberia. "
    "It hunts roe deer at dusk and can leap several metres."
)
OWLS = "Barn owls hunt at night and find mice by sound alone."


@pytest.fixture(scope="module")
def default_model_server(tmp_path_factory) -> Iterator[LiveServer]:
    """The server as `make serve` runs it: the default model, not the small test one."""
    data_dir = tmp_path_factory.mktemp("web-default-model")
    engine = AsyncLLMEngine.from_config(EngineConfig(kv_cache_memory=256 << 20, max_model_len=4096))
    rag = RAG(data_dir, engine=engine)
    try:
        with serve_in_thread(ServerSettings(data_dir=data_dir), rag) as url:
            yield LiveServer(url, rag, data_dir)
    finally:
        rag.close()


@pytest.fixture
def default_page(browser, default_model_server) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(default_model_server.url)
    page.wait_for_selector("body[data-ready=true]")
    yield page
    context.close()


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
