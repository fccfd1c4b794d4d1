"""Ollama-compatible routes: generate, chat, embed, tags and version under `/api`.

As in Ollama, responses stream as NDJSON unless `"stream": false`, and the final object
has `done: true`, `done_reason` and durations in nanoseconds. The model `pagedrag-rag`
on `/api/chat` answers over the documents.
"""

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.server.auth import tenant_of
from api.server.chat import (
    RAG_MODEL,
    chat_messages,
    check_model,
    final_answer,
    rag_events,
    rag_request,
    withdrawn,
)
from api.server.deps import StateDep
from api.server.disconnect import unless_disconnected
from api.server.generation import (
    Generation,
    chat_ids,
    drain,
    embed_texts,
    generate,
    primed,
    prompt_ids,
)
from api.server.settings import VERSION
from api.server.state import AppState
from api.server.streaming import ndjson
from engine.sampling_params import SamplingParams
from rag.answer import DoneEvent, TokenEvent

router = APIRouter(prefix="/api", tags=["ollama"])
NDJSON = "application/x-ndjson"


class Options(BaseModel):
    model_config = ConfigDict(extra="allow")  # Ollama's many runner options are ignored

    temperature: float = Field(0.8, ge=0, le=2)  # Ollama's defaults
    top_p: float = Field(0.9, gt=0, le=1)
    top_k: int = Field(40, ge=-1)
    num_predict: int | None = None  # -1 or None: until EOS or the context is full
    seed: int | None = None
    stop: list[str] | None = None

    def rag_temperature(self) -> float | None:
        """The request's own temperature; None (greedy, the RAG default) when it set none."""
        return self.temperature if "temperature" in self.model_fields_set else None

    def max_tokens(self) -> int | None:
        """`num_predict` as a token limit (None: until EOS or the context is full)."""
        return self.num_predict if self.num_predict and self.num_predict > 0 else None

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k if self.top_k > 0 else -1,
            max_tokens=self.max_tokens(),
            stop=tuple(self.stop or ()),
            seed=self.seed,
        )


class _OllamaRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    stream: bool = True
    options: Options = Field(default_factory=Options)


class GenerateRequest(_OllamaRequest):
    prompt: str = ""
    system: str | None = None
    raw: bool = False


class ChatRequest(_OllamaRequest):
    messages: list[dict[str, Any]] = Field(default_factory=list)


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str]


@router.get("/version")
async def version() -> dict[str, str]:
    """The server's version."""
    return {"version": VERSION}


@router.get("/tags")
async def tags(state: StateDep) -> dict[str, Any]:
    """The installed generator, as `ollama list` shows it."""
    path = state.engine.model_path
    size = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    details = {
        "format": "safetensors",
        "family": _family(state),
        "parameter_size": "",
        "quantization_level": "",
    }
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "modified_at": modified,
                "size": size,
                "digest": "",
                "details": details,
            }
            for name in (state.model_name, RAG_MODEL)
        ]
    }


@router.post("/generate")
async def generate_route(body: GenerateRequest, request: Request, state: StateDep) -> Any:
    """Complete a prompt (with the chat template unless `raw`)."""
    check_model(state, body.model)
    started = time.perf_counter()
    if not body.prompt:  # Ollama loads the model and answers done for an empty prompt
        return _final(state, body.model, Generation(started), {"response": ""})
    if body.raw:
        token_ids = prompt_ids(state, body.prompt)
    else:
        system = [{"role": "system", "content": body.system}] if body.system else []
        token_ids = chat_ids(state, [*system, {"role": "user", "content": body.prompt}])
    return await _respond(state, request, body, token_ids, "response")


@router.post("/chat")
async def chat_route(body: ChatRequest, request: Request, state: StateDep) -> Any:
    """Chat with the model; the model `pagedrag-rag` answers over the documents."""
    if body.model == RAG_MODEL:
        return await _rag_chat(body, request, state)
    check_model(state, body.model)
    messages = chat_messages(body.messages)
    if not messages:
        return _final(state, body.model, Generation(time.perf_counter()), _assistant(""))
    return await _respond(state, request, body, chat_ids(state, messages), "message")


