"""Passage cache bookkeeping: keys, ref counts, eviction, salts, copy plans, admission.

No model runs here: test_scheduler.py's stand-in step appends token 7 and tells the
scheduler the step ran (`finish_step`), as the engine does.
"""

import pytest

from engine.block_manager import BlockManager
from engine.passage_cache import PassageCacheConfig, PassageSpan
from engine.sampling_params import SamplingParams
from engine.scheduler import Scheduler, SchedulerConfig
from engine.sequence import FinishReason, Sequence, SequenceStatus
from tests.engine.test_scheduler import run_to_completion, step

BLOCK = 4
PASSAGE_A = tuple(range(100, 110))  # 10 tokens: 3 blocks when kept
PASSAGE_B = tuple(range(200, 209))
PASSAGE_C = tuple(range(300, 312))


def make_scheduler(
    num_blocks: int = 64, budget: int = 256, recompute: int = 2, max_wait: int = 8
) -> Scheduler:
    return Scheduler(
        SchedulerConfig(budget, 8),
        BlockManager(num_blocks, BLOCK),
        PassageCacheConfig(enabled=True, recompute_tokens=recompute, max_wait_steps=max_wait),
    )


def prompt_with(
    request_id: str,
    head: list[int],
    *passages: tuple[int, ...],
    salt: str | None = None,
    max_tokens: int = 2,
) -> Sequence:
    """head, then each passage after a one-token header, then a two-token question."""
    tokens, spans = list(head), []
    for number, passage in enumerate(passages):
        tokens.append(50 + number)  # its header: "[n]"
        spans.append(PassageSpan(len(tokens), len(tokens) + len(passage)))
        tokens += passage
    tokens += [60, 61]
    seq = Sequence(request_id, tokens, len(tokens), SamplingParams(max_tokens=max_tokens), salt)
    seq.passage_spans = tuple(spans)
    return seq


def run(scheduler: Scheduler, max_steps: int = 1000) -> None:
    run_to_completion(scheduler, max_steps)


def assert_nothing_held(scheduler: Scheduler) -> None:
    blocks = scheduler.block_manager
    assert blocks.num_used_blocks == 0
    assert all(block.ref_count == 0 for block in blocks.blocks)


# ---- the block manager's passage entries ----------------------------------------------


def test_a_kept_passage_is_held_until_released_then_waits_as_most_recent() -> None:
    blocks = BlockManager(8, BLOCK)
    passage = blocks.keep_passage(PASSAGE_A, None, source_start=5)
    assert passage is not None and passage.source_start == 5 and not passage.ready
    assert [blocks.blocks[i].ref_count for i in passage.block_ids] == [1, 1, 1]
    assert blocks.num_free_blocks == 5
    blocks.release_passage(passage)
    assert blocks.num_free_blocks == 8
    assert set(blocks.free_queue_order()[-3:]) == set(passage.block_ids)
    assert blocks.find_passage(PASSAGE_A, None) is passage
    assert blocks.keep_passage(PASSAGE_A, None, source_start=9) is None  # kept already


def test_a_passage_is_found_only_by_its_exact_tokens_and_salt() -> None:
    blocks = BlockManager(8, BLOCK)
    passage = blocks.keep_passage(PASSAGE_A, "tenant-1", 0)
    assert blocks.find_passage(PASSAGE_A, "tenant-1") is passage
    assert blocks.find_passage(PASSAGE_A, "tenant-2") is None
    assert blocks.find_passage(PASSAGE_A, None) is None
    assert blocks.find_passage(PASSAGE_A[:-1], "tenant-1") is None


def test_evicting_one_block_drops_the_passage_and_frees_its_other_blocks_first() -> None:
    blocks = BlockManager(4, BLOCK)
    passage = blocks.keep_passage(PASSAGE_A, None, 0)  # 3 of the 4 blocks
    assert passage is not None
    blocks.release_passage(passage)
    seq = Sequence("s", list(range(8)), 8, SamplingParams())
    blocks.allocate(seq, 8)  # two blocks: the free one, then one of the passage's
    assert blocks.find_passage(PASSAGE_A, None) is None
    assert blocks.num_cached_passages == 0
    rest = set(passage.block_ids) - set(seq.block_table)
    assert len(rest) == 2 and set(blocks.free_queue_order()) == rest
    assert all(blocks.blocks[block_id].passage is None for block_id in rest)


def test_a_held_passage_is_not_evicted_and_ref_counts_balance() -> None:
    blocks = BlockManager(4, BLOCK)
    passage = blocks.keep_passage(PASSAGE_A, None, 0)
    assert passage is not None
    blocks.release_passage(passage)
    blocks.hold_passage(passage)
    blocks.hold_passage(passage)
    assert blocks.num_free_blocks == 1
    assert not blocks.can_allocate(Sequence("s", list(range(8)), 8, SamplingParams()), 8)
    blocks.release_passage(passage)
    blocks.release_passage(passage)
    assert blocks.num_free_blocks == 4
    with pytest.raises(RuntimeError, match="released more often"):
        blocks.release_passage(passage)


