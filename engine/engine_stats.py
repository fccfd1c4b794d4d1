"""What a serving engine reports about itself: one frozen snapshot, read by `/metrics`.

Gauges describe the engine now; counters count since the engine started, as Prometheus
counters expect. This module imports no torch, so a metrics exporter can use it cheaply.
"""

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from engine.outputs import RequestOutput

if TYPE_CHECKING:
    from engine.llm_engine import LLMEngine


@dataclass(frozen=True, slots=True)
class EngineStats:
    """The state of the engine after its latest command or step."""

    num_running: int  # sequences holding KV blocks, scheduled every step
    num_waiting: int  # sequences queued for admission (new, or preempted to be recomputed)
    kv_blocks_used: int  # blocks held by running sequences
    kv_blocks_total: int  # blocks in the KV pool
    kv_blocks_cached: int  # blocks keyed in the prefix cache, held or free (reusable either way)
    prefix_cache_query_tokens: int  # counter: prompt tokens looked up when sequences were admitted
    prefix_cache_hit_tokens: int  # counter: of those, tokens served from the cache
    passages_cached: int  # passages whose KV the passage cache holds
    passage_cache_queries: int  # counter: passages looked up when sequences were admitted
    passage_cache_hits: int  # counter: of those, reused at their new position
    passage_cache_reused_tokens: int  # counter: tokens copied from cached passages
    passage_cache_recomputed_tokens: int  # counter: head tokens of reused passages recomputed
    num_preemptions: int  # counter: sequences whose blocks were taken back to make room
    num_steps: int  # counter: model steps run
    num_prompt_tokens: int  # counter: prompt tokens of requests that got their first token
    num_generation_tokens: int  # counter: tokens generated
    num_finished_requests: int  # counter: requests that ended with "stop" or "length"
    num_aborted_requests: int  # counter: requests aborted by abort() or by their consumer leaving
    num_rejected_requests: int  # counter: requests add_request refused (bad or too long prompt)
    num_failed_requests: int  # counter: requests ended by a failed step or by shutdown
    ranks_up: tuple[bool, ...] = (True,)  # each rank of the engine, by rank: not seen down

    @property
    def kv_cache_usage(self) -> float:
        """Fraction of the KV pool held by running sequences."""
        return self.kv_blocks_used / self.kv_blocks_total

    @property
    def prefix_cache_hit_rate(self) -> float:
        """Fraction of looked-up prompt tokens served from the prefix cache."""
        if not self.prefix_cache_query_tokens:
            return 0.0
        return self.prefix_cache_hit_tokens / self.prefix_cache_query_tokens


@dataclass(slots=True)
class EngineCounters:
    """The counters only the serving engine knows; owned by its engine thread."""

    num_steps: int = 0
    num_prompt_tokens: int = 0
    num_generation_tokens: int = 0
    num_finished_requests: int = 0
    num_aborted_requests: int = 0
    num_rejected_requests: int = 0
    num_failed_requests: int = 0

    def count_output(self, output: RequestOutput) -> None:
        """Count the token a step gave a request (and its prompt, on its first token)."""
        self.num_generation_tokens += 1
        if len(output.token_ids) == 1:
            self.num_prompt_tokens += output.num_prompt_tokens
        if output.finished:
            self.num_finished_requests += 1


def snapshot(engine: "LLMEngine", counters: EngineCounters) -> EngineStats:
    """Read the engine's gauges and counters; call it on the thread that owns the engine."""
    scheduler, blocks = engine.scheduler, engine.block_manager
    passages = scheduler.passage_stats
    return EngineStats(
        num_running=len(scheduler.running),
        num_waiting=len(scheduler.waiting),
        kv_blocks_used=blocks.num_used_blocks,
        kv_blocks_total=blocks.num_blocks,
        kv_blocks_cached=blocks.num_cached_blocks,
        prefix_cache_query_tokens=blocks.stats.num_query_tokens,
        prefix_cache_hit_tokens=blocks.stats.num_hit_tokens,
        passages_cached=blocks.num_cached_passages,
        passage_cache_queries=passages.num_queries,
        passage_cache_hits=passages.num_hits,
        passage_cache_reused_tokens=passages.num_reused_tokens,
        passage_cache_recomputed_tokens=passages.num_recomputed_tokens,
        num_preemptions=scheduler.num_preemptions,
        **asdict(counters),
        ranks_up=tuple(rank.alive is not False for rank in engine.rank_health()),
    )
