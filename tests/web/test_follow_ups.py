"""A follow-up typed in the page, answered by the default model from the conversation."""

import pytest

from tests.api.conftest import FOLLOW_UP_DIALOGUES, SAMPLES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def samples(default_model_server) -> None:
    default_model_server.rag.ingest([SAMPLES])


@pytest.mark.parametrize(("turns", "facts", "title"), FOLLOW_UP_DIALOGUES)
def test_a_follow_up_keeps_the_topic_and_cites_its_passage(
    samples, default_page, turns: list[str], facts: tuple[str, ...], title: str
) -> None:
    page = default_page
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.click("#new-chat")
    page.select_option("#answer-length", "64")
    for number, question in enumerate(turns, start=1):
        page.fill("#question", question)
        page.press("#question", "Enter")
        page.locator("article.msg.assistant .copy").nth(number - 1).wait_for(timeout=180_000)
    answer = page.locator("article.msg.assistant").last
    assert any(fact in answer.locator(".bubble").inner_text() for fact in facts)
    answer.locator(".bubble .cite").first.click()
    page.wait_for_selector("#viewer-title")
    assert page.locator("#viewer-title").inner_text() == title
