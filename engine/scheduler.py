"""Continuous batching at iteration level.

Every step the scheduler decides, for each sequence, how many of its missing tokens
to compute: running sequences first (a decode needs one token, a long prompt may be
split into chunks), then waiting ones join while the token budget and the sequence
cap allow. Finished sequences leave after the step that finished them. When blocks
run out, the newest running sequence is preempted: its blocks are released (its
full blocks stay in the prefix cache) and it is recomputed later.

With the passage cache on (passage_cache.py), a sequence's step may also cover cached
passages, which are copied in rather than computed: the token budget counts computed
tokens only. Admission then prefers the waiting sequences with the most of their
prompt cached, and holds back one that needs a passage another sequence is computing
until that one is kept, each for a bounded number of steps.
"""

from collections import Counter, deque
from dataclasses import dataclass, field

from engine.block_manager import BlockManager, PrefixMatch
from engine.passage_cache import (
    PassageCacheConfig,
    PassageCacheStats,
    PassageCopy,
    PassageKeep,
    PassageKey,
    PassageSpan,
    passage_key,
)
from engine.sequence import FinishReason, Sequence, SequenceStatus


@dataclass(frozen=True)
class SchedulerConfig:
    max_num_batched_tokens: int = 2048  # tokens computed in one step, prefill and decode together
    max_num_seqs: int = 64  # sequences running at once
    # Steps in flight at once (pipeline stages): each step takes an even share of the
    # unfinished sequences, so the stages have other batches to run meanwhile.
    pipeline_depth: int = 1

    def __post_init__(self) -> None:
        if self.max_num_batched_tokens < 1 or self.max_num_seqs < 1 or self.pipeline_depth < 1:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be positive")


@dataclass(frozen=True, slots=True)
class ScheduledSequence:
    """One sequence's share of a step: fill tokens [start, start + num_new_tokens), by
    computing them or, for the `copies`, by copying a cached passage's KV in."""

    seq: Sequence
    start: int  # tokens already computed before this step
    num_new_tokens: int
    copies: tuple[PassageCopy, ...] = ()  # in order, each inside [start, start + num_new_tokens)

    @property
    def samples(self) -> bool:
        """Whether this step reaches the sequence's last token, so a new one is sampled."""
        return self.start + self.num_new_tokens == self.seq.num_tokens

    @property
    def runs(self) -> list[tuple[int, int]]:
        """The position ranges the model computes: the step's range less the copies."""
        runs, position = [], self.start
        for copy in self.copies:
            if copy.copy_start > position:
                runs.append((position, copy.copy_start))
            position = copy.end
        end = self.start + self.num_new_tokens
        if end > position:
            runs.append((position, end))
        return runs

    @property
    def num_computed_tokens(self) -> int:
        return sum(end - start for start, end in self.runs)