@router.post("/embed")
async def embed(body: EmbedRequest, state: StateDep) -> dict[str, Any]:
    """Embeddings from the index's embedder, one per input."""
    started = time.perf_counter()
    vectors, tokens = await embed_texts(state, body.input)
    return {
        "model": body.model,
        "embeddings": vectors,
        "total_duration": _ns(time.perf_counter() - started),
        "load_duration": 0,
        "prompt_eval_count": tokens,
    }


# -- responses ------------------------------------------------------------------------------


async def _respond(
    state: AppState, request: Request, body: _OllamaRequest, token_ids: list[int], field: str
) -> Any:
    generation = Generation(time.perf_counter())
    deltas = generate(
        state, token_ids, body.options.sampling(), generation, salt=tenant_of(request)
    )

    def piece(text: str) -> dict[str, Any]:
        return {"response": text} if field == "response" else _assistant(text)

    if not body.stream:
        await unless_disconnected(request, drain(deltas))
        return _final(state, body.model, generation, piece(generation.text))
    stream = await primed(deltas)

    async def lines() -> AsyncIterator[str]:
        async for delta in stream:
            yield ndjson({**_head(body.model), **piece(delta), "done": False})
        yield ndjson(_final(state, body.model, generation, piece("")))

    return StreamingResponse(lines(), media_type=NDJSON)


async def _rag_chat(body: ChatRequest, request: Request, state: StateDep) -> Any:
    ask = rag_request(
        chat_messages(body.messages),
        max_tokens=body.options.max_tokens(),
        temperature=body.options.rag_temperature(),
    )
    events = rag_events(state, ask, tenant_of(request))
    await anext(events)  # the citations: validation and retrieval errors become HTTP errors
    generation = Generation(time.perf_counter())
    if not body.stream:
        answer = await unless_disconnected(request, final_answer(events))
        return _rag_final(state, body.model, generation, answer, _assistant(answer.answer))

    async def lines() -> AsyncIterator[str]:
        streamed = False
        async for event in events:
            if isinstance(event, TokenEvent):
                yield ndjson({**_head(body.model), **_assistant(event.delta), "done": False})
                streamed = True
            elif isinstance(event, DoneEvent):
                text = "" if event.answer.found else withdrawn(event.answer, streamed)
                yield ndjson(
                    _rag_final(state, body.model, generation, event.answer, _assistant(text))
                )

    return StreamingResponse(lines(), media_type=NDJSON)


def _final(state: AppState, model: str, g: Generation, piece: dict[str, Any]) -> dict[str, Any]:
    return {
        **_head(model),
        **piece,
        "done": True,
        "done_reason": "length" if g.finish_reason == "length" else "stop",
        "total_duration": _ns(g.total_s),
        "load_duration": 0,
        "prompt_eval_count": g.prompt_tokens,
        "prompt_eval_duration": _ns(g.ttft_s),
        "eval_count": g.completion_tokens,
        "eval_duration": _ns(g.decode_s),
    }


def _rag_final(
    state: AppState, model: str, g: Generation, answer: Any, piece: dict[str, Any]
) -> dict[str, Any]:
    timings, usage = answer.timings, answer.usage
    ttft_ms = timings.ttft_ms or timings.total_ms
    return {
        **_head(model),
        **piece,
        "done": True,
        "done_reason": "length" if answer.finish_reason == "length" else "stop",
        "total_duration": _ns(timings.total_ms / 1000),
        "load_duration": 0,
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": _ns(ttft_ms / 1000),
        "eval_count": usage.completion_tokens,
        "eval_duration": _ns(timings.decode_ms / 1000),
        "citations": [c.to_dict() for c in answer.citations],
        "attributions": [a.to_dict() for a in answer.attributions],
    }


def _head(model: str) -> dict[str, Any]:
    return {"model": model, "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}


def _assistant(text: str) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": text}}


def _family(state: AppState) -> str:
    config = state.engine.engine.runner.model.config
    return "qwen2" if config.qkv_bias else "llama"


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))