def test_keeping_takes_only_free_blocks() -> None:
    blocks = BlockManager(4, BLOCK)
    seq = Sequence("s", list(range(8)), 8, SamplingParams())
    blocks.allocate(seq, 8)
    assert blocks.keep_passage(PASSAGE_A, None, 0) is None  # 3 blocks, 2 free


def test_reset_forgets_passages_and_a_held_one_is_released_as_unkeyed() -> None:
    blocks = BlockManager(8, BLOCK)
    passage = blocks.keep_passage(PASSAGE_A, None, 0)
    assert passage is not None
    blocks.reset_prefix_cache()
    assert blocks.find_passage(PASSAGE_A, None) is None
    blocks.release_passage(passage)
    assert blocks.free_queue_order()[:3] == list(passage.block_ids)


# ---- the scheduler's plans ------------------------------------------------------------


def test_a_computed_passage_is_kept_then_copied_at_its_new_position() -> None:
    scheduler = make_scheduler(recompute=2)
    first = prompt_with("first", [1, 2, 3], PASSAGE_A)
    scheduler.add(first)
    output = step(scheduler)
    assert [keep.passage.token_ids for keep in output.keeps] == [PASSAGE_A]
    assert output.keeps[0].start == 4 and output.keeps[0].passage.ready
    run(scheduler)

    second = prompt_with("second", [1, 9, 9, 9, 9, 9, 9], PASSAGE_B, PASSAGE_A)
    scheduler.add(second)
    output = step(scheduler)
    (item,) = output.scheduled
    (copy,) = item.copies
    span = second.passage_spans[1]
    assert (copy.start, copy.first, copy.end) == (span.start, 2, span.end)
    assert copy.passage.source_start == 4
    # computed: everything but the copied part of PASSAGE_A
    assert item.runs == [(0, span.start + 2), (span.end, second.num_prompt_tokens)]
    assert output.num_batched_tokens == second.num_prompt_tokens - (len(PASSAGE_A) - 2)
    assert second.num_cached_tokens == len(PASSAGE_A) - 2
    stats = scheduler.passage_stats
    assert (stats.num_hits, stats.num_reused_tokens, stats.num_recomputed_tokens) == (1, 8, 2)
    assert [keep.passage.token_ids for keep in output.keeps] == [PASSAGE_B]
    run(scheduler)
    assert_nothing_held(scheduler)


def test_no_copy_without_the_passage_cache() -> None:
    scheduler = Scheduler(SchedulerConfig(256, 8), BlockManager(64, BLOCK))
    for name, head in (("a", [1, 2, 3]), ("b", [1, 9])):
        seq = prompt_with(name, head, PASSAGE_A)
        scheduler.add(seq)
        output = step(scheduler)
        assert not output.keeps and not output.scheduled[0].copies
        run(scheduler)


def test_passages_are_shared_only_within_one_salt() -> None:
    scheduler = make_scheduler()
    scheduler.add(prompt_with("a", [1, 2], PASSAGE_A, salt="tenant-1"))
    run(scheduler)
    other = prompt_with("b", [1, 9, 9], PASSAGE_A, salt="tenant-2")
    scheduler.add(other)
    assert not step(scheduler).scheduled[0].copies
    run(scheduler)
    same = prompt_with("c", [1, 9, 9], PASSAGE_A, salt="tenant-1")
    scheduler.add(same)
    assert step(scheduler).scheduled[0].copies


def test_a_passage_shorter_than_the_recompute_is_neither_kept_nor_copied() -> None:
    scheduler = make_scheduler(recompute=len(PASSAGE_B))
    scheduler.add(prompt_with("a", [1], PASSAGE_B))
    assert not step(scheduler).keeps
    run(scheduler)
    scheduler.add(prompt_with("b", [1, 2], PASSAGE_B))
    assert not step(scheduler).scheduled[0].copies


def test_a_prefix_hit_covering_the_passage_head_leaves_no_recompute() -> None:
    scheduler = make_scheduler(recompute=2)
    scheduler.add(prompt_with("a", [1, 2, 3], PASSAGE_A))
    run(scheduler)
    # same head and header: the prefix cache serves blocks 0-2 (12 tokens, 8 into PASSAGE_A)
    again = prompt_with("b", [1, 2, 3], PASSAGE_A)
    again.token_ids[-1] = again.token_ids[-1] + 1  # another question
    scheduler.add(again)
    (item,) = step(scheduler).scheduled
    (copy,) = item.copies
    assert item.start == 12 and copy.copy_start == 12 and copy.first == 8
    assert item.runs == [(14, 16)]  # the question only


