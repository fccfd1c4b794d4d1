"""OpenAI's response shapes: completion objects, chat chunks as SSE, usage.

The routes in api/server/routes/openai.py produce their results; this turns them into
what OpenAI clients parse, in one place.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator

from api.server.chat import withdrawn
from api.server.generation import Generation, split_deltas
from api.server.openai_logprobs import LogprobsAsked
from api.server.streaming import sse
from api.server.tool_calls import ToolCall
from api.server.wire.native import AttributionOut, CitationOut, attributions
from api.server.wire.openai import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatLogprobs,
    Completion,
    CompletionChoice,
    FunctionCall,
    ToolCallOut,
    Usage,
)
from engine.outputs import CompletionOutput
from engine.reasoning import Reasoned, Reasoning, ReasoningStream, split_reply
from rag.answer import Answer, AnswerEvent, DoneEvent, TokenEvent


class Reply:
    """The id, timestamps and model name shared by one response's objects or chunks."""

    def __init__(self, prefix: str, kind: str, model: str) -> None:
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.kind = kind
        self.model = model
        self.created = int(time.time())

    def base(self, kind: str | None = None) -> dict[str, object]:
        return {
            "id": self.id,
            "object": kind or self.kind,
            "created": self.created,
            "model": self.model,
        }

    def chat(
        self,
        text: str,
        finish: str | None,
        usage: Usage,
        logprobs: ChatLogprobs | None = None,
        rag: tuple[list[CitationOut], list[AttributionOut]] | None = None,
        reasoning: Reasoning | None = None,
    ) -> ChatCompletion:
        """The whole answer (a reasoning model's thought apart); `rag`: its citations and
        attributions, for a RAG turn."""
        message = assistant_message(text, reasoning)
        choice = ChatChoice(
            index=0, message=message, finish_reason=finish_reason(finish), logprobs=logprobs
        )
        citations, attributions = rag or (None, None)
        return ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[choice],
            usage=usage,
            citations=citations,
            attributions=attributions,
        )

    def chat_tool_reply(
        self,
        text: str,
        calls: list[ToolCall],
        finish: str | None,
        usage: Usage,
        thought: str = "",
    ) -> ChatCompletion:
        """A reply that may call tools: its text (None when it only calls), the calls, and
        finish_reason "tool_calls" when there are any."""
        message = AssistantMessage(
            content=text or None,
            reasoning_content=thought or None,
            tool_calls=tool_calls_out(calls) or None,
        )
        reason = "tool_calls" if calls else finish_reason(finish)
        choice = ChatChoice(index=0, message=message, finish_reason=reason)
        return ChatCompletion(
            id=self.id, created=self.created, model=self.model, choices=[choice], usage=usage
        )

    def chat_samples(
        self,
        samples: list[CompletionOutput],
        usage: Usage,
        logprobs: LogprobsAsked | None,
        reasoning: Reasoning | None = None,
    ) -> ChatCompletion:
        """n > 1: a choice per sample."""
        choices = [
            ChatChoice(
                index=s.index,
                message=assistant_message(s.text, reasoning),
                finish_reason=finish_reason(s.finish_reason),
                logprobs=None if logprobs is None else logprobs.chat(s),
            )
            for s in samples
        ]
        return ChatCompletion(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def chat_chunk(
        self,
        delta: dict[str, str],
        finish: str | None = None,
        logprobs: ChatLogprobs | None = None,
        index: int = 0,
        **extra: object,
    ) -> str:
        chosen = None if logprobs is None else logprobs.model_dump()
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": chosen}
        return sse(None, {**self.base("chat.completion.chunk"), "choices": [choice], **extra})

    def completion(
        self, generations: list[Generation], logprobs: LogprobsAsked | None = None
    ) -> Completion:
        """A choice per prompt, or with n > 1 per sample: prompt i's sample j is choice
        i * n + j, as OpenAI numbers them."""
        choices = [
            CompletionChoice(
                index=i,
                text=g.text,
                finish_reason=finish_reason(g.finish_reason),
                logprobs=None if logprobs is None else logprobs.completion(g),
            )
            for i, g in enumerate(generations)
        ]
        if any(g.samples for g in generations):
            samples = [sample for g in generations for sample in g.samples or []]
            choices = [
                CompletionChoice(
                    index=i,
                    text=sample.text,
                    finish_reason=finish_reason(sample.finish_reason),
                    logprobs=None if logprobs is None else logprobs.completion(sample),
                )
                for i, sample in enumerate(samples)
            ]
        usage = usage_of(*generations)
        return Completion(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def usage_chunk(self, kind: str, usage: Usage) -> str:
        return sse(None, {**self.base(kind), "choices": [], "usage": usage.model_dump()})


async def chat_stream(
    reply: Reply,
    deltas: AsyncIterator[str],
    generation: Generation,
    usage: bool,
    logprobs: LogprobsAsked | None = None,
    reasoning: Reasoning | None = None,
) -> AsyncIterator[str]:
    """Chunks of the answer (a reasoning model's thought as `reasoning_content` deltas);
    with `logprobs`, each carries the entries of the tokens that arrived since the one
    before (the last chunk those of any held back)."""
    sent = 0

    def new_entries() -> ChatLogprobs | None:
        nonlocal sent
        if logprobs is None:
            return None
        entries = logprobs.chat(generation, sent)
        sent += len(entries.content)
        return entries

    yield reply.chat_chunk({"role": "assistant", "content": ""})
    async for step in split_deltas(deltas, generation, reasoning):
        for part in reasoning_deltas(step):
            yield reply.chat_chunk(part, logprobs=new_entries())
    yield reply.chat_chunk({}, finish_reason(generation.finish_reason), new_entries())
    if usage:
        yield reply.usage_chunk("chat.completion.chunk", usage_of(generation))
    yield sse(None, "[DONE]")


async def tool_reply_stream(
    reply: Reply, completion: ChatCompletion, usage: bool
) -> AsyncIterator[str]:
    """A reply that may call tools, streamed once it is whole: calls cannot be told from
    text until they end, and their text must never reach the client as content."""
    choice = completion.choices[0]
    yield reply.chat_chunk({"role": "assistant", "content": ""})
    if choice.message.content:
        yield reply.chat_chunk({"content": choice.message.content})
    for index, call in enumerate(choice.message.tool_calls or []):
        yield sse(
            None,
            {
                **reply.base("chat.completion.chunk"),
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": index, **call.model_dump()}]},
                        "finish_reason": None,
                        "logprobs": None,
                    }
                ],
            },
        )
    yield reply.chat_chunk({}, choice.finish_reason)
    if usage:
        yield reply.usage_chunk("chat.completion.chunk", completion.usage)
    yield sse(None, "[DONE]")


