"""A live server with the small model, and headless Debian Chromium driven by Playwright."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.server.settings import ServerSettings
from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from rag import RAG, RAGConfig
from tests.api.conftest import TEST_MODEL, LiveServer, serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DESKTOP = {"width": 1440, "height": 900}
MOBILE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def web_server(tmp_path_factory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("web-data")
    engine = AsyncLLMEngine.from_config(
        EngineConfig(model=TEST_MODEL, kv_cache_memory=256 << 20, max_model_len=4096)
    )
    # NOTE: the 135M stand-in's few-token fragments are not answers to judge; the guard
    # against unsupported answers is tested with the default model (tests/rag).
    rag = RAG(data_dir, engine=engine, config=RAGConfig(check_support=False))
    # The default background threshold: the page itself asks for a job per upload.
    settings = ServerSettings(data_dir=data_dir, engine=EngineConfig(model=TEST_MODEL))
    try:
        with serve_in_thread(settings, rag) as url:
            yield LiveServer(url, rag, data_dir, settings)
    finally:
        rag.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (make test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, web_server) -> Iterator[object]:
    context = browser.new_context(viewport=DESKTOP, base_url=web_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    yield page
    context.close()


@pytest.fixture(scope="session")
def default_model_server(tmp_path_factory) -> Iterator[LiveServer]:
    """The server as `make serve` runs it: the default model, not the small test one."""
    data_dir = tmp_path_factory.mktemp("web-default-model")
    engine = AsyncLLMEngine.from_config(EngineConfig(kv_cache_memory=256 << 20, max_model_len=4096))
    rag = RAG(data_dir, engine=engine)
    try:
        settings = ServerSettings(data_dir=data_dir)
        with serve_in_thread(settings, rag) as url:
            yield LiveServer(url, rag, data_dir, settings)
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


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)
