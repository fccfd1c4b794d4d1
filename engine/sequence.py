"""The state of one request as it moves through the engine.

One scheduling model covers everything: a sequence's `num_computed_tokens` (tokens
whose KV is in the cache) catches up with its `num_tokens`. A fresh prompt, a chunk
of a long prompt, a prefix-cache hit and a decode step are all the same thing
seen from here: the scheduler picks how many of the missing tokens to compute next.
"""

from dataclasses import dataclass, field
from enum import Enum, StrEnum, auto

from engine.passage_cache import PassageCopy, PassageSpan
from engine.sampling_params import SamplingParams


class SequenceStatus(Enum):
    WAITING = auto()  # queued, holds no blocks (new, or preempted and to be recomputed)
    RUNNING = auto()  # holds blocks and is scheduled every step until it finishes
    FINISHED = auto()  # done; its blocks are released


class FinishReason(StrEnum):
    """Why generation ended; the values are the strings OpenAI and vLLM clients expect."""

    STOP = "stop"  # EOS, a stop token or a stop string
    LENGTH = "length"  # max_tokens or the model's context length
    ABORT = "abort"  # cancelled by the caller
    ERROR = "error"  # its part of a step raised; it alone ended (RequestOutput.error says why)


@dataclass(slots=True, eq=False)
class Sequence:
    """A prompt and its generated tokens, with the bookkeeping of its KV blocks."""

    request_id: str
    token_ids: list[int]  # prompt followed by every generated token
    num_prompt_tokens: int  # how many of token_ids came from the prompt
    params: SamplingParams
    cache_salt: str | None = None  # prefix-cache namespace: sequences share blocks only within one
    status: SequenceStatus = SequenceStatus.WAITING
    num_computed_tokens: int = 0  # leading tokens whose KV is (or this step will be) in the cache
    num_cached_tokens: int | None = None  # prompt tokens served from the cache at first admission
    num_passage_tokens: int = 0  # of those, copied from cached passages
    num_reused_passages: int = 0  # how many passages those came from
    num_preemptions: int = 0  # times its blocks were taken back to make room
    finish_reason: FinishReason | None = None
    block_table: list[int] = field(default_factory=list)  # KV block ids, in token order
    block_hashes: list[bytes] = field(default_factory=list)  # chained keys of its full blocks
    num_registered_blocks: int = 0  # leading blocks already offered to the prefix cache
    passage_spans: tuple[PassageSpan, ...] = ()  # retrieved passages in the prompt, in order
    # Since its latest admission (passage_cache.py): cached passages still to be copied in,
    # and passages it computes itself, to be kept once computed; both in prompt order.
    passage_copies: list[PassageCopy] = field(default_factory=list)
    fresh_passages: list[PassageSpan] = field(default_factory=list)
    num_waited_steps: int = 0  # steps it stayed waiting while others were admitted

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def is_prefill(self) -> bool:
        """Still computing tokens it already has (prompt, or recompute after preemption)."""
        return self.num_tokens - self.num_computed_tokens > 1

    def append_token(self, token_id: int) -> None:
        self.token_ids.append(token_id)
