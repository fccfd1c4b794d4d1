"""A reasoning model's thought told apart from its answer, whole and streamed."""

import pytest
from transformers import AutoTokenizer

from engine.library import resolve_model
from engine.reasoning import (
    THINK_CLOSE,
    Reasoned,
    Reasoning,
    ReasoningStream,
    opens_thought,
    template_thinks,
)
from rag.prompt import PromptBuilder
from tests.tiny_model import SMOLLM2

REPLIES = [
    # (reply, the prompt opened the thought, thought, answer)
    ("<think>\nFrance's capital.\n</think>\n\nParis.", False, "France's capital.", "Paris."),
    ("  <think>a</think>b", False, "a", "b"),
    ("Paris.", False, "", "Paris."),
    ("The tag <think> in prose", False, "", "The tag <think> in prose"),
    ("France's capital.\n</think>\n\nParis.", True, "France's capital.", "Paris."),
    ("<think>cut off by max_tokens", False, "cut off by max_tokens", ""),
    ("cut off", True, "cut off", ""),
    (
        "<think>a < b, and </thinking> is no tag</think>ok",
        False,
        "a < b, and </thinking> is no tag",
        "ok",
    ),
    ("<thi", False, "", "<thi"),  # a finished reply that only looked like a tag
]


@pytest.mark.parametrize(("reply", "opened", "thought", "answer"), REPLIES)
def test_a_finished_reply_splits_into_thought_and_answer(reply, opened, thought, answer):
    assert Reasoning(opened).split(reply) == Reasoned(thought, answer)


@pytest.mark.parametrize(("reply", "opened", "thought", "answer"), REPLIES)
@pytest.mark.parametrize("step", [1, 2, 3, 5])
def test_streamed_deltas_add_up_to_the_finished_split(reply, opened, thought, answer, step):
    stream = ReasoningStream(Reasoning(opened))
    thoughts, answers = [], []
    for end in [*range(step, len(reply), step), len(reply)]:
        delta = stream.advance(reply[:end])
        thoughts.append(delta.reasoning)
        answers.append(delta.content)
    final = stream.advance(reply, final=True)
    assert "".join(thoughts) + final.reasoning == thought
    assert "".join(answers) + final.content == answer


def test_a_closing_tag_cut_between_tokens_is_held_back():
    stream = ReasoningStream(Reasoning())
    assert stream.advance("<think>Hmm </th") == Reasoned("Hmm", "")
    assert stream.advance("<think>Hmm </think>Paris") == Reasoned("", "Paris")


def test_templates_and_prompts_that_think():
    assert template_thinks("{% if x %}<think>\n{% endif %}...</think>")
    assert not template_thinks("<|im_start|>{{ message.content }}") and not template_thinks(None)
    assert opens_thought("<|im_start|>assistant\n<think>\n")
    assert not opens_thought("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not opens_thought("<|im_start|>assistant\n")


def builder(template: str) -> PromptBuilder:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(SMOLLM2, progress=False))
    tokenizer.chat_template = template
    return PromptBuilder(tokenizer)


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
)
QWEN3_LIKE = CHATML + (
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}{# </think> #}"
)
R1_LIKE = CHATML + "<think>\n{% endif %}{# </think> #}"
TURN = [{"role": "user", "content": "Capital of France?"}]


def test_a_qwen3_like_template_switches_thinking_off():
    prompts = builder(QWEN3_LIKE)
    text = prompts.tokenizer.decode(prompts.chat(TURN, thinking=False))
    assert text.endswith("assistant\n<think>\n\n</think>\n\n")
    assert prompts.tokenizer.decode(prompts.chat(TURN)).endswith("assistant\n")
    assert prompts.reasoning() == Reasoning(opened=False)
    assert prompts.reasoning(thinking=False) == Reasoning(opened=False)


def test_an_r1_like_template_opens_the_thought_and_an_empty_one_closes_it():
    prompts = builder(R1_LIKE)
    assert prompts.reasoning() == Reasoning(opened=True)
    assert prompts.reasoning(thinking=True) == Reasoning(opened=True)
    # No switch in the template: the thought it opened is closed at once.
    text = prompts.tokenizer.decode(prompts.chat(TURN, thinking=False))
    assert text.endswith(f"assistant\n<think>\n\n{THINK_CLOSE}\n\n")
    assert prompts.reasoning(thinking=False) == Reasoning(opened=False)


def test_a_model_that_does_not_think_is_never_split():
    prompts = builder(CHATML + "{% endif %}")
    assert prompts.reasoning() is None and not prompts.thinks
    assert prompts.chat(TURN, thinking=False) == prompts.chat(TURN)