def assistant_message(text: str, reasoning: Reasoning | None) -> AssistantMessage:
    """A reply as a message: a reasoning model's thought apart from its answer."""
    split = split_reply(text, reasoning)
    return AssistantMessage(content=split.content, reasoning_content=split.reasoning or None)


def reasoning_deltas(step: Reasoned) -> list[dict[str, str]]:
    """A (thought, answer) step as chat-chunk deltas, the thought first."""
    parts = [("reasoning_content", step.reasoning), ("content", step.content)]
    return [{field: text} for field, text in parts if text]


def tool_calls_out(calls: list[ToolCall]) -> list[ToolCallOut]:
    return [
        ToolCallOut(
            id=f"call_{uuid.uuid4().hex[:24]}",
            function=FunctionCall(name=call.name, arguments=json.dumps(call.arguments)),
        )
        for call in calls
    ]


async def samples_stream(
    reply: Reply,
    deltas: AsyncIterator[tuple[int, str]],
    generation: Generation,
    usage: bool,
    n: int,
    logprobs: LogprobsAsked | None = None,
    reasoning: Reasoning | None = None,
) -> AsyncIterator[str]:
    """n > 1: chat chunks or completion chunks (by `reply.kind`) whose `index` says which
    sample each delta belongs to (with its new tokens' log-probabilities when asked),
    then each sample's finish."""
    chat = reply.kind == "chat.completion"
    kind = "chat.completion.chunk" if chat else "text_completion"
    sent, offsets = [0] * n, [0] * n  # per sample: tokens whose entries went out, their chars

    thoughts = [ReasoningStream(reasoning) for _ in range(n)] if reasoning and chat else None

    def chunk(index: int, text: str | None, finish: str | None, field: str = "content") -> str:
        # NOTE: a finish carries the entries of tokens that showed no text yet, if any.
        sample = (generation.samples or [])[index]
        if chat:
            delta = {field: text} if text is not None else {}
            entries = None
            if logprobs is not None:
                entries = logprobs.chat(sample, sent[index])
                sent[index] += len(entries.content)
            if entries is not None and not entries.content and text is None:
                entries = None
            return reply.chat_chunk(delta, finish, logprobs=entries, index=index)
        listed = None
        if logprobs is not None:
            new = logprobs.completion(sample, sent[index], offsets[index])
            sent[index] += len(new.tokens)
            offsets[index] += sum(len(token) for token in new.tokens)
            listed = new.model_dump() if new.tokens or text is not None else None
        choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": listed}
        return sse(None, {**reply.base(), "choices": [choice]})

    if chat:
        for index in range(n):
            yield reply.chat_chunk({"role": "assistant", "content": ""}, index=index)
    async for index, delta in deltas:
        if thoughts is None:
            yield chunk(index, delta, None)
            continue
        sample_text = (generation.samples or [])[index].text
        for part in reasoning_deltas(thoughts[index].advance(sample_text)):
            [(field, text)] = part.items()
            yield chunk(index, text, None, field)
    for sample in generation.samples or []:
        if thoughts is not None:
            for part in reasoning_deltas(thoughts[sample.index].advance(sample.text, final=True)):
                [(field, text)] = part.items()
                yield chunk(sample.index, text, None, field)
        yield chunk(sample.index, None, finish_reason(sample.finish_reason))
    if usage:
        yield reply.usage_chunk(kind, usage_of(generation))
    yield sse(None, "[DONE]")