def test_copies_cost_no_budget_in_a_chunked_prefill() -> None:
    scheduler = make_scheduler(budget=6, recompute=1)
    scheduler.add(prompt_with("a", [1], PASSAGE_C))
    run(scheduler)
    seq = prompt_with("b", [1, 9, 9, 9, 9, 9], PASSAGE_C)
    scheduler.add(seq)
    steps = []
    while seq.num_output_tokens == 0:
        output = step(scheduler)
        steps.append((output.scheduled[0].runs, len(output.scheduled[0].copies)))
        assert output.num_batched_tokens <= 6
    # 7 computed tokens (head and header, passage head), 11 copied, the 2-token question
    assert steps == [([(0, 6)], 0), ([(6, 8), (19, 21)], 1)]


def test_a_request_waits_for_a_passage_another_is_computing_then_copies_it() -> None:
    scheduler = make_scheduler()
    scheduler.add(prompt_with("a", [1, 2, 3], PASSAGE_A))
    scheduler.add(prompt_with("b", [1, 9, 9, 9, 9], PASSAGE_A))
    output = step(scheduler)
    assert [item.seq.request_id for item in output.scheduled] == ["a"]
    output = step(scheduler)
    admitted = {item.seq.request_id: item for item in output.scheduled}
    assert admitted["b"].copies and admitted["b"].copies[0].passage.token_ids == PASSAGE_A
    run(scheduler)
    assert_nothing_held(scheduler)


def test_with_no_wait_allowed_both_compute_the_passage() -> None:
    scheduler = make_scheduler(max_wait=0)
    scheduler.add(prompt_with("a", [1, 2, 3], PASSAGE_A))
    scheduler.add(prompt_with("b", [1, 9, 9, 9, 9], PASSAGE_A))
    output = step(scheduler)
    assert [item.seq.request_id for item in output.scheduled] == ["a", "b"]
    assert len(output.keeps) == 1  # kept once
    run(scheduler)
    assert_nothing_held(scheduler)


def test_admission_prefers_the_request_with_more_cached_and_starves_none() -> None:
    scheduler = make_scheduler(budget=24, max_wait=2)
    scheduler.add(prompt_with("warm", [1], PASSAGE_A, PASSAGE_C))
    run(scheduler)
    cold = prompt_with("cold", [2, 3], PASSAGE_B, max_tokens=1)  # 14 tokens to compute
    cached = prompt_with("cached", [2, 4], PASSAGE_A, PASSAGE_C, max_tokens=1)
    scheduler.add(cold)
    scheduler.add(cached)
    output = step(scheduler)
    assert next(item.seq.request_id for item in output.scheduled) == "cached"
    run(scheduler)
    # a stream of well-cached requests cannot hold a cold one back for long
    scheduler.add(prompt_with("cold-2", [5, 6, 7, 8, 9, 10, 11, 12], PASSAGE_B, max_tokens=1))
    waited = 0
    for number in range(6):
        scheduler.add(prompt_with(f"cached-{number}", [2, 4 + number], PASSAGE_A, PASSAGE_C))
        output = step(scheduler)
        if any(item.seq.request_id == "cold-2" for item in output.scheduled):
            break
        waited += 1
    assert waited <= 2


def test_preemption_and_abort_release_what_the_plan_held() -> None:
    scheduler = make_scheduler(num_blocks=24, budget=4)
    scheduler.add(prompt_with("warm", [1], PASSAGE_A, PASSAGE_C))
    run(scheduler)
    seq = prompt_with("b", [2, 3, 4, 5, 6, 7, 8], PASSAGE_A, PASSAGE_C, max_tokens=8)
    scheduler.add(seq)
    step(scheduler)  # chunked: its copies are still pending, their passages held
    assert seq.passage_copies
    held = [b for b in scheduler.block_manager.blocks if b.ref_count and b.passage is not None]
    assert held
    scheduler.finish(seq, FinishReason.ABORT)
    assert seq.status is SequenceStatus.FINISHED and not seq.passage_copies
    assert_nothing_held(scheduler)
    assert scheduler.block_manager.num_cached_passages == 2  # released, not forgotten


def test_many_overlapping_requests_in_a_small_pool_finish_and_leak_nothing() -> None:
    scheduler = make_scheduler(num_blocks=40, budget=16)
    pool = [tuple(range(1000 + 20 * n, 1000 + 20 * n + 9 + n % 4)) for n in range(8)]
    for number in range(30):
        chosen = [pool[(number * 3 + k * (1 + number % 3)) % len(pool)] for k in range(3)]
        head = [1, 2 + number % 5]
        scheduler.add(prompt_with(f"r{number}", head, *dict.fromkeys(chosen), max_tokens=3))
    run(scheduler, max_steps=5000)
    assert_nothing_held(scheduler)
    stats = scheduler.passage_stats
    assert stats.num_hits > 0 and stats.num_kept > 0
