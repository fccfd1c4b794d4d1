"""Passage KV reuse in a running engine (a tiny random Llama, fp32).

The exactness check: a decoder's first layer computes a token's key and value from the
token and its position alone, so a passage's layer-0 keys copied from another prompt
and turned to their new positions must equal the keys computed there from scratch,
within fp32 rounding. Deeper layers differ (they saw another context): that difference
is the approximation, which the benchmarks measure.
"""

from pathlib import Path

import pytest
import torch

from engine import LLM, SamplingParams
from engine.errors import EngineConfigError
from engine.llm_engine import LLMEngine
from tests.tiny_model import save_tiny_llama

PASSAGE = list(range(1000, 1040))  # 40 tokens
OTHER = list(range(2000, 2030))
FIRST = [1, 422, 3081, 314, *PASSAGE, 4193, 28]  # the passage at 4
SECOND = [1, 9226] * 7 + OTHER + PASSAGE + [30, 31]  # at 44, mid-block
GREEDY = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("passages") / "tiny")


def make_engine(tiny_dir: Path, **options: object) -> LLMEngine:
    options = {"dtype": "float32", "kv_cache_memory": 8 << 20} | options
    return LLM(str(tiny_dir), **options).engine


def spans(prompt: list[int], *passages: list[int]) -> list[tuple[int, int]]:
    found = []
    for passage in passages:
        start = next(i for i in range(len(prompt)) if prompt[i : i + len(passage)] == passage)
        found.append((start, start + len(passage)))
    return found


def layer_kv(engine: LLMEngine, request_id: str, layer: int, start: int, end: int):
    """A running request's K and V rows of one layer at positions [start, end)."""
    seq = next(s for s in engine.scheduler.running if s.request_id == request_id)
    return kv_rows(engine, layer, seq.block_table, range(start, end))