@dataclass(slots=True)
class SchedulerOutput:
    """What the model runner computes this step."""

    scheduled: list[ScheduledSequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    keeps: list[PassageKeep] = field(default_factory=list)  # passages to copy out after it

    @property
    def num_batched_tokens(self) -> int:
        """Tokens the model computes this step (copied ones cost no budget)."""
        return sum(item.num_computed_tokens for item in self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


@dataclass(frozen=True, slots=True)
class _ReusePlan:
    """What admitting a sequence now would reuse: its prefix and its cached passages."""

    prefix: PrefixMatch
    copies: tuple[PassageCopy, ...] = ()
    fresh: tuple[PassageSpan, ...] = ()  # passages it would compute, to keep afterwards
    num_queried: int = 0  # passages looked up

    @property
    def num_cached_tokens(self) -> int:
        return self.prefix.num_tokens + sum(copy.end - copy.copy_start for copy in self.copies)


class Scheduler:
    def __init__(
        self,
        config: SchedulerConfig,
        block_manager: BlockManager,
        passages: PassageCacheConfig | None = None,
    ) -> None:
        self.config = config
        self.block_manager = block_manager
        self.passages = passages or PassageCacheConfig()
        self.passage_stats = PassageCacheStats()
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in admission order: the last one is the newest
        self.num_preemptions = 0  # since start, for metrics and tests
        # Passages running sequences compute themselves and have not kept yet, by key.
        self._in_flight: Counter[PassageKey] = Counter()
        # Sequences in a step the model has not finished (pipeline stages run several
        # steps at once): they are not scheduled again, nor preempted, until it has.
        self._in_step: set[str] = set()
        self._step_share = 0  # sequences this step may take (all, without pipeline stages)

    @property
    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def schedule(self) -> SchedulerOutput:
        output = SchedulerOutput()
        unfinished = len(self.running) + len(self.waiting)
        self._step_share = -(-unfinished // self.config.pipeline_depth)
        budget = self._schedule_running(output, self.config.max_num_batched_tokens)
        # NOTE: after a preemption memory is short; admitting new work would only thrash.
        if not output.preempted:
            self._schedule_waiting(output, budget)
        for item in output.scheduled:
            item.seq.num_computed_tokens = item.start + item.num_new_tokens
        self._keep_passages(output)
        for seq in self.waiting:
            seq.num_waited_steps += 1
        self._in_step.update(item.seq.request_id for item in output.scheduled)
        return output

    def finish_step(self, output: SchedulerOutput) -> None:
        """After the model ran `output`: its kept passages are written, and the cached
        passages it copied in may be evicted again."""
        for keep in output.keeps:
            keep.passage.ready = True
            self.block_manager.release_passage(keep.passage)
        for item in output.scheduled:
            self._in_step.discard(item.seq.request_id)
            for copy in item.copies:
                self.block_manager.release_passage(copy.passage)

    def finish(self, seq: Sequence, reason: FinishReason) -> None:
        """Take a sequence out of the engine and release its blocks."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
            self._drop_plan(seq)
            self.block_manager.free(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    # ---- internals -----------------------------------------------------------------

    def _schedule_running(self, output: SchedulerOutput, budget: int) -> int:
        index = 0
        while index < len(self.running) and budget > 0:
            if len(output.scheduled) >= self._step_share:
                break
            seq = self.running[index]
            index += 1
            if seq.request_id in self._in_step:
                continue  # its last step is still in the pipeline
            item = self._step_of(seq, seq.num_computed_tokens, budget)
            if self._in_step and not self.block_manager.can_allocate(seq, item.num_new_tokens):
                break  # NOTE: no preemption while a step still uses the blocks
            if not self._make_room(seq, item.num_new_tokens, output):
                break  # seq itself was preempted, and everything newer with it
            self.block_manager.allocate(seq, item.num_new_tokens)
            del seq.passage_copies[: len(item.copies)]
            output.scheduled.append(item)
            budget -= item.num_computed_tokens
        return budget

    def _step_of(self, seq: Sequence, start: int, budget: int) -> ScheduledSequence:
        """The sequence's next step from `start`: computed tokens up to the budget, and
        the pending passage copies it passes over (they cost no budget)."""
        position, computed, copies = start, 0, []
        pending = iter(seq.passage_copies)
        copy = next(pending, None)
        while position < seq.num_tokens and computed < budget:
            if copy is not None and copy.copy_start == position:
                copies.append(copy)
                position = copy.end
                copy = next(pending, None)
                continue
            limit = copy.copy_start if copy is not None else seq.num_tokens
            taken = min(limit - position, budget - computed)
            position += taken
            computed += taken
        return ScheduledSequence(seq, start, position - start, tuple(copies))

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
        if budget <= 0 or len(self.running) >= self.config.max_num_seqs:
            return  # NOTE: before ordering the queue, which looks every request up
        for seq in self._admission_order():
            if budget <= 0 or len(self.running) >= self.config.max_num_seqs:
                break
            if len(output.scheduled) >= self._step_share:
                break
            plan = self._plan(seq)
            if plan is None:
                continue  # it waits for a passage another sequence is computing
            # NOTE: copies hold their passages' blocks as well as the sequence's own; when
            # both do not fit, computing the passages is better than waiting for room.
            item = self._admit(seq, plan, budget)
            if item is None and plan.copies:
                item = self._admit(seq, _ReusePlan(plan.prefix), budget)
            if item is None:
                break  # first come, first served: nothing overtakes the head of the queue
            output.scheduled.append(item)
            budget -= item.num_computed_tokens

    def _admit(self, seq: Sequence, plan: _ReusePlan, budget: int) -> ScheduledSequence | None:
        """Start a waiting sequence with this plan; None (and nothing held) if its blocks
        do not fit."""
        seq.passage_copies = list(plan.copies)
        item = self._step_of(seq, plan.prefix.num_tokens, budget)
        # NOTE: passages are held before blocks are allocated, so the allocation cannot
        # evict a passage this sequence is about to copy.
        for copy in plan.copies:
            self.block_manager.hold_passage(copy.passage)
        if not self.block_manager.can_allocate(seq, item.num_new_tokens, plan.prefix):
            self._drop_plan(seq)
            return None
        self.waiting.remove(seq)
        self.block_manager.allocate(seq, item.num_new_tokens, plan.prefix)
        del seq.passage_copies[: len(item.copies)]
        seq.fresh_passages = list(plan.fresh)
        for span in plan.fresh:
            self._in_flight[self._passage_key(seq, span)] += 1
        self._count_admission(seq, plan)
        seq.status = SequenceStatus.RUNNING
        seq.num_waited_steps = 0
        self.running.append(seq)
        return item

    def _admission_order(self) -> list[Sequence]:
        """First come, first served; with the passage cache, the sequences with the most
        of their prompt cached go first, but none is passed over for too many steps."""
        if not self.passages.enabled:
            return list(self.waiting)
        bound = self.passages.max_wait_steps

        def priority(indexed: tuple[int, Sequence]) -> tuple[bool, int, int]:
            index, seq = indexed
            if seq.num_waited_steps >= bound:
                return (False, 0, index)
            plan = self._plan(seq, lookup_only=True)
            return (True, -(plan.num_cached_tokens if plan else 0), index)

        return [seq for _, seq in sorted(enumerate(self.waiting), key=priority)]

    def _plan(self, seq: Sequence, lookup_only: bool = False) -> _ReusePlan | None:
        """The prefix and passages admitting `seq` now would reuse; None if it should
        wait for a passage another sequence is computing (within its bounded wait)."""
        prefix = self.block_manager.match_prefix(seq)
        if not self.passages.enabled or not seq.passage_spans:
            return _ReusePlan(prefix)
        may_wait = seq.num_waited_steps < self.passages.max_wait_steps
        copies, fresh, queried = [], [], 0
        for span in seq.passage_spans:
            if span.end <= prefix.num_tokens:
                continue  # the prefix cache serves it whole
            first = max(self.passages.recompute_tokens, prefix.num_tokens - span.start)
            if first >= span.num_tokens:
                continue  # all of it is computed (or cached) anyway: nothing to copy or keep
            queried += 1
            tokens = tuple(seq.token_ids[span.start : span.end])
            passage = self.block_manager.find_passage(tokens, seq.cache_salt)
            if passage is not None and passage.ready:
                copies.append(PassageCopy(passage, span.start, first))
            elif (
                may_wait
                and not lookup_only
                and (passage is not None or self._in_flight[passage_key(tokens, seq.cache_salt)])
            ):
                return None
            elif span.start >= prefix.num_tokens:
                fresh.append(span)
        return _ReusePlan(prefix, tuple(copies), tuple(fresh), queried)

    def _count_admission(self, seq: Sequence, plan: _ReusePlan) -> None:
        stats = self.passage_stats
        stats.num_queries += plan.num_queried
        stats.num_hits += len(plan.copies)
        for copy in plan.copies:
            stats.num_reused_tokens += copy.end - copy.copy_start
            stats.num_recomputed_tokens += copy.copy_start - max(copy.start, plan.prefix.num_tokens)
        if seq.num_cached_tokens is None:
            seq.num_cached_tokens = min(plan.num_cached_tokens, seq.num_prompt_tokens)
            seq.num_passage_tokens = plan.num_cached_tokens - plan.prefix.num_tokens
            seq.num_reused_passages = len(plan.copies)

    def _keep_passages(self, output: SchedulerOutput) -> None:
        """Passages computed by the end of this step get blocks of their own in the cache,
        from the blocks left free once every sequence has its share."""
        for item in output.scheduled:
            seq = item.seq
            done = [span for span in seq.fresh_passages if span.end <= seq.num_computed_tokens]
            if not done:
                continue
            del seq.fresh_passages[: len(done)]
            for span in done:
                self._in_flight[self._passage_key(seq, span)] -= 1
                tokens = tuple(seq.token_ids[span.start : span.end])
                passage = self.block_manager.keep_passage(tokens, seq.cache_salt, span.start)
                if passage is not None:
                    self.passage_stats.num_kept += 1
                    output.keeps.append(PassageKeep(passage, tuple(seq.block_table), span.start))
        self._in_flight = +self._in_flight  # NOTE: unary plus drops the zero counts

    def _drop_plan(self, seq: Sequence) -> None:
        """Let go of what the sequence's admission planned and has not done yet."""
        for copy in seq.passage_copies:
            self.block_manager.release_passage(copy.passage)
        for span in seq.fresh_passages:
            self._in_flight[self._passage_key(seq, span)] -= 1
        self._in_flight = +self._in_flight
        seq.passage_copies = []
        seq.fresh_passages = []

    def _passage_key(self, seq: Sequence, span: PassageSpan) -> PassageKey:
        return passage_key(tuple(seq.token_ids[span.start : span.end]), seq.cache_salt)

    def _preempt(self, seq: Sequence) -> None:
        self._drop_plan(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_computed_tokens = 0
        seq.num_preemptions += 1
        self.num_preemptions += 1
        # NOTE: a preempted sequence goes first again, ahead of any cache preference.
        seq.num_waited_steps = self.passages.max_wait_steps
        self.waiting.appendleft(seq)
