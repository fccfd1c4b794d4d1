"""`n > 1`: samples of one prompt that compute and hold its KV blocks once."""

import pytest

from engine import LLM, SamplingParams

pytestmark = pytest.mark.slow
BLOCK = 16  # the engine's default block size


@pytest.fixture(scope="module")
def llm() -> LLM:
    return LLM("smollm2:135m-instruct", kv_cache_memory=128 << 20, max_model_len=512)


@pytest.fixture(scope="module")
def prompt(llm: LLM) -> list[int]:
    text = "Paged attention keeps the KV cache in fixed-size blocks. " * 12
    return llm.encode_chat([{"role": "user", "content": text + "Summarise this."}])


def test_samples_come_back_as_outputs_and_reuse_the_prompts_blocks(llm, prompt) -> None:
    stats = llm.engine.block_manager.stats
    hits_before = stats.num_hit_tokens
    params = SamplingParams(n=4, temperature=1.0, seed=7, max_tokens=8, ignore_eos=True)
    (output,) = llm.generate([prompt], params)
    assert [sample.index for sample in output.outputs] == [0, 1, 2, 3]
    assert all(len(s.token_ids) == 8 and s.finish_reason == "length" for s in output.outputs)
    assert len({tuple(s.token_ids) for s in output.outputs}) > 1  # seeds 7, 8, 9, 10
    assert (output.text, output.token_ids) == (output.outputs[0].text, output.outputs[0].token_ids)
    # Samples 1 to 3 found every full block of the prompt in the cache.
    assert stats.num_hit_tokens - hits_before >= 3 * ((len(prompt) - 1) // BLOCK * BLOCK)


def test_greedy_samples_all_equal_the_single_answer(llm, prompt) -> None:
    params = SamplingParams(temperature=0, max_tokens=6)
    single = llm.generate([prompt], params)[0]
    (output,) = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=6, n=3))
    assert [s.token_ids for s in output.outputs] == [single.token_ids] * 3


def test_running_samples_hold_the_prompt_once_and_an_abort_frees_them_all(llm, prompt) -> None:
    engine = llm.engine
    params = SamplingParams(n=4, temperature=1.0, seed=1, max_tokens=50, ignore_eos=True)
    request_id = engine.add_request(prompt, params)
    for _ in range(3):  # the first sample's prompt, then all four decode
        engine.step()
    assert len(engine.scheduler.running) == 4
    prompt_blocks = -(-len(prompt) // BLOCK)
    # Each sample's own blocks: its last partial block of the prompt and what it wrote.
    assert engine.block_manager.num_used_blocks <= prompt_blocks + 4 * 2
    assert engine.block_manager.num_used_blocks < 2 * prompt_blocks  # not 4 copies
    engine.abort_request(request_id)
    assert not engine.has_unfinished_requests()
    assert engine.block_manager.num_used_blocks == 0


def test_n_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="n must be between 1 and 16, got 0"):
        SamplingParams(n=0)


def test_an_abort_before_the_first_sample_has_its_prompt_frees_everything(llm, prompt) -> None:
    """The held samples never reached the scheduler: aborting them must not touch it."""
    engine = llm.engine
    request_id = engine.add_request(prompt, SamplingParams(n=3, max_tokens=5))
    engine.abort_request(request_id)  # before any step
    other = engine.add_request(prompt, SamplingParams(n=2, max_tokens=5))
    engine.step()  # the first sample's prompt is under way, the second still held
    engine.abort_request(other)
    assert not engine.has_unfinished_requests()
    assert engine.block_manager.num_used_blocks == 0
    (after,) = llm.generate([prompt], SamplingParams(n=2, temperature=0, max_tokens=3))
    assert len(after.outputs) == 2  # the engine still works
