"""Tensor and pipeline parallelism over gloo on this machine: every split of a tiny
random Llama (fp32) gives the single process's greedy tokens, prefix-cache hits and
preemptions included, and a lost rank fails the engine's requests instead of hanging."""

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from engine import SamplingParams
from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from engine.errors import EngineClosedError, EngineConfigError, EngineWorkerError
from engine.llm_engine import LLMEngine
from tests.tiny_model import save_tiny_llama

PREFIX = list(range(300, 332))  # two blocks every prompt shares
PROMPTS = [PREFIX + [1000 + i] * (4 + 3 * i) for i in range(6)]
GREEDY = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
# 12 blocks of 16 tokens against 6 sequences of up to 72 tokens: some must be preempted.
POOL = {"kv_cache_memory": 12 * 8192, "max_num_batched_tokens": 64}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("parallel") / "tiny")  # 2 KV heads


@pytest.fixture(scope="module")
def one_kv_head_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("parallel") / "mqa", num_key_value_heads=1)


def engine_for(model: Path, tp: int = 1, pp: int = 1, **options: Any) -> LLMEngine:
    config: dict[str, Any] = {"dtype": "float32", "quantization": "none", **POOL, **options}
    return LLMEngine(
        EngineConfig(model=str(model), tensor_parallel_size=tp, pipeline_parallel_size=pp, **config)
    )


def generate(engine: LLMEngine) -> tuple[dict[str, list[int]], int, int, int]:
    """Two waves (the second repeats the first's prompts, reversed): each request's
    tokens, the prompt tokens served from the prefix cache, the preemptions, and the
    most steps in flight at once."""
    tokens: dict[str, list[int]] = {}
    cached = deepest = 0
    try:
        for wave, prompts in enumerate([PROMPTS, PROMPTS[::-1]]):
            for i, prompt in enumerate(prompts):
                engine.add_request(prompt, GREEDY, f"{wave}-{i}")
            while engine.has_unfinished_requests():
                for output in engine.step():
                    if output.finished:
                        tokens[output.request_id] = output.token_ids
                        cached += output.num_cached_tokens
                deepest = max(deepest, engine.num_steps_in_flight)
        return tokens, cached, engine.scheduler.num_preemptions, deepest
    finally:
        engine.close()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture(scope="module")
def single(tiny_dir: Path) -> tuple[dict[str, list[int]], int, int]:
    return generate(engine_for(tiny_dir))


@pytest.mark.parametrize(("tp", "pp"), [(2, 1), (1, 2), (2, 2)])
def test_every_split_gives_the_single_process_tokens(tiny_dir, single, tp, pp) -> None:
    tokens, cached, preemptions, deepest = single
    assert cached > 0 and preemptions > 0 and deepest == 0  # the workload has both
    split = generate(engine_for(tiny_dir, tp, pp))
    assert split[0] == tokens
    if pp == 1:
        assert split == single  # the same steps, so the same hits and preemptions
    else:  # stages run as many steps at once as there are stages (other batches), so
        # between two calls of step() the newest is still in the pipeline
        assert split[1] > 0 and split[3] == pp - 1


def test_more_ranks_than_kv_heads_replicate_them(one_kv_head_dir) -> None:
    # NOTE: each rank holds the one KV head whole, so the same budget holds half the
    # blocks (more preemptions): the tokens are what must not change.
    split_tokens, *_ = generate(engine_for(one_kv_head_dir, 2))
    assert split_tokens == generate(engine_for(one_kv_head_dir))[0]


def test_reused_passages_are_the_same_under_tensor_parallelism(tiny_dir) -> None:
    passage = list(range(2000, 2040))
    prompts = [[1, 5, *passage, 7, 8], [1, 9, 9, 9, 9, 9, *passage, 3]]
    spans = [[(2, 42)], [(6, 46)]]

    def answers(tp: int) -> tuple[list[list[int]], int]:
        engine = engine_for(tiny_dir, tp, enable_passage_cache=True, passage_recompute_tokens=4)
        try:
            tokens, reused = [], 0
            for i, (prompt, span) in enumerate(zip(prompts, spans, strict=True)):
                engine.add_request(prompt, GREEDY, str(i), passages=span)
                while engine.has_unfinished_requests():
                    for output in engine.step():
                        if output.finished:
                            tokens.append(output.token_ids)
                            reused += output.num_reused_passages
            return tokens, reused
        finally:
            engine.close()

    single_tokens, single_reused = answers(1)
    assert single_reused == 1
    assert answers(2) == (single_tokens, 1)


