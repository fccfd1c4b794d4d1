"""The serving engine on the real small model: streams, batching, aborts, failures."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from engine import LLM, AsyncLLMEngine, EngineStats, SamplingParams
from engine.errors import (
    EngineClosedError,
    EngineOverloadedError,
    EngineStepError,
    PromptTooLongError,
)
from engine.outputs import RequestOutput

pytestmark = pytest.mark.slow

MODEL = "smollm2:135m-instruct"
GREEDY = SamplingParams(temperature=0, max_tokens=8)
LONG = SamplingParams(temperature=0, max_tokens=200, ignore_eos=True)  # outlives any test
PROMPTS = ["The capital of France is", "Count to five:", "Tell me a joke.", "Water boils at"]
# More than one 16-token block, so that its first block goes into the prefix cache.
FAILING_PROMPT = "In a quiet village by the sea, an old fisherman told the children a long story"
SHARED_PROMPT = (
    "You answer questions about the documents below. Cite them by number. "
    "Document 1: The river flows north through the valley and feeds the lake. Question:"
)


@pytest.fixture(scope="module")
def llm() -> LLM:
    return LLM(MODEL, kv_cache_memory=128 << 20, max_model_len=512)


@pytest.fixture(scope="module")
def expected(llm: LLM) -> dict[str, list[int]]:
    """The offline API's greedy tokens for each prompt, from a cold prefix cache.

    NOTE: in the batch shape the tests run them in (PROMPTS together, FAILING_PROMPT
    alone): a matmul over five rows may round differently from one over a single row,
    and a near-tie between two tokens then breaks the other way.
    """
    outputs = [*llm.generate(PROMPTS, GREEDY), *llm.generate([FAILING_PROMPT], GREEDY)]
    llm.engine.block_manager.reset_prefix_cache()  # the tests below expect a cold cache too
    return {out.prompt: out.token_ids for out in outputs}


@pytest.fixture
def serving(llm: LLM, expected: dict[str, list[int]]) -> Iterator[AsyncLLMEngine]:
    """A fresh engine thread per test over the one model.

    NOTE: it takes `expected` so that the offline API has used the engine before any
    thread owns it.
    """
    with AsyncLLMEngine(llm.engine) as serving:
        yield serving
    assert not llm.engine.has_unfinished_requests()
    assert llm.engine.block_manager.num_used_blocks == 0


def settled(serving: AsyncLLMEngine, timeout: float = 10.0) -> EngineStats:
    """The stats once the engine thread holds no request (it applies aborts between steps)."""
    deadline = time.monotonic() + timeout
    while (stats := serving.stats()).num_running or stats.num_waiting:
        assert time.monotonic() < deadline, f"the engine is still busy: {stats}"
        time.sleep(0.01)
    return stats


async def collect(outputs: AsyncIterator[RequestOutput]) -> list[RequestOutput]:
    return [output async for output in outputs]


async def first(outputs: AsyncIterator[RequestOutput]) -> RequestOutput:
    return await anext(outputs)


def test_concurrent_streams_match_generate_and_run_as_one_batch(
    serving: AsyncLLMEngine, expected: dict[str, list[int]]
) -> None:
    async def main() -> list[list[RequestOutput]]:
        return await asyncio.gather(*(collect(serving.generate(p, GREEDY)) for p in PROMPTS))

    before = serving.stats().num_steps
    for prompt, outputs in zip(PROMPTS, asyncio.run(main()), strict=True):
        assert outputs[-1].token_ids == expected[prompt]
        assert [len(out.token_ids) for out in outputs] == list(range(1, len(outputs) + 1))
        assert [out.finished for out in outputs] == [False] * (len(outputs) - 1) + [True]
    steps = settled(serving).num_steps - before
    one_by_one = sum(len(expected[p]) for p in PROMPTS)  # one token per step per request
    assert steps < one_by_one / 2


def test_sync_stream_matches_and_closing_it_early_aborts(
    serving: AsyncLLMEngine, expected: dict[str, list[int]]
) -> None:
    assert list(serving.stream(PROMPTS[0], GREEDY))[-1].token_ids == expected[PROMPTS[0]]
    stream = serving.stream(PROMPTS[1], LONG)
    next(stream)
    stream.close()
    stats = settled(serving)
    assert stats.kv_blocks_used == 0
    assert stats.num_aborted_requests == 1


def test_a_consumer_leaving_early_aborts_its_request(serving: AsyncLLMEngine) -> None:
    async def leave_by_aclose() -> None:
        outputs = serving.generate(PROMPTS[0], LONG)
        await anext(outputs)
        await outputs.aclose()

    async def leave_by_break() -> None:
        async for _ in serving.generate(PROMPTS[1], LONG):
            break

    async def leave_by_cancel() -> None:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in serving.generate(PROMPTS[2], LONG):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    for leave in (leave_by_aclose, leave_by_break, leave_by_cancel):
        asyncio.run(leave())
        assert settled(serving).kv_blocks_used == 0
    assert serving.stats().num_aborted_requests == 3


def test_abort_by_id_ends_the_stream_without_a_finished_output(serving: AsyncLLMEngine) -> None:
    async def main() -> tuple[RequestOutput, list[RequestOutput]]:
        outputs = serving.generate(PROMPTS[0], LONG, request_id="mine")
        head = await anext(outputs)
        serving.abort("mine")
        serving.abort("nobody's")  # unknown ids are ignored
        return head, await collect(outputs)

    head, rest = asyncio.run(main())
    assert head.request_id == "mine"
    assert not any(out.finished for out in rest)
    assert settled(serving).kv_blocks_used == 0


def test_bad_prompts_fail_only_their_own_caller(
    serving: AsyncLLMEngine, expected: dict[str, list[int]]
) -> None:
    async def main() -> list[object]:
        return await asyncio.gather(
            collect(serving.generate(PROMPTS[0], GREEDY, request_id="taken")),
            first(serving.generate(PROMPTS[1], GREEDY, request_id="taken")),
            first(serving.generate("", GREEDY)),
            first(serving.generate([1] * 600, GREEDY)),
            first(serving.generate([10**9], GREEDY)),
            return_exceptions=True,
        )

    good, duplicate, empty, too_long, bad_ids = asyncio.run(main())
    assert isinstance(good, list) and good[-1].token_ids == expected[PROMPTS[0]]
    assert isinstance(duplicate, ValueError) and "already in use" in str(duplicate)
    assert isinstance(empty, ValueError) and "empty" in str(empty)
    assert isinstance(too_long, PromptTooLongError)
    assert isinstance(bad_ids, ValueError) and "token ids" in str(bad_ids)
    assert settled(serving).num_rejected_requests == 4


def test_a_failing_step_fails_its_requests_and_the_engine_keeps_serving(
    serving: AsyncLLMEngine, expected: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = serving.engine.runner
    execute, calls = runner.execute, []

    def fail_once(*args: object) -> object:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("the device fell over")
        return execute(*args)

    monkeypatch.setattr(runner, "execute", fail_once)
    with pytest.raises(EngineStepError, match="the device fell over") as failed:
        list(serving.stream(FAILING_PROMPT, GREEDY))
    assert isinstance(failed.value.__cause__, RuntimeError)
    # Its first block was keyed in the prefix cache but never computed: no hit may use it.
    outputs = list(serving.stream(FAILING_PROMPT, GREEDY))
    assert outputs[-1].token_ids == expected[FAILING_PROMPT]
    assert outputs[-1].num_cached_tokens == 0
    stats = settled(serving)
    assert stats.num_failed_requests == 1 and stats.kv_blocks_used == 0


def test_more_pending_requests_than_allowed_are_refused_at_once(llm: LLM) -> None:
    with AsyncLLMEngine(llm.engine, max_pending_requests=2) as serving:
        running = [serving.stream(prompt, LONG) for prompt in PROMPTS[:2]]
        for stream in running:
            next(stream)
        with pytest.raises(EngineOverloadedError, match="max_pending_requests=2"):
            next(serving.stream(PROMPTS[2], GREEDY))
        for stream in running:
            stream.close()
        settled(serving)
        assert list(serving.stream(PROMPTS[2], GREEDY))[-1].finished


def test_shutdown_fails_requests_in_flight_and_refuses_new_ones(llm: LLM) -> None:
    serving = AsyncLLMEngine(llm.engine)
    stream = serving.stream(PROMPTS[0], LONG)
    next(stream)
    serving.shutdown()
    serving.shutdown()  # a second call is harmless
    with pytest.raises(EngineClosedError):
        list(stream)
    with pytest.raises(EngineClosedError, match="shut down"):
        next(serving.stream(PROMPTS[0], GREEDY))
    with pytest.raises(EngineClosedError):
        asyncio.run(first(serving.generate(PROMPTS[0], GREEDY)))
    assert serving.stats().num_failed_requests == 1
    assert not llm.engine.has_unfinished_requests()
    assert llm.engine.block_manager.num_used_blocks == 0


def test_callers_on_other_threads_and_event_loops(
    serving: AsyncLLMEngine, expected: dict[str, list[int]]
) -> None:
    tokens: dict[str, list[int]] = {}

    def on_own_loop(prompt: str) -> None:
        tokens[prompt] = asyncio.run(collect(serving.generate(prompt, GREEDY)))[-1].token_ids

    def synchronously(prompt: str) -> None:
        tokens[prompt] = list(serving.stream(prompt, GREEDY))[-1].token_ids

    targets = zip([on_own_loop, on_own_loop, synchronously], PROMPTS[:3], strict=True)
    threads = [threading.Thread(target=target, args=(prompt,)) for target, prompt in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tokens == {prompt: expected[prompt] for prompt in PROMPTS[:3]}


def test_stats_count_tokens_and_prefix_cache_hits(serving: AsyncLLMEngine) -> None:
    before = serving.stats()
    runs = [list(serving.stream(SHARED_PROMPT, GREEDY)) for _ in range(2)]
    after = settled(serving)
    num_prompt = runs[0][-1].num_prompt_tokens
    block_size = serving.engine.config.block_size
    reused = (num_prompt - 1) // block_size * block_size  # every full block but the last token's
    assert runs[1][-1].num_cached_tokens == reused > 0
    assert after.prefix_cache_hit_tokens - before.prefix_cache_hit_tokens == reused
    assert after.prefix_cache_query_tokens - before.prefix_cache_query_tokens == 2 * num_prompt
    assert after.num_prompt_tokens - before.num_prompt_tokens == 2 * num_prompt
    generated = sum(len(outputs) for outputs in runs)
    assert after.num_generation_tokens - before.num_generation_tokens == generated
    assert after.num_finished_requests - before.num_finished_requests == 2
    assert after.kv_blocks_cached > 0 and after.kv_blocks_used == 0
    assert after.kv_blocks_total == serving.engine.block_manager.num_blocks


def test_complete_runs_prompts_together_and_returns_their_final_outputs(
    serving: AsyncLLMEngine, expected: dict[str, list[int]]
) -> None:
    before = serving.stats().num_steps
    outputs = serving.complete(PROMPTS, GREEDY)
    assert [out.token_ids for out in outputs] == [expected[p] for p in PROMPTS]
    assert all(out.finished for out in outputs)
    steps = settled(serving).num_steps - before
    assert steps < sum(len(expected[p]) for p in PROMPTS) / 2  # one batch, not one by one


def test_complete_with_a_bad_prompt_raises_and_aborts_the_others(serving: AsyncLLMEngine) -> None:
    with pytest.raises(PromptTooLongError):
        serving.complete(["word " * 600, PROMPTS[0]], LONG)  # max_model_len is 512
    deadline = time.monotonic() + 10
    while serving.stats().num_aborted_requests == 0:  # the abort follows the raise
        assert time.monotonic() < deadline, "the other request was not aborted"
        time.sleep(0.01)
    stats = settled(serving)
    assert stats.kv_blocks_used == 0 and stats.num_aborted_requests == 1


def test_finish_returns_the_last_output_and_a_cancelled_caller_aborts(
    serving: AsyncLLMEngine, expected: dict[str, list[int]]
) -> None:
    output = asyncio.run(serving.finish(PROMPTS[0], GREEDY))
    assert output.finished and output.token_ids == expected[PROMPTS[0]]

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(serving.finish(PROMPTS[1], LONG), timeout=0.2)

    asyncio.run(give_up())
    stats = settled(serving)
    assert stats.kv_blocks_used == 0 and stats.num_aborted_requests == 1
    assert serving.max_model_len == 512
