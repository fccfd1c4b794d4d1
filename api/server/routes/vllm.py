"""vLLM's simple `POST /generate`: `{"prompt", "max_tokens", "stream", ...}` -> `{"text": [...]}`.

As vLLM's demo server does, `text` holds the prompt followed by the generated text, and
a stream sends one such JSON object per update, each ended by a NUL byte.
"""

import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field

from api.server.auth import tenant_of
from api.server.deps import StateDep
from api.server.disconnect import unless_disconnected
from api.server.generation import (
    Generation,
    Penalties,
    drain,
    generate,
    primed,
    prompt_ids,
    sample_deltas,
    sampling_params,
)
from api.server.state import AppState
from api.server.unsupported import Neutral, empty, one_of, refuse_unimplemented
from api.server.wire.errors import errors
from api.server.wire.vllm import GenerateResponse
from engine.sampling_params import SamplingParams

router = APIRouter(tags=["vllm"])
# vLLM's SamplingParams fields this route leaves alone, with the values that ask nothing.
NEUTRAL: dict[str, Neutral] = {
    "best_of": one_of(1),
    "min_p": one_of(0),
    "ignore_eos": one_of(False),
    "skip_special_tokens": one_of(True),
    "stop_token_ids": empty,
}


class GenerateRequest(Penalties):
    model_config = ConfigDict(extra="allow")
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(-1, ge=-1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    n: int = Field(1, ge=1, description="Samples of the prompt; they share its KV blocks.")


# NOTE: NUL-ended JSON objects (vLLM's demo server's stream) are not one JSON document,
# so the stream does not claim to be application/json.
STREAM_MEDIA_TYPE = "application/octet-stream"


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses=errors(422, 503)
    | {
        200: {
            "content": {STREAM_MEDIA_TYPE: {}},
            "description": "JSON; with `stream`, a stream of JSON objects, each ended by NUL",
        }
    },
)
async def generate_route(
    body: GenerateRequest, request: Request, state: StateDep
) -> GenerateResponse | StreamingResponse:
    """Complete a raw prompt (no chat template)."""
    refuse_unimplemented(body, NEUTRAL)
    params = sampling_params(
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        max_tokens=body.max_tokens,
        stop=body.stop,
        seed=body.seed,
        n=body.n,
        penalties=body,
    )
    generation = Generation(time.perf_counter())
    model = state.models.own  # vLLM's demo server runs one model: here, the server's own
    token_ids = prompt_ids(state, model, body.prompt)
    if body.stream and body.n > 1:
        return await _stream_samples(state, request, body, token_ids, params)
    deltas = generate(state, model, token_ids, params, generation, salt=tenant_of(request))
    if not body.stream:
        await unless_disconnected(request, drain(deltas))
        samples = generation.samples or []
        texts = [s.text for s in samples] if samples else [generation.text]
        return GenerateResponse(
            text=[body.prompt + text for text in texts], finish_reason=generation.finish_reason
        )
    stream = await primed(deltas)

    async def updates() -> AsyncIterator[bytes]:
        text = body.prompt
        async for delta in stream:
            text += delta
            yield (json.dumps({"text": [text]}, ensure_ascii=False) + "\0").encode()

    return StreamingResponse(updates(), media_type=STREAM_MEDIA_TYPE)


async def _stream_samples(
    state: AppState,
    request: Request,
    body: GenerateRequest,
    token_ids: list[int],
    params: SamplingParams,
) -> StreamingResponse:
    """n > 1 streamed: each update holds every sample's text so far, as vLLM's does."""
    generation = Generation(time.perf_counter())
    deltas = await primed(
        sample_deltas(
            state, state.models.own, token_ids, params, generation, salt=tenant_of(request)
        )
    )

    async def updates() -> AsyncIterator[bytes]:
        texts = [body.prompt] * body.n
        async for index, delta in deltas:
            texts[index] += delta
            yield (json.dumps({"text": texts}, ensure_ascii=False) + "\0").encode()

    return StreamingResponse(updates(), media_type=STREAM_MEDIA_TYPE)