def test_a_split_the_model_cannot_take_is_one_clear_error(tiny_dir) -> None:
    with pytest.raises(EngineConfigError, match="tensor parallel size 3 must divide"):
        engine_for(tiny_dir, 3)
    with pytest.raises(EngineConfigError, match="pipeline parallel size 3 is more than"):
        engine_for(tiny_dir, 1, 3)


def watched_engine(model: Path) -> tuple[AsyncLLMEngine, list[EngineWorkerError], int]:
    """A serving engine on 2 ranks, the losses it reports, and rank 1's process id."""
    lost: list[EngineWorkerError] = []
    engine = AsyncLLMEngine(engine_for(model, 2))
    engine.on_lost = lost.append
    worker = engine.engine.rank_health()[1]
    assert worker.pid is not None and worker.alive
    return engine, lost, worker.pid


def test_a_rank_that_dies_mid_request_fails_it_and_stops_the_engine(tiny_dir) -> None:
    engine, lost, pid = watched_engine(tiny_dir)
    long = SamplingParams(temperature=0, max_tokens=200, ignore_eos=True)

    async def first_tokens_then_kill() -> BaseException:
        outputs = engine.generate(PROMPTS[0], long)
        await anext(outputs)
        os.kill(pid, signal.SIGKILL)
        try:
            async for _ in outputs:
                pass
        except EngineClosedError as error:
            return error
        raise AssertionError("the request finished without its rank")

    started = time.monotonic()
    error = asyncio.run(asyncio.wait_for(first_tokens_then_kill(), timeout=60))
    assert time.monotonic() - started < 60
    assert "rank 1" in str(error) or "ranks failed" in str(error)
    assert "restart" in str(error)
    wait_for(lambda: lost)
    assert len(lost) == 1
    with pytest.raises(EngineClosedError, match="the engine was lost"):
        asyncio.run(anext(engine.generate(PROMPTS[1], GREEDY)))
    engine.shutdown()


def test_a_rank_that_dies_while_idle_is_noticed_at_once(tiny_dir) -> None:
    engine, lost, pid = watched_engine(tiny_dir)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: lost)
    assert "rank 1" in str(lost[0]) and "exited with code -9" in str(lost[0])
    engine.shutdown()


def test_int4_shards_hold_their_part_of_the_whole_models_weights(tiny_dir, tmp_path) -> None:
    """int4 groups run along input columns and each rank's columns start on a group
    boundary, so a shard's weights are its part of the whole model's int4 weights; what
    differs is the order of fp32 sums, which the int8 head's rows (quantized per row)
    can turn into a quantum's difference in a logit, not more."""
    options: dict[str, Any] = {"quantization": "int4", "home": tmp_path}
    params = SamplingParams(temperature=0, max_tokens=1, logprobs=5)

    def first_token(tp: int) -> dict[int, float]:
        engine = engine_for(tiny_dir, tp, **options)
        try:
            engine.add_request(PROMPTS[3], params, "0")
            while engine.has_unfinished_requests():
                (output,) = engine.step()
            assert output.logprobs is not None
            return output.logprobs[0]
        finally:
            engine.close()

    split, whole = first_token(2), first_token(1)
    assert max(split, key=split.__getitem__) == max(whole, key=whole.__getitem__)
    for token, logprob in whole.items():
        assert abs(split[token] - logprob) < 0.1, (token, split[token], logprob)
    saved = sorted(path.name for path in tmp_path.rglob("*.safetensors"))
    assert saved == [
        "int4-g32-tp0of2-pp0of1.safetensors",
        "int4-g32-tp1of2-pp0of1.safetensors",
        "int4-g32.safetensors",
    ]


def test_a_request_aborted_while_its_step_is_in_the_pipeline_gets_no_token(tiny_dir) -> None:
    def run(pp: int, abort: bool) -> dict[str, list[int]]:
        engine = engine_for(tiny_dir, 1, pp)
        try:
            for i, prompt in enumerate(PROMPTS[:3]):
                engine.add_request(prompt, GREEDY, str(i))
            tokens = {output.request_id: output.token_ids for output in engine.step()}
            if abort:  # the first step is still in the second stage
                assert not tokens and engine.num_steps_in_flight == 1
                engine.abort_request("1")
            while engine.has_unfinished_requests():
                for output in engine.step():
                    assert output.request_id != "1" or not abort
                    tokens[output.request_id] = output.token_ids
            return tokens
        finally:
            engine.close()

    expected = run(1, False)
    assert run(2, True) == {key: expected[key] for key in ("0", "2")}
