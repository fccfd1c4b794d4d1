"""Ollama-compatible routes: generate, chat, embed and version under `/api` (the model
routes, tags among them, are in ollama_models.py).

As in Ollama, responses stream as NDJSON unless `"stream": false`, and the final object
has `done: true`, `done_reason` and durations in nanoseconds. The model `pagedrag-rag`
on `/api/chat` answers over the documents.
"""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.server.auth import tenant_of
from api.server.chat import (
    RAG_MODEL,
    WireMessage,
    chat_messages,
    final_answer,
    rag_events,
    rag_request,
    withdrawn,
)
from api.server.deps import StateDep
from api.server.disconnect import unless_disconnected
from api.server.errors import ApiError
from api.server.generation import (
    Generation,
    chat_ids,
    drain,
    embed_texts,
    generate,
    primed,
    prompt_ids,
    split_deltas,
)
from api.server.keep_alive import keep_alive_seconds
from api.server.model_pool import SERVER_DEFAULT, LoadedModel, ServerDefault
from api.server.ollama_options import EMBED_NEUTRAL, NEUTRAL, OPTIONS_NEUTRAL, Options
from api.server.state import AppState
from api.server.streaming import ndjson
from api.server.tool_calls import parse_tool_calls, template_takes_tools, tool_names
from api.server.unsupported import refuse_unimplemented
from api.server.wire.errors import Responses, errors
from api.server.wire.native import attributions, citations
from api.server.wire.ollama import (
    ChatResponse,
    EmbedResponse,
    GenerateResponse,
    Message,
    OllamaToolCall,
    Version,
)
from common.version import VERSION
from engine.reasoning import Reasoning, split_reply
from engine.sampling_params import SamplingParams
from engine.structured_outputs import StructuredOutputs
from rag.answer import Answer, DoneEvent, TokenEvent

router = APIRouter(prefix="/api", tags=["ollama"])
NDJSON = "application/x-ndjson"
STREAMED: Responses = {
    200: {"content": {NDJSON: {}}, "description": "NDJSON, or with stream: false, JSON"}
}
TextField = Literal["response", "message"]  # where generate and chat put the text


class _OllamaRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    stream: bool = True
    options: Options = Field(default_factory=Options)

    format: str | dict[str, Any] | None = Field(
        None, description='"json" (any JSON object) or a JSON Schema the reply must match'
    )
    think: bool | str | None = Field(
        None,
        description="A reasoning model's thought: true returns it in `thinking`, false "
        "asks the model not to think; unset, the model's default (returned apart).",
    )
    keep_alive: float | str | None = Field(
        None,
        description="How long the model stays loaded after this request: seconds or a "
        'duration ("5m"); 0 unloads it, negative keeps it. Default: the server\'s --keep-alive.',
    )

    def keep_alive_asked(self) -> float | ServerDefault | None:
        """Seconds to keep the model once idle, None for ever; the server's when unset."""
        if self.keep_alive is None:
            return SERVER_DEFAULT
        try:
            return keep_alive_seconds(self.keep_alive)
        except ValueError as error:
            raise ApiError(400, str(error)) from None

    def thinking(self, model: LoadedModel) -> bool | None:
        """`think` checked against the model: a model that cannot think is not asked to."""
        if isinstance(self.think, str):
            raise ApiError(400, "think levels are not supported by this server: send true or false")
        if self.think and not model.prompts.thinks:
            raise ApiError(400, f'"{model.name}" does not support thinking')
        return self.think

    def structured(self) -> StructuredOutputs | None:
        if not self.format:
            return None
        if self.format == "json":
            return StructuredOutputs(json_object=True)
        if isinstance(self.format, str):
            raise ApiError(400, f'format must be "json" or a JSON schema, not {self.format!r}')
        return StructuredOutputs(json=self.format)

    def sampling(self) -> SamplingParams:
        return self.options.sampling(self.structured())

    def check_supported(self) -> None:
        """400 for a field or option this server would otherwise ignore."""
        refuse_unimplemented(self, NEUTRAL)
        refuse_unimplemented(self.options, OPTIONS_NEUTRAL, "options.")


class GenerateRequest(_OllamaRequest):
    prompt: str = ""
    system: str | None = None
    raw: bool = False


class ChatRequest(_OllamaRequest):
    messages: list[WireMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str]


