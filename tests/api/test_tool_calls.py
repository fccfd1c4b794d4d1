"""Tools through the model's own chat template, its reply read back into calls: the
parser alone, then the OpenAI and Ollama clients against a Qwen model (whose template
takes tools; the small test model's does not)."""

import json

import ollama
import openai
import pytest

from api.server.tool_calls import ToolCall, parse_tool_calls
from engine.config import EngineConfig
from tests.api.conftest import TEST_MODEL, serve_samples

QWEN = "qwen2.5-coder:0.5b-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]
NAMES = {"get_weather"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}'
            "\n</tool_call>",
            ("Checking.", [ToolCall("get_weather", {"city": "Oslo"})]),
        ),
        (  # bare, as small models often answer; arguments as JSON text
            '{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}',
            ("", [ToolCall("get_weather", {"city": "Rome"})]),
        ),
        (  # a tool nobody offered is text, never a call
            '{"name": "rm_rf", "arguments": {}}',
            ('{"name": "rm_rf", "arguments": {}}', []),
        ),
        ("It is sunny in Paris.", ("It is sunny in Paris.", [])),
        ('<tool_call>{"name": "get_weather", "arguments": [1]}</tool_call>', None),
    ],
)
def test_replies_are_read_into_calls(text, expected) -> None:
    got = parse_tool_calls(text, NAMES)
    assert got == (expected if expected is not None else (text, []))


@pytest.fixture(scope="module")
def qwen_server(tmp_path_factory):
    config = EngineConfig(model=QWEN, kv_cache_memory=256 << 20, max_model_len=4096)
    with serve_samples(tmp_path_factory.mktemp("qwen-data"), config) as server:
        yield server


@pytest.mark.slow
def test_openai_tools_come_back_as_tool_calls(qwen_server) -> None:
    client = openai.OpenAI(base_url=f"{qwen_server.url}/v1", api_key="unused", max_retries=0)
    asked = {"model": QWEN, "messages": ASK, "tools": [WEATHER], "temperature": 0}
    reply = client.chat.completions.create(**asked, max_tokens=60)
    choice = reply.choices[0]
    (call,) = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(client.chat.completions.create(**asked, max_tokens=60, stream=True))
    streamed = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [tc.function.name for tc in streamed] == ["get_weather"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The call and its result go back as the conversation's next turns.
    result = {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "c": 18}'}
    turns = [*ASK, choice.message.model_dump(exclude_none=True), result]
    follow_up = client.chat.completions.create(**{**asked, "messages": turns}, max_tokens=30)
    assert follow_up.choices[0].message.content or follow_up.choices[0].message.tool_calls


@pytest.mark.slow
def test_tool_choice_required_or_named_always_gets_that_call(qwen_server) -> None:
    client = openai.OpenAI(base_url=f"{qwen_server.url}/v1", api_key="unused", max_retries=0)
    asked = {"model": QWEN, "messages": ASK, "temperature": 0, "max_tokens": 60}
    # Asked about the weather, told to call get_time: it calls get_time.
    for choice, name in (("required", None), (named("get_time"), "get_time")):
        reply = client.chat.completions.create(**asked, tools=[WEATHER, TIME], tool_choice=choice)
        (call,) = reply.choices[0].message.tool_calls
        assert reply.choices[0].finish_reason == "tool_calls"
        assert call.function.name == (name or call.function.name)
        arguments = json.loads(call.function.arguments)
        if call.function.name == "get_weather":
            assert isinstance(arguments["city"], str)  # its schema's required property
        else:
            assert arguments == {} or set(arguments) <= {"zone"}
    for choice, error in (
        (named("rm_rf"), "not among the tools"),
        ({"type": "function"}, "tool_choice must be"),
    ):
        with pytest.raises(openai.BadRequestError, match=error):
            client.chat.completions.create(**asked, tools=[WEATHER], tool_choice=choice)
    with pytest.raises(openai.BadRequestError, match="has no tools"):
        client.chat.completions.create(**asked, tool_choice="required")


def named(name: str) -> dict[str, object]:
    return {"type": "function", "function": {"name": name}}


@pytest.mark.slow
def test_ollama_tools_come_back_as_tool_calls(qwen_server) -> None:
    client = ollama.Client(host=qwen_server.url)
    reply = client.chat(
        model=QWEN, messages=ASK, tools=[WEATHER], stream=False,
        options={"temperature": 0, "num_predict": 60},
    )  # fmt: skip
    (call,) = reply.message.tool_calls or []
    assert (call.function.name, dict(call.function.arguments)) == ("get_weather", {"city": "Paris"})


@pytest.mark.slow
def test_a_model_whose_template_takes_no_tools_says_so(live_server) -> None:
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="chat template takes no tools"):
        client.chat.completions.create(model=TEST_MODEL, messages=ASK, tools=[WEATHER])
