"""OpenAI-compatible routes: models, chat completions, completions and embeddings under `/v1`.

Chat with `"rag": true` (or the model `pagedrag-rag`) is answered over the documents;
the passages come back in the extension field `citations`.
"""

import asyncio
import base64
import struct
import time
from dataclasses import dataclass, replace
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
)
from api.server.deps import StateDep
from api.server.disconnect import unless_disconnected
from api.server.errors import ApiError
from api.server.generation import (
    Generation,
    Penalties,
    chat_ids,
    drain,
    embed_texts,
    generate,
    primed,
    prompt_ids,
    sample_deltas,
    sampling_params,
)
from api.server.model_pool import LoadedModel
from api.server.openai_logprobs import LogprobsAsked
from api.server.openai_wire import (
    Reply,
    chat_stream,
    completion_stream,
    rag_stream,
    rag_usage,
    samples_stream,
    tool_reply_stream,
    usage_of,
)
from api.server.state import AppState
from api.server.streaming import SSE_HEADERS
from api.server.tool_calls import (
    forced_call,
    parse_tool_calls,
    template_takes_tools,
    tool_names,
)
from api.server.unsupported import Neutral, anything, empty, one_of, refuse_unimplemented
from api.server.wire.errors import Responses, errors
from api.server.wire.native import attributions, citations
from api.server.wire.openai import (
    ChatCompletion,
    Completion,
    Embedding,
    Embeddings,
    EmbeddingUsage,
    ModelCard,
    ModelList,
)
from engine.reasoning import Reasoning, split_reply
from engine.sampling_params import MAX_LOGPROBS, SamplingParams
from engine.structured_outputs import StructuredOutputs
from rag.answer import CitationsEvent

router = APIRouter(prefix="/v1", tags=["openai"])
STREAMED: Responses = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or with stream: SSE"}
}


# OpenAI fields this server leaves alone, with the values that ask for nothing.
NEUTRAL: dict[str, Neutral] = {
    "user": anything,
    "metadata": anything,
    "service_tier": anything,
    "parallel_tool_calls": anything,  # only meaningful with tools
    "store": one_of(False),
    "logit_bias": empty,
    "functions": empty,  # the deprecated form of tools
    "function_call": one_of("none"),
    "echo": one_of(False),
    "best_of": one_of(1),
    "suffix": empty,
}
EMBEDDING_NEUTRAL: dict[str, Neutral] = {"user": anything}


class StreamOptions(BaseModel):
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    name: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None  # always strict here: the grammar allows nothing else


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: free text, any JSON object, or a JSON Schema's JSON."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def structured(self) -> StructuredOutputs | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return StructuredOutputs(json_object=True)
        if self.json_schema is None:
            raise ApiError(400, "response_format json_schema needs its json_schema.schema")
        return StructuredOutputs(json=self.json_schema.schema_)


