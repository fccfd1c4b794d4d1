"""A reasoning model behind the server, with the official clients: its thought comes apart
(Ollama `thinking`, OpenAI `reasoning_content`), `think: false` keeps it from thinking,
and an answer over the documents never shows or cites the thought."""

import json
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from api.server.settings import ServerSettings
from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from engine.library import ModelStore
from engine.library.store import MANIFEST
from rag import RAG, RAGConfig
from tests.api.conftest import LiveServer, serve_in_thread
from tests.thinking_model import ANSWER, THOUGHT, save_thinking_model
from tests.tiny_model import save_tiny_llama

THINKER, PLAIN = "thinker", "tiny-plain"
TURN = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER_TOKENS = 2  # "Paris" and the end: what a reply without a thought costs


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[LiveServer]:
    """The thinking model as the server's own, over one document; a tiny model that does
    not think in the same store."""
    home = tmp_path_factory.mktemp("thinking-home")
    store = ModelStore.default(home)
    for name, save in ((THINKER, save_thinking_model), (PLAIN, save_tiny_llama)):
        directory = store.path_for(name)
        directory.mkdir(parents=True)
        save(directory)
        (directory / MANIFEST).write_text(json.dumps({"name": name, "architecture": "llama"}))
    config = EngineConfig(model=THINKER, home=home, kv_cache_memory=32 << 20, max_model_len=1024)
    documents = tmp_path_factory.mktemp("thinking-docs")
    (documents / "france.txt").write_text("Paris is the capital of France.\n")
    data_dir = tmp_path_factory.mktemp("thinking-data")
    # The answer check would judge the model's one word; the thought is what is tested.
    rag = RAG(
        data_dir,
        engine=AsyncLLMEngine.from_config(config),
        config=RAGConfig(check_support=False, draft_languages=frozenset()),
    )
    try:
        rag.ingest([documents])
        settings = ServerSettings(data_dir=data_dir, engine=config)
        with serve_in_thread(settings, rag) as url:
            yield LiveServer(url, rag, data_dir, settings)
    finally:
        rag.close()


def test_ollama_returns_the_thought_apart_and_think_false_skips_it(served):
    url = served.url
    client = ollama.Client(host=url, timeout=60)
    for think in (True, None):
        reply = client.chat(model=THINKER, messages=TURN, think=think)
        assert (reply.message.thinking, reply.message.content) == (THOUGHT, ANSWER)
    quick = client.chat(model=THINKER, messages=TURN, think=False)
    assert quick.message.content == ANSWER and not quick.message.thinking
    assert quick.eval_count == ANSWER_TOKENS  # the model did not think: nothing was hidden

    parts = list(client.chat(model=THINKER, messages=TURN, think=True, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == THOUGHT
    assert "".join(p.message.content for p in parts) == ANSWER
    assert "<think>" not in json.dumps([p.model_dump() for p in parts])

    generated = client.generate(model=THINKER, prompt="Capital of France?", think=True)
    assert (generated.thinking, generated.response) == (THOUGHT, ANSWER)
    pieces = list(client.generate(model=THINKER, prompt="Capital?", think=True, stream=True))
    assert "".join(p.thinking or "" for p in pieces) == THOUGHT
    assert "".join(p.response for p in pieces) == ANSWER


def test_ollama_refuses_thinking_a_model_cannot_do(served):
    url = served.url
    client = ollama.Client(host=url, timeout=60)
    assert "thinking" in client.show(THINKER).capabilities
    assert "thinking" not in client.show(PLAIN).capabilities
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=PLAIN, messages=TURN, think=True)
    assert refused.value.status_code == 400 and "does not support thinking" in refused.value.error
    with pytest.raises(ollama.ResponseError) as levels:
        client.chat(model=THINKER, messages=TURN, think="high")
    assert levels.value.status_code == 400 and "true or false" in levels.value.error


def test_openai_returns_reasoning_content_as_vllm_does(served):
    url = served.url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model=THINKER, messages=TURN)
    message = reply.choices[0].message
    assert (message.reasoning_content, message.content) == (THOUGHT, ANSWER)

    chunks = list(client.chat.completions.create(model=THINKER, messages=TURN, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == THOUGHT
    assert "".join(d.content or "" for d in deltas) == ANSWER

    samples = client.chat.completions.create(model=THINKER, messages=TURN, n=2, temperature=0)
    assert [(c.message.reasoning_content, c.message.content) for c in samples.choices] == [
        (THOUGHT, ANSWER)
    ] * 2
    streamed = client.chat.completions.create(
        model=THINKER, messages=TURN, n=2, temperature=0, stream=True
    )
    thoughts, answers = ["", ""], ["", ""]
    for chunk in streamed:
        for choice in chunk.choices:
            thoughts[choice.index] += getattr(choice.delta, "reasoning_content", None) or ""
            answers[choice.index] += choice.delta.content or ""
    assert (thoughts, answers) == ([THOUGHT] * 2, [ANSWER] * 2)

    quick = client.chat.completions.create(
        model=THINKER,
        messages=TURN,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert quick.choices[0].message.content == ANSWER
    assert quick.choices[0].message.reasoning_content is None
    assert quick.usage.completion_tokens == ANSWER_TOKENS

    refused = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": THINKER, "messages": TURN, "chat_template_kwargs": {"foo": 1}},
        timeout=60,
    )
    assert refused.status_code == 400 and "chat_template_kwargs.foo" in refused.text


def test_a_model_that_does_not_think_keeps_its_text_whole(served):
    url = served.url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model=PLAIN, messages=TURN, max_tokens=4)
    assert reply.choices[0].message.reasoning_content is None
    assert reply.usage.completion_tokens == 4 and reply.choices[0].message.content


def test_an_answer_over_the_documents_leaves_the_thought_out(served):
    url = served.url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="pagedrag-rag", messages=TURN)
    assert reply.choices[0].message.content == ANSWER
    body = reply.model_dump()
    assert body["citations"] and "[1]" not in json.dumps(body["attributions"])
    chunks = list(
        ollama.Client(host=url, timeout=60).chat(model="pagedrag-rag", messages=TURN, stream=True)
    )
    assert "".join(c.message.content for c in chunks) == ANSWER
    oll = ollama.Client(host=url, timeout=60)
    assert oll.chat(model="pagedrag-rag", messages=TURN, think=False).message.content == ANSWER
    with pytest.raises(ollama.ResponseError) as asked:
        oll.chat(model="pagedrag-rag", messages=TURN, think=True)
    assert asked.value.status_code == 400 and "returns no thinking" in asked.value.error
    with pytest.raises(openai.BadRequestError, match="returns no reasoning"):
        client.chat.completions.create(
            model="pagedrag-rag",
            messages=TURN,
            extra_body={"chat_template_kwargs": {"enable_thinking": True}},
        )


def test_the_pipeline_cites_nothing_from_the_thought(served):
    answer = served.rag.ask(TURN[0]["content"])
    assert answer.found and answer.answer == ANSWER and answer.cited == []
    assert answer.citations  # the passage was in the prompt; the thought's [1] cites nothing
