"""Plain generation for the compatible APIs: text deltas out, usage and timings kept, metrics fed.

OpenAI, Ollama and vLLM routes differ only in how they wrap the same stream of deltas.
"""

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from api.server.errors import ApiError
from api.server.model_pool import LoadedModel
from api.server.state import AppState
from engine.outputs import CompletionOutput, RequestOutput
from engine.reasoning import Reasoned, Reasoning, ReasoningStream
from engine.sampling_params import MIN_REPETITION_PENALTY, SamplingParams
from engine.structured_outputs import StructuredOutputs

Delta = TypeVar("Delta", str, tuple[int, str])  # a text delta, or a sample's (n > 1)


class Penalties(BaseModel):
    """OpenAI's penalties (and vLLM's repetition penalty), as both APIs take them."""

    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    repetition_penalty: float = Field(
        1.0,
        ge=MIN_REPETITION_PENALTY,
        le=2,
        description="vLLM's: above 1 discourages tokens already seen",
    )


def sampling_params(
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    max_tokens: int | None,
    stop: str | list[str] | None,
    seed: int | None,
    logprobs: int | None = None,
    n: int = 1,
    structured: StructuredOutputs | None = None,
    penalties: Penalties | None = None,
) -> SamplingParams:
    """A request's sampling options as the engine takes them, whichever API they came by:
    one stop string or a list; a top_k of 0 or less keeps every token (Ollama sends 0)."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    penalties = penalties or Penalties()
    return SamplingParams(
        presence_penalty=penalties.presence_penalty,
        frequency_penalty=penalties.frequency_penalty,
        repetition_penalty=penalties.repetition_penalty,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k if top_k > 0 else -1,
        max_tokens=max_tokens,
        stop=tuple(stops),
        seed=seed,
        logprobs=logprobs,
        n=n,
        structured_outputs=structured,
    )


@dataclass
class Generation:
    """One request's progress; complete once the stream is exhausted."""

    started: float  # time.perf_counter() at arrival
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    first_token_at: float | None = None
    last_token_at: float | None = None
    token_ids: list[int] = field(default_factory=list)  # generated so far
    logprobs: list[dict[int, float]] | None = None  # per token, when the request asked
    samples: list[CompletionOutput] | None = None  # with n > 1, every sample (text: the first)

    @property
    def ttft_s(self) -> float:
        return (self.first_token_at or self.started) - self.started

    @property
    def total_s(self) -> float:
        return (self.last_token_at or time.perf_counter()) - self.started

    @property
    def decode_s(self) -> float:
        return self.total_s - self.ttft_s


def prompt_ids(state: AppState, model: LoadedModel, prompt: str | list[int]) -> list[int]:
    """Token ids of a raw prompt; a text over the server's size limit is refused first."""
    if isinstance(prompt, str):
        if len(prompt) > state.settings.max_prompt_chars:
            raise ApiError(
                400, f"the prompt is longer than {state.settings.max_prompt_chars} chars"
            )
        return list(model.engine.tokenizer(prompt).input_ids)
    return list(prompt)


def chat_ids(
    state: AppState,
    model: LoadedModel,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    thinking: bool | None = None,
) -> list[int]:
    """Token ids of a conversation (and the tools it may call) under the chat template;
    `thinking` False asks a reasoning model not to think, None leaves its default."""
    if not messages:
        raise ApiError(400, "messages must not be empty")
    size = sum(len(m["content"]) for m in messages) + len(json.dumps(tools or []))
    if size > state.settings.max_prompt_chars:
        raise ApiError(400, f"the messages are longer than {state.settings.max_prompt_chars} chars")
    return model.prompts.chat(messages, tools, thinking)


async def embed_texts(state: AppState, texts: str | list[str]) -> tuple[list[list[float]], int]:
    """Vectors of `texts` from the index's embedder, and how many tokens they took."""
    batch = [texts] if isinstance(texts, str) else texts
    if not batch or any(not t for t in batch):
        raise ApiError(400, "input must be a non-empty string or list of non-empty strings")
    embedder = state.index.embedder
    vectors = await asyncio.to_thread(embedder.embed_documents, batch)
    tokens = sum(await asyncio.to_thread(embedder.count_tokens, batch))
    return [v.tolist() for v in vectors], tokens