def kv_rows(engine: LLMEngine, layer: int, block_table, positions):
    """K and V rows of one layer at these positions of a block table (copies)."""
    size = engine.config.block_size
    slots = [block_table[p // size] * size + p % size for p in positions]
    keys, values = engine.runner.kv_caches[layer]
    return keys.view(-1, *keys.shape[2:])[slots], values.view(-1, *values.shape[2:])[slots]


def prefill(engine: LLMEngine, request_id: str, prompt: list[int], *passages: list[int]) -> None:
    engine.add_request(prompt, GREEDY, request_id, passages=spans(prompt, *passages))
    engine.step()  # the whole prompt fits one step


def finish(engine: LLMEngine) -> dict[str, list[int]]:
    done = {}
    while engine.has_unfinished_requests():
        done |= {out.request_id: out.token_ids for out in engine.step() if out.finished}
    return done


def reused_and_fresh(tiny_dir: Path, recompute: int) -> tuple[LLMEngine, LLMEngine]:
    """SECOND prefilled after FIRST with the passage cache, and alone without it."""
    reused = make_engine(tiny_dir, enable_passage_cache=True, passage_recompute_tokens=recompute)
    prefill(reused, "first", FIRST, PASSAGE)
    finish(reused)
    prefill(reused, "second", SECOND, OTHER, PASSAGE)
    fresh = make_engine(tiny_dir)
    prefill(fresh, "second", SECOND, OTHER, PASSAGE)
    return reused, fresh


def test_reused_keys_equal_keys_computed_at_the_new_position(tiny_dir: Path) -> None:
    reused, fresh = reused_and_fresh(tiny_dir, recompute=0)
    (start, end) = spans(SECOND, PASSAGE)[0]
    keys, values = layer_kv(reused, "second", 0, start, end)
    want_keys, want_values = layer_kv(fresh, "second", 0, start, end)
    torch.testing.assert_close(keys, want_keys, rtol=0, atol=2e-6)
    torch.testing.assert_close(values, want_values, rtol=0, atol=2e-6)
    # moved by 40 positions: unturned keys would be far off
    passage = reused.block_manager.find_passage(tuple(PASSAGE), None)
    assert passage is not None and passage.source_start == 4
    first_keys, _ = kv_rows(reused, 0, passage.block_ids, range(len(PASSAGE)))
    assert (first_keys - want_keys).abs().max() > 0.1
    # layer 1 was copied too: it still carries the first prompt's context
    deep, _ = layer_kv(reused, "second", 1, start, end)
    want_deep, _ = layer_kv(fresh, "second", 1, start, end)
    assert (deep - want_deep).abs().max() > 1e-3
    assert reused.block_manager.num_cached_passages == 2  # PASSAGE, then OTHER


def test_recomputed_head_tokens_are_computed_in_the_new_context(tiny_dir: Path) -> None:
    reused, fresh = reused_and_fresh(tiny_dir, recompute=8)
    (start, _end) = spans(SECOND, PASSAGE)[0]
    head, _ = layer_kv(reused, "second", 1, start, start + 8)
    want_head, _ = layer_kv(fresh, "second", 1, start, start + 8)
    torch.testing.assert_close(head, want_head, rtol=0, atol=1e-4)  # same context, computed
    out = finish(reused)["second"]
    assert len(out) == 4
    stats = reused.scheduler.passage_stats
    assert (stats.num_hits, stats.num_reused_tokens, stats.num_recomputed_tokens) == (1, 32, 8)


def test_cached_tokens_count_reused_passage_tokens(tiny_dir: Path) -> None:
    engine = make_engine(tiny_dir, enable_passage_cache=True, passage_recompute_tokens=4)
    engine.add_request(FIRST, GREEDY, "first", passages=spans(FIRST, PASSAGE))
    assert finish(engine)
    engine.add_request(SECOND, GREEDY, "second", passages=spans(SECOND, OTHER, PASSAGE))
    outputs = []
    while engine.has_unfinished_requests():
        outputs += engine.step()
    assert outputs[-1].num_cached_tokens == len(PASSAGE) - 4


def test_prompts_without_passages_run_as_without_the_cache(tiny_dir: Path) -> None:
    prompts = [FIRST, SECOND, [*FIRST[:20], 5, 6, 7]]
    plain = LLM(str(tiny_dir), dtype="float32", kv_cache_memory=8 << 20)
    cached = LLM(str(tiny_dir), dtype="float32", kv_cache_memory=8 << 20, enable_passage_cache=True)
    want = [out.token_ids for out in plain.generate(prompts, GREEDY)]
    assert [out.token_ids for out in cached.generate(prompts, GREEDY)] == want


def test_a_pool_too_small_for_copies_and_their_sources_still_serves(tiny_dir: Path) -> None:
    """Many overlapping passage sets in a pool of a few prompts: passages are evicted and
    kept again, preemptions happen, and every request finishes with nothing held."""
    engine = make_engine(
        tiny_dir,
        enable_passage_cache=True,
        passage_recompute_tokens=4,
        kv_cache_memory=32 * 8192,  # 32 blocks of 16 tokens: 8192 bytes each
        max_model_len=256,
        max_num_batched_tokens=96,
    )
    engine_pool = engine.block_manager
    pool = [list(range(3000 + 50 * n, 3000 + 50 * n + 30 + n)) for n in range(6)]
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    for number in range(12):
        chosen = [pool[(number + k * 2) % len(pool)] for k in range(3)]
        prompt = [1, 100 + number] + [t for passage in chosen for t in [7, *passage]] + [30]
        engine.add_request(prompt, params, f"r{number}", passages=spans(prompt, *chosen))
    assert engine_pool.num_blocks == 32
    done = finish(engine)
    assert len(done) == 12 and all(len(tokens) == 6 for tokens in done.values())
    assert engine_pool.num_used_blocks == 0
    assert all(block.ref_count == 0 for block in engine_pool.blocks)
    stats = engine.scheduler.passage_stats
    assert stats.num_hits > 0
    assert stats.num_kept > len(pool)  # some were evicted and kept again
    assert engine.scheduler.num_preemptions > 0


@pytest.mark.parametrize(
    ("passages", "message"),
    [
        ([(5, 5)], "non-empty"),
        ([(0, len(FIRST))], "before the prompt's last token"),
        ([(10, 20), (15, 25)], "must not overlap"),
        ([(20, 30), (4, 10)], "in order"),
        ([(-1, 4)], "non-empty"),
    ],
)
def test_bad_passage_ranges_are_refused(tiny_dir: Path, passages, message: str) -> None:
    engine = make_engine(tiny_dir, enable_passage_cache=True)
    with pytest.raises(ValueError, match=message):
        engine.add_request(FIRST, GREEDY, passages=passages)
    assert not engine.has_unfinished_requests()


def test_a_negative_recompute_is_a_config_error() -> None:
    with pytest.raises(EngineConfigError, match="passage_recompute_tokens"):
        LLM("unused", passage_recompute_tokens=-1)
