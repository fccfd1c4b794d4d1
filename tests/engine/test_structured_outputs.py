"""Structured outputs: JSON, or a JSON Schema's JSON, from the real small model."""

import json

import pytest

from engine import LLM, SamplingParams
from engine.structured_outputs import StructuredOutputs

pytestmark = pytest.mark.slow
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def llm() -> LLM:
    return LLM("smollm2:135m-instruct", kv_cache_memory=64 << 20, max_model_len=512)


def ask(
    llm: LLM,
    spec: StructuredOutputs,
    question: str = "Describe Ada Lovelace in JSON.",
    **params: object,
) -> str:
    prompt = llm.encode_chat([{"role": "user", "content": question}])
    settings = {"temperature": 0, "max_tokens": 60, **params}
    return llm.generate([prompt], SamplingParams(structured_outputs=spec, **settings))[0].text


def test_json_object_is_a_json_object(llm) -> None:
    # Cut short by max_tokens, a JSON text can only be unfinished (finish_reason "length").
    question = 'Reply with a JSON object whose key "sum" holds 2 + 2.'
    text = ask(llm, StructuredOutputs(json_object=True), question, max_tokens=100)
    assert isinstance(json.loads(text), dict)


def test_a_complete_json_text_ends_the_request_even_with_ignore_eos(llm) -> None:
    prompt = llm.encode_chat([{"role": "user", "content": 'Reply with {"sum": 2 + 2} as JSON.'}])
    spec = StructuredOutputs(json_object=True)
    params = SamplingParams(temperature=0, max_tokens=100, ignore_eos=True, structured_outputs=spec)
    (output,) = llm.generate([prompt], params)
    assert output.finish_reason == "stop" and output.error is None
    assert isinstance(json.loads(output.text), dict)


def test_a_schema_is_followed_even_when_sampling(llm) -> None:
    for seed in range(3):
        person = json.loads(ask(llm, StructuredOutputs(json=PERSON), temperature=1.0, seed=seed))
        assert set(person) == {"name", "age"} and isinstance(person["age"], int)


def test_literal_text_around_the_json_is_kept_exactly(llm) -> None:
    name = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}},
        "required": ["name"],
        "additionalProperties": False,
    }
    spec = StructuredOutputs(json=name, prefix="<tool_call>\n", suffix="\n</tool_call>")
    for seed in range(2):
        text = ask(llm, spec, temperature=1.0, seed=seed, max_tokens=40)
        assert text.startswith("<tool_call>\n") and text.endswith("\n</tool_call>")
        person = json.loads(text.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>"))
        assert list(person) == ["name"] and len(person["name"]) <= 12


def test_constrained_and_free_requests_share_a_batch(llm) -> None:
    prompt = llm.encode_chat([{"role": "user", "content": "Say hello."}])
    free = SamplingParams(temperature=0, max_tokens=8)
    alone = llm.generate([prompt], free)[0].text
    batch = llm.generate(
        [prompt, prompt],
        [
            SamplingParams(
                temperature=0, max_tokens=60, structured_outputs=StructuredOutputs(json=PERSON)
            ),
            free,
        ],
    )
    assert set(json.loads(batch[0].text)) == {"name", "age"}
    assert batch[1].text == alone  # the unconstrained row is untouched


def test_bad_specs_are_refused_clearly(llm) -> None:
    with pytest.raises(ValueError, match="give a JSON schema or json_object"):
        StructuredOutputs()
    with pytest.raises(ValueError, match="the JSON schema cannot be used") as raised:
        ask(llm, StructuredOutputs(json='{"type": "nonsense-type"}'))
    assert ".cc:" not in str(raised.value)  # xgrammar's source location is left out