@router.get("/version", responses=errors(ollama=True))
async def version() -> Version:
    """The server's version."""
    return Version(version=VERSION)


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses=errors(404, 409, 422, 503, ollama=True) | STREAMED,
)
async def generate_route(
    body: GenerateRequest, request: Request, state: StateDep
) -> GenerateResponse | ChatResponse | StreamingResponse:
    """Complete a prompt (with the chat template unless `raw`); without one, load the
    model (or with `keep_alive: 0`, unload it) as Ollama does."""
    body.check_supported()
    if not body.prompt:
        return await _load_or_unload(state, body, "response")
    async with state.models.use(body.model, body.keep_alive_asked()) as model:
        thinking = body.thinking(model)
        if body.raw:
            token_ids, reasoning = prompt_ids(state, model, body.prompt), None
        else:
            system = [{"role": "system", "content": body.system}] if body.system else []
            messages = [*system, {"role": "user", "content": body.prompt}]
            token_ids = chat_ids(state, model, messages, thinking=thinking)
            reasoning = model.prompts.reasoning(thinking)
        prompt = Prompt(token_ids, reasoning, thinking is not False)
        return await _respond(state, model, request, body, prompt, "response")


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses=errors(404, 409, 422, 503, ollama=True) | STREAMED,
)
async def chat_route(
    body: ChatRequest, request: Request, state: StateDep
) -> GenerateResponse | ChatResponse | StreamingResponse:
    """Chat with the model; the model `pagedrag-rag` answers over the documents."""
    body.check_supported()
    if body.model.removesuffix(":latest") == RAG_MODEL:
        # NOTE: tools offered are welcome (Open WebUI offers its own with every chat);
        # an answer over the documents is one that calls none, as a model may.
        if body.structured() is not None:
            raise ApiError(400, "format is not available for answers over the documents")
        if body.think not in (None, False):
            raise ApiError(400, f"{RAG_MODEL} returns no thinking: its answers leave it out")
        if body.keep_alive_asked() == 0:
            raise ApiError(400, f"{RAG_MODEL} answers with the server's own model: it stays loaded")
        return await _rag_chat(body, request, state)
    messages = chat_messages(body.messages)
    if not messages:
        return await _load_or_unload(state, body, "message")
    async with state.models.use(body.model, body.keep_alive_asked()) as model:
        thinking = body.thinking(model)
        if body.tools:
            tools = body.tools
            return await _tool_reply(state, model, request, body, messages, tools, thinking)
        token_ids = chat_ids(state, model, messages, thinking=thinking)
        prompt = Prompt(token_ids, model.prompts.reasoning(thinking), thinking is not False)
        return await _respond(state, model, request, body, prompt, "message")


@router.post("/embed", responses=errors(422, ollama=True))
async def embed(body: EmbedRequest, state: StateDep) -> EmbedResponse:
    """Embeddings from the index's embedder, one per input."""
    refuse_unimplemented(body, EMBED_NEUTRAL)
    started = time.perf_counter()
    vectors, tokens = await embed_texts(state, body.input)
    return EmbedResponse(
        model=body.model,
        embeddings=vectors,
        total_duration=_ns(time.perf_counter() - started),
        prompt_eval_count=tokens,
    )


# -- responses ------------------------------------------------------------------------------


async def _load_or_unload(
    state: AppState, body: _OllamaRequest, field: TextField
) -> GenerateResponse | ChatResponse:
    """A request without a prompt: load the model and keep it (`ollama run` does this
    first), or with `keep_alive: 0` unload it (`ollama stop`)."""
    keep_alive = body.keep_alive_asked()
    started = time.perf_counter()
    if keep_alive == 0:
        await state.models.unload(state.models.name_of(body.model))
        return _final(body.model, Generation(started), field, "", "unload")
    async with state.models.use(body.model, keep_alive):
        pass
    return _final(body.model, Generation(started), field, "", "load")


@dataclass(frozen=True, slots=True)
class Prompt:
    """A request's prompt, how a reasoning model's reply to it splits (None: the model
    does not think, or the prompt is raw), and whether its thought is returned."""

    token_ids: list[int]
    reasoning: Reasoning | None
    show_thought: bool


async def _respond(
    state: AppState,
    model: LoadedModel,
    request: Request,
    body: _OllamaRequest,
    prompt: Prompt,
    field: TextField,
) -> GenerateResponse | ChatResponse | StreamingResponse:
    generation = Generation(time.perf_counter())
    params = body.sampling()
    salt = tenant_of(request)
    deltas = generate(state, model, prompt.token_ids, params, generation, salt=salt)
    if not body.stream:
        await unless_disconnected(request, drain(deltas))
        split = split_reply(generation.text, prompt.reasoning)
        thought = split.reasoning if prompt.show_thought else ""
        return _final(body.model, generation, field, split.content, thought=thought)
    stream = await primed(deltas)

    async def lines() -> AsyncIterator[str]:
        async for step in split_deltas(stream, generation, prompt.reasoning):
            thought = step.reasoning if prompt.show_thought else ""
            if thought or step.content:
                yield ndjson(_partial(body.model, field, step.content, thought))
        yield ndjson(_final(body.model, generation, field, "").model_dump())

    return StreamingResponse(lines(), media_type=NDJSON)


