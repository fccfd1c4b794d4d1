"""Continuous batching at iteration level.

Every step the scheduler decides, for each sequence, how many of its missing tokens
to compute: running sequences first (a decode needs one token, a long prompt may be
split into chunks), then waiting ones join while the token budget and the sequence
cap allow. Finished sequences leave after the step that finished them. When blocks
run out, the newest running sequence is preempted: its blocks are released (its
full blocks stay in the prefix cache) and it is recomputed later.
"""

from collections import deque
from dataclasses import dataclass, field

from engine.block_manager import BlockManager
from engine.sequence import FinishReason, Sequence, SequenceStatus


@dataclass(frozen=True)
class SchedulerConfig:
    max_num_batched_tokens: int = 2048  # tokens computed in one step, prefill and decode together
    max_num_seqs: int = 64  # sequences running at once

    def __post_init__(self) -> None:
        if self.max_num_batched_tokens < 1 or self.max_num_seqs < 1:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be positive")


@dataclass(frozen=True, slots=True)
class ScheduledSequence:
    """One sequence's share of a step: compute tokens [start, start + num_new_tokens)."""

    seq: Sequence
    start: int  # tokens already computed before this step
    num_new_tokens: int

    @property
    def samples(self) -> bool:
        """Whether this step reaches the sequence's last token, so a new one is sampled."""
        return self.start + self.num_new_tokens == self.seq.num_tokens


@dataclass(slots=True)
class SchedulerOutput:
    """What the model runner computes this step."""

    scheduled: list[ScheduledSequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_batched_tokens(self) -> int:
        return sum(item.num_new_tokens for item in self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


class Scheduler:
    def __init__(self, config: SchedulerConfig, block_manager: BlockManager) -> None:
        self.config = config
        self.block_manager = block_manager
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in admission order: the last one is the newest
        self.num_preemptions = 0  # since start, for metrics and tests

    @property
    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def schedule(self) -> SchedulerOutput:
        output = SchedulerOutput()
        budget = self._schedule_running(output, self.config.max_num_batched_tokens)
        # NOTE: after a preemption memory is short; admitting new work would only thrash.
        if not output.preempted:
            self._schedule_waiting(output, budget)
        for item in output.scheduled:
            item.seq.num_computed_tokens = item.start + item.num_new_tokens
        return output

    def finish(self, seq: Sequence, reason: FinishReason) -> None:
        """Take a sequence out of the engine and release its blocks."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
            self.block_manager.free(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    # ---- internals -----------------------------------------------------------------

    def _schedule_running(self, output: SchedulerOutput, budget: int) -> int:
        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            num_new = min(seq.num_tokens - seq.num_computed_tokens, budget)
            if not self._make_room(seq, num_new, output):
                break  # seq itself was preempted, and everything newer with it
            self.block_manager.allocate(seq, num_new)
            output.scheduled.append(ScheduledSequence(seq, seq.num_computed_tokens, num_new))
            budget -= num_new
            index += 1
        return budget

    def _make_room(self, seq: Sequence, num_new: int, output: SchedulerOutput) -> bool:
        """Preempt the newest sequences until `seq` fits; False if `seq` had to go too."""
        while not self.block_manager.can_allocate(seq, num_new):
            victim = self.running.pop()
            self._preempt(victim)
            output.preempted.append(victim)
            if victim is seq:
                return False
        return True

    def _schedule_waiting(self, output: SchedulerOutput, budget: int) -> None:
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            prefix = self.block_manager.match_prefix(seq)
            num_new = min(seq.num_tokens - prefix.num_tokens, budget)
            if not self.block_manager.can_allocate(seq, num_new, prefix):
                break  # first come, first served: nothing overtakes the head of the queue
            self.waiting.popleft()
            self.block_manager.allocate(seq, num_new, prefix)
            if seq.num_cached_tokens is None:
                seq.num_cached_tokens = min(prefix.num_tokens, seq.num_prompt_tokens)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            output.scheduled.append(ScheduledSequence(seq, prefix.num_tokens, num_new))
            budget -= num_new

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_computed_tokens = 0
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)
