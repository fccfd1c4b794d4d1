"""One chat turn for every API: messages checked once, a RAG turn's events metered once.

The native (`/ask`), OpenAI (`/v1`) and Ollama (`/api`) routes translate their request
into the same steps: `chat_messages` validates the messages, `rag_request` makes a
question with its history, `rag_events` runs it through the pipeline and feeds the
metrics, and `final_answer` / `withdrawn` shape the end of the stream. The routes only
encode the events in their own wire format (JSON, SSE, NDJSON).
"""

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from api.server.errors import ApiError
from api.server.schemas import AskRequest
from api.server.state import AppState
from rag.answer import Answer, AnswerEvent, DoneEvent, TokenEvent

RAG_MODEL = "pagedrag-rag"  # the pseudo-model that answers over the documents
ROLES = ("system", "user", "assistant", "tool")
WireMessage = dict[str, object]  # a chat message as a client sent it; `chat_messages` checks it
Message = dict[str, Any]  # a checked one, as chat templates take it


def chat_messages(messages: list[WireMessage]) -> list[Message]:
    """Messages as `{"role", "content"}` with text content (content parts keep their
    text), an assistant's `tool_calls` as chat templates take them, tool results as
    `tool` messages."""
    return [_message(message) for message in messages]


def rag_request(
    messages: list[Message],
    *,
    collection: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> AskRequest:
    """A chat as a question over the documents: the last user message, the rest history.

    System messages are left out: the RAG prompt has its own rules.
    """
    turns = [m for m in messages if m["role"] != "system"]
    if not turns or turns[-1]["role"] != "user":
        raise ApiError(400, "the last message must come from the user")
    return AskRequest.model_validate(
        {
            "question": turns[-1]["content"],
            "collection": collection,
            "history": turns[:-1],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
    )


async def rag_events(
    state: AppState, body: AskRequest, tenant: str | None
) -> AsyncIterator[AnswerEvent]:
    """The pipeline's events for one question, feeding TTFT and token metrics on the way;
    its prompts are cached in the tenant's own namespace."""
    started = last = time.perf_counter()
    first_token = True
    events = state.rag.ask_events(
        body.question,
        collection=body.collection,
        history=[m.model_dump() for m in body.history],
        top_k=body.top_k,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        document_ids=body.document_ids,
        tenant=tenant,
    )
    async with aclosing(events):  # closed early (client gone): the generation is aborted
        async for event in events:
            now = time.perf_counter()
            if isinstance(event, TokenEvent):
                if first_token:
                    state.metrics.ttft.observe(now - started)
                    first_token = False
                else:
                    state.metrics.inter_token.observe(now - last)
                last = now
            elif isinstance(event, DoneEvent):
                state.metrics.prompt_tokens.inc(event.answer.usage.prompt_tokens)
                state.metrics.generation_tokens.inc(event.answer.usage.completion_tokens)
            yield event


async def final_answer(events: AsyncIterator[AnswerEvent]) -> Answer:
    """The `Answer` at the end of an event stream."""
    async for event in events:
        if isinstance(event, DoneEvent):
            return event.answer
    raise RuntimeError("the answer stream ended without a final answer")


def withdrawn(answer: Answer, streamed: bool) -> str:
    """What a token stream appends for a "not found" answer: the reply, on a paragraph of
    its own when the model's unsupported text was already streamed before it."""
    return ("\n\n" if streamed else "") + answer.answer


def _message(message: WireMessage) -> Message:
    role, content = message.get("role"), message.get("content") or ""
    if not isinstance(role, str) or role not in ROLES:
        raise ApiError(
            400, f"unsupported message role {role!r}; use system, user, assistant or tool"
        )
    if message.get("images"):  # Ollama's
        raise ApiError(400, "images are not supported by this server: its models read text")
    if isinstance(content, list):  # OpenAI's content parts, which must all be text
        kinds = {str(p.get("type")) if isinstance(p, dict) else None for p in content}
        if kinds - {"text"}:
            listed = ", ".join(sorted(str(kind) for kind in kinds - {"text"}))
            raise ApiError(
                400, f"content parts of type {listed} are not supported: send text parts only"
            )
        content = "".join(str(p.get("text", "")) for p in content)
    if not isinstance(content, str):
        raise ApiError(400, "message content must be a string or a list of text parts")
    calls = message.get("tool_calls")
    if role != "assistant" or not calls:
        return {"role": role, "content": content}
    if not isinstance(calls, list):
        raise ApiError(400, "tool_calls must be a list")
    return {"role": role, "content": content, "tool_calls": [_tool_call(c) for c in calls]}


def _tool_call(call: object) -> dict[str, object]:
    """An earlier call, OpenAI's (arguments as JSON text) or Ollama's (an object)."""
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    arguments = function.get("arguments", {}) if isinstance(function, dict) else None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            arguments = None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        raise ApiError(400, "each tool call needs function.name and function.arguments (an object)")
    return {"type": "function", "function": {"name": name, "arguments": arguments}}