async def completion_stream(
    reply: Reply,
    deltas: AsyncIterator[str],
    generation: Generation,
    usage: bool,
    logprobs: LogprobsAsked | None = None,
) -> AsyncIterator[str]:
    sent = offset = 0  # tokens whose entries went out, and the characters they span

    def chunk(text: str, finish: str | None) -> str:
        nonlocal sent, offset
        entries = None
        if logprobs is not None:
            new = logprobs.completion(generation, sent, offset)
            sent += len(new.tokens)
            offset += sum(len(token) for token in new.tokens)
            entries = new.model_dump()
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": entries}
        return sse(None, {**reply.base(), "choices": [choice]})

    async for delta in deltas:
        yield chunk(delta, None)
    yield chunk("", finish_reason(generation.finish_reason))
    if usage:
        yield reply.usage_chunk("text_completion", usage_of(generation))
    yield sse(None, "[DONE]")


async def rag_stream(
    reply: Reply, citations: list[CitationOut], events: AsyncIterator[AnswerEvent], usage: bool
) -> AsyncIterator[str]:
    passages = [c.model_dump() for c in citations]
    yield reply.chat_chunk({"role": "assistant", "content": ""}, citations=passages)
    for citation in citations:
        yield sse(
            None,
            {**reply.base("chat.completion.chunk"), "choices": [], "event": source_event(citation)},
        )
    streamed = False
    async for event in events:
        if isinstance(event, TokenEvent):
            yield reply.chat_chunk({"content": event.delta})
            streamed = True
        elif isinstance(event, DoneEvent):
            answer = event.answer
            if not answer.found:
                yield reply.chat_chunk({"content": withdrawn(answer, streamed)})
            finish = finish_reason(answer.finish_reason or "stop")
            sentences = [a.model_dump() for a in attributions(answer.attributions)]
            yield reply.chat_chunk({}, finish, attributions=sentences)
            if usage:
                yield reply.usage_chunk("chat.completion.chunk", rag_usage(answer))
    yield sse(None, "[DONE]")


def source_event(citation: CitationOut) -> dict[str, object]:
    """A passage as an Open WebUI `citation` event: a streamed chunk's `event` field,
    which it shows under the answer as one of its sources (other clients ignore it)."""
    page = f", p. {citation.page}" if citation.page is not None else ""
    name = f"[{citation.n}] {citation.title}{page}"
    return {
        "type": "citation",
        "data": {
            "document": [citation.text],
            "metadata": [{"source": name, "document_id": citation.document_id}],
            "source": {"name": name},
        },
    }


def finish_reason(reason: str | None) -> str | None:
    return "stop" if reason == "abort" else reason


def usage_of(*generations: Generation) -> Usage:
    return Usage.of(
        sum(g.prompt_tokens for g in generations),
        sum(g.completion_tokens for g in generations),
        sum(g.cached_tokens for g in generations),
    )


def rag_usage(answer: Answer) -> Usage:
    usage = answer.usage
    return Usage.of(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