class _Sampling(Penalties):
    model_config = ConfigDict(extra="allow")  # other fields: `check_supported` refuses them

    model: str | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(-1, ge=-1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, description="Choices per prompt; they share its KV blocks.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None

    def rag_temperature(self) -> float | None:
        """The request's own temperature; None (greedy, the RAG default) when it set none."""
        return self.temperature if "temperature" in self.model_fields_set else None

    def check_supported(self) -> None:
        """400 for a field this server would otherwise ignore."""
        refuse_unimplemented(self, NEUTRAL)

    def sampling(self, max_tokens: int | None, default_max: int) -> SamplingParams:
        asked = self.logprobs_asked(None)
        return sampling_params(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_tokens=max_tokens or default_max,
            stop=self.stop,
            seed=self.seed,
            logprobs=None if asked is None else asked.top,
            n=self.n,
            structured=None if self.response_format is None else self.response_format.structured(),
            penalties=self,
        )

    def logprobs_asked(self, model: LoadedModel | None) -> LogprobsAsked | None:
        """How many alternatives each token's entry lists; None: no log-probabilities.
        Each request shape asks in its own way (chat a flag, completions a count)."""
        return None


class ChatTemplateKwargs(BaseModel):
    """vLLM's `chat_template_kwargs`; of them this server takes `enable_thinking`."""

    model_config = ConfigDict(extra="allow")  # others: `check_supported` refuses them
    enable_thinking: bool | None = Field(
        None, description="false: a reasoning model answers without thinking"
    )


class Tool(BaseModel):
    type: Literal["function"]
    function: dict[str, Any] = Field(description="name, description, parameters (a schema)")


class ChatRequest(_Sampling):
    messages: list[WireMessage] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = Field(
        None,
        description='"auto" (the default with tools), "none", "required" (one call of any '
        'tool) or {"type": "function", "function": {"name": ...}} (a call of that one)',
    )
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = Field(False, description="Each generated token's log-probability.")
    top_logprobs: int | None = Field(
        None, ge=0, le=MAX_LOGPROBS, description="With logprobs: the most likely tokens too."
    )
    rag: bool = Field(False, description="Answer over the documents (PagedRAG extension).")
    collection: str | None = Field(None, description="With rag: search only this collection.")
    chat_template_kwargs: ChatTemplateKwargs | None = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.chat_template_kwargs is not None:
            refuse_unimplemented(self.chat_template_kwargs, {}, "chat_template_kwargs.")

    def thinking(self) -> bool | None:
        """False: a reasoning model is asked not to think; None: its default."""
        kwargs = self.chat_template_kwargs
        return None if kwargs is None else kwargs.enable_thinking

    def template_tools(self, model: LoadedModel) -> list[dict[str, Any]] | None:
        """The tools as the chat template takes them; None: none offered this turn."""
        demanded = self.demanded_call()
        if not self.tools or self.tool_choice == "none":
            if demanded is not None:
                raise ApiError(400, "tool_choice demands a call, but the request has no tools")
            return None
        if not template_takes_tools(model.engine.tokenizer.chat_template):
            raise ApiError(400, f"{model.name}'s chat template takes no tools")
        if self.n > 1:
            raise ApiError(400, "n > 1 with tools is not supported by this server")
        tools = [tool.model_dump() for tool in self.tools]
        try:
            names = tool_names(tools)
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        if demanded and demanded not in names:
            raise ApiError(400, f"tool_choice names {demanded!r}, which is not among the tools")
        return tools

    def demanded_call(self) -> str | None:
        """The tool `tool_choice` demands a call of: "" for any ("required"), its name
        for a named function, None when the model decides (or no tools)."""
        choice = self.tool_choice
        if choice in (None, "auto", "none"):
            return None
        if choice == "required":
            return ""
        function = choice.get("function") if isinstance(choice, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(choice, dict) or choice.get("type") != "function" or not name:
            raise ApiError(
                400,
                'tool_choice must be "auto", "none", "required" or {"type": "function", '
                '"function": {"name": ...}}',
            )
        return str(name)

    def forced_call(
        self, model: LoadedModel, tools: list[dict[str, Any]]
    ) -> StructuredOutputs | None:
        """The grammar that keeps the reply to the call `tool_choice` demands, if any."""
        demanded = self.demanded_call()
        if demanded is None:
            return None
        if self.response_format is not None and self.response_format.type != "text":
            raise ApiError(400, "a response_format cannot be combined with a demanded tool call")
        template = str(model.engine.tokenizer.chat_template or "")
        return forced_call(tools, demanded or None, template)

    def logprobs_asked(self, model: LoadedModel | None) -> LogprobsAsked | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true")
        return _asked(self.top_logprobs or 0, model) if self.logprobs else None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(
        None, ge=0, le=MAX_LOGPROBS, description="The most likely tokens listed per token."
    )

    def logprobs_asked(self, model: LoadedModel | None) -> LogprobsAsked | None:
        return None if self.logprobs is None else _asked(self.logprobs, model)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    # Token ids are taken only to be refused with a reason (LangChain sends them by default).
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    # The openai package asks for base64 unless told otherwise, and decodes it itself.
    encoding_format: Literal["float", "base64"] = "float"


@router.get("/models", responses=errors())
async def models(state: StateDep) -> ModelList:
    """The generators this server can run (loaded or installed) and the RAG pseudo-model;
    the embedder is left out of the list (clients offer its entries as chat models) but
    answers `GET /v1/models/{its name}`."""
    return ModelList(data=_model_cards(state))


@router.get("/models/{model_id:path}", responses=errors(404))
async def model(model_id: str, state: StateDep) -> ModelCard:
    """One model (the openai package's `models.retrieve`), the embedder included."""
    embedder = state.index.embedder.name
    for card in [*_model_cards(state), ModelCard(id=embedder, created=int(state.started_at))]:
        if card.id == model_id:
            return card
    raise ApiError(404, f"model {model_id!r} not found: it does not exist here")


def _model_cards(state: AppState) -> list[ModelCard]:
    created = int(state.started_at)
    installed = [m.name for m in state.models.store.installed()]
    loaded = [m.name for m in state.models.loaded()]
    names = dict.fromkeys([state.model_name, RAG_MODEL, *loaded, *installed])
    return [ModelCard(id=name, created=created) for name in names]


def _check_rag_model(state: AppState, model: str) -> None:
    """`rag: true` answers with the server's own model; another one named is refused."""
    if state.models.name_of(model) != state.model_name:
        raise ApiError(
            400,
            f"answers over the documents come from the server's own model "
            f"{state.model_name}, not {model}; leave model out or name that one",
        )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses=errors(404, 422, 503) | STREAMED,
)
async def chat_completions(
    body: ChatRequest, request: Request, state: StateDep
) -> ChatCompletion | StreamingResponse:
    """Chat with a model (loaded on demand); with `"rag": true` or model `pagedrag-rag`,
    over the documents."""
    body.check_supported()
    rag_model = (body.model or "").removesuffix(":latest") == RAG_MODEL
    if body.rag or rag_model:
        json_format = body.response_format is not None and body.response_format.type != "text"
        logprobs = body.logprobs or body.top_logprobs is not None
        # NOTE: tools offered are welcome; an answer over the documents calls none, as a
        # model may when the choice is its own ("auto"). A demanded call cannot be.
        if body.thinking():
            raise ApiError(400, f"{RAG_MODEL} returns no reasoning: its answers leave it out")
        if logprobs or body.n > 1 or body.demanded_call() is not None or json_format:
            raise ApiError(
                400,
                "logprobs, n > 1, a demanded tool call and JSON response formats are not "
                "available for answers over the documents",
            )
        if body.model is not None and not rag_model:
            _check_rag_model(state, body.model)
        return await _rag_chat(body, request, state)
    async with state.models.use(body.model) as model:
        return await _chat(body, request, state, model)


async def _chat(
    body: ChatRequest, request: Request, state: AppState, model: LoadedModel
) -> ChatCompletion | StreamingResponse:
    logprobs = body.logprobs_asked(model)
    messages = chat_messages(body.messages)
    params = body.sampling(body.max_completion_tokens or body.max_tokens, 1024)
    tools = body.template_tools(model)
    thinking = body.thinking()
    token_ids = chat_ids(state, model, messages, tools, thinking)
    reasoning = model.prompts.reasoning(thinking)
    reply = Reply("chatcmpl", "chat.completion", model.name)
    if tools is not None:
        forced = body.forced_call(model, tools)
        if forced is not None:
            params = replace(params, structured_outputs=forced)
        call = ToolTurn(token_ids, params, tools, reasoning)
        return await _tool_reply(state, model, request, body, call, reply)
    if body.stream and body.n > 1:
        return await _stream_samples(
            state, model, request, body, token_ids, params, reply, reasoning
        )
    if body.stream:
        generation = Generation(time.perf_counter())
        deltas = await primed(
            generate(state, model, token_ids, params, generation, salt=tenant_of(request))
        )
        with_usage = _include_usage(body)
        stream = chat_stream(reply, deltas, generation, with_usage, logprobs, reasoning)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    generation = Generation(time.perf_counter())
    deltas = generate(state, model, token_ids, params, generation, salt=tenant_of(request))
    await unless_disconnected(request, drain(deltas))
    chosen = None if logprobs is None else logprobs.chat(generation)
    usage = usage_of(generation)
    if generation.samples is not None:
        return reply.chat_samples(generation.samples, usage, logprobs, reasoning)
    return reply.chat(generation.text, generation.finish_reason, usage, chosen, reasoning=reasoning)


@router.post("/completions", response_model=Completion, responses=errors(404, 422, 503) | STREAMED)
async def completions(
    body: CompletionRequest, request: Request, state: StateDep
) -> Completion | StreamingResponse:
    """Raw text completion, no chat template; a list of prompts is generated as one batch."""
    body.check_supported()
    async with state.models.use(body.model) as model:
        return await _complete(body, request, state, model)


async def _complete(
    body: CompletionRequest, request: Request, state: AppState, model: LoadedModel
) -> Completion | StreamingResponse:
    prompts = _prompt_list(body.prompt)
    params = body.sampling(body.max_tokens, 16)
    reply = Reply("cmpl", "text_completion", model.name)
    token_lists = [prompt_ids(state, model, p) for p in prompts]
    salt = tenant_of(request)
    if body.stream:
        if len(prompts) != 1:
            raise ApiError(400, "stream one prompt at a time")
        if body.n > 1:
            return await _stream_samples(state, model, request, body, token_lists[0], params, reply)
        generation = Generation(time.perf_counter())
        deltas = await primed(generate(state, model, token_lists[0], params, generation, salt=salt))
        stream = completion_stream(
            reply, deltas, generation, _include_usage(body), body.logprobs_asked(model)
        )
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    generations = [Generation(time.perf_counter()) for _ in prompts]
    work = asyncio.gather(
        *(
            drain(generate(state, model, ids, params, g, salt=salt))
            for ids, g in zip(token_lists, generations, strict=True)
        )
    )
    await unless_disconnected(request, work)
    return reply.completion(generations, body.logprobs_asked(model))


@router.post("/embeddings", responses=errors(404, 422))
async def embeddings(body: EmbeddingRequest, state: StateDep) -> Embeddings:
    """Embeddings from the index's embedder (normalised, as the index stores them)."""
    embedder = state.index.embedder
    if body.model not in (None, embedder.name):
        raise ApiError(404, f"the embedding model is {embedder.name!r}, not {body.model!r}")
    refuse_unimplemented(body, EMBEDDING_NEUTRAL)
    vectors, tokens = await embed_texts(state, _texts(body.input))
    return Embeddings(
        data=[
            Embedding(index=i, embedding=_encoded(v, body.encoding_format))
            for i, v in enumerate(vectors)
        ],
        model=embedder.name,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


async def _rag_chat(
    body: ChatRequest, request: Request, state: StateDep
) -> ChatCompletion | StreamingResponse:
    ask = rag_request(
        chat_messages(body.messages),
        collection=body.collection,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.rag_temperature(),
    )
    reply = Reply("chatcmpl", "chat.completion", RAG_MODEL)
    events = rag_events(state, ask, tenant_of(request))
    first = await anext(events)
    passages = citations(first.citations) if isinstance(first, CitationsEvent) else []
    if body.stream:
        stream = rag_stream(reply, passages, events, _include_usage(body))
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    answer = await unless_disconnected(request, final_answer(events))
    rag = (passages, attributions(answer.attributions))
    return reply.chat(answer.answer, answer.finish_reason or "stop", rag_usage(answer), rag=rag)


# -- small helpers ----------------------------------------------------------------------------


def _prompt_list(prompt: str | list[str] | list[int] | list[list[int]]) -> list[str | list[int]]:
    """One prompt (text or token ids) or a batch of them, as a batch."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise ApiError(400, "prompt must not be empty")
    if all(isinstance(t, int) for t in prompt):
        return [[t for t in prompt if isinstance(t, int)]]
    return [p for p in prompt if isinstance(p, str | list)]


def _texts(embedding_input: str | list[str] | list[int] | list[list[int]]) -> str | list[str]:
    """The texts to embed; token ids are refused, with what to send instead."""
    if isinstance(embedding_input, str):
        return embedding_input
    texts = [t for t in embedding_input if isinstance(t, str)]
    if len(texts) != len(embedding_input):
        raise ApiError(
            400,
            "input must be text (a string or a list of strings), not token ids; with "
            "LangChain's OpenAIEmbeddings, pass check_embedding_ctx_length=False",
        )
    return texts


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


@dataclass(frozen=True, slots=True)
class ToolTurn:
    """A chat turn that offers tools: its prompt, sampling, the tools, how it splits."""

    token_ids: list[int]
    params: SamplingParams
    tools: list[dict[str, Any]]
    reasoning: Reasoning | None


async def _tool_reply(
    state: AppState,
    model: LoadedModel,
    request: Request,
    body: ChatRequest,
    turn: ToolTurn,
    reply: Reply,
) -> ChatCompletion | StreamingResponse:
    """A turn with tools: the whole reply, read into a thought, text and calls (streamed
    as chunks once whole)."""
    generation = Generation(time.perf_counter())
    salt = tenant_of(request)
    deltas = generate(state, model, turn.token_ids, turn.params, generation, salt=salt)
    await unless_disconnected(request, drain(deltas))
    split = split_reply(generation.text, turn.reasoning)
    text, calls = parse_tool_calls(split.content, tool_names(turn.tools))
    usage = usage_of(generation)
    finish = generation.finish_reason
    completion = reply.chat_tool_reply(text, calls, finish, usage, split.reasoning)
    if not body.stream:
        return completion
    stream = tool_reply_stream(reply, completion, _include_usage(body))
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def _stream_samples(
    state: AppState,
    model: LoadedModel,
    request: Request,
    body: _Sampling,
    token_ids: list[int],
    params: SamplingParams,
    reply: Reply,
    reasoning: Reasoning | None = None,
) -> StreamingResponse:
    """n > 1 streamed: every sample's deltas, each chunk saying whose it is."""
    generation = Generation(time.perf_counter())
    deltas = await primed(
        sample_deltas(state, model, token_ids, params, generation, salt=tenant_of(request))
    )
    logprobs = body.logprobs_asked(model)
    usage = _include_usage(body)
    stream = samples_stream(reply, deltas, generation, usage, body.n, logprobs, reasoning)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


def _asked(top: int, model: LoadedModel | None) -> LogprobsAsked:
    def token_text(token: int) -> str:
        assert model is not None  # only the responses read token texts
        return str(model.engine.tokenizer.decode([token]))

    return LogprobsAsked(top, token_text)


def _include_usage(body: _Sampling) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)
