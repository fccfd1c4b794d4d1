"""One request can never fail a step for the others (the real small model).

A request is poisoned by making the sampler or the model runner raise whenever it is in
the batch, as a bug or a value no check caught would. It alone ends, with finish_reason
"error"; its batch-mates go on and, where the batch shapes allow an exact comparison,
draw the very tokens they draw beside a healthy twin that is aborted instead.
"""

import asyncio
from dataclasses import replace

import pytest

import engine.llm_engine as llm_engine
from engine import LLM, AsyncLLMEngine, SamplingParams
from engine.errors import EngineStepError
from engine.llm_engine import LLMEngine
from engine.outputs import RequestOutput

pytestmark = pytest.mark.slow

MODEL = "smollm2:135m-instruct"
PROMPTS = ["The capital of France is", "Count to five:", "Tell me a joke.", "Water boils at"]
FIFTH = "In a quiet village by the sea, an old fisherman"
GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
SEEDED = SamplingParams(temperature=0.9, top_p=0.95, seed=7, max_tokens=12, ignore_eos=True)
HEALTHY = [GREEDY, SEEDED, GREEDY, SEEDED]
POISON = SamplingParams(temperature=0.5, seed=1, max_tokens=12, ignore_eos=True)


@pytest.fixture(scope="module")
def engine() -> LLMEngine:
    return LLM(MODEL, kv_cache_memory=128 << 20, max_model_len=512).engine


def run(engine: LLMEngine, fifth: SamplingParams, *, abort_fifth: bool) -> dict[str, RequestOutput]:
    """The four healthy requests and a fifth, stepped to the end; the fifth is aborted
    after the first step when asked (the reference run)."""
    for number, (prompt, params) in enumerate(zip(PROMPTS, HEALTHY, strict=True)):
        engine.add_request(prompt, params, request_id=f"healthy-{number}")
    engine.add_request(FIFTH, fifth, request_id="fifth")
    finished = {o.request_id: o for o in engine.step() if o.finished}
    if abort_fifth:
        engine.abort_request("fifth")
    while engine.has_unfinished_requests():
        finished |= {o.request_id: o for o in engine.step() if o.finished}
    assert engine.block_manager.num_used_blocks == 0
    return finished


def poisoned_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampling raises whenever POISON is among its rows, after drawing (so the seeded
    rows' generators have moved on and must be rewound)."""
    sample = llm_engine.sample

    def poisoned(logits, params, generators):
        tokens = sample(logits, params, generators)
        if any(p is POISON for p in params):
            raise RuntimeError("a value no check caught")
        return tokens

    monkeypatch.setattr(llm_engine, "sample", poisoned)


def test_a_request_whose_sampling_raises_fails_alone(engine, monkeypatch) -> None:
    engine.block_manager.reset_prefix_cache()
    reference = run(engine, replace(POISON), abort_fifth=True)  # an equal twin, not POISON
    engine.block_manager.reset_prefix_cache()
    poisoned_sampler(monkeypatch)
    outputs = run(engine, POISON, abort_fifth=False)
    failed = outputs.pop("fifth")
    assert failed.finish_reason == "error" and isinstance(failed.error, RuntimeError)
    assert set(outputs) == {f"healthy-{n}" for n in range(4)}
    for request_id, output in outputs.items():
        assert output.finish_reason == "length" and output.error is None, request_id
        assert output.token_ids == reference[request_id].token_ids, request_id


def test_a_request_whose_forward_pass_raises_fails_alone(engine, monkeypatch) -> None:
    """The batch is run again in halves until the culprit is alone."""
    execute, batches = engine.runner.execute, []

    def poisoned(scheduled):
        batches.append(len(scheduled))
        if any(item.seq.request_id == "fifth" for item in scheduled):
            raise RuntimeError("the poisoned sequence")
        return execute(scheduled)

    monkeypatch.setattr(engine.runner, "execute", poisoned)
    outputs = run(engine, GREEDY, abort_fifth=False)
    failed = outputs.pop("fifth")
    assert failed.finish_reason == "error" and "poisoned" in str(failed.error)
    assert failed.token_ids == []
    for request_id, output in outputs.items():
        assert output.finish_reason == "length" and len(output.token_ids) == 12, request_id
    # The whole batch, then halves down to the culprit; then the others decode on together.
    assert batches[:7] == [5, 2, 3, 1, 2, 1, 1]
    assert batches[7:] and all(size == 4 for size in batches[7:])


def test_a_poisoned_stream_fails_alone_while_healthy_streams_finish(engine, monkeypatch) -> None:
    """Through the serving engine: the poisoned caller gets an EngineStepError, the
    others their whole streams, and the failure is counted once."""
    poisoned_sampler(monkeypatch)

    async def main() -> list[object]:
        async def collect(prompt: str, params: SamplingParams) -> list[RequestOutput]:
            return [output async for output in serving.generate(prompt, params)]

        healthy = [collect(p, params) for p, params in zip(PROMPTS, HEALTHY, strict=True)]
        return await asyncio.gather(*healthy, collect(FIFTH, POISON), return_exceptions=True)

    with AsyncLLMEngine(engine) as serving:
        *streams, failure = asyncio.run(main())
        stats = serving.stats()
    assert isinstance(failure, EngineStepError) and "no check caught" in str(failure)
    for stream in streams:
        assert isinstance(stream, list) and stream[-1].finish_reason == "length"
        assert len(stream[-1].token_ids) == 12
    assert stats.num_failed_requests == 1 and stats.num_finished_requests == 4
    assert engine.block_manager.num_used_blocks == 0
