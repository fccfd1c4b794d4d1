"""Scheduler: continuous batching, token budget, chunked prefill, preemption, no leaks."""

import random

from engine.block_manager import BlockManager
from engine.sampling_params import SamplingParams
from engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from engine.sequence import FinishReason, Sequence, SequenceStatus

BLOCK = 4


def make_scheduler(num_blocks: int = 64, budget: int = 64, max_seqs: int = 8) -> Scheduler:
    return Scheduler(SchedulerConfig(budget, max_seqs), BlockManager(num_blocks, BLOCK))


def make_seq(request_id: str, prompt_len: int, max_tokens: int = 4, first: int = 0) -> Sequence:
    tokens = list(range(first, first + prompt_len))
    return Sequence(request_id, tokens, prompt_len, SamplingParams(max_tokens=max_tokens))


def step(scheduler: Scheduler) -> SchedulerOutput:
    """One engine step with a stand-in model that always emits token 7."""
    output = scheduler.schedule()
    scheduler.finish_step(output)  # as the engine does once the model ran
    for item in output.scheduled:
        if item.samples:
            item.seq.append_token(7)
            if item.seq.num_output_tokens >= item.seq.params.max_tokens:
                scheduler.finish(item.seq, FinishReason.LENGTH)
    return output


def run_to_completion(scheduler: Scheduler, max_steps: int = 10_000) -> int:
    steps = 0
    while scheduler.has_unfinished:
        step(scheduler)
        steps += 1
        assert steps < max_steps, "scheduler made no progress (deadlock)"
    return steps


def test_waiting_sequences_join_and_finished_ones_leave_every_step() -> None:
    scheduler = make_scheduler()
    a, b = make_seq("a", 5, max_tokens=2), make_seq("b", 6, max_tokens=5, first=100)
    scheduler.add(a)
    scheduler.add(b)
    first = step(scheduler)
    assert [(i.seq.request_id, i.start, i.num_new_tokens) for i in first.scheduled] == [
        ("a", 0, 5),
        ("b", 0, 6),
    ]
    c = make_seq("c", 3, max_tokens=1, first=50)
    scheduler.add(c)
    second = step(scheduler)  # a and b decode while c prefills, in the same step
    assert [(i.seq.request_id, i.num_new_tokens) for i in second.scheduled] == [
        ("a", 1),
        ("b", 1),
        ("c", 3),
    ]
    assert a.is_finished and c.is_finished and not b.is_finished
    assert scheduler.running == [b]


def test_identical_prefix_admitted_in_the_same_step_is_shared() -> None:
    scheduler = make_scheduler()
    a, b = make_seq("a", 9), make_seq("b", 10)  # b starts with a's first 8 tokens
    scheduler.add(a)
    scheduler.add(b)
    output = step(scheduler)
    # b reads the KV that a writes earlier in the same layer of the same step.
    assert [(i.seq.request_id, i.start, i.num_new_tokens) for i in output.scheduled] == [
        ("a", 0, 9),
        ("b", 8, 2),
    ]
    assert b.num_cached_tokens == 8
    assert b.block_table[:2] == a.block_table[:2]


def test_long_prompt_is_chunked_under_the_token_budget() -> None:
    scheduler = make_scheduler(budget=8)
    running = make_seq("run", 4, max_tokens=10)
    scheduler.add(running)
    step(scheduler)
    long = make_seq("long", 20, max_tokens=1, first=100)
    scheduler.add(long)
    chunks = []
    while not long.is_finished:
        output = step(scheduler)
        assert output.num_batched_tokens <= 8
        chunks.append({i.seq.request_id: i.num_new_tokens for i in output.scheduled})
    # The decode keeps its place each step; the prompt fills the rest of the budget.
    assert chunks == [{"run": 1, "long": 7}, {"run": 1, "long": 7}, {"run": 1, "long": 6}]


def test_max_num_seqs_caps_the_running_set() -> None:
    scheduler = make_scheduler(max_seqs=2)
    for index in range(4):
        scheduler.add(make_seq(str(index), 3, first=10 * index))
    step(scheduler)
    assert len(scheduler.running) == 2 and len(scheduler.waiting) == 2


def test_out_of_blocks_preempts_the_newest_and_recomputes_it_later() -> None:
    scheduler = make_scheduler(num_blocks=4, max_seqs=4)
    old = make_seq("old", 7, max_tokens=6)
    new = make_seq("new", 7, max_tokens=6, first=100)
    scheduler.add(old)
    scheduler.add(new)
    step(scheduler)  # each holds 2 blocks: 8 slots for 7 prompt tokens + 1 sampled
    step(scheduler)  # the sampled token fills slot 8
    assert scheduler.block_manager.num_free_blocks == 0
    output = step(scheduler)  # both need a third block for token 9: the newest goes
    assert output.preempted == [new]
    assert new.status is SequenceStatus.WAITING and new.num_computed_tokens == 0
    assert new.num_preemptions == 1
    assert [i.seq for i in output.scheduled] == [old]
    run_to_completion(scheduler)
    assert old.num_output_tokens == 6 and new.num_output_tokens == 6
    # The preempted sequence kept its generated tokens and recomputed them.
    assert new.token_ids[:7] == list(range(100, 107))


def test_random_workload_finishes_without_deadlock_or_leak() -> None:
    rng = random.Random(0)
    scheduler = make_scheduler(num_blocks=24, budget=16, max_seqs=6)
    seqs = []
    for index in range(40):
        # Shared leading tokens make prefix hits; the pool is small enough to preempt.
        shared = rng.choice([[1, 2, 3, 4, 5, 6, 7, 8], [9, 9, 9, 9], []])
        tokens = shared + [rng.randrange(1000) for _ in range(rng.randrange(1, 30))]
        seq = Sequence(
            str(index), tokens, len(tokens), SamplingParams(max_tokens=rng.randrange(1, 20))
        )
        seqs.append(seq)
        scheduler.add(seq)
    run_to_completion(scheduler)
    manager = scheduler.block_manager
    assert all(seq.is_finished for seq in seqs)
    assert manager.num_free_blocks == manager.num_blocks  # every block free or cached, none held
    assert all(block.ref_count == 0 for block in manager.blocks)
    assert sum(seq.num_preemptions for seq in seqs) > 0
    assert manager.stats.num_hit_tokens > 0


def test_finish_of_a_waiting_sequence_removes_it() -> None:
    scheduler = make_scheduler()
    seq = make_seq("a", 3)
    scheduler.add(seq)
    scheduler.finish(seq, FinishReason.ABORT)
    assert not scheduler.has_unfinished
    assert seq.finish_reason is FinishReason.ABORT