async def _tool_reply(
    state: AppState,
    model: LoadedModel,
    request: Request,
    body: ChatRequest,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    thinking: bool | None,
) -> ChatResponse | StreamingResponse:
    """A turn with tools: the whole reply, read into thought, text and calls; streamed,
    as one message line once whole (a call's text must never reach the client as
    content)."""
    if not template_takes_tools(model.engine.tokenizer.chat_template):
        raise ApiError(400, f"{model.name}'s chat template takes no tools")
    try:
        names = tool_names(tools)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    generation = Generation(time.perf_counter())
    token_ids = chat_ids(state, model, messages, tools, thinking)
    params = body.sampling()
    deltas = generate(state, model, token_ids, params, generation, salt=tenant_of(request))
    await unless_disconnected(request, drain(deltas))
    split = split_reply(generation.text, model.prompts.reasoning(thinking))
    text, calls = parse_tool_calls(split.content, names)
    thought = split.reasoning if thinking is not False else ""
    final = _final(body.model, generation, "message", text, thought=thought)
    assert isinstance(final, ChatResponse)
    final.message.tool_calls = [
        OllamaToolCall(function={"name": c.name, "arguments": c.arguments}) for c in calls
    ] or None
    if not body.stream:
        return final

    async def lines() -> AsyncIterator[str]:
        yield ndjson(
            {
                "model": body.model,
                "created_at": _now(),
                "message": final.message.model_dump(exclude_none=True),
                "done": False,
            }
        )
        yield ndjson(final.model_dump() | {"message": {"role": "assistant", "content": ""}})

    return StreamingResponse(lines(), media_type=NDJSON)


async def _rag_chat(
    body: ChatRequest, request: Request, state: StateDep
) -> ChatResponse | StreamingResponse:
    ask = rag_request(
        chat_messages(body.messages),
        max_tokens=body.options.max_tokens(),
        temperature=body.options.rag_temperature(),
    )
    events = rag_events(state, ask, tenant_of(request))
    await anext(events)  # the citations: validation and retrieval errors become HTTP errors
    if not body.stream:
        answer = await unless_disconnected(request, final_answer(events))
        return _rag_final(body.model, answer, answer.answer)

    async def lines() -> AsyncIterator[str]:
        streamed = False
        async for event in events:
            if isinstance(event, TokenEvent):
                yield ndjson(_partial(body.model, "message", event.delta))
                streamed = True
            elif isinstance(event, DoneEvent):
                text = "" if event.answer.found else withdrawn(event.answer, streamed)
                yield ndjson(_rag_final(body.model, event.answer, text).model_dump())

    return StreamingResponse(lines(), media_type=NDJSON)


def _partial(model: str, field: TextField, text: str, thought: str = "") -> dict[str, object]:
    """A streamed line before the last: the new text (and thought), `done: false`."""
    line: dict[str, object] = {"model": model, "created_at": _now(), "done": False}
    if field == "response":
        return line | {"response": text} | ({"thinking": thought} if thought else {})
    message = Message(content=text, thinking=thought or None)
    return line | {"message": message.model_dump(exclude_none=True)}


def _final(
    model: str,
    g: Generation,
    field: TextField,
    text: str,
    reason: str | None = None,
    thought: str = "",
) -> GenerateResponse | ChatResponse:
    counts = {
        "model": model,
        "created_at": _now(),
        "done_reason": reason or ("length" if g.finish_reason == "length" else "stop"),
        "total_duration": _ns(g.total_s),
        "prompt_eval_count": g.prompt_tokens,
        "prompt_eval_duration": _ns(g.ttft_s),
        "eval_count": g.completion_tokens,
        "eval_duration": _ns(g.decode_s),
    }
    thinking = thought or None
    if field == "response":
        return GenerateResponse.model_validate(counts | {"response": text, "thinking": thinking})
    message = Message(content=text, thinking=thinking)
    return ChatResponse.model_validate(counts | {"message": message})


def _rag_final(model: str, answer: Answer, text: str) -> ChatResponse:
    timings, usage = answer.timings, answer.usage
    ttft_ms = timings.ttft_ms or timings.total_ms
    return ChatResponse(
        model=model,
        created_at=_now(),
        done_reason="length" if answer.finish_reason == "length" else "stop",
        total_duration=_ns(timings.total_ms / 1000),
        prompt_eval_count=usage.prompt_tokens,
        prompt_eval_duration=_ns(ttft_ms / 1000),
        eval_count=usage.completion_tokens,
        eval_duration=_ns(timings.decode_ms / 1000),
        message=Message(content=text),
        citations=citations(answer.citations),
        attributions=attributions(answer.attributions),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))
