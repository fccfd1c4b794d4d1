"""A reasoning model's thought, told apart from its answer.

Models such as Qwen3 and the DeepSeek-R1 distills write `<think> ... </think>` before
the answer (or their chat template opens the `<think>` itself, R1's way). The APIs return
the thought apart (Ollama `thinking`, OpenAI-compatible `reasoning_content` as vLLM
names it) and the answer alone as content; the RAG pipeline cites only the answer.
Splitting works on the whole text so far, so a streamed reply is split exactly as the
finished one would be (a tag cut between two tokens is held back until it is whole).
"""

from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def template_thinks(chat_template: str | None) -> bool:
    """Whether a chat template is a reasoning model's (it knows the think tags)."""
    return bool(chat_template) and THINK_CLOSE in str(chat_template)


def opens_thought(prompt_text: str) -> bool:
    """Whether a prompt ends inside a thought its template opened (R1's generation prompt
    ends with "<think>\\n"), so the reply starts thinking without writing the tag."""
    return prompt_text.rfind(THINK_OPEN) > prompt_text.rfind(THINK_CLOSE)


@dataclass(frozen=True, slots=True)
class Reasoned:
    """A reply's thought and its answer."""

    reasoning: str
    content: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    """How a reasoning model's reply to one prompt splits; `opened`: the prompt opened
    the thought."""

    opened: bool = False

    def split(self, text: str, final: bool = True) -> Reasoned:
        """The thought and answer in `text`; unless `final`, text that may still become
        a tag, and the thought's trailing whitespace, wait for what follows."""
        thought = self.opened
        if not thought:
            stripped = text.lstrip()
            if stripped.startswith(THINK_OPEN):
                thought, text = True, stripped[len(THINK_OPEN) :]
            elif not final and THINK_OPEN.startswith(stripped):
                return Reasoned("", "")  # "", "<thi": a thought or an answer, not known yet
        if not thought:
            return Reasoned("", text)
        reasoning, closed, content = text.partition(THINK_CLOSE)
        if not closed:
            if not final:
                reasoning = _without_partial_tag(reasoning)
            return Reasoned(reasoning.strip() if final else reasoning.lstrip().rstrip(), "")
        return Reasoned(reasoning.strip(), content.lstrip())


def split_reply(text: str, reasoning: Reasoning | None, final: bool = True) -> Reasoned:
    """A reply's thought and answer; a model that does not think (None) has no thought."""
    return Reasoned("", text) if reasoning is None else reasoning.split(text, final)


def reasoning_for(chat_template: str | None, prompt_end: str) -> Reasoning | None:
    """How the reply to a chat prompt ending in `prompt_end` splits; None for a model
    whose template does not think."""
    if not template_thinks(chat_template):
        return None
    return Reasoning(opened=opens_thought(prompt_end))


def _without_partial_tag(text: str) -> str:
    """`text` without an ending that could be the start of the closing tag."""
    for size in range(min(len(THINK_CLOSE) - 1, len(text)), 0, -1):
        if THINK_CLOSE.startswith(text[-size:]):
            return text[:-size]
    return text


@dataclass(slots=True)
class ReasoningStream:
    """Deltas of a streamed reply split into (thought, answer) deltas."""

    reasoning: Reasoning
    sent: Reasoned = Reasoned("", "")

    def advance(self, text: str, final: bool = False) -> Reasoned:
        """The new thought and answer since the last call, for the reply's `text` so far."""
        now = self.reasoning.split(text, final)
        # NOTE: only ends are held back, so what was sent is a prefix of what is split now.
        sent, self.sent = self.sent, now
        return Reasoned(now.reasoning[len(sent.reasoning) :], now.content[len(sent.content) :])
