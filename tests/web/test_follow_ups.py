"""A follow-up typed in the page, answered by the default model from the conversation."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


@pytest.fixture(scope="module")
def samples(default_model_server) -> None:
    default_model_server.rag.ingest([SAMPLES])


@pytest.mark.parametrize(
    ("turns", "facts", "title"),
    [
        (
            ["How does PagedRAG share KV cache blocks between prompts?",
             "And how big is one of them?"],
            ("16",),
            "How the PagedRAG engine reuses work",
        ),
        (
            ["什么是检索增强生成？", "它有什么好处？"],
            ("出处", "引用", "重新训练", "编造"),  # any of the three benefits the file lists
            "rag-zh.txt",
        ),
    ],
    ids=["english", "chinese"],
)  # fmt: skip
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