async def generate(
    state: AppState,
    model: LoadedModel,
    token_ids: list[int],
    params: SamplingParams,
    generation: Generation,
    *,
    salt: str | None,
) -> AsyncGenerator[str, None]:
    """Yield text deltas; `generation` holds the totals once the iterator is exhausted.

    `salt` keeps the request's prefix-cache blocks to its own namespace (its tenant's).
    """
    outputs = model.engine.generate(token_ids, params, cache_salt=salt)
    async with aclosing(outputs):  # a client that leaves aborts the request at once
        async for output in outputs:
            delta = _record(state, generation, output)
            if delta:
                yield delta


async def sample_deltas(
    state: AppState,
    model: LoadedModel,
    token_ids: list[int],
    params: SamplingParams,
    generation: Generation,
    *,
    salt: str | None,
) -> AsyncGenerator[tuple[int, str], None]:
    """`generate` for n > 1 streamed: (sample index, new text) as each sample grows."""
    shown = [""] * params.n
    outputs = model.engine.generate(token_ids, params, cache_salt=salt)
    async with aclosing(outputs):
        async for output in outputs:
            _record(state, generation, output)
            for sample in output.outputs:
                if len(sample.text) > len(shown[sample.index]):
                    yield sample.index, sample.text[len(shown[sample.index]) :]
                    shown[sample.index] = sample.text


def _record(state: AppState, generation: Generation, output: RequestOutput) -> str:
    now = time.perf_counter()
    if generation.first_token_at is None:
        generation.first_token_at = now
        state.metrics.ttft.observe(now - generation.started)
    elif generation.last_token_at is not None:
        state.metrics.inter_token.observe(now - generation.last_token_at)
    generation.last_token_at = now
    delta = output.text[len(generation.text) :]
    generation.text = output.text
    generation.token_ids, generation.logprobs = output.token_ids, output.logprobs
    generation.samples = output.samples
    samples = output.samples  # n > 1; else the one output, without building `outputs`
    counts = [len(s.token_ids) for s in samples] if samples else [len(output.token_ids)]
    generation.completion_tokens = sum(counts)
    generation.prompt_tokens = output.num_prompt_tokens
    generation.cached_tokens = output.num_cached_tokens
    if output.finished:
        generation.finish_reason = output.finish_reason
        state.metrics.prompt_tokens.inc(output.num_prompt_tokens)
        state.metrics.generation_tokens.inc(generation.completion_tokens)
    return delta


async def split_deltas(
    deltas: AsyncIterator[str], generation: Generation, reasoning: Reasoning | None
) -> AsyncIterator[Reasoned]:
    """Deltas as (thought, answer) deltas, never both empty; a model that does not think
    (None) has only answer."""
    if reasoning is None:
        async for delta in deltas:
            yield Reasoned("", delta)
        return
    stream = ReasoningStream(reasoning)
    async for _ in deltas:
        step = stream.advance(generation.text)
        if step.reasoning or step.content:
            yield step
    last = stream.advance(generation.text, final=True)
    if last.reasoning or last.content:
        yield last


async def drain(deltas: AsyncIterator[str]) -> None:
    """Run a generation to the end (non-streaming responses read `Generation` after)."""
    async for _ in deltas:
        pass


async def primed(deltas: AsyncGenerator[Delta, None]) -> AsyncIterator[Delta]:
    """Start `deltas` now, so that a refused request (too long, overloaded) is an HTTP error.

    Returns an iterator that yields the first delta again, then the rest.
    """
    try:
        first = await anext(deltas)
    except StopAsyncIteration:
        return _empty()
    return _chain(first, deltas)


async def _chain(first: Delta, rest: AsyncGenerator[Delta, None]) -> AsyncIterator[Delta]:
    yield first
    async with aclosing(rest):
        async for delta in rest:
            yield delta


async def _empty() -> AsyncIterator[Delta]:
    return
    yield  # an async generator that yields nothing
