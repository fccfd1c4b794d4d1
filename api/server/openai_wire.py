"""OpenAI's response shapes: completion objects, chat chunks as SSE, usage.

The routes in api/server/routes/openai.py produce their results; this turns them into
what OpenAI clients parse, in one place.
"""

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from api.server.chat import withdrawn
from api.server.generation import Generation
from api.server.streaming import sse
from rag.answer import Answer, DoneEvent, TokenEvent


class Reply:
    """The id, timestamps and model name shared by one response's objects or chunks."""

    def __init__(self, prefix: str, kind: str, model: str) -> None:
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.kind = kind
        self.model = model
        self.created = int(time.time())

    def base(self, kind: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind or self.kind,
            "created": self.created,
            "model": self.model,
        }

    def chat(
        self, text: str, finish: str | None, usage: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason(finish),
            "logprobs": None,
        }
        return {**self.base(), "choices": [choice], "usage": usage, **extra}

    def chat_chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse(None, {**self.base("chat.completion.chunk"), "choices": [choice], **extra})

    def completion(self, generations: list[Generation]) -> dict[str, Any]:
        choices = [
            {
                "index": i,
                "text": g.text,
                "finish_reason": finish_reason(g.finish_reason),
                "logprobs": None,
            }
            for i, g in enumerate(generations)
        ]
        return {**self.base(), "choices": choices, "usage": usage_of(*generations)}

    def usage_chunk(self, kind: str, usage: dict[str, Any]) -> str:
        return sse(None, {**self.base(kind), "choices": [], "usage": usage})


async def chat_stream(
    reply: Reply, deltas: AsyncIterator[str], generation: Generation, usage: bool
) -> AsyncIterator[str]:
    yield reply.chat_chunk({"role": "assistant", "content": ""})
    async for delta in deltas:
        yield reply.chat_chunk({"content": delta})
    yield reply.chat_chunk({}, finish_reason(generation.finish_reason))
    if usage:
        yield reply.usage_chunk("chat.completion.chunk", usage_of(generation))
    yield sse(None, "[DONE]")


async def completion_stream(
    reply: Reply, deltas: AsyncIterator[str], generation: Generation, usage: bool
) -> AsyncIterator[str]:
    def chunk(text: str, finish: str | None) -> str:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return sse(None, {**reply.base(), "choices": [choice]})

    async for delta in deltas:
        yield chunk(delta, None)
    yield chunk("", finish_reason(generation.finish_reason))
    if usage:
        yield reply.usage_chunk("text_completion", usage_of(generation))
    yield sse(None, "[DONE]")


async def rag_stream(
    reply: Reply, citations: list[dict[str, Any]], events: AsyncIterator[Any], usage: bool
) -> AsyncIterator[str]:
    yield reply.chat_chunk({"role": "assistant", "content": ""}, citations=citations)
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
            yield reply.chat_chunk({}, finish, attributions=attributions(answer))
            if usage:
                yield reply.usage_chunk("chat.completion.chunk", rag_usage(answer))
    yield sse(None, "[DONE]")


def attributions(answer: Answer) -> list[dict[str, Any]]:
    """The answer's uncited sentences and their passages (see `POST /ask`)."""
    return [a.to_dict() for a in answer.attributions]


def finish_reason(reason: str | None) -> str | None:
    return "stop" if reason == "abort" else reason


def usage_of(*generations: Generation) -> dict[str, Any]:
    return _usage(
        sum(g.prompt_tokens for g in generations),
        sum(g.completion_tokens for g in generations),
        sum(g.cached_tokens for g in generations),
    )


def rag_usage(answer: Answer) -> dict[str, Any]:
    usage = answer.usage
    return _usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)


def _usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
